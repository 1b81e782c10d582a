"""Aware UTC time, in one place so tests and code agree."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Attach UTC to a naive value read back from SQLite."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
