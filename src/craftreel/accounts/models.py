"""Accounts tables: people, their sessions and tokens, follows, blocks, social identities."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7


class MessagePolicy(StrEnum):
    EVERYONE = "everyone"
    FOLLOWING = "following"
    NOBODY = "nobody"


class SessionKind(StrEnum):
    WEB = "web"
    API = "api"


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a secret
    CHANGE_EMAIL = "change_email"


class FollowStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"


class User(Base):
    __tablename__ = "users"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    handle: Mapped[str] = mapped_column(String(30))
    handle_normalized: Mapped[str] = mapped_column(String(30), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    email_verified_at: Mapped[datetime | None]
    display_name: Mapped[str] = mapped_column(String(80))
    bio: Mapped[str] = mapped_column(Text, default="")
    links: Mapped[list[str]] = mapped_column(JSON, default=list)
    avatar_key: Mapped[str | None] = mapped_column(String(200))
    is_maker: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_private: Mapped[bool] = mapped_column(default=False)
    message_policy: Mapped[str] = mapped_column(String(16), default=MessagePolicy.EVERYONE)
    hide_from_search: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    # The newest and the oldest of this person's posts that followers' feeds list (published,
    # public or followers-only), as (published_at, id); None while there is none. Kept by
    # posts.repository.refresh_feed_span in the transaction that changes such a post, so
    # that Following finds whose posts come next without reading everyone's posts.
    feed_newest_at: Mapped[datetime | None]
    feed_newest_id: Mapped[UUID | None] = mapped_column(Uuid)
    feed_oldest_at: Mapped[datetime | None]
    feed_oldest_id: Mapped[UUID | None] = mapped_column(Uuid)

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class AuthSession(Base):
    """One signed-in device: a browser cookie or an API refresh-token family."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_id_revoked_at", "user_id", "revoked_at"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    web_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    device: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RefreshToken(Base):
    """A refresh token, stored only as its hash; ``used_at`` set when rotated."""

    __tablename__ = "refresh_tokens"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    session_id: Mapped[UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class EmailToken(Base):
    """A single-use emailed link: verify an address, reset a password, confirm a new email."""

    __tablename__ = "email_tokens"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Follow(Base):
    __tablename__ = "follows"
    __table_args__ = (Index("ix_follows_followee_id_status", "followee_id", "status"),)

    follower_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    followee_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Block(Base):
    __tablename__ = "blocks"

    blocker_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    blocked_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SocialIdentity(Base):
    """A Google or Apple account linked to a Craftreel account."""

    __tablename__ = "social_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def export_row(row: Any, fields: list[str]) -> dict[str, Any]:
    """A JSON-friendly dict of some of a row's columns."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(row, name)
        out[name] = (
            value.isoformat()
            if isinstance(value, datetime)
            else (str(value) if isinstance(value, UUID) else value)
        )
    return out
