"""The event log: what each person's connected devices are told, kept so a device that was
offline can catch up."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7


class Event(Base):
    """One event for one recipient. Its UUIDv7 id orders a person's events and is the cursor
    a reconnecting client resumes from."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_user_id_id", "user_id", "id"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
