"""Emitting events and reading them back.

An event is written in the caller's unit of work, one row per recipient, and published on
the bus only once that unit of work commits: a rolled-back change tells no one. The bus is
reached through the session (``build_context`` puts it in every session's ``info``), so any
service holding a unit of work can emit without being handed the app context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from craftreel.core.bus import EventBus, user_channel
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.ids import uuid7
from craftreel.realtime import repository as repo
from craftreel.realtime.models import Event
from craftreel.realtime.schemas import EventFrame

log = logging.getLogger(__name__)

BUS_KEY = "craftreel.bus"
_PENDING_KEY = "craftreel.pending_events"
PRUNE_BATCH = 5000


def attach_bus(sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
    """Every session these make can emit events onto ``bus``."""
    sessions.configure(info={BUS_KEY: bus})


def _bus_of(uow: UnitOfWork) -> EventBus:
    bus = uow.session.info.get(BUS_KEY)
    if bus is None:
        raise RuntimeError("this session has no event bus: make sessions with build_context()")
    return bus  # type: ignore[no-any-return]


def emit(
    uow: UnitOfWork,
    recipients: Iterable[UUID],
    type: str,
    payload: dict[str, Any],
    *,
    key: str | None = None,
) -> list[Event]:
    """Record ``type`` for each recipient in this unit of work; publish once it commits.

    Events of one ``type`` and ``key`` for one recipient, emitted more than once in a unit
    of work, are one event carrying the last payload (a checkout paid and its downloads
    delivered in one transaction make one ``order.updated``, not two)."""
    bus = _bus_of(uow)
    data = to_jsonable_python(payload)
    pending: dict[tuple[UUID, str, str], Event] = uow.session.info.setdefault(_PENDING_KEY, {})
    fresh: list[Event] = []
    events: list[Event] = []
    for user_id in dict.fromkeys(recipients):
        known = pending.get((user_id, type, key)) if key is not None else None
        if known is not None:
            known.payload = data
            events.append(known)
            continue
        event = Event(id=uuid7(), user_id=user_id, type=type, payload=data, created_at=utcnow())
        uow.session.add(event)
        if key is not None:
            pending[(user_id, type, key)] = event
        fresh.append(event)
        events.append(event)
    if fresh:
        uow.after_commit(_publish, bus, fresh)
    return events


async def _publish(bus: EventBus, events: list[Event]) -> None:
    for event in events:
        await bus.publish(user_channel(event.user_id), frame(event))


def frame(event: Event) -> dict[str, Any]:
    """The event as its recipient's socket sends it."""
    return EventFrame(
        id=event.id, type=event.type, payload=event.payload, created_at=event.created_at
    ).model_dump(mode="json")


def floor_id(at: datetime) -> UUID:
    """A cursor below every UUIDv7 made at or after ``at`` (and above those made before)."""
    return UUID(int=(int(at.timestamp() * 1000) & ((1 << 48) - 1)) << 80)


def time_of(event_id: UUID) -> datetime:
    """When a UUIDv7 was made (to the millisecond)."""
    return datetime.fromtimestamp((event_id.int >> 80) / 1000, tz=UTC)


async def missed(uow: UnitOfWork, user_id: UUID, after: UUID, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` of a person's events after ``after``, oldest first, as frames."""
    return [frame(e) for e in await repo.events_after(uow.session, user_id, after, limit)]


async def prune(
    sessions: async_sessionmaker[AsyncSession], retention_days: int, now: datetime | None = None
) -> int:
    """Delete events older than the retention, in batches; how many went."""
    before = floor_id((now or utcnow()) - timedelta(days=retention_days))
    total = 0
    while True:
        async with UnitOfWork(sessions) as uow:
            deleted = await repo.delete_before(uow.session, before, PRUNE_BATCH)
        total += deleted
        if deleted < PRUNE_BATCH:
            break
    if total:
        log.info("events pruned", extra={"count": total})
    return total
