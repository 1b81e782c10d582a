"""Following on PostgreSQL has two plans in one statement (``feed.repository``): a scan of
everyone's posts newest first for the followed makers' (dense), and one probe per person
followed (by heads), which answers when the scan comes up short. Whichever answers — and
when they take turns within one walk — the pages are the same and the right ones. A reader
for whom the scan came up short is remembered, and skips it for a while. (On SQLite there is
one plan; the walks still check it.)"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import update

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core import db
from craftreel.core.clock import utcnow
from craftreel.feed import repository as repo
from tests.conftest import PASSWORD
from tests.factories import Person, sign_up
from tests.feed.factories import approve, block, follow, make_private
from tests.posts.factories import make_post, user_id

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_signup": "100/3600"})


async def _walk(ctx: AppContext, me: UUID, limit: int, scan: int | None) -> list[str]:
    """Every post of ``me``'s Following, page by page, as the service pages it."""
    ids: list[str] = []
    after = None
    while True:
        async with ctx.uow(read_only=True) as uow:
            rows = await repo.following(uow.session, me, after, limit, scan=scan)
        ids += [str(row.id) for row in rows[:limit]]
        if len(rows) <= limit:
            return ids
        last = rows[limit - 1]
        after = (last.published_at, last.id)


async def _post(client: httpx.AsyncClient, ctx: AppContext, person: Person, **fields: Any) -> str:
    post_id: str = (await make_post(client, ctx, person, **fields))["id"]
    return post_id


async def test_both_plans_page_through_the_same_right_posts(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    reader = await sign_up(client, "reader")
    prolific, quiet, closed, pending, leaving, ghost, blocker, dropped, stranger = [
        await sign_up(client, name)
        for name in (
            "prolific",
            "quiet",
            "closed",
            "pending",
            "leaving",
            "ghost",
            "blocker",
            "dropped",
            "stranger",
        )
    ]
    for person in (closed, pending):
        await make_private(client, person)
    for person in (prolific, quiet, closed, pending, leaving, ghost, blocker, dropped):
        await follow(client, reader, person)
    await approve(client, closed, reader)

    shown: list[str] = []  # oldest first
    for round_ in range(3):
        # Strangers' posts between the followed ones: what the dense scan reads past.
        await _post(client, ctx, stranger, caption=f"elsewhere {round_}")
        shown.append(await _post(client, ctx, prolific, caption=f"step {round_}"))
        shown.append(await _post(client, ctx, prolific, visibility="followers"))
        await _post(client, ctx, prolific, visibility="unlisted")
        await _post(client, ctx, prolific, visibility="private")
        await _post(client, ctx, prolific, publish=False)
        await _post(client, ctx, stranger)
        shown.append(await _post(client, ctx, closed))
        await _post(client, ctx, pending)
        await _post(client, ctx, leaving)
        await _post(client, ctx, ghost)
        await _post(client, ctx, blocker)
        await _post(client, ctx, dropped)
        await _post(client, ctx, reader, caption="my own")
    shown.append(await _post(client, ctx, quiet))
    await _post(client, ctx, stranger)
    await _post(client, ctx, stranger)

    await block(client, blocker, reader)
    unfollowed = await client.delete(f"/api/v1/people/{dropped.handle}/follow", headers=reader.auth)
    assert unfollowed.status_code in (200, 204), unfollowed.text
    deleted = await client.post(
        "/api/v1/me/delete",
        json={"password": PASSWORD, "confirm_handle": leaving.handle},
        headers=leaving.auth,
    )
    assert deleted.status_code == 204, deleted.text
    # Deleting an account erases its follows; a follow that outlived it (one made while it
    # was being deleted) must still not show its posts.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(User).where(User.handle == ghost.handle).values(deleted_at=utcnow())
        )

    me = await user_id(ctx, reader.handle)
    expected = shown[::-1]
    for limit in (2, 3, 20):
        walks = {
            # by heads only; dense until the end; dense and by heads taking turns; default
            scan: await _walk(ctx, me, limit, scan)
            for scan in (0, 10_000, limit + 1, None)
        }
        assert walks == dict.fromkeys(walks, expected), limit


@pytest.fixture
def sparse(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> repo.SparseReaders:
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL's Following has a dense plan")
    readers = repo.SparseReaders(seconds=300.0, size=100, clock=lambda: 0.0)
    monkeypatch.setattr(repo, "SPARSE_READERS", readers)
    # The dense plan sees only the 3 newest posts of anyone: a page of 2 when they are all
    # followed makers'.
    monkeypatch.setattr(repo, "DENSE_SCAN", 3)
    return readers


async def test_a_sparse_reader_skips_the_dense_scan_for_a_while(
    client: httpx.AsyncClient,
    ctx: AppContext,
    sparse: repo.SparseReaders,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dense_reader, sparse_reader, maker, stranger = [
        await sign_up(client, name) for name in ("dense", "sparse", "maker", "stranger")
    ]
    await follow(client, dense_reader, maker)
    await follow(client, sparse_reader, stranger)
    for _ in range(4):
        await _post(client, ctx, stranger)
    for _ in range(4):
        await _post(client, ctx, maker)
    scans: list[int] = []
    read_rows = db.read_rows

    plans = {
        repo._following("postgresql", cursor, scan): scan
        for cursor in (False, True)
        for scan in (0, 3)
    }

    async def spy(session: Any, statement: Any, params: dict[str, Any]) -> Any:
        scans.append(plans[statement])
        return await read_rows(session, statement, params)

    monkeypatch.setattr(repo, "read_rows", spy)
    dense_id = await user_id(ctx, dense_reader.handle)
    sparse_id = await user_id(ctx, sparse_reader.handle)

    # The maker's four posts are the newest: the scan finds a full page.
    assert len(await _walk(ctx, dense_id, 2, None)) == 4
    assert dense_id not in sparse
    # The stranger's are past them: the scan of 3 comes up short, by heads answers, and the
    # reader is remembered — but not for the page that ended the feed.
    assert len(await _walk(ctx, sparse_id, 2, None)) == 4
    assert sparse_id in sparse
    scans.clear()
    assert len(await _walk(ctx, sparse_id, 2, None)) == 4
    assert scans == [0, 0]
    monkeypatch.setattr(sparse, "clock", lambda: 301.0)
    assert sparse_id not in sparse
    scans.clear()
    await _walk(ctx, sparse_id, 2, None)
    assert scans[0] == 3


def test_sparse_readers_forget_the_oldest_past_their_size() -> None:
    readers = repo.SparseReaders(seconds=60.0, size=2, clock=lambda: 0.0)
    first, second, third = (UUID(int=n) for n in range(1, 4))
    readers.add(first)
    readers.add(second)
    readers.add(first)  # again: now the newest
    readers.add(third)
    assert (first in readers, second in readers, third in readers) == (True, False, True)
