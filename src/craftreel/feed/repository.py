"""Feed SQL: Following, Discover, hashtag and profile-grid reads, and the rank refresh writes.

Every read pages by keyset and filters with the one visibility rule,
:func:`craftreel.posts.repository.visible_to` (``listed=True``: unlisted posts never list).
Each keyset condition carries a redundant ``col <= value`` so that PostgreSQL and SQLite
seek in the index instead of scanning from the top on deep pages (but PostgreSQL's
Following, see :func:`_before`).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from sqlalchemy import (
    Float,
    Integer,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.core.db import UTCDateTime, read_rows
from craftreel.posts.models import Post, PostHashtag, PostStatus, Visibility
from craftreel.posts.repository import (
    FeedPost,
    feed_columns,
    feed_posts,
    followed_spans,
    followees,
    followees_visible_to,
    listed_to_followers,
    viewer_flags,
    visible_posts,
    visible_to,
)

TimeKey = tuple[datetime, UUID]
ScoreKey = tuple[float, UUID]


def _before(column: Any, id_column: Any, key: tuple[Any, UUID], redundant: bool = True) -> Any:
    """SQL: the row comes after ``key`` in ``(column desc, id desc)`` order: a row-value
    comparison, which PostgreSQL turns into an index range on ``(…, column, id)``, and a
    redundant ``column <= value`` that lets SQLite seek too. (PostgreSQL counts the two
    conditions' selectivity twice: under a LATERAL it then expects a handful of rows and
    sorts a bitmap scan of them all, 0.3 ms a followee, instead of walking the index.)"""
    value, row_id = key
    row_value = tuple_(column, id_column) < tuple_(value, row_id)
    return and_(column <= value, row_value) if redundant else row_value


# Bound when a feed statement runs (the statements are built once, see _following). The
# visibility helpers take the viewer's id and a cursor; bind parameters stand in for them
# (SQL-wise the same thing), hence the casts.
_VIEWER = cast(UUID, bindparam("viewer_id", type_=Uuid))
_AFTER = cast(
    TimeKey, (bindparam("after_at", type_=UTCDateTime), bindparam("after_id", type_=Uuid))
)
_LIMIT = bindparam("limit", type_=Integer)


@functools.cache
def _following(dialect: str, with_cursor: bool, scan: int = 0) -> Any:
    """The Following statement, built once per dialect, cursor-or-not and (PostgreSQL) how
    many posts its dense plan may scan (0: none, only the plan by heads): building it (the
    visibility rule, the LATERAL alias) cost more CPU than PostgreSQL spends running it."""
    if dialect == "postgresql":
        if scan:
            return _dense_or_by_heads(with_cursor, scan)
        by_heads = _following_by_heads(with_cursor).subquery("by_heads")
        return select(literal(False).label("dense"), *by_heads.c)
    # SQLite has no LATERAL: one query over all the followees' posts, with the same split rule
    # (a third of the time the whole visibility rule took, as SQLite then joined every post
    # to its author to check it). Its planner walks the author index once per followee; the
    # whole statement costs ~0.5 ms for 200 followees, so the feed spans are not read here.
    query = select(*feed_columns(), *viewer_flags(_VIEWER)).where(
        Post.author_id.in_(followees_visible_to(_VIEWER)), listed_to_followers(Post.author_id)
    )
    if with_cursor:
        query = query.where(_before(Post.published_at, Post.id, _AFTER))
    return query.order_by(Post.published_at.desc(), Post.id.desc()).limit(_LIMIT)


def _newest(
    author: Any, columns: list[Any], limit: Any, floor: Any, name: str, with_cursor: bool
) -> Any:
    """A person's newest listed posts (past the cursor) published at ``floor`` or later, as a
    LATERAL subquery."""
    query = select(*columns).where(listed_to_followers(author), Post.published_at >= floor)
    if with_cursor:
        query = query.where(_before(Post.published_at, Post.id, _AFTER, False))
    return query.order_by(Post.published_at.desc(), Post.id.desc()).limit(limit).lateral(name)


def _following_dense(with_cursor: bool, scan: int) -> Any:
    """Following on PostgreSQL for a reader whose followed makers posted a good share of all
    posts: everyone's listed posts newest first (past the cursor), as an index-only scan of
    ``ix_posts_status_published_at_id``, kept when their maker is followed — a hash of the
    reader's followees built once — and exists. At most ``scan`` posts are looked at; the
    statement stops at the ``limit``-th kept one. Its cost grows with how many posts there are
    per one kept (about five on the bench's data), not with how deep the page is nor with how
    many people are followed, but it finds a full page only when the followed makers' share
    is at least ``limit / scan``.

    Both checks are filters on the scan, which keep its order (``IS TRUE`` keeps PostgreSQL
    from turning the ``IN`` into a join, whose order it would not know, and then sorting what
    the whole scan found); the author is one primary-key probe per post kept. ``scan`` is
    written into the SQL: as a parameter, PostgreSQL would plan the statement anew for every
    execution (its generic plan, not knowing the bound, looked dearer than the custom ones),
    which cost more than running it — 2.7 ms a page instead of 1.2, measured."""
    scanned = select(Post.id, Post.author_id, Post.published_at, Post.visibility).where(
        Post.status == PostStatus.PUBLISHED
    )
    if with_cursor:
        scanned = scanned.where(_before(Post.published_at, Post.id, _AFTER, False))
    recent = (
        scanned.order_by(Post.status.desc(), Post.published_at.desc(), Post.id.desc())
        .limit(literal_column(str(int(scan))))
        .subquery("scanned")
    )
    post = Post.__table__.alias("post")
    return (
        select(*feed_columns(post), *viewer_flags(_VIEWER, post.c.id))
        .select_from(recent)
        .join(User, User.id == recent.c.author_id)
        .join(post, post.c.id == recent.c.id)
        .where(
            or_(
                recent.c.visibility == Visibility.PUBLIC,
                recent.c.visibility == Visibility.FOLLOWERS,
            ),
            recent.c.author_id.in_(followees(_VIEWER)).is_(True),
            accounts.visible_people_clause(User),
        )
        .order_by(recent.c.published_at.desc(), recent.c.id.desc())
        .limit(_LIMIT)
    )


def _dense_or_by_heads(with_cursor: bool, scan: int) -> Any:
    """Following on PostgreSQL: :func:`_following_dense` when it finds a full page, else (a
    sparse reader, or the end of the feed) :func:`_following_by_heads` — one statement, one
    round trip; the second part runs only when the first came up short (a one-time filter).
    The first column says which part answered (``dense``)."""
    dense = _following_dense(with_cursor, scan).cte("dense").prefix_with("MATERIALIZED")
    found = select(func.count()).select_from(dense).scalar_subquery()
    by_heads = _following_by_heads(with_cursor).where(found < _LIMIT).subquery("by_heads")
    parts = union_all(
        select(literal(True).label("dense"), *dense.c).where(found >= _LIMIT),
        select(literal(False).label("dense"), *by_heads.c),
    ).subquery("parts")
    return select(*parts.c).order_by(parts.c.published_at.desc(), parts.c.id.desc())


def _following_by_heads(with_cursor: bool) -> Any:
    """Following on PostgreSQL, in two steps, for any reader (the cost grows with the
    number of people followed and, past a cursor, with how many of them posted on both sides
    of it):

    1. Each followee's "head": their newest listed post past the cursor. Their feed span
       (``User.feed_newest_at`` …, read by the primary-key probe that checks the person)
       gives it without reading their posts: on page 1 it is their newest post; past a
       cursor, it is still their newest post when that is past the cursor, and there is none
       when their oldest post is not. Only the followees whose posts straddle the cursor are
       probed (one index probe each).
    2. A followee whose head is not among the ``limit`` newest heads has nothing on the page:
       those heads are ``limit`` posts, all newer than anything of theirs. So only the
       newest heads' followees ("leaders") are read — and the leader in rank r at most
       ``limit - r + 1`` posts, since the r - 1 heads before theirs come first. And when
       there are ``limit`` leaders, none older than the last leader's head: the heads alone
       are ``limit`` posts at least that new (the "floor"). On the bench's data the floor
       cuts the rows read for a page of 20 from 231 to 24–39 (EXPLAIN ANALYZE, three readers).
    """
    spans = followed_spans(_VIEWER).subquery("spans")
    if with_cursor:
        newest = tuple_(spans.c.newest_at, spans.c.newest_id)
        oldest = tuple_(spans.c.oldest_at, spans.c.oldest_id)
        after = tuple_(*_AFTER)
        known = newest < after
        # Only when the span straddles the cursor: a condition on the outer row alone, which
        # PostgreSQL checks before it touches the index (a one-time filter).
        probe = (
            select(Post.published_at, Post.id)
            .where(
                listed_to_followers(spans.c.author_id),
                _before(Post.published_at, Post.id, _AFTER, False),
                newest >= after,
                oldest < after,
            )
            .order_by(Post.published_at.desc(), Post.id.desc())
            .limit(1)
            .lateral("probe")
        )
        heads = (
            select(
                spans.c.author_id,
                case((known, spans.c.newest_at), else_=probe.c.published_at).label("at"),
                case((known, spans.c.newest_id), else_=probe.c.id).label("id"),
            )
            .select_from(spans)
            .outerjoin(probe, true())
            .where(or_(known, probe.c.id.is_not(None)))
            .subquery("heads")
        )
    else:
        heads = select(
            spans.c.author_id, spans.c.newest_at.label("at"), spans.c.newest_id.label("id")
        ).subquery("heads")
    by_head = (heads.c.at.desc(), heads.c.id.desc())
    ranked = (
        select(
            heads.c.author_id, heads.c.at, func.row_number().over(order_by=by_head).label("rank")
        )
        .order_by(*by_head)
        .limit(_LIMIT)
        .subquery("ranked")
    )
    floor = case(
        (func.count().over() < _LIMIT, literal_column("'-infinity'::timestamptz")),
        else_=func.min(ranked.c.at).over(),
    )
    leaders = select(ranked.c.author_id, ranked.c.rank, floor.label("floor")).subquery("leaders")
    per_leader = _newest(
        leaders.c.author_id,
        feed_columns(),
        _LIMIT + 1 - leaders.c.rank,
        leaders.c.floor,
        "newest",
        with_cursor,
    )
    return (
        select(*feed_columns(per_leader), *viewer_flags(_VIEWER, per_leader.c.id))
        .select_from(leaders)
        .join(per_leader, true())
        .order_by(per_leader.c.published_at.desc(), per_leader.c.id.desc())
        .limit(_LIMIT)
    )


#: How many posts (everyone's) the dense plan of Following looks at, at most: it finds a
#: page of 20 when the followed makers posted at least 21 in 1,000 (2.1%).
DENSE_SCAN = 1000


class SparseReaders:
    """Readers of Following for whom the dense read came up short while their feed went on:
    they skip it for ``seconds`` (then it is tried again, as what they follow changes). At most
    ``size`` are remembered, the oldest forgotten first. Per process; only the plan depends on
    it, never a page."""

    def __init__(
        self, seconds: float, size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._until: OrderedDict[UUID, float] = OrderedDict()

    def __contains__(self, viewer_id: UUID) -> bool:
        until = self._until.get(viewer_id)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._until[viewer_id]
        return False

    def add(self, viewer_id: UUID) -> None:
        self._until.pop(viewer_id, None)
        self._until[viewer_id] = self.clock() + self.seconds
        while len(self._until) > self.size:
            self._until.popitem(last=False)


SPARSE_READERS = SparseReaders(seconds=300.0, size=10_000)


async def following(
    session: AsyncSession,
    viewer_id: UUID,
    after: TimeKey | None,
    limit: int,
    *,
    scan: int | None = None,
) -> list[FeedPost]:
    """Published posts of the people ``viewer_id`` follows, newest first (``limit + 1``).

    PostgreSQL has two plans in one statement (:func:`_dense_or_by_heads`). The dense one
    scans everyone's posts newest first for the followed makers' — at most ``scan`` of them
    (by default ``DENSE_SCAN``, or none for a reader in ``SPARSE_READERS``): the same cost on
    every page when they posted a good share of all posts. Else each followee's newest post
    past the cursor comes from their feed span, and only the ``limit + 1`` followees whose
    newest posts are newest are read and merged (:func:`_following_by_heads`): one
    primary-key probe per person followed, plus, past a cursor, an index probe for each one
    with posts on both sides of it. A reader for whom the dense plan came up short while the
    feed went on is remembered in ``SPARSE_READERS``.

    SQLite has no LATERAL; its planner walks the author index for each followee (the
    visibility rule split into the person and their posts: ``followees_visible_to`` /
    ``listed_to_followers``) and sorts what it found.
    """
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {"viewer_id": viewer_id, "limit": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    postgres = dialect == "postgresql"
    if not postgres:
        scan = 0  # one plan
    elif scan is None:
        scan = 0 if viewer_id in SPARSE_READERS else DENSE_SCAN
    rows = await read_rows(session, _following(dialect, after is not None, scan), params)
    if not postgres:
        return feed_posts(rows)
    if scan and len(rows) > limit and not rows[0][0]:
        SPARSE_READERS.add(viewer_id)
    return feed_posts(row[1:] for row in rows)


class Candidate(NamedTuple):
    """A post Discover may show, with what its ordering needs (a tuple: a page reads ~70)."""

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


_SCORE_AFTER = cast(
    ScoreKey, (bindparam("after_score", type_=Float), bindparam("after_id", type_=Uuid))
)
_SHOWN_AUTHOR = bindparam("shown_author", type_=Uuid)
_SHOWN_UNTIL = cast(
    ScoreKey, (bindparam("shown_score", type_=Float), bindparam("shown_id", type_=Uuid))
)
_NOT_BY = bindparam("not_by", type_=Uuid)


@functools.cache
def _discover(signed_in: bool, after: bool, shown: bool, not_by: bool) -> Any:
    """The Discover candidates statement for one combination of its optional conditions,
    built once (like :func:`_following`)."""
    viewer = _VIEWER if signed_in else None
    query = (
        select(Post.id, Post.author_id, Post.rank_score)
        .join(User, User.id == Post.author_id)
        .where(visible_to(viewer, listed=True))
    )
    if signed_in:
        query = query.where(Post.author_id != _VIEWER)
    if after:
        query = query.where(_before(Post.rank_score, Post.id, _SCORE_AFTER))
    if shown:
        query = query.where(
            or_(Post.author_id == _SHOWN_AUTHOR, _before(Post.rank_score, Post.id, _SHOWN_UNTIL))
        )
    if not_by:
        query = query.where(Post.author_id != _NOT_BY)
    return query.order_by(Post.rank_score.desc(), Post.id.desc()).limit(_LIMIT)


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
    params: dict[str, Any] = {"viewer_id": viewer_id, "limit": limit, "not_by": not_by}
    if after is not None:
        params["after_score"], params["after_id"] = after
    if shown is not None:
        params["shown_author"] = shown.author
        params["shown_score"], params["shown_id"] = shown.until
    statement = _discover(
        viewer_id is not None, after is not None, shown is not None, not_by is not None
    )
    return [Candidate._make(row) for row in await read_rows(session, statement, params)]


@functools.cache
def _posts_by_ids(dialect: str, signed_in: bool) -> Any:
    """PostgreSQL takes the ids as one array (``= ANY``): one SQL text, prepared once per
    connection, whatever their number; SQLite, an ``IN`` list rendered for each call."""
    viewer = _VIEWER if signed_in else None
    if dialect == "postgresql":
        ids = Post.id == any_(bindparam("post_ids", type_=postgresql.ARRAY(Uuid)))
    else:
        ids = Post.id.in_(bindparam("post_ids", expanding=True))
    return select(*feed_columns(), *viewer_flags(viewer)).where(ids)


async def posts_by_ids(
    session: AsyncSession, viewer_id: UUID | None, post_ids: Sequence[UUID]
) -> list[FeedPost]:
    """The posts with these ids, in the order given (one query)."""
    if not post_ids:
        return []
    rows = await read_rows(
        session,
        _posts_by_ids(session.get_bind().dialect.name, viewer_id is not None),
        {"viewer_id": viewer_id, "post_ids": list(post_ids)},
    )
    found = {item.id: item for item in feed_posts(rows)}
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
    query = _tagged(viewer_id, tag).with_only_columns(*feed_columns(), *viewer_flags(viewer_id))
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
        .with_only_columns(*feed_columns(), *viewer_flags(viewer_id))
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
