"""All posts SQL: who may see a post, and the reads and writes of posts and their parts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from sqlalchemy import Table, and_, delete, literal, or_, select, true, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.accounts import service as accounts
from craftreel.accounts.models import Follow, FollowStatus, User
from craftreel.core.changes import QUIET
from craftreel.media.models import MediaObject
from craftreel.posts.models import (
    Post,
    PostHashtag,
    PostLike,
    PostMedia,
    PostMention,
    PostSave,
    PostStatus,
    Visibility,
)


def _one_of(column: Any, values: Sequence[str]) -> Any:
    """``column IN (values)`` for a fixed list, as ORs of equalities: an IN list is rendered
    into the SQL anew on every execution (and is a new statement to prepare)."""
    return or_(*(column == value for value in values))


def visible_to(viewer_id: UUID | None, *, listed: bool) -> Any:
    """SQL: published posts ``viewer_id`` (None: anonymous) may see, for a query that joins
    ``User`` as the post's author.

    ``listed`` is for feeds, search and profile grids, where unlisted posts never show; a
    direct link (``listed=False``) opens an unlisted post. A private account's public posts
    are for its approved followers; blocks either way hide everything; a deleted author's
    posts are gone. An author sees all of their own published posts.
    """
    open_to_all = [Visibility.PUBLIC] if listed else [Visibility.PUBLIC, Visibility.UNLISTED]
    published = and_(Post.status == PostStatus.PUBLISHED, accounts.visible_people_clause(User))
    if viewer_id is None:
        return and_(published, _one_of(Post.visibility, open_to_all), User.is_private.is_(False))
    follows = accounts.follows_clause(viewer_id, Post.author_id)
    return and_(
        published,
        or_(
            Post.author_id == viewer_id,
            and_(
                accounts.not_blocked_clause(viewer_id, Post.author_id),
                or_(
                    and_(
                        _one_of(Post.visibility, open_to_all),
                        or_(User.is_private.is_(False), follows),
                    ),
                    and_(Post.visibility == Visibility.FOLLOWERS, follows),
                ),
            ),
        ),
    )


class FeedPost(NamedTuple):
    """A post as a feed query found it: what a page needs besides the post's card — its key
    in the feed's order, its counts — and whether the viewer liked and saved it. A feed reads
    these plain columns, not the whole row: the card (see ``posts.cards``) is usually kept,
    and the rest is read (``posts_by_id``) only for the posts whose card is not."""

    id: UUID
    author_id: UUID
    updated_at: datetime
    published_at: datetime
    like_count: int
    comment_count: int
    save_count: int
    share_count: int
    view_count: int
    liked: bool
    saved: bool

    @property
    def counts(self) -> tuple[int, int, int, int, int]:
        return (
            self.like_count,
            self.comment_count,
            self.save_count,
            self.share_count,
            self.view_count,
        )


def feed_columns(post: Any = Post) -> list[Any]:
    """The columns of :class:`FeedPost` before the viewer's flags, of ``post`` (the Post
    entity, or an alias or subquery of it)."""
    columns = post.c if hasattr(post, "c") else Post.__table__.c
    return [columns[name] for name in FeedPost._fields[:-2]]


def feed_posts(rows: Any) -> list[FeedPost]:
    """Rows of :func:`feed_columns` plus :func:`viewer_flags` as FeedPosts."""
    return [FeedPost._make((*row[:-2], bool(row[-2]), bool(row[-1]))) for row in rows]


async def posts_by_id(session: AsyncSession, post_ids: Iterable[UUID]) -> dict[UUID, Post]:
    """Whole post rows by id (one query), for presenting what a feed found."""
    wanted = list(post_ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(Post).where(Post.id.in_(wanted)))
    return {post.id: post for post in rows}


def viewer_flags(viewer_id: UUID | None, post_id: Any = Post.id) -> list[Any]:
    """Columns for a feed query: whether ``viewer_id`` liked, and saved, the row's post (two
    primary-key probes per row; none for an anonymous viewer).

    Scalar subqueries, not EXISTS: PostgreSQL may run an EXISTS as a hash of everything the
    viewer ever liked (a heap fetch per like: 0.9 of a Following page's 1.7 ms for a reader
    with 325 likes), growing with their likes instead of with the page."""
    if viewer_id is None:
        return [literal(False).label("liked"), literal(False).label("saved")]
    liked = select(PostLike.post_id).where(
        PostLike.post_id == post_id, PostLike.user_id == viewer_id
    )
    saved = select(PostSave.post_id).where(
        PostSave.post_id == post_id, PostSave.user_id == viewer_id
    )
    return [
        liked.scalar_subquery().is_not(None).label("liked"),
        saved.scalar_subquery().is_not(None).label("saved"),
    ]


def _followed(viewer_id: UUID, *columns: Any) -> Any:
    """``select(*columns)`` of the follows of ``viewer_id`` (approved) with no block either way."""
    return select(*columns).where(
        Follow.follower_id == viewer_id,
        Follow.status == FollowStatus.ACTIVE,
        Follow.followee_id != viewer_id,
        accounts.not_blocked_clause(viewer_id, Follow.followee_id),
    )


def followees(viewer_id: UUID) -> Any:
    """SQL subquery (one column): the people ``viewer_id`` follows (approved) with no block
    either way — whether their accounts still exist is for the caller to check."""
    return _followed(viewer_id, Follow.followee_id)


async def follower_ids(session: AsyncSession, author_id: UUID, limit: int) -> list[UUID]:
    """Up to ``limit`` of the people following ``author_id`` (approved)."""
    found = await session.scalars(
        select(Follow.follower_id)
        .where(Follow.followee_id == author_id, Follow.status == FollowStatus.ACTIVE)
        .limit(limit)
    )
    return list(found)


def followees_visible_to(viewer_id: UUID) -> Any:
    """SQL subquery (one column): the people ``viewer_id`` follows (approved) whose listed
    posts :func:`visible_to` lets them see, by its rule for a follower: accounts that exist,
    with no block either way. With :func:`listed_to_followers`, the same rule as
    ``visible_to(viewer_id, listed=True)`` for their posts — split so that a feed checks the
    person once and then reads each one's posts straight off the (author, status,
    published_at, id) index."""
    return (
        _followed(viewer_id, Follow.followee_id)
        .join(User, User.id == Follow.followee_id)
        .where(accounts.visible_people_clause(User))
    )


def followed_spans(viewer_id: UUID) -> Any:
    """SQL (PostgreSQL): the people of :func:`followees_visible_to` who have any listed post,
    as ``author_id`` with their feed spans (``newest_at``, ``newest_id``, ``oldest_at``,
    ``oldest_id``; see ``User.feed_newest_at``). One primary-key probe per person followed,
    a LATERAL join: PostgreSQL otherwise hashes the whole users table (a sequential scan,
    2 ms on 10k people) to check 200 of them. (The LIMIT keeps the planner from flattening
    the LATERAL into that same join.)"""
    person = (
        select(
            User.feed_newest_at.label("newest_at"),
            User.feed_newest_id.label("newest_id"),
            User.feed_oldest_at.label("oldest_at"),
            User.feed_oldest_id.label("oldest_id"),
        )
        .where(
            User.id == Follow.followee_id,
            accounts.visible_people_clause(),
            User.feed_newest_at.is_not(None),
        )
        .limit(1)
        .lateral("person")
    )
    return _followed(viewer_id, Follow.followee_id.label("author_id"), *person.c).join(
        person, true()
    )


def listed_to_followers(author_id: Any) -> Any:
    """SQL: a post by ``author_id`` (a column) that an approved follower sees in a feed."""
    return and_(
        Post.author_id == author_id,
        Post.status == PostStatus.PUBLISHED,
        _one_of(Post.visibility, [Visibility.PUBLIC, Visibility.FOLLOWERS]),
    )


def visible_posts(viewer_id: UUID | None, *, listed: bool) -> Any:
    """``select(Post)`` joined to its author and filtered by :func:`visible_to`."""
    return (
        select(Post)
        .join(User, User.id == Post.author_id)
        .where(visible_to(viewer_id, listed=listed))
    )


async def visible_post(session: AsyncSession, viewer_id: UUID | None, post_id: UUID) -> Post | None:
    """The post behind a direct link, if ``viewer_id`` may see it."""
    return (
        await session.scalars(visible_posts(viewer_id, listed=False).where(Post.id == post_id))
    ).first()


async def own_post(
    session: AsyncSession, author_id: UUID, post_id: UUID, *, lock: bool = False
) -> Post | None:
    query = select(Post).where(Post.id == post_id, Post.author_id == author_id)
    if lock:
        query = query.with_for_update()
    return (await session.scalars(query)).first()


async def drafts(
    session: AsyncSession, author_id: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> Sequence[Post]:
    """An author's unpublished posts (drafts, waiting, scheduled), last edited first."""
    query = select(Post).where(Post.author_id == author_id, Post.status != PostStatus.PUBLISHED)
    if after is not None:
        query = query.where(
            or_(
                Post.updated_at < after[0],
                and_(Post.updated_at == after[0], Post.id < after[1]),
            )
        )
    rows = await session.scalars(
        query.order_by(Post.updated_at.desc(), Post.id.desc()).limit(limit + 1)
    )
    return rows.all()


