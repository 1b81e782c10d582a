"""Keyset pagination: opaque cursors over (sort key, id)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from craftreel.core.errors import InvalidInput

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(sort_value: datetime | int | str, row_id: UUID) -> str:
    """An opaque cursor pointing just after (sort_value, row_id)."""
    value: str | int = sort_value.isoformat() if isinstance(sort_value, datetime) else sort_value
    raw = json.dumps([value, str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str | int, UUID]:
    """The (sort_value, id) a cursor points after; a bad cursor is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, row_id = json.loads(raw)
        if not isinstance(value, str | int):
            raise ValueError(value)
        return value, UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("That page cursor is not valid.", field="cursor") from exc


def decode_time_cursor(cursor: str) -> tuple[datetime, UUID]:
    value, row_id = decode_cursor(cursor)
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidInput("That page cursor is not valid.", field="cursor") from exc
    if at.tzinfo is None:  # every stored time is aware; a naive one was forged
        raise InvalidInput("That page cursor is not valid.", field="cursor")
    return at, row_id


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime | int | str, UUID]]
) -> tuple[list[T], str | None]:
    """Split ``limit + 1`` fetched rows into a page and the cursor to the next one."""
    items = list(rows[:limit])
    if len(rows) > limit and items:
        return items, encode_cursor(*key(items[-1]))
    return items, None


def encode_state(state: dict[str, Any]) -> str:
    """An opaque cursor carrying a small JSON object, for lists whose position is more than
    one sort key (e.g. Discover's reordering)."""
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_state(cursor: str) -> dict[str, Any]:
    """The object an :func:`encode_state` cursor carries; a bad cursor is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("That page cursor is not valid.", field="cursor") from exc
    if not isinstance(state, dict):
        raise InvalidInput("That page cursor is not valid.", field="cursor")
    return state
