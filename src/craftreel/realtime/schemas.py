"""What travels on the socket (see docs/realtime.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class EventFrame(BaseModel):
    """One event as a client receives it; ``id`` is the cursor to resume from."""

    id: UUID
    type: str
    payload: dict[str, Any]
    created_at: datetime
