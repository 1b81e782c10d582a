"""SQLAlchemy's aiosqlite dialect, with each statement one trip to the connection's thread.

aiosqlite runs a connection in its own thread, and every call — making a cursor, executing,
fetching, closing — is a trip there and back: a queue put, a thread wake-up, the GIL
handed over twice and the event loop woken through its self-pipe. SQLAlchemy's adapter
makes four such trips per statement (``cursor()``, ``execute``, ``fetchall``, ``close``),
so a feed page's read — BEGIN, two SELECTs, the end of the transaction — took 13 of them, a
fifth of the request's CPU (``bench/README.md``). Here a statement is one function run on
the connection's thread: make a sqlite3 cursor, execute, fetch every row when there are
any, note ``description``/``rowcount``/``lastrowid``, close. 13 trips become 4.

And UUIDs, which SQLite stores as 32 hex characters, are read back through a cache: a
Discover page reads ~180 of them (70 ranked posts and their makers, then the page), the
same few thousand again and again, and ``uuid.UUID(hex)`` costs more than a dict lookup.

Everything else is SQLAlchemy's dialect as it is (``sqlite+aiosqlite`` URLs are served by
it: :func:`craftreel.core.db.create_engine` names this driver). Server-side cursors
(``stream_results``) keep aiosqlite's own cursor. Errors are the ones sqlite3 raises,
turned into SQLAlchemy's by the adapter as before.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from threading import Thread
from typing import Any
from uuid import UUID

from sqlalchemy import types
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

#: The URL driver name of this dialect: ``sqlite+craftreel_aiosqlite:///path``.
DRIVER = "craftreel_aiosqlite"


class _Outcome:
    """What SQLAlchemy reads from a cursor after a statement, kept once it is closed."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed on the connection's thread."""


def _run(
    connection: sqlite3.Connection, operation: str, parameters: Any
) -> tuple[Any, list[Any] | None, int, int | None]:
    """One statement on the connection's thread: its description, rows, rowcount, lastrowid."""
    cursor = connection.cursor()
    try:
        cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _run_many(
    connection: sqlite3.Connection, operation: str, parameters: Sequence[Any]
) -> tuple[int, int | None]:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, parameters)
        return cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """The adapter's buffered cursor, each statement one trip to the connection's thread."""

    __slots__ = ()
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:
        # No aiosqlite cursor (a trip to make, another to close): the statement makes its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Outcome()  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            raw = self._connection._conn  # raises "no active connection" once closed
            description, rows, rowcount, lastrowid = await self._connection._execute(
                _run, raw, operation, () if parameters is None else parameters
            )
            outcome: _Outcome = self._cursor  # type: ignore[assignment]
            outcome.description, outcome.rowcount, outcome.lastrowid = (
                description,
                rowcount,
                lastrowid,
            )
            if description:
                self._rows = collections.deque(rows or ())
            return None

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            raw = self._connection._conn
            outcome: _Outcome = self._cursor  # type: ignore[assignment]
            outcome.rowcount, outcome.lastrowid = await self._connection._execute(
                _run_many, raw, operation, seq_of_parameters
            )
            outcome.description = None
            return None


async def fetch_rows(adapt_connection: Any, operation: str, parameters: Sequence[Any]) -> list[Any]:
    """A read's raw rows in one trip, on an adapted connection (``core.db.read_rows``)."""
    async with adapt_connection._execute_mutex:
        connection = adapt_connection._connection
        _, rows, _, _ = await connection._execute(_run, connection._conn, operation, parameters)
    return rows or []


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        creator = kw.pop("async_creator_fn", None)
        if creator is not None:
            connection = creator(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            # The connection's thread must not keep the process alive (SQLAlchemy does so).
            thread = connection if isinstance(connection, Thread) else connection._thread
            thread.daemon = True
        return OneTripConnection(self, await_(connection))


#: At most this many UUIDs are kept (about 12 MB); the cache is emptied when it is full.
UUID_CACHE_SIZE = 65_536
_uuids: dict[str, UUID] = {}


def _uuid_from_hex(value: str | None) -> UUID | None:
    """The UUID of a stored hex string, made once while it stays in the cache (UUIDs are
    immutable, so one object serves every row that holds it)."""
    if value is None:
        return None
    found = _uuids.get(value)
    if found is None:
        if len(_uuids) >= UUID_CACHE_SIZE:
            _uuids.clear()
        found = _uuids[value] = UUID(value)
    return found


class CachedUuid(types.Uuid):  # type: ignore[type-arg]
    """SQLAlchemy's ``Uuid`` on SQLite, read back through :func:`_uuid_from_hex`."""

    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any] | None:
        process = super().result_processor(dialect, coltype)  # type: ignore[no-untyped-call]
        return _uuid_from_hex if self.as_uuid and process is not None else process


class OneTripDialect(SQLiteDialect_aiosqlite):
    """``sqlite+craftreel_aiosqlite``: SQLAlchemy's aiosqlite dialect with one-trip cursors
    and cached UUIDs."""

    supports_statement_cache = True
    colspecs = {  # noqa: RUF012 - SQLAlchemy reads it from the class
        **SQLiteDialect_aiosqlite.colspecs,
        types.Uuid: CachedUuid,
    }

    @classmethod
    def import_dbapi(cls) -> OneTripDBAPI:
        return OneTripDBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "OneTripDialect")


def one_trip_url(url: str) -> str:
    """``url`` with the aiosqlite driver swapped for this one (other URLs as they are)."""
    prefix = "sqlite+aiosqlite:"
    return f"sqlite+{DRIVER}:" + url[len(prefix) :] if url.startswith(prefix) else url
