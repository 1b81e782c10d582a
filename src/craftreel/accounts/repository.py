"""All accounts SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.accounts.models import (
    AuthSession,
    Block,
    EmailToken,
    Follow,
    FollowStatus,
    RefreshToken,
    SocialIdentity,
    User,
)
from craftreel.core.changes import QUIET
from craftreel.core.clock import utcnow
from craftreel.core.db import like_pattern

# --- users -----------------------------------------------------------------------------


async def user_by_id(session: AsyncSession, user_id: UUID) -> User | None:
    return await session.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))


async def user_by_email(session: AsyncSession, email_normalized: str) -> User | None:
    return await session.scalar(
        select(User).where(User.email_normalized == email_normalized, User.deleted_at.is_(None))
    )


async def user_by_handle(session: AsyncSession, handle_normalized: str) -> User | None:
    return await session.scalar(
        select(User).where(User.handle_normalized == handle_normalized, User.deleted_at.is_(None))
    )


async def email_taken(
    session: AsyncSession, email_normalized: str, except_id: UUID | None = None
) -> bool:
    query = select(User.id).where(User.email_normalized == email_normalized)
    if except_id is not None:
        query = query.where(User.id != except_id)
    return await session.scalar(query.limit(1)) is not None


async def handle_taken(
    session: AsyncSession, handle_normalized: str, except_id: UUID | None = None
) -> bool:
    query = select(User.id).where(User.handle_normalized == handle_normalized)
    if except_id is not None:
        query = query.where(User.id != except_id)
    return await session.scalar(query.limit(1)) is not None


async def search_users(
    session: AsyncSession,
    viewer_id: UUID | None,
    text: str,
    after: tuple[str, UUID] | None,
    limit: int,
) -> Sequence[User]:
    """People whose handle or name contains ``text``, hidden and blocking people left out."""
    pattern = like_pattern(text)
    query = select(User).where(
        User.deleted_at.is_(None),
        User.hide_from_search.is_(False),
        or_(
            User.handle_normalized.like(pattern, escape="\\"),
            func.lower(User.display_name).like(pattern, escape="\\"),
        ),
    )
    if viewer_id is not None:
        query = query.where(User.id.not_in(blocked_either_way(viewer_id)))
    if after is not None:
        query = query.where(
            or_(
                User.handle_normalized > after[0],
                and_(User.handle_normalized == after[0], User.id > after[1]),
            )
        )
    query = query.order_by(User.handle_normalized, User.id).limit(limit + 1)
    return (await session.scalars(query)).all()


# --- sessions and tokens ---------------------------------------------------------------


async def session_with_user(
    session: AsyncSession, session_id: UUID
) -> tuple[AuthSession, User] | None:
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == session_id, User.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def web_session_by_hash(
    session: AsyncSession, token_hash: str
) -> tuple[AuthSession, User] | None:
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.web_token_hash == token_hash, User.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def touch_session(session: AsyncSession, session_id: UUID, now: datetime) -> None:
    await session.execute(
        update(AuthSession).where(AuthSession.id == session_id).values(last_seen_at=now),
        execution_options=QUIET,  # bookkeeping: no cached session goes stale over it
    )


async def active_sessions(
    session: AsyncSession, user_id: UUID, now: datetime
) -> Sequence[AuthSession]:
    return (
        await session.scalars(
            select(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.last_seen_at.desc(), AuthSession.id)
        )
    ).all()


async def revoke_sessions(
    session: AsyncSession,
    user_id: UUID,
    now: datetime,
    only: UUID | None = None,
    keep: UUID | None = None,
) -> int:
    query = update(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if only is not None:
        query = query.where(AuthSession.id == only)
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    result = await session.execute(query.values(revoked_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


async def mark_refresh_used(session: AsyncSession, token_id: UUID, now: datetime) -> bool:
    """Rotate atomically: true only for the one caller that flips ``used_at``."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def email_token(session: AsyncSession, token_id: UUID) -> EmailToken | None:
    return await session.get(EmailToken, token_id)


