"""Kept feed pages (feed/pages.py): sent again without the database, never past a change that
the reader must see at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import event

from craftreel.context import AppContext
from craftreel.core.stamps import Stamp, Stamps, move_on_commit
from craftreel.feed import pages
from craftreel.feed.pages import PageCache
from tests.accounts.test_pages import BrowserFactory, browsers  # noqa: F401 - fixture
from tests.factories import Person, sign_up
from tests.feed.factories import block, follow, make_private
from tests.posts.factories import make_post


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """The SQL the app runs meanwhile (the feeds' driver reads included)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", note)


async def _feed(client: httpx.AsyncClient, feed: str, viewer: Person | None) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/feed/{feed}", headers=viewer.auth if viewer is not None else {}
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _captions(page: dict[str, Any]) -> list[str]:
    return [item["caption"] for item in page["items"]]


async def test_a_page_asked_for_again_is_sent_without_reading_the_database(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "again")
    maker = await sign_up(client, "againmaker")
    stranger = await sign_up(client, "againstranger")
    await follow(client, viewer, maker)
    await make_post(client, ctx, maker, caption="kept")
    first = await _feed(client, "following", viewer)
    assert _captions(first) == ["kept"]

    with statements(ctx) as sql:
        response = await client.get("/api/v1/feed/following", headers=viewer.auth)
    assert response.json() == first
    assert sql == [], "the kept page is sent as it was"
    assert ctx.pages.hits >= 1
    # Answered before routing, still logged, counted and sent with the usual headers.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]
    metrics = (await client.get("/metrics")).text
    assert 'route="/api/v1/feed/following",status="200"} 2.0' in metrics

    # A query the front cannot read plainly goes to the app, which reads it as ever.
    for query in ("limit=20&limit=20", "limit=20&utm=x", "limit=%2020"):
        response = await client.get(f"/api/v1/feed/following?{query}", headers=viewer.auth)
        assert response.status_code == 200 and _captions(response.json()) == ["kept"]

    # Kept per reader: someone else asking for the same page gets their own.
    assert _captions(await _feed(client, "following", stranger)) == []
    # And per page: another size is another page.
    response = await client.get("/api/v1/feed/following?limit=1", headers=viewer.auth)
    assert response.status_code == 200
    assert response.json()["next_cursor"] is None


Change = Callable[
    [httpx.AsyncClient, AppContext, Person, Person, dict[str, Any]], Awaitable[object]
]


async def _ask(
    client: httpx.AsyncClient, method: str, path: str, who: Person, json: Any = None
) -> None:
    response = await client.request(method, path, headers=who.auth, json=json)
    assert response.is_success, response.text


def _shown(page: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    return [
        (
            item["caption"],
            item["author"]["display_name"],
            item["viewer"]["liked"],
            item["viewer"]["saved"],
        )
        for item in page["items"]
    ]


#: A change (made with the viewer, the maker they follow and the maker's post), and what the
#: viewer's Following shows right after it: (caption, maker's name, liked, saved) per post.
CHANGES: dict[str, tuple[Change, list[tuple[str, str, bool, bool]]]] = {
    "I like it": (
        lambda c, ctx, v, m, p: _ask(c, "PUT", f"/api/v1/posts/{p['id']}/like", v),
        [("kept", "Maker", True, False)],
    ),
    "I save it": (
        lambda c, ctx, v, m, p: _ask(c, "PUT", f"/api/v1/posts/{p['id']}/save", v),
        [("kept", "Maker", False, True)],
    ),
    "I unfollow": (
        lambda c, ctx, v, m, p: _ask(c, "DELETE", f"/api/v1/people/{m.handle}/follow", v),
        [],
    ),
    "the maker removes me as a follower": (
        lambda c, ctx, v, m, p: _ask(c, "DELETE", f"/api/v1/people/{v.handle}/follower", m),
        [],
    ),
    "the maker blocks me": (lambda c, ctx, v, m, p: block(c, m, v), []),
    "the maker publishes": (
        lambda c, ctx, v, m, p: make_post(c, ctx, m, caption="newer"),
        [("newer", "Maker", False, False), ("kept", "Maker", False, False)],
    ),
    "the maker edits the caption": (
        lambda c, ctx, v, m, p: _ask(
            c, "PATCH", f"/api/v1/posts/{p['id']}", m, json={"caption": "edited"}
        ),
        [("edited", "Maker", False, False)],
    ),
    "the maker makes it private": (
        lambda c, ctx, v, m, p: _ask(
            c, "PATCH", f"/api/v1/posts/{p['id']}", m, json={"visibility": "private"}
        ),
        [],
    ),
    "the maker deletes it": (
        lambda c, ctx, v, m, p: _ask(c, "DELETE", f"/api/v1/posts/{p['id']}", m),
        [],
    ),
    "the maker renames themselves": (
        lambda c, ctx, v, m, p: _ask(
            c, "PATCH", "/api/v1/me/profile", m, json={"display_name": "Renamed Maker"}
        ),
        [("kept", "Renamed Maker", False, False)],
    ),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
async def test_a_kept_page_shows_a_change_at_once(
    client: httpx.AsyncClient, ctx: AppContext, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = await sign_up(client, "changeviewer")
    maker = await sign_up(client, "changemaker", display_name="Maker")
    await follow(client, viewer, maker)
    post = await make_post(client, ctx, maker, caption="kept")
    if change != "the maker renames themselves":
        # As if the change were made by another process, which cannot move this one's card
        # generation: the stamps alone must tell. (A person's name is on the cards, which
        # another process's change reaches within their own time, see posts/cards.py.)
        monkeypatch.setattr(pages, "shown", SimpleNamespace(generation=0))
    assert _shown(await _feed(client, "following", viewer)) == [("kept", "Maker", False, False)]
    assert ctx.pages.hits == 0
    await _feed(client, "following", viewer)
    assert ctx.pages.hits == 1, "the page is kept"

    act, expected = CHANGES[change]
    await act(client, ctx, viewer, maker, post)
    assert _shown(await _feed(client, "following", viewer)) == expected


async def test_discover_hides_a_post_once_its_maker_goes_private(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = await sign_up(client, "discovermaker")
    stranger = await sign_up(client, "discoverstranger")
    monkeypatch.setattr(pages, "shown", SimpleNamespace(generation=0))  # as from elsewhere
    await make_post(client, ctx, maker, caption="for everyone")
    assert _captions(await _feed(client, "discover", stranger)) == ["for everyone"]
    assert _captions(await _feed(client, "discover", None)) == ["for everyone"]
    await _feed(client, "discover", None)
    assert ctx.pages.hits == 1, "signed out, everyone shares one kept page"

    await make_private(client, maker)
    assert _captions(await _feed(client, "discover", stranger)) == []
    assert _captions(await _feed(client, "discover", None)) == []


async def test_other_peoples_likes_show_once_the_page_is_old(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = await sign_up(client, "oldviewer")
    maker = await sign_up(client, "oldmaker")
    fan = await sign_up(client, "oldfan")
    await follow(client, viewer, maker)
    post = await make_post(client, ctx, maker, caption="counted")
    now = [1000.0]
    monkeypatch.setattr(ctx.pages, "clock", lambda: now[0])
    assert (await _feed(client, "following", viewer))["items"][0]["counts"]["likes"] == 0

    assert (
        await client.put(f"/api/v1/posts/{post['id']}/like", headers=fan.auth)
    ).status_code == 200
    kept = await _feed(client, "following", viewer)
    assert kept["items"][0]["counts"]["likes"] == 0, "within its time the page is sent as kept"

    now[0] += ctx.pages.seconds
    assert (await _feed(client, "following", viewer))["items"][0]["counts"]["likes"] == 1


async def test_a_rolled_back_change_moves_no_stamp(ctx: AppContext) -> None:
    person = uuid4()
    both: list[Stamp] = ["everyone", person]
    before = ctx.pages.stamps.read(both)
    with pytest.raises(RuntimeError):
        async with ctx.uow() as uow:
            move_on_commit(uow, [person, "everyone"])
            raise RuntimeError("the change fails")
    assert ctx.pages.stamps.read(both) == before

    async with ctx.uow() as uow:
        move_on_commit(uow, [person])
        assert ctx.pages.stamps.read(both) == before, "not before the commit"
    everyone, own = ctx.pages.stamps.read(both)
    assert everyone == before[0] and own != before[1]


async def test_a_rank_refresh_reads_discover_again_but_not_following(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "ranked")
    maker = await sign_up(client, "rankedmaker")
    await follow(client, viewer, maker)
    await make_post(client, ctx, maker, caption="ranked")
    for feed in ("following", "discover"):
        await _feed(client, feed, viewer)
    async with ctx.uow() as uow:
        move_on_commit(uow, ["ranks"])  # as refresh_rank_scores does when a score changed
    hits = ctx.pages.hits
    await _feed(client, "following", viewer)
    assert ctx.pages.hits == hits + 1
    await _feed(client, "discover", viewer)
    assert ctx.pages.hits == hits + 1, "Discover's order may have changed"


def test_a_stamp_moved_by_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "stamps"
    here = Stamps(path)
    person = UUID("01890a5d-ac96-774b-bcce-b302099a8057")
    both: list[Stamp] = ["everyone", person]
    before = here.read(both)
    code = (
        "import sys; from pathlib import Path; from uuid import UUID;"
        "from craftreel.core.stamps import Stamps;"
        "Stamps(Path(sys.argv[1])).move([UUID(sys.argv[2])])"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(person)], check=True)
    after = here.read(both)
    assert after[0] == before[0] and after[1] != before[1]
    assert Stamps(path).read(both) == after, "a table mapped anew holds the same stamps"


def test_kept_pages_stay_within_their_memory() -> None:
    pages = PageCache(Stamps(None), seconds=30, max_bytes=1000)
    seen = pages.seen("discover", None)
    for n in range(5):
        pages.put(("discover", None, str(n), 20), seen, bytes(300))
    assert len(pages) == 3 and pages.size_bytes == 900
    assert pages.get(("discover", None, "0", 20), seen) is None, "the oldest went first"
    assert pages.get(("discover", None, "4", 20), seen) == bytes(300)
    pages.put(("discover", None, "big", 20), seen, bytes(1001))
    assert pages.get(("discover", None, "big", 20), seen) is None, "too big to keep at all"
    assert pages.size_bytes == 900


async def test_a_request_for_a_kept_page_is_checked_as_any_other(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "checked")
    for feed in ("following", "discover"):
        await _feed(client, feed, viewer)
        await _feed(client, feed, viewer)
    assert ctx.pages.hits == 2

    signed_out = await client.get("/api/v1/feed/following")
    assert signed_out.status_code == 401
    assert signed_out.json()["error"]["code"] == "not_authenticated"
    forged = await client.get(
        "/api/v1/feed/following", headers={"Authorization": viewer.auth["Authorization"] + "x"}
    )
    assert forged.status_code == 401
    for limit in ("0", "51", "abc", "-1", "２"):
        for feed in ("following", "discover"):
            response = await client.get(f"/api/v1/feed/{feed}?limit={limit}", headers=viewer.auth)
            assert response.status_code == 422, (feed, limit, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert error["details"]["fields"][0]["loc"] == ["query", "limit"]
    bad_cursor = await client.get("/api/v1/feed/discover?cursor=nope", headers=viewer.auth)
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["code"] == "invalid_input"

    # Signing out ends the session: its token no longer gets the kept page.
    assert (await client.post("/api/v1/auth/signout", headers=viewer.auth)).status_code == 204
    after = await client.get("/api/v1/feed/following", headers=viewer.auth)
    assert after.status_code == 401


async def test_a_signed_in_browser_never_gets_the_signed_out_page(
    client: httpx.AsyncClient,
    ctx: AppContext,
    browsers: BrowserFactory,  # noqa: F811
) -> None:
    maker = await sign_up(client, "cookiemaker")
    fan = await sign_up(client, "cookiefan")
    await make_post(client, ctx, maker, caption="liked by the fan")
    signed_out = await _feed(client, "discover", None)
    await _feed(client, "discover", None)
    assert ctx.pages.hits == 1
    assert signed_out["items"][0]["viewer"] is None
    post_id = signed_out["items"][0]["id"]
    assert (await client.put(f"/api/v1/posts/{post_id}/like", headers=fan.auth)).is_success

    browser = browsers("198.51.100.9")
    assert (await browser.sign_in(fan.email)).status_code == 303
    response = await browser.get("/api/v1/feed/discover")
    assert response.status_code == 200
    assert response.json()["items"][0]["viewer"] == {"liked": True, "saved": False}
