"""Database engine, declarative base and the unit of work (one per request or job)."""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from craftreel.core.clock import as_utc

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
#: Tests set this to make a write inside a read-only unit of work fail loudly.
STRICT_READS = os.environ.get("CRAFTREEL_STRICT_READ_ONLY") == "1"


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


def create_engine(url: str, echo: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    if url.startswith("sqlite"):
        # File databases keep and reuse connections (opening one starts a thread and runs the
        # pragmas below: about a millisecond per request otherwise).
        pooling: dict[str, Any] = {} if ":memory:" in url else {"pool_size": 8, "max_overflow": 24}
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **pooling)

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
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


AfterCommit = Callable[[], Awaitable[object] | None]


class UnitOfWork:
    """One transaction; side effects registered with ``after_commit`` run only once it commits.

    ``read_only`` (a GET request's) promises not to write. On SQLite that lets it read without
    taking the write lock; a write it does anyway still works but may fail with "database is
    locked" if another transaction committed since it first read — so writes a read may
    cause (a session's last-seen time) go to a unit of work of their own after it.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, read_only: bool = False
    ) -> None:
        self._sessions = sessions
        self.read_only = read_only
        self._hooks: list[AfterCommit] = []
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self._hooks = []
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
        try:
            if keep:
                await self.session.commit()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()
            try:
                _reading.reset(self._reading)
            except ValueError:  # left in another context than it was entered in
                _reading.set(False)
        if exc_type is None:
            await self._run_hooks()
        self._hooks = []

    def after_commit(self, fn: Callable[..., Awaitable[object] | None], *args: Any) -> None:
        """Run ``fn(*args)`` once the transaction has committed; dropped on rollback."""
        self._hooks.append(lambda: fn(*args))

    async def _run_hooks(self) -> None:
        for hook in self._hooks:
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The data is committed; a failed side effect is logged, never undone.
                log.exception("after-commit hook failed")