async def media_for_posts(
    session: AsyncSession, post_ids: Sequence[UUID]
) -> dict[UUID, list[MediaObject]]:
    """Each post's media objects in order (one query)."""
    out: dict[UUID, list[MediaObject]] = {pid: [] for pid in post_ids}
    if not post_ids:
        return out
    rows = await session.execute(
        select(PostMedia.post_id, MediaObject)
        .join(MediaObject, MediaObject.id == PostMedia.media_id)
        .where(PostMedia.post_id.in_(post_ids))
        .order_by(PostMedia.post_id, PostMedia.position)
    )
    for post_id, media in rows.all():
        out[post_id].append(media)
    return out


async def authors(session: AsyncSession, user_ids: set[UUID]) -> dict[UUID, User]:
    if not user_ids:
        return {}
    rows = await session.scalars(select(User).where(User.id.in_(user_ids)))
    return {u.id: u for u in rows.all()}


async def liked_and_saved(
    session: AsyncSession, viewer_id: UUID, post_ids: Sequence[UUID]
) -> tuple[set[UUID], set[UUID]]:
    """Which of ``post_ids`` the viewer liked, and which they saved (one query)."""
    if not post_ids:
        return set(), set()
    rows = await session.execute(
        union_all(
            select(PostLike.post_id, literal(True).label("like")).where(
                PostLike.user_id == viewer_id, PostLike.post_id.in_(post_ids)
            ),
            select(PostSave.post_id, literal(False).label("like")).where(
                PostSave.user_id == viewer_id, PostSave.post_id.in_(post_ids)
            ),
        )
    )
    liked: set[UUID] = set()
    saved: set[UUID] = set()
    for post_id, like in rows.all():
        (liked if like else saved).add(post_id)
    return liked, saved


