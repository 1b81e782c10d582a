"""Database engine, declarative base and the unit of work (one per request or job)."""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from craftreel.core.clock import as_utc
from craftreel.core.sqlite_driver import OneTripDialect, fetch_rows, one_trip_url

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Set while a read-only unit of work is open in this task (see :class:`UnitOfWork`).
_reading: ContextVar[bool] = ContextVar("craftreel_read_only_uow", default=False)
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
#: Tests set this to make a write inside a read-only unit of work fail loudly on SQLite too
#: (on PostgreSQL it always does: see :class:`UnitOfWork`).
STRICT_READS = os.environ.get("CRAFTREEL_STRICT_READ_ONLY") == "1"
#: A pooled PostgreSQL connection idle for longer than this is pinged before it is used
#: (one round trip), so a restarted database costs no request an error; busy ones are not.
IDLE_PING_SECONDS = 10.0


class WriteInReadOnlyUnitOfWork(RuntimeError):
    """A read-only unit of work (a GET request's) tried to write."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware UTC, on SQLite (which forgets zones) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use craftreel.core.clock.utcnow()")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally (escape ``\\``)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def create_engine(
    url: str, echo: bool = False, *, pool_size: int = 32, max_overflow: int = 8
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    ``pool_size`` connections are kept per process (``max_overflow`` more are opened under a
    burst and closed once the pool is full again)."""
    if url.startswith("sqlite"):
        # File databases keep and reuse connections (opening one starts a thread and runs the
        # pragmas below: about a millisecond per request otherwise).
        pooling: dict[str, Any] = {"pool_size": pool_size, "max_overflow": max_overflow}
        if ":memory:" in url:
            pooling = {}
        # Each statement one trip to the connection's thread (craftreel.core.sqlite_driver).
        engine = create_async_engine(
            one_trip_url(url), echo=echo, connect_args={"timeout": 30}, **pooling
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that
            # BEGIN IMMEDIATE takes the write lock up front and writers queue instead of
            # failing with "database is locked" on upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A unit of work that may write takes the write lock up front (writers queue on
            # the busy timeout). A read-only one (a GET request's) takes none: in WAL mode its
            # reads go on beside the writer, from a snapshot of when it first read.
            conn.exec_driver_sql("BEGIN" if _reading.get() else "BEGIN IMMEDIATE")

        if STRICT_READS:

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def _no_writes(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                if _reading.get() and _WRITE.match(statement):
                    raise WriteInReadOnlyUnitOfWork(statement[:200])

        return engine
    engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)

    @event.listens_for(engine.sync_engine, "checkin")
    def _note_idle(_dbapi_conn: Any, record: Any) -> None:
        record.info["craftreel_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # pool_pre_ping would cost every request a round trip; only a connection that sat
        # idle (through a database restart, a firewall's timeout) is likely to be dead.
        idle_since = record.info.get("craftreel_idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_conn.ping()
        except Exception as exc:  # the pool retries with a fresh connection
            raise DisconnectionError(str(exc)) from exc

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _read_only(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # A read-only unit of work reads in autocommit mode (no BEGIN/COMMIT round trips):
        # a write there would commit on its own, so it is refused instead.
        if _reading.get() and _WRITE.match(statement):
            raise WriteInReadOnlyUnitOfWork(statement[:200])

    return engine


def _autocommit(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """The engine a read-only unit of work reads through: on PostgreSQL, the same pool in
    autocommit mode (made once per session factory); None elsewhere."""
    reads = _AUTOCOMMIT.get(sessions)
    if reads is None:
        engine = sessions.kw.get("bind")
        if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
            reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            reads = False
        _AUTOCOMMIT[sessions] = reads
    return reads if isinstance(reads, AsyncEngine) else None


_AUTOCOMMIT: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], AsyncEngine | bool] = (
    weakref.WeakKeyDictionary()
)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


AfterCommit = Callable[[], Awaitable[object] | None]


class UnitOfWork:
    """One transaction; side effects registered with ``after_commit`` run only once it commits,
    and undo steps registered with ``on_rollback`` (files written for rows that never landed)
    run only once it has rolled back — an error inside it, or a commit that failed.

    ``read_only`` (a GET request's) promises not to write. On SQLite that lets it read without
    taking the write lock; a write it does anyway still works but may fail with "database is
    locked" if another transaction committed since it first read — so writes a read may
    cause (a session's last-seen time) go to a unit of work of their own after it. On
    PostgreSQL it reads in autocommit mode, which saves the BEGIN and COMMIT round trips and
    changes nothing else (at READ COMMITTED each statement reads its own snapshot anyway); a
    write there raises :class:`WriteInReadOnlyUnitOfWork`.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, read_only: bool = False
    ) -> None:
        self._sessions = sessions
        self.read_only = read_only
        self._hooks: list[AfterCommit] = []
        self._undo: list[AfterCommit] = []
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        reads = _autocommit(self._sessions) if self.read_only else None
        self.session = self._sessions() if reads is None else self._sessions(bind=reads)
        self._hooks = []
        self._undo = []
        self._reading = _reading.set(self.read_only)
        return self

    def another(self) -> UnitOfWork:
        """A new (writing) unit of work on the same database, e.g. for an after-commit hook."""
        return UnitOfWork(self._sessions)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        keep = exc_type is None or bool(getattr(exc, "commit_anyway", False))
        committed = False
        try:
            if keep:
                await self.session.commit()
                committed = True
            else:
                await self.session.rollback()
        finally:
            await self.session.close()
            try:
                _reading.reset(self._reading)
            except ValueError:  # left in another context than it was entered in
                _reading.set(False)
            hooks, undo = self._hooks, self._undo
            self._hooks, self._undo = [], []
            if not committed:
                await _run(undo, "rollback hook failed")
        if committed and exc_type is None:
            await _run(hooks, "after-commit hook failed")

    def after_commit(self, fn: Callable[..., Awaitable[object] | None], *args: Any) -> None:
        """Run ``fn(*args)`` once the transaction has committed; dropped on rollback."""
        self._hooks.append(lambda: fn(*args))

    def on_rollback(self, fn: Callable[..., Awaitable[object] | None], *args: Any) -> None:
        """Run ``fn(*args)`` if the transaction rolls back (or its commit fails); dropped once
        it commits. For what was done outside the database for rows it holds, e.g. stored
        files (``core.storage.remove_on_rollback``)."""
        self._undo.append(lambda: fn(*args))


async def _run(hooks: list[AfterCommit], failure: str) -> None:
    """Run each hook, logging (never raising) a failure: the transaction's fate is settled."""
    for hook in hooks:
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(failure)


class _DriverRead:
    """A read statement compiled once for a driver: its SQL, the order of its parameters, the
    converters SQLAlchemy would apply to them and to the columns it returns."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.usable = compiled.positiontup is not None and not any(
            bind.expanding for bind in compiled.binds.values()
        )
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        self.defaults = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        # What an execution context applies (SQLAlchemy's DefaultExecutionContext does the
        # same with these): bind processors by name; result processors by column, which
        # depend on the type the database reports for it (known once it is prepared).
        self.binds = compiled._bind_processors
        self._types = [column.type for column in statement.selected_columns]
        self._dialect = dialect
        self.columns: list[tuple[int, Callable[[Any], Any]]] | None = None

    async def learn_columns(self, driver: Any | None) -> None:
        """Learn the result processors from the types the database gives the columns: on
        asyncpg, by preparing the statement once; sqlite3 tells none."""
        if driver is None:
            oids: list[int | None] = [None] * len(self._types)
        else:
            oids = [a.type.oid for a in (await driver.prepare(self.sql)).get_attributes()]
        columns = []
        for i, (type_, oid) in enumerate(zip(self._types, oids, strict=True)):
            processor = type_._cached_result_processor(self._dialect, oid)
            if processor is not None:
                columns.append((i, processor))
        self.columns = columns

    def args(self, params: dict[str, Any]) -> list[Any]:
        values = {**self.defaults, **params}
        binds = self.binds
        return [binds[name](values[name]) if name in binds else values[name] for name in self.names]

    def row(self, record: Any) -> tuple[Any, ...]:
        assert self.columns is not None
        row = list(record)
        for i, processor in self.columns:
            row[i] = processor(row[i])
        return tuple(row)


#: Compiled driver reads by statement, then dialect name (a statement that is dropped takes
#: its compiled forms with it).
_DRIVER_READS: weakref.WeakKeyDictionary[Any, dict[str, _DriverRead]] = weakref.WeakKeyDictionary()


def driver_read(statement: Any, dialect: Dialect) -> _DriverRead:
    """``statement`` compiled for ``dialect``'s driver (once)."""
    compiled = _DRIVER_READS.get(statement)
    if compiled is None:
        compiled = _DRIVER_READS[statement] = {}
    read = compiled.get(dialect.name)
    if read is None:
        read = compiled[dialect.name] = _DriverRead(statement, dialect)
    return read


async def read_rows(
    session: AsyncSession, statement: Any, params: dict[str, Any]
) -> Sequence[tuple[Any, ...]]:
    """The rows of a hot read statement (a feed's), as plain tuples.

    In a read-only unit of work it runs on the driver directly — asyncpg (autocommit, see
    :class:`UnitOfWork`), or one trip to SQLite's connection thread (in the unit of work's
    transaction, begun here) — with SQL compiled once per statement, which must be
    long-lived (built once, like the feed statements). SQLAlchemy's execution and result
    handling cost as much CPU as the driver's own: 0.27 ms of a Following page's 0.55 ms
    on PostgreSQL, measured in-process. The engine's ``before_cursor_execute`` listeners still
    see the statement (the read-only guard, tests' query counts). Anything else, and any
    failure there, runs the ordinary way, which handles errors (a lost connection
    invalidated, the exception wrapped) as for every statement (the listeners then see a
    failed statement twice).
    """
    connection = await session.connection()
    sync = connection.sync_connection
    assert sync is not None
    dialect = sync.dialect
    if _reading.get() and (dialect.driver == "asyncpg" or isinstance(dialect, OneTripDialect)):
        read = driver_read(statement, dialect)
        if read.usable:
            args = read.args(params)
            _announce(sync, read.sql, args)
            raw = await connection.get_raw_connection()
            pg = raw.driver_connection if dialect.driver == "asyncpg" else None
            try:
                if read.columns is None:
                    await read.learn_columns(pg)
                if pg is not None:
                    records = await pg.fetch(read.sql, *args)
                else:
                    records = await fetch_rows(raw.dbapi_connection, read.sql, args)
            except Exception:
                log.debug("driver read failed; running it through SQLAlchemy", exc_info=True)
            else:
                if not read.columns:  # nothing to convert (Discover's candidates: 70 rows)
                    return list(map(tuple, records))
                return [read.row(record) for record in records]
    return (await connection.execute(statement, params)).all()


def _announce(sync: Connection, sql: str, args: list[Any]) -> None:
    """Tell the engine's ``before_cursor_execute`` listeners of a statement run on the driver."""
    if sync._has_events or sync.engine._has_events:
        sync.dispatch.before_cursor_execute(sync, None, sql, args, None, False)
