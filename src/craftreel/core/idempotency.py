"""``Idempotency-Key``: a repeated request gets the first result; the same key with a
different body is refused. The stored result is written in the same transaction as the
change it describes, so a key is never recorded for work that did not happen."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, Uuid, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.errors import Conflict, DomainError, InvalidInput
from craftreel.core.ids import uuid7


class IdempotencyKeyReused(DomainError):
    """The key was used before with a different request."""

    status_code = 422
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used for a different request."


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "scope", "key"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not (1 <= len(key) <= 200) or not key.isprintable():
        raise InvalidInput(
            "Send an Idempotency-Key header (1 to 200 printable characters).",
            header="Idempotency-Key",
        )
    return key


async def replay(
    session: AsyncSession, user_id: UUID, scope: str, key: str, digest: str
) -> IdempotencyKey | None:
    """The stored first result for this key, if any; a different body is refused."""
    row = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
    )
    if row is not None and row.request_hash != digest:
        raise IdempotencyKeyReused()
    return row


async def remember(
    session: AsyncSession,
    user_id: UUID,
    scope: str,
    key: str,
    digest: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    """Store the result with the current transaction. A twin request with the same key that
    is committing right now holds the unique key: this one is refused (409, retry)."""
    session.add(
        IdempotencyKey(
            user_id=user_id,
            scope=scope,
            key=key,
            request_hash=digest,
            status_code=status_code,
            response=response,
        )
    )
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("That request is already being handled.", retry=True) from None