async def media_owned_by(
    session: AsyncSession, owner_id: UUID, media_ids: Sequence[UUID]
) -> list[MediaObject]:
    rows = await session.scalars(
        select(MediaObject).where(MediaObject.id.in_(media_ids), MediaObject.owner_id == owner_id)
    )
    return list(rows.all())


async def media_in_posts(session: AsyncSession, media_ids: Sequence[UUID]) -> set[UUID]:
    rows = await session.scalars(
        select(PostMedia.media_id).where(PostMedia.media_id.in_(media_ids))
    )
    return set(rows.all())


async def set_media_public(session: AsyncSession, post_id: UUID, public: bool) -> None:
    """Public and unlisted posts' media is served publicly (cacheable); others' signed."""
    await session.execute(
        update(MediaObject)
        .where(MediaObject.id.in_(select(PostMedia.media_id).where(PostMedia.post_id == post_id)))
        .values(is_public=public)
    )


async def replace_tags(
    session: AsyncSession,
    post: Post,
    tags: list[str],
    mentioned_handles: list[str],
) -> None:
    """Rewrite a post's hashtag and mention rows from its caption."""
    await session.execute(delete(PostHashtag).where(PostHashtag.post_id == post.id))
    await session.execute(delete(PostMention).where(PostMention.post_id == post.id))
    for tag in tags:
        session.add(PostHashtag(post_id=post.id, tag=tag, published_at=post.published_at))
    if mentioned_handles:
        found = await session.scalars(
            select(User.id).where(
                User.handle_normalized.in_(mentioned_handles), User.deleted_at.is_(None)
            )
        )
        for user_id in found.all():
            session.add(PostMention(post_id=post.id, user_id=user_id))


