"""Files stored for rows that never land: a listing photo, a digital file or a review photo
whose transaction fails at commit leaves neither its row nor its file; one that commits keeps
both. (The unit of work's ``on_rollback`` and ``core.storage.remove_on_rollback``.)"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from PIL import Image
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.storage import remove_on_rollback
from craftreel.shop.models import Listing, OrderLine, Review
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_downloads import digital_listing
from tests.shop.test_gallery import add_photo, media_rows, picture, stored_folders
from tests.shop.test_orders import paid_order
from tests.shop.test_payments import api

PDF = b"%PDF-1.7\n% a pattern\n%%EOF\n"


class CommitRefused(Exception):
    """What the database said to a COMMIT in these tests (a lost connection, a failed
    serialisation check)."""


@contextmanager
def commit_fails(ctx: AppContext, statement: str) -> Iterator[list[str]]:
    """Make the commit of any transaction that ran a statement matching ``statement`` fail
    (each refusal is listed), as a database refusing a COMMIT would: the session's commit
    raises and the transaction rolls back. Every other transaction commits as usual."""
    pattern = re.compile(statement, re.IGNORECASE)
    engine = ctx.engine.sync_engine
    refused: list[str] = []
    mark = "craftreel_refuse_commit"

    def watch(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if pattern.search(sql):
            conn.info[mark] = sql

    def forget(conn: Any) -> None:
        conn.info.pop(mark, None)

    def before_commit(session: Session) -> None:
        sql = session.connection().info.get(mark)
        if sql is not None:
            refused.append(sql)
            raise CommitRefused(sql[:80])

    event.listen(engine, "before_cursor_execute", watch)
    event.listen(engine, "commit", forget)
    event.listen(engine, "rollback", forget)
    event.listen(Session, "before_commit", before_commit)
    try:
        yield refused
    finally:
        event.remove(engine, "before_cursor_execute", watch)
        event.remove(engine, "commit", forget)
        event.remove(engine, "rollback", forget)
        event.remove(Session, "before_commit", before_commit)


def stored_files(settings: Settings, under: str) -> list[Path]:
    root = settings.media_dir / under
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_on_rollback_runs_only_when_the_transaction_does_not_land(ctx: AppContext) -> None:
    ran: list[str] = []
    async with ctx.uow() as uow:
        uow.on_rollback(ran.append, "committed")
    with pytest.raises(RuntimeError):
        async with ctx.uow() as uow:
            uow.on_rollback(ran.append, "raised")
            uow.after_commit(ran.append, "after raised")
            raise RuntimeError("boom")
    with commit_fails(ctx, r"INSERT INTO jobs"), pytest.raises(CommitRefused):
        async with ctx.uow() as uow:
            ctx.jobs.enqueue(uow, "test.nothing", {})
            await uow.session.flush()
            uow.on_rollback(ran.append, "commit failed")
            uow.after_commit(ran.append, "after commit failed")
    assert ran == ["raised", "commit failed"]
    assert await ctx.jobs.due() == []


async def test_remove_on_rollback_deletes_a_stored_file_only_on_rollback(
    ctx: AppContext, settings: Settings
) -> None:
    async def store(key: str, fail: bool) -> None:
        async with ctx.uow() as uow:
            await ctx.storage.put(key, b"bytes", "application/octet-stream")
            remove_on_rollback(uow, ctx.storage, key)
            if fail:
                raise RuntimeError("a later step failed")

    await store("scratch/kept.bin", fail=False)
    with pytest.raises(RuntimeError):
        await store("scratch/gone.bin", fail=True)
    assert [p.name for p in stored_files(settings, "scratch")] == ["kept.bin"]


async def test_a_listing_photo_whose_commit_fails_leaves_no_file_and_no_row(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller, mug = await seller_with_listing(api, "strayphotos")
    with commit_fails(ctx, r"INSERT INTO media_objects") as refused, pytest.raises(CommitRefused):
        await add_photo(api, seller, mug["id"], picture())
    assert refused and (await media_rows(ctx), stored_folders(settings)) == (0, set())

    added = await add_photo(api, seller, mug["id"], picture())
    assert added.status_code == 201, added.text
    [photo] = added.json()["photos"]
    assert await media_rows(ctx) == 1 and stored_folders(settings) == {photo["id"]}


async def test_a_digital_file_whose_commit_fails_leaves_no_file_and_the_old_one_stays(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller, _ = await seller_with_listing(api, "strayfiles")
    pattern = await digital_listing(api, seller)
    url = f"/api/v1/listings/{pattern['id']}/file"

    def upload(name: str) -> dict[str, tuple[str, bytes, str]]:
        return {"file": (name, PDF, "application/pdf")}

    first = await api.put(url, headers=seller.auth, files=upload("first.pdf"))
    assert first.status_code == 204, first.text
    folder = f"media/{pattern['id']}"
    [kept] = stored_files(settings, folder)
    replacing = commit_fails(ctx, r"UPDATE listings SET digital_file_key")
    with replacing as refused, pytest.raises(CommitRefused):
        await api.put(url, headers=seller.auth, files=upload("second.pdf"))
    assert refused
    # The replacement never landed: its file is gone, the first one is still named and kept.
    assert stored_files(settings, folder) == [kept]
    async with ctx.sessions() as session:
        listing = await session.get(Listing, UUID(pattern["id"]))
    assert listing is not None and listing.digital_file_name == "first.pdf"
    assert listing.digital_file_key is not None and kept.as_posix().endswith(
        listing.digital_file_key
    )


async def test_a_review_photo_whose_commit_fails_leaves_no_file_and_no_row(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller, buyer, order = await paid_order(api, ctx, "strayreviews", "strayreviewer")
    await api.post(
        f"/api/v1/orders/{order['id']}/ship",
        headers=seller.auth,
        json={"carrier": "DPD", "tracking_number": "1"},
    )
    await api.post(f"/api/v1/orders/{order['id']}/delivered", headers=buyer.auth)
    async with ctx.sessions() as session:
        line_id = await session.scalar(
            select(OrderLine.id).where(OrderLine.order_id == UUID(order["id"]))
        )
    review = await api.post(
        f"/api/v1/order-lines/{line_id}/review", headers=buyer.auth, json={"stars": 5}
    )
    review_id = review.json()["id"]
    png = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 120, 40)).save(png, format="PNG")
    files = {"photo": ("p.png", png.getvalue(), "image/png")}
    url = f"/api/v1/reviews/{review_id}/photo"

    with commit_fails(ctx, r"INSERT INTO media_objects") as refused, pytest.raises(CommitRefused):
        await api.put(url, headers=buyer.auth, files=files)
    assert refused and (await media_rows(ctx), stored_folders(settings)) == (0, set())
    async with ctx.sessions() as session:
        found = await session.get(Review, UUID(review_id))
    assert found is not None and found.photo_media_id is None

    added = await api.put(url, headers=buyer.auth, files=files)
    assert added.status_code == 200, added.text
    assert await media_rows(ctx) == 1 and len(stored_folders(settings)) == 1


__all__ = ["api"]  # the fixture, imported for these tests
