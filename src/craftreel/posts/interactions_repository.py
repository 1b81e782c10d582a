"""All SQL for what viewers do with posts: likes, comments, saves and collections, shares,
views — and the post counters that move with them.

A counter changes only right after the row that justifies it was inserted or deleted (the
statement's row count says so), in the same transaction, by ``col = col ± n`` in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, case, delete, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.media.models import MediaObject
from craftreel.posts.models import (
    Collection,
    Comment,
    Post,
    PostLike,
    PostMedia,
    PostSave,
    PostShare,
    PostView,
)
from craftreel.posts.repository import visible_posts, visible_to

NO_SYNC = {"synchronize_session": False}


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert
    return sqlite_insert


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _after_desc(time_col: Any, id_col: Any, after: tuple[datetime, UUID] | None) -> Any:
    """Keyset condition for a newest-first list: strictly after the cursor's row."""
    if after is None:
        return true()
    return or_(time_col < after[0], and_(time_col == after[0], id_col < after[1]))


def _after_asc(time_col: Any, id_col: Any, after: tuple[datetime, UUID] | None) -> Any:
    if after is None:
        return true()
    return or_(time_col > after[0], and_(time_col == after[0], id_col > after[1]))


def _people_visible_to(viewer_id: UUID | None) -> Any:
    """SQL over ``User``: an account that still exists and no block stands between it and
    the viewer."""
    alive = accounts.visible_people_clause(User)
    if viewer_id is None:
        return alive
    return and_(alive, accounts.not_blocked_clause(viewer_id, User.id))


# --- counters ------------------------------------------------------------------------


async def add_to_counter(
    session: AsyncSession, post_id: UUID, counter: InstrumentedAttribute[int], delta: int
) -> int:
    """``counter = counter + delta`` on the post, atomically; the new value."""
    result = await session.execute(
        update(Post)
        .where(Post.id == post_id)
        .values({counter: counter + delta})
        .returning(counter)
        .execution_options(**NO_SYNC)
    )
    return int(result.scalar_one())


async def counter_value(
    session: AsyncSession, post_id: UUID, counter: InstrumentedAttribute[int]
) -> int:
    return int(await session.scalar(select(counter).where(Post.id == post_id)) or 0)


# --- likes ---------------------------------------------------------------------------


async def insert_like(session: AsyncSession, post_id: UUID, user_id: UUID, now: datetime) -> bool:
    """Like unless already liked; whether a row was inserted (a race is settled by the key)."""
    result = await session.execute(
        _insert(session)(PostLike)
        .values(post_id=post_id, user_id=user_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["post_id", "user_id"])
    )
    return _rowcount(result) == 1


