"""Which tables this process has changed: generation counters for in-process caches.

A :class:`Watch` names some tables; its ``generation`` moves each time a transaction that
wrote one of them commits in this process. A cache stores, with each entry, the generation it
was read at (:meth:`Watch.seen` — the generation when the transaction that read it first
touched the database) and drops the entry once the generation has moved on. Writes made by
other processes are not seen: such caches also keep entries for a few seconds only.

Writes are noticed from the ORM session: INSERT/UPDATE/DELETE statements run through it
(``session.execute(update(...))``) and objects it flushes. A statement run with the execution
option ``craftreel_quiet=True`` is not counted (a bookkeeping write no cache shows).
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

QUIET = {"craftreel_quiet": True}

_counter = itertools.count(1)
_watches: list[Watch] = []


class Watch:
    """A generation counter for writes to ``tables``."""

    def __init__(self, name: str, tables: frozenset[str]) -> None:
        self.name = name
        self.tables = tables
        self.generation = next(_counter)
        self._wrote = f"craftreel_wrote_{name}"
        self._seen = f"craftreel_seen_{name}"
        _watches.append(self)

    def seen(self, session: Session) -> int:
        """The generation when ``session``'s transaction first ran a statement (or now)."""
        seen = session.info.get(self._seen)
        return seen if isinstance(seen, int) else self.generation


def _table_name(statement: Any) -> str | None:
    name = getattr(getattr(statement, "table", None), "name", None)
    return name if isinstance(name, str) else None


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    info = state.session.info
    for watch in _watches:
        info.setdefault(watch._seen, watch.generation)
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    if state.execution_options.get("craftreel_quiet"):
        return
    name = _table_name(state.statement)
    for watch in _watches:
        if name in watch.tables:
            info[watch._wrote] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _flush: UOWTransaction) -> None:
    names = set()
    for obj in itertools.chain(session.new, session.dirty, session.deleted):
        table = getattr(type(obj), "__table__", None)
        if isinstance(table, Table):
            names.add(table.name)
    for watch in _watches:
        if names & watch.tables:
            session.info[watch._wrote] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for watch in _watches:
        session.info.pop(watch._seen, None)
        if session.info.pop(watch._wrote, False):
            watch.generation = next(_counter)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    for watch in _watches:
        session.info.pop(watch._seen, None)
        session.info.pop(watch._wrote, None)
