"""All SQL over the event log."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.realtime.models import Event


async def events_after(
    session: AsyncSession, user_id: UUID, after: UUID, limit: int
) -> list[Event]:
    """One person's events newer than ``after``, oldest first (the (user_id, id) index)."""
    rows = await session.scalars(
        select(Event)
        .where(Event.user_id == user_id, Event.id > after)
        .order_by(Event.id)
        .limit(limit)
    )
    return list(rows.all())


async def delete_before(session: AsyncSession, before: UUID, limit: int) -> int:
    """Delete up to ``limit`` of the oldest events with ids below ``before``; how many went."""
    oldest = select(Event.id).where(Event.id < before).order_by(Event.id).limit(limit)
    result = await session.execute(
        delete(Event).where(Event.id.in_(oldest)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