async def use_email_token(session: AsyncSession, token_id: UUID, now: datetime) -> bool:
    result = await session.execute(
        update(EmailToken)
        .where(EmailToken.id == token_id, EmailToken.used_at.is_(None), EmailToken.expires_at > now)
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retire_email_tokens(
    session: AsyncSession, user_id: UUID, purpose: str, now: datetime
) -> None:
    """Older links of the same purpose stop working once a new one is sent or one is used."""
    await session.execute(
        update(EmailToken)
        .where(
            EmailToken.user_id == user_id,
            EmailToken.purpose == purpose,
            EmailToken.used_at.is_(None),
        )
        .values(used_at=now)
    )


# --- follows and blocks ----------------------------------------------------------------


def blocked_either_way(user_id: UUID):  # type: ignore[no-untyped-def]
    """Ids of people who blocked ``user_id`` or whom ``user_id`` blocked (a subquery)."""
    return (
        select(Block.blocked_id)
        .where(Block.blocker_id == user_id)
        .union(select(Block.blocker_id).where(Block.blocked_id == user_id))
    )


def active_follow_exists(follower_id: UUID, followee_col: Any) -> Any:
    """SQL: ``follower_id`` follows the person in ``followee_col`` (approved)."""
    return exists().where(
        Follow.follower_id == follower_id,
        Follow.followee_id == followee_col,
        Follow.status == FollowStatus.ACTIVE,
    )


def followee_ids(follower_id: UUID) -> Any:
    """A subquery of the ids ``follower_id`` follows (approved)."""
    return select(Follow.followee_id).where(
        Follow.follower_id == follower_id, Follow.status == FollowStatus.ACTIVE
    )


async def is_blocked_either_way(session: AsyncSession, a: UUID, b: UUID) -> bool:
    found = await session.scalar(
        select(Block.blocker_id)
        .where(
            or_(
                and_(Block.blocker_id == a, Block.blocked_id == b),
                and_(Block.blocker_id == b, Block.blocked_id == a),
            )
        )
        .limit(1)
    )
    return found is not None


async def has_blocked(session: AsyncSession, blocker: UUID, blocked: UUID) -> bool:
    return await session.get(Block, (blocker, blocked)) is not None


async def blocked_users(session: AsyncSession, blocker_id: UUID) -> Sequence[User]:
    return (
        await session.scalars(
            select(User)
            .join(Block, Block.blocked_id == User.id)
            .where(Block.blocker_id == blocker_id)
            .order_by(Block.created_at.desc())
        )
    ).all()


async def follow_row(session: AsyncSession, follower: UUID, followee: UUID) -> Follow | None:
    return await session.get(Follow, (follower, followee))


async def insert_follow(session: AsyncSession, follower: UUID, followee: UUID, status: str) -> bool:
    """Insert a follow unless one exists (a race is settled by the primary key, not an error)."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        insert(Follow)
        .values(follower_id=follower, followee_id=followee, status=status, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["follower_id", "followee_id"])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_follows_between(session: AsyncSession, a: UUID, b: UUID) -> None:
    await session.execute(
        delete(Follow).where(
            or_(
                and_(Follow.follower_id == a, Follow.followee_id == b),
                and_(Follow.follower_id == b, Follow.followee_id == a),
            )
        )
    )


async def follow_statuses(
    session: AsyncSession, follower_id: UUID, followee_ids: Sequence[UUID]
) -> dict[UUID, str]:
    """How ``follower_id`` follows each of ``followee_ids`` ("active" or "pending"), one query."""
    if not followee_ids:
        return {}
    rows = await session.execute(
        select(Follow.followee_id, Follow.status).where(
            Follow.follower_id == follower_id, Follow.followee_id.in_(list(followee_ids))
        )
    )
    return {followee: str(status) for followee, status in rows.all()}


async def follow_counts(session: AsyncSession, user_id: UUID) -> tuple[int, int]:
    followers = await session.scalar(
        select(func.count()).where(
            Follow.followee_id == user_id, Follow.status == FollowStatus.ACTIVE
        )
    )
    following = await session.scalar(
        select(func.count()).where(
            Follow.follower_id == user_id, Follow.status == FollowStatus.ACTIVE
        )
    )
    return int(followers or 0), int(following or 0)


async def follow_people(
    session: AsyncSession,
    user_id: UUID,
    direction: str,
    status: str,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Sequence[tuple[User, datetime]]:
    """Followers (``direction='followers'``) or followees of ``user_id``, newest first."""
    if direction == "followers":
        person, anchor = Follow.follower_id, Follow.followee_id
    else:
        person, anchor = Follow.followee_id, Follow.follower_id
    query = (
        select(User, Follow.created_at)
        .join(Follow, person == User.id)
        .where(anchor == user_id, Follow.status == status, User.deleted_at.is_(None))
    )
    if after is not None:
        query = query.where(
            or_(
                Follow.created_at < after[0],
                and_(Follow.created_at == after[0], User.id < after[1]),
            )
        )
    query = query.order_by(Follow.created_at.desc(), User.id.desc()).limit(limit + 1)
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def social_identity(
    session: AsyncSession, provider: str, subject: str
) -> SocialIdentity | None:
    return await session.scalar(
        select(SocialIdentity).where(
            SocialIdentity.provider == provider, SocialIdentity.subject == subject
        )
    )


async def export_rows(session: AsyncSession, user_id: UUID) -> dict[str, Sequence[object]]:
    """Every accounts row that belongs to ``user_id`` (for the data export)."""
    return {
        "sessions": (
            await session.scalars(select(AuthSession).where(AuthSession.user_id == user_id))
        ).all(),
        "following": (
            await session.scalars(select(Follow).where(Follow.follower_id == user_id))
        ).all(),
        "followers": (
            await session.scalars(select(Follow).where(Follow.followee_id == user_id))
        ).all(),
        "blocks": (await session.scalars(select(Block).where(Block.blocker_id == user_id))).all(),
        "social_identities": (
            await session.scalars(select(SocialIdentity).where(SocialIdentity.user_id == user_id))
        ).all(),
    }


async def erase_personal_rows(session: AsyncSession, user_id: UUID) -> None:
    """Remove what links a deleted account to other people and devices."""
    for model, column in (
        (Follow, Follow.follower_id),
        (Follow, Follow.followee_id),
        (Block, Block.blocker_id),
        (Block, Block.blocked_id),
        (SocialIdentity, SocialIdentity.user_id),
        (EmailToken, EmailToken.user_id),
        (AuthSession, AuthSession.user_id),
    ):
        await session.execute(delete(model).where(column == user_id))