async def stamp_tags_published(session: AsyncSession, post_id: UUID, at: datetime | None) -> None:
    await session.execute(
        update(PostHashtag).where(PostHashtag.post_id == post_id).values(published_at=at)
    )


async def mark_published(
    session: AsyncSession,
    post_id: UUID,
    from_status: str,
    now: datetime,
    score: float,
    scheduled_for: datetime | None = None,
) -> bool:
    """Publish if the post is still in ``from_status`` (and, for a schedule, still due at the
    same time): the conditional update makes a publish happen exactly once."""
    condition = [Post.id == post_id, Post.status == from_status]
    if scheduled_for is not None:
        condition.append(Post.scheduled_at == scheduled_for)
    result = await session.execute(
        update(Post)
        .where(*condition)
        .values(
            status=PostStatus.PUBLISHED,
            published_at=now,
            scheduled_at=None,
            publish_error=None,
            rank_score=score,
            updated_at=now,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def waiting_posts_for_media(session: AsyncSession, media_id: UUID) -> Sequence[Post]:
    rows = await session.scalars(
        select(Post)
        .join(PostMedia, PostMedia.post_id == Post.id)
        .where(PostMedia.media_id == media_id, Post.status == PostStatus.WAITING)
    )
    return rows.all()


async def post_media_ids(session: AsyncSession, post_id: UUID) -> list[UUID]:
    rows = await session.scalars(
        select(PostMedia.media_id).where(PostMedia.post_id == post_id).order_by(PostMedia.position)
    )
    return list(rows.all())


async def delete_post(session: AsyncSession, post_id: UUID) -> None:
    await session.execute(delete(Post).where(Post.id == post_id))


def feed_span_update(author_id: UUID | None = None) -> Any:
    """SQL: set the feed span (``User.feed_newest_at`` and the rest) of one person, or of
    everyone, from their posts that followers' feeds list. ``updated_at`` stays as it is."""
    table = cast(Table, User.__table__)

    def edge(column: Any, newest: bool) -> Any:
        order = (
            (Post.published_at.desc(), Post.id.desc()) if newest else (Post.published_at, Post.id)
        )
        query = select(column).where(listed_to_followers(table.c.id)).order_by(*order).limit(1)
        return query.scalar_subquery()

    statement = update(table).values(
        feed_newest_at=edge(Post.published_at, newest=True),
        feed_newest_id=edge(Post.id, newest=True),
        feed_oldest_at=edge(Post.published_at, newest=False),
        feed_oldest_id=edge(Post.id, newest=False),
        updated_at=table.c.updated_at,
    )
    return statement if author_id is None else statement.where(table.c.id == author_id)


async def refresh_feed_span(session: AsyncSession, author_id: UUID) -> None:
    """Count a person's feed span again, in the transaction that published, deleted or
    changed the visibility of a post of theirs (see ``User.feed_newest_at``).

    On PostgreSQL their row is locked first, and the count is a statement of its own after
    it: so it reads what any other transaction that changed their posts committed. (Two at
    once — a publish and a delete — would otherwise each count without the other's change,
    and the later commit would win.) SQLite runs one writer at a time. A bookkeeping write:
    no cached card shows it (``QUIET``).
    """
    await session.flush()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(User.id).where(User.id == author_id).with_for_update())
    await session.execute(feed_span_update(author_id), execution_options=QUIET)
