"""Feed SQL: Following, Discover, hashtag and profile-grid reads, and the rank refresh writes.

Every read pages by keyset and filters with the one visibility rule,
:func:`craftreel.posts.repository.visible_to` (``listed=True``: unlisted posts never list).
Each keyset condition carries a redundant ``col <= value`` so that PostgreSQL and SQLite
seek in the index instead of scanning from the top on deep pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, and_, bindparam, func, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.posts.models import Post, PostHashtag, PostStatus
from craftreel.posts.repository import (
    FeedPost,
    feed_posts,
    followees_visible_to,
    listed_to_followers,
    viewer_flags,
    visible_posts,
    visible_to,
)

TimeKey = tuple[datetime, UUID]
ScoreKey = tuple[float, UUID]


def _before(column: Any, id_column: Any, key: tuple[Any, UUID]) -> Any:
    """SQL: the row comes after ``key`` in ``(column desc, id desc)`` order: a row-value
    comparison, which PostgreSQL turns into an index range on ``(…, column, id)``, and a
    redundant ``column <= value`` that lets SQLite seek too."""
    value, row_id = key
    return and_(column <= value, tuple_(column, id_column) < tuple_(value, row_id))


async def following(
    session: AsyncSession, viewer_id: UUID, after: TimeKey | None, limit: int
) -> list[FeedPost]:
    """Published posts of the people ``viewer_id`` follows, newest first (``limit + 1``).

    PostgreSQL reads each followee's newest ``limit + 1`` posts from the (author, status,
    published_at, id) index (a LATERAL join, the visibility rule split into the person and
    their posts: ``followees_visible_to`` / ``listed_to_followers``) and merges them, so the
    cost grows with the number of people followed, not with how much they posted, nor with
    how deep the cursor is. SQLite has no LATERAL; its planner walks the same index for each
    followee and sorts what it found.
    """
    if session.get_bind().dialect.name == "postgresql":
        followees = followees_visible_to(viewer_id).subquery("followees")
        newest = select(Post).where(listed_to_followers(followees.c[0]))
        if after is not None:
            newest = newest.where(_before(Post.published_at, Post.id, after))
        per_followee = (
            newest.order_by(Post.published_at.desc(), Post.id.desc())
            .limit(limit + 1)
            .lateral("newest")
        )
        post = aliased(Post, per_followee)
        query = (
            select(post, *viewer_flags(viewer_id, post.id))
            .select_from(followees)
            .join(per_followee, true())
            .order_by(post.published_at.desc(), post.id.desc())
        )
    else:
        query = (
            visible_posts(viewer_id, listed=True)
            .add_columns(*viewer_flags(viewer_id))
            .where(Post.author_id.in_(accounts.followee_ids_query(viewer_id)))
        )
        if after is not None:
            query = query.where(_before(Post.published_at, Post.id, after))
        query = query.order_by(Post.published_at.desc(), Post.id.desc())
    return feed_posts(await session.execute(query.limit(limit + 1)))


@dataclass(frozen=True)
class Candidate:
    """A post Discover may show, with what its ordering needs."""

    id: UUID
    author_id: UUID
    score: float

    @property
    def key(self) -> ScoreKey:
        return (self.score, self.id)


@dataclass(frozen=True)
class PassedOver:
    """Posts already shown out of rank order: those after the feed's position, up to and
    including ``until``, by anyone but ``author`` (whose posts were held back)."""

    author: UUID
    until: ScoreKey


async def discover_candidates(
    session: AsyncSession,
    viewer_id: UUID | None,
    after: ScoreKey | None,
    shown: PassedOver | None,
    limit: int,
    not_by: UUID | None = None,
) -> list[Candidate]:
    """Up to ``limit`` listed posts the viewer may see, by rank (``rank_score`` desc, id desc):
    after ``after``, without those ``shown`` already, none of the viewer's own, and none by
    ``not_by`` when given."""
    query = (
        select(Post.id, Post.author_id, Post.rank_score)
        .join(User, User.id == Post.author_id)
        .where(visible_to(viewer_id, listed=True))
    )
    if viewer_id is not None:
        query = query.where(Post.author_id != viewer_id)
    if after is not None:
        query = query.where(_before(Post.rank_score, Post.id, after))
    if shown is not None:
        query = query.where(
            or_(Post.author_id == shown.author, _before(Post.rank_score, Post.id, shown.until))
        )
    if not_by is not None:
        query = query.where(Post.author_id != not_by)
    rows = await session.execute(
        query.order_by(Post.rank_score.desc(), Post.id.desc()).limit(limit)
    )
    return [Candidate(r.id, r.author_id, r.rank_score) for r in rows.all()]


async def posts_by_ids(
    session: AsyncSession, viewer_id: UUID | None, post_ids: Sequence[UUID]
) -> list[FeedPost]:
    """The posts with these ids, in the order given (one query)."""
    if not post_ids:
        return []
    rows = await session.execute(
        select(Post, *viewer_flags(viewer_id)).where(Post.id.in_(post_ids))
    )
    found = {item.post.id: item for item in feed_posts(rows)}
    return [found[i] for i in post_ids if i in found]


def _tagged(viewer_id: UUID | None, tag: str) -> Any:
    return (
        visible_posts(viewer_id, listed=True)
        .join(PostHashtag, PostHashtag.post_id == Post.id)
        .where(PostHashtag.tag == tag)
    )


async def tagged(
    session: AsyncSession, viewer_id: UUID | None, tag: str, after: TimeKey | None, limit: int
) -> list[FeedPost]:
    """Listed posts with ``#tag``, newest first (``limit + 1``), paging on the tag's index."""
    query = _tagged(viewer_id, tag).add_columns(*viewer_flags(viewer_id))
    if after is not None:
        query = query.where(_before(PostHashtag.published_at, PostHashtag.post_id, after))
    rows = await session.execute(
        query.order_by(PostHashtag.published_at.desc(), PostHashtag.post_id.desc()).limit(limit + 1)
    )
    return feed_posts(rows)


