"""Feed statements in a GET's read-only unit of work run on the driver directly — asyncpg, or
one trip to SQLite's connection thread (``core.db.read_rows``). They must give exactly what
SQLAlchemy gives, still be seen by the engine's statement listeners, and fall back to
SQLAlchemy when the driver fails."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from craftreel.context import AppContext
from craftreel.core import db
from craftreel.feed import repository as repo
from tests.factories import sign_up
from tests.feed.factories import engage, follow
from tests.posts.factories import make_post, user_id

Run = tuple[Any, dict[str, Any]]


async def _statements(client: httpx.AsyncClient, ctx: AppContext) -> list[Run]:
    """Following and Discover, with and without a cursor, and posts by id: each statement with
    its parameters, for a viewer who follows makers who posted, liked and saved."""
    viewer = await sign_up(client, "reader")
    makers = [await sign_up(client, f"maker{n}") for n in range(2)]
    posts = []
    for n, maker in enumerate(makers):
        await follow(client, viewer, maker)
        for k in range(3):
            posts.append(await make_post(client, ctx, maker, caption=f"step {n}.{k} #rows"))
    await engage(client, posts[0], likers=[viewer], savers=[viewer])
    await engage(client, posts[3], likers=[viewer])
    me = await user_id(ctx, viewer.handle)
    async with ctx.uow() as uow:
        newest = await repo.following(uow.session, me, None, 10)
        ranked = await repo.discover_candidates(uow.session, me, None, None, 10)
    after = (newest[2].published_at, newest[2].id)
    dialect = ctx.engine.dialect.name
    ids = [UUID(p["id"]) for p in posts]
    following: list[Run] = []
    # PostgreSQL's Following has two plans in one statement: dense, and by followee (scan 0).
    params = {"viewer_id": me, "limit": 10}
    for scan in (250, 0) if dialect == "postgresql" else (0,):
        following += [
            (repo._following(dialect, False, scan), params),
            (repo._following(dialect, True, scan), {**params, **_after(after)}),
        ]
    return [
        *following,
        (repo._discover(True, False, False, False), {"viewer_id": me, "limit": 10}),
        (
            repo._discover(True, True, False, True),
            {
                "viewer_id": me,
                "limit": 10,
                "after_score": ranked[1].score,
                "after_id": ranked[1].id,
                "not_by": await user_id(ctx, makers[0].handle),
            },
        ),
        (repo._posts_by_ids(dialect, True), {"viewer_id": me, "post_ids": ids}),
    ]


def _after(key: tuple[Any, UUID]) -> dict[str, Any]:
    return {"after_at": key[0], "after_id": key[1]}


async def _through_sqlalchemy(ctx: AppContext, runs: list[Run]) -> list[list[tuple[Any, ...]]]:
    # A writing unit of work: read_rows always runs those through SQLAlchemy.
    async with ctx.uow() as uow:
        connection = await uow.session.connection()
        return [[tuple(r) for r in (await connection.execute(s, p)).all()] for s, p in runs]


async def _read(ctx: AppContext, runs: list[Run]) -> list[list[tuple[Any, ...]]]:
    async with ctx.uow(read_only=True) as uow:
        return [list(await db.read_rows(uow.session, s, p)) for s, p in runs]


def _types(rows: list[list[tuple[Any, ...]]]) -> list[list[tuple[type, ...]]]:
    return [[tuple(type(v) for v in row) for row in result] for result in rows]


async def test_read_rows_give_what_sqlalchemy_gives(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    runs = await _statements(client, ctx)
    expected = await _through_sqlalchemy(ctx, runs)
    assert all(expected), "every statement must return rows for the comparison to mean much"
    assert sum(row[-2] for row in expected[0]) == 2, "liked flags come back"
    got = await _read(ctx, runs)
    assert got == expected
    assert _types(got) == _types(expected)
    for result in got:
        for row in result:
            for value in row:
                if hasattr(value, "tzinfo"):
                    assert value.tzinfo is not None and value.utcoffset() == UTC.utcoffset(None)
    assert _on_driver(ctx, runs) == len(runs) - (ctx.engine.dialect.name == "sqlite")


def _on_driver(ctx: AppContext, runs: list[Run]) -> int:
    """How many of the statements read_rows ran on the driver: all, but SQLite's posts by id (an
    ``IN`` list rendered for each call)."""
    name = ctx.engine.dialect.name
    compiled = [db._DRIVER_READS.get(s, {}).get(name) for s, _ in runs]
    assert all(compiled), "read_rows compiled each statement for its driver"
    return sum(read.usable for read in compiled if read is not None)


async def test_listeners_see_each_statement_once(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    runs = await _statements(client, ctx)
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", note)
    try:
        await _read(ctx, runs)
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", note)
    # The unit of work itself may add none: a read-only one on PostgreSQL runs no BEGIN.
    assert len([s for s in seen if "posts" in s]) == len(runs)


async def test_a_failed_driver_read_runs_through_sqlalchemy(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _statements(client, ctx)
    expected = await _through_sqlalchemy(ctx, runs)
    asked: list[str] = []

    async def fail(_connection: Any, query: str, *_args: Any, **_kwargs: Any) -> Any:
        asked.append(query)
        raise asyncpg.exceptions.QueryCanceledError("canceling statement due to user request")

    if ctx.engine.dialect.name == "postgresql":
        monkeypatch.setattr(asyncpg.Connection, "fetch", fail)
    else:
        monkeypatch.setattr(db, "fetch_rows", fail)
    assert await _read(ctx, runs) == expected
    assert len(asked) == _on_driver(ctx, runs), "each was tried on the driver first"