async def delete_like(session: AsyncSession, post_id: UUID, user_id: UUID) -> bool:
    result = await session.execute(
        delete(PostLike)
        .where(PostLike.post_id == post_id, PostLike.user_id == user_id)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def likers(
    session: AsyncSession,
    post_id: UUID,
    viewer_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Sequence[tuple[User, datetime]]:
    """People who liked the post, newest like first (``limit + 1`` rows)."""
    rows = await session.execute(
        select(User, PostLike.created_at)
        .join(PostLike, PostLike.user_id == User.id)
        .where(
            PostLike.post_id == post_id,
            _people_visible_to(viewer_id),
            _after_desc(PostLike.created_at, PostLike.user_id, after),
        )
        .order_by(PostLike.created_at.desc(), PostLike.user_id.desc())
        .limit(limit + 1)
    )
    return [(row[0], row[1]) for row in rows.all()]


# --- comments ------------------------------------------------------------------------


async def visible_comment(
    session: AsyncSession, comment_id: UUID, viewer_id: UUID | None
) -> tuple[Comment, User] | None:
    """A comment and its author, unless the author is gone or a block stands between them
    and the viewer. (Whether the viewer may see the post is the caller's check.)"""
    row = (
        await session.execute(
            select(Comment, User)
            .join(User, User.id == Comment.author_id)
            .where(Comment.id == comment_id, _people_visible_to(viewer_id))
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def comment_by_id(session: AsyncSession, comment_id: UUID) -> Comment | None:
    return await session.get(Comment, comment_id)


async def post_of(session: AsyncSession, post_id: UUID) -> Post | None:
    return await session.get(Post, post_id)


async def insert_comment(session: AsyncSession, comment: Comment) -> None:
    session.add(comment)
    await session.flush()


async def count_reply_on_parent(session: AsyncSession, post_id: UUID, parent_id: UUID) -> bool:
    """``reply_count + 1`` on a top-level comment of the post, if it still exists.

    Done *before* the reply is inserted, so the parent's row lock comes first, in the same
    order as when a thread is deleted (parent, then replies): no deadlock between the two."""
    result = await session.execute(
        update(Comment)
        .where(Comment.id == parent_id, Comment.post_id == post_id, Comment.parent_id.is_(None))
        .values(reply_count=Comment.reply_count + 1)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def lock_comment(session: AsyncSession, comment_id: UUID) -> bool:
    """Take the comment's row lock (a no-op on SQLite, where a write transaction already
    holds the database); whether it still exists."""
    found = await session.scalar(
        select(Comment.id).where(Comment.id == comment_id).with_for_update()
    )
    return found is not None


async def uncount_reply_on_parent(session: AsyncSession, parent_id: UUID) -> None:
    await session.execute(
        update(Comment)
        .where(Comment.id == parent_id)
        .values(reply_count=Comment.reply_count - 1)
        .execution_options(**NO_SYNC)
    )


async def delete_comment(session: AsyncSession, comment_id: UUID) -> int | None:
    """Delete a comment (its replies go with it, by the foreign key); its reply count as it
    was when deleted, or None if someone else deleted it first."""
    result = await session.execute(
        delete(Comment)
        .where(Comment.id == comment_id)
        .returning(Comment.reply_count)
        .execution_options(**NO_SYNC)
    )
    value = result.scalar_one_or_none()
    return None if value is None else int(value)


async def comments(
    session: AsyncSession,
    post_id: UUID,
    parent_id: UUID | None,
    viewer_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    *,
    newest_first: bool,
) -> Sequence[tuple[Comment, User]]:
    """A post's top-level comments (``parent_id`` None) or one comment's replies, with their
    authors, in one query (``limit + 1`` rows)."""
    where = [
        Comment.post_id == post_id,
        Comment.parent_id.is_(None) if parent_id is None else Comment.parent_id == parent_id,
        _people_visible_to(viewer_id),
    ]
    if newest_first:
        where.append(_after_desc(Comment.created_at, Comment.id, after))
        order = (Comment.created_at.desc(), Comment.id.desc())
    else:
        where.append(_after_asc(Comment.created_at, Comment.id, after))
        order = (Comment.created_at.asc(), Comment.id.asc())
    rows = await session.execute(
        select(Comment, User)
        .join(User, User.id == Comment.author_id)
        .where(*where)
        .order_by(*order)
        .limit(limit + 1)
    )
    return [(row[0], row[1]) for row in rows.all()]


# --- saves and collections -----------------------------------------------------------


async def insert_save(
    session: AsyncSession,
    user_id: UUID,
    post_id: UUID,
    collection_id: UUID | None,
    now: datetime,
) -> bool:
    result = await session.execute(
        _insert(session)(PostSave)
        .values(user_id=user_id, post_id=post_id, collection_id=collection_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["user_id", "post_id"])
    )
    return _rowcount(result) == 1


async def file_save(
    session: AsyncSession, user_id: UUID, post_id: UUID, collection_id: UUID | None
) -> bool:
    """Move a save into another collection (or unfiled); whether the save exists."""
    result = await session.execute(
        update(PostSave)
        .where(PostSave.user_id == user_id, PostSave.post_id == post_id)
        .values(collection_id=collection_id)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def save_collection(session: AsyncSession, user_id: UUID, post_id: UUID) -> UUID | None:
    return await session.scalar(
        select(PostSave.collection_id).where(
            PostSave.user_id == user_id, PostSave.post_id == post_id
        )
    )


async def delete_save(session: AsyncSession, user_id: UUID, post_id: UUID) -> bool:
    result = await session.execute(
        delete(PostSave)
        .where(PostSave.user_id == user_id, PostSave.post_id == post_id)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def saved_posts(
    session: AsyncSession,
    user_id: UUID,
    collection_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
    *,
    unfiled: bool = False,
) -> Sequence[tuple[Post, datetime]]:
    """My saved posts that I may still see, newest save first (``limit + 1`` rows); with
    ``unfiled``, only those in no collection."""
    query = (
        visible_posts(user_id, listed=False)
        .add_columns(PostSave.created_at)
        .join(PostSave, and_(PostSave.post_id == Post.id, PostSave.user_id == user_id))
        .where(_after_desc(PostSave.created_at, PostSave.post_id, after))
    )
    if collection_id is not None:
        query = query.where(PostSave.collection_id == collection_id)
    elif unfiled:
        query = query.where(PostSave.collection_id.is_(None))
    rows = await session.execute(
        query.order_by(PostSave.created_at.desc(), PostSave.post_id.desc()).limit(limit + 1)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def visible_saves_by_collection(
    session: AsyncSession, user_id: UUID
) -> dict[UUID | None, int]:
    """How many of my saved posts I may still see, per collection (``None``: unfiled)."""
    rows = await session.execute(
        select(PostSave.collection_id, func.count())
        .join(Post, Post.id == PostSave.post_id)
        .join(User, User.id == Post.author_id)
        .where(PostSave.user_id == user_id, visible_to(user_id, listed=False))
        .group_by(PostSave.collection_id)
    )
    return {row[0]: int(row[1]) for row in rows.all()}


async def insert_collection(
    session: AsyncSession, collection_id: UUID, owner_id: UUID, name: str, now: datetime
) -> bool:
    """A new collection, unless the owner has one by that name already."""
    result = await session.execute(
        _insert(session)(Collection)
        .values(id=collection_id, owner_id=owner_id, name=name, created_at=now)
        .on_conflict_do_nothing(index_elements=["owner_id", "name"])
    )
    return _rowcount(result) == 1


async def own_collection(
    session: AsyncSession, owner_id: UUID, collection_id: UUID
) -> Collection | None:
    return await session.scalar(
        select(Collection).where(Collection.id == collection_id, Collection.owner_id == owner_id)
    )


async def collection_name_taken(
    session: AsyncSession, owner_id: UUID, name: str, except_id: UUID
) -> bool:
    found = await session.scalar(
        select(Collection.id).where(
            Collection.owner_id == owner_id, Collection.name == name, Collection.id != except_id
        )
    )
    return found is not None


async def delete_collection(session: AsyncSession, owner_id: UUID, collection_id: UUID) -> bool:
    """Delete a collection; its saves stay, unfiled (the foreign key sets them to null)."""
    result = await session.execute(
        delete(Collection)
        .where(Collection.id == collection_id, Collection.owner_id == owner_id)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def collections(
    session: AsyncSession, owner_id: UUID, after: tuple[str, UUID] | None, limit: int
) -> Sequence[tuple[Collection, int]]:
    """My collections by name, each with how many saves it holds (one query)."""
    saves = (
        select(func.count())
        .where(PostSave.collection_id == Collection.id)
        .correlate(Collection)
        .scalar_subquery()
    )
    query = select(Collection, saves).where(Collection.owner_id == owner_id)
    if after is not None:
        query = query.where(
            or_(
                Collection.name > after[0],
                and_(Collection.name == after[0], Collection.id > after[1]),
            )
        )
    rows = await session.execute(query.order_by(Collection.name, Collection.id).limit(limit + 1))
    return [(row[0], int(row[1])) for row in rows.all()]


async def collection_saves(session: AsyncSession, collection_id: UUID) -> int:
    return int(
        await session.scalar(select(func.count()).where(PostSave.collection_id == collection_id))
        or 0
    )


# --- shares and views ----------------------------------------------------------------


async def insert_share(
    session: AsyncSession, post_id: UUID, user_id: UUID | None, channel: str, now: datetime
) -> None:
    session.add(PostShare(post_id=post_id, user_id=user_id, channel=channel, created_at=now))
    await session.flush()


async def upsert_view(
    session: AsyncSession,
    post_id: UUID,
    viewer_key: str,
    day: date,
    watched_ms: int,
    now: datetime,
) -> tuple[int, bool, bool]:
    """Record a viewing beacon: the day's row for this viewer, keeping the longest watch.
    Returns the row as it now is: (watched_ms, counted, completed)."""
    insert = _insert(session)(PostView).values(
        post_id=post_id,
        viewer_key=viewer_key,
        day=day,
        watched_ms=watched_ms,
        counted=False,
        completed=False,
        created_at=now,
        updated_at=now,
    )
    longest = case(
        (insert.excluded.watched_ms > PostView.watched_ms, insert.excluded.watched_ms),
        else_=PostView.watched_ms,
    )
    result = await session.execute(
        insert.on_conflict_do_update(
            index_elements=["post_id", "viewer_key", "day"],
            set_={"watched_ms": longest, "updated_at": now},
        ).returning(PostView.watched_ms, PostView.counted, PostView.completed)
    )
    row = result.one()
    return int(row[0]), bool(row[1]), bool(row[2])


def _view_row(post_id: UUID, viewer_key: str, day: date) -> Any:
    return and_(PostView.post_id == post_id, PostView.viewer_key == viewer_key, PostView.day == day)


async def mark_view_counted(
    session: AsyncSession, post_id: UUID, viewer_key: str, day: date, min_watched_ms: int
) -> bool:
    """Flip the day's row to counted, once, if enough was watched; whether this call did."""
    result = await session.execute(
        update(PostView)
        .where(
            _view_row(post_id, viewer_key, day),
            PostView.counted.is_(False),
            PostView.watched_ms >= min_watched_ms,
        )
        .values(counted=True)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def mark_view_completed(
    session: AsyncSession, post_id: UUID, viewer_key: str, day: date
) -> bool:
    """Flip a counted view to completed, once; whether this call did."""
    result = await session.execute(
        update(PostView)
        .where(
            _view_row(post_id, viewer_key, day),
            PostView.counted.is_(True),
            PostView.completed.is_(False),
        )
        .values(completed=True)
        .execution_options(**NO_SYNC)
    )
    return _rowcount(result) == 1


async def media_duration(session: AsyncSession, post_id: UUID) -> float | None:
    """How long the post's (first) video or audio plays, in seconds; None for photos."""
    value = await session.scalar(
        select(MediaObject.duration_s)
        .join(PostMedia, PostMedia.media_id == MediaObject.id)
        .where(PostMedia.post_id == post_id)
        .order_by(PostMedia.position)
        .limit(1)
    )
    return None if value is None else float(value)