async def tagged_count(session: AsyncSession, viewer_id: UUID | None, tag: str) -> int:
    """How many listed posts with ``#tag`` the viewer may see."""
    query = _tagged(viewer_id, tag).with_only_columns(func.count(Post.id))
    return int(await session.scalar(query) or 0)


async def by_author(
    session: AsyncSession,
    viewer_id: UUID | None,
    author_id: UUID,
    after: TimeKey | None,
    limit: int,
) -> list[FeedPost]:
    """A maker's published posts the viewer may see, newest first (``limit + 1``)."""
    query = (
        visible_posts(viewer_id, listed=True)
        .add_columns(*viewer_flags(viewer_id))
        .where(Post.author_id == author_id)
    )
    if after is not None:
        query = query.where(_before(Post.published_at, Post.id, after))
    rows = await session.execute(
        query.order_by(Post.published_at.desc(), Post.id.desc()).limit(limit + 1)
    )
    return feed_posts(rows)


# --- rank refresh --------------------------------------------------------------------


@dataclass(frozen=True)
class Engagement:
    """What a post's rank is computed from."""

    id: UUID
    published_at: datetime
    likes: int
    comments: int
    saves: int
    completions: int
    shares: int
    rank_score: float


async def published_since(
    session: AsyncSession, since: datetime, after: TimeKey | None, limit: int
) -> list[Engagement]:
    """Posts published at or after ``since``, oldest first from ``after`` (one batch)."""
    query = select(
        Post.id,
        Post.published_at,
        Post.like_count,
        Post.comment_count,
        Post.save_count,
        Post.completion_count,
        Post.share_count,
        Post.rank_score,
    ).where(Post.status == PostStatus.PUBLISHED, Post.published_at >= since)
    if after is not None:
        value, row_id = after
        query = query.where(
            Post.published_at >= value,
            or_(Post.published_at > value, and_(Post.published_at == value, Post.id > row_id)),
        )
    rows = await session.execute(query.order_by(Post.published_at, Post.id).limit(limit))
    out = []
    for r in rows.all():
        assert r.published_at is not None  # published posts always have it
        out.append(
            Engagement(
                r.id,
                r.published_at,
                r.like_count,
                r.comment_count,
                r.save_count,
                r.completion_count,
                r.share_count,
                r.rank_score,
            )
        )
    return out


async def set_rank_scores(session: AsyncSession, scores: Sequence[tuple[UUID, float]]) -> None:
    """Plain UPDATEs by primary key (one statement, executed for each row)."""
    if not scores:
        return
    table = cast(Table, Post.__table__)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("post_id"))
        # A re-rank is not an edit: keep updated_at as it is (it has an onupdate default).
        .values(rank_score=bindparam("score"), updated_at=table.c.updated_at),
        [{"post_id": post_id, "score": score} for post_id, score in scores],
    )
