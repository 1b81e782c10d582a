"""SQLite through ``craftreel.core.sqlite_driver``: one trip to aiosqlite's thread per
statement, the cursor's outcome as sqlite3 gives it, errors as SQLAlchemy's, cached UUIDs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from craftreel.core.db import create_engine
from craftreel.core.sqlite_driver import OneTripDialect

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("n", Integer, primary_key=True),
    Column("key", Uuid, nullable=False),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    assert isinstance(engine.dialect, OneTripDialect)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call run on an aiosqlite connection's thread."""
    made: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return made


async def test_a_statement_is_one_trip_to_the_connection_thread(
    engine: AsyncEngine, trips: list[Any]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pool's first connect, pragmas and all
        trips.clear()
        rows = (await conn.execute(text("SELECT 1 UNION ALL SELECT 2"))).all()
        assert [tuple(r) for r in rows] == [(1,), (2,)]
        assert len(trips) == 1
        await conn.execute(text("SELECT 3 WHERE 0"))
        assert len(trips) == 2


async def test_writes_report_rowcount_and_lastrowid_and_errors_stay_sqlalchemys(
    engine: AsyncEngine,
) -> None:
    key = uuid.uuid4()
    async with engine.begin() as conn:
        made = await conn.execute(insert(things).values(key=key, name="cup"))
        assert made.inserted_primary_key == (1,)
        await conn.execute(
            insert(things), [{"key": uuid.uuid4(), "name": n} for n in ("bowl", "jug")]
        )
        changed = await conn.execute(text("UPDATE things SET name = name || '!' WHERE n > 1"))
        assert changed.rowcount == 2
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(key=key, name="cup"))
    async with engine.connect() as conn:
        names = (await conn.scalars(select(things.c.name).order_by(things.c.n))).all()
    assert names == ["cup", "bowl!", "jug!"]  # the failed insert left nothing behind


async def test_uuids_read_back_are_equal_and_made_once(engine: AsyncEngine) -> None:
    key = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(insert(things).values(key=key, name="vase"))
    async with engine.connect() as conn:
        first = await conn.scalar(select(things.c.key))
        second = await conn.scalar(select(things.c.key))
    assert first == key and isinstance(first, uuid.UUID)
    assert first is second
