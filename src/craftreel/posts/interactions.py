"""What viewers do with a published post: like it, comment and reply, save it into
collections, share it, watch it.

Every interaction starts by checking that the person may see the post, and only a published
post takes any (a draft is "not found", even to its author). Counters move only next to the
row that justifies them, by conditional SQL in the same transaction, so they stay exact
however many people act at once.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.accounts.schemas import PersonSummary
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from craftreel.core.ids import uuid7
from craftreel.core.pagination import decode_cursor, decode_time_cursor, page_of
from craftreel.core.ratelimit import Limit, enforce
from craftreel.core.stamps import move_on_commit
from craftreel.posts import interactions_repository as repo
from craftreel.posts import schemas as post_schemas
from craftreel.posts import service as posts
from craftreel.posts.interactions_schemas import (
    CollectionOut,
    CommentOut,
    LikeState,
    SaveState,
    ShareChannel,
    ShareOut,
    ViewOut,
    clean_collection_name,
    clean_comment_body,
)
from craftreel.posts.models import Comment, Post, PostStatus

# A view counts after this much playback; a completion after this share of the duration.
MIN_VIEW_MS = 3000
COMPLETION_RATIO = 0.9
# The anonymous viewer's cookie: a random id, so a browser's views count once a day.
VIEWER_COOKIE = "cr_vid"
VIEWER_COOKIE_SECONDS = 365 * 24 * 3600
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SHARE_CHANNELS: tuple[ShareChannel, ...] = ("link", "web_share", "other")


class CommentNotFound(NotFound):
    """No such comment, or not one this person may see."""

    code = "comment_not_found"
    message = "That comment does not exist."


class CommentsOff(PermissionDenied):
    """The post's author turned comments off."""

    code = "comments_off"
    message = "Comments are turned off for this post."


class NotAllowed(PermissionDenied):
    """Seen, but not this person's to change (e.g. someone else's comment)."""

    code = "not_allowed"
    message = "Only its author or the post's author can delete this comment."


class CollectionNotFound(NotFound):
    code = "collection_not_found"
    message = "That collection does not exist."


class CollectionExists(Conflict):
    code = "collection_exists"
    message = "You already have a collection with that name."


async def _published(uow: UnitOfWork, viewer: User | None, post_id: UUID) -> Post:
    """The post, if the viewer may see it and it is published (drafts take no interactions,
    not even from their author)."""
    post = await posts.viewable_post(uow, viewer, post_id)
    if post.status != PostStatus.PUBLISHED:
        raise posts.PostNotFound()
    return post


async def _may_see(uow: UnitOfWork, viewer: User, post_id: UUID) -> bool:
    try:
        await _published(uow, viewer, post_id)
    except posts.PostNotFound:
        return False
    return True


@contextmanager
def _post_must_exist() -> Iterator[None]:
    """An insert whose post (or collection) was deleted a moment ago fails its foreign key:
    that is "not found", not a server error."""
    try:
        yield
    except IntegrityError as exc:
        raise posts.PostNotFound() from exc


# --- likes ---------------------------------------------------------------------------


async def like(ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID) -> LikeState:
    """Like a post; liking it again changes nothing."""
    post = await _published(uow, user, post_id)
    with _post_must_exist():
        inserted = await repo.insert_like(uow.session, post.id, user.id, utcnow())
    move_on_commit(uow, [user.id])  # my kept feed pages show my likes
    if inserted:
        likes = await repo.add_to_counter(uow.session, post.id, Post.like_count, 1)
    else:
        likes = await repo.counter_value(uow.session, post.id, Post.like_count)
    return LikeState(liked=True, likes=likes)


async def unlike(ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID) -> LikeState:
    """Take a like back; unliking a post not liked changes nothing."""
    post = await _published(uow, user, post_id)
    move_on_commit(uow, [user.id])
    if await repo.delete_like(uow.session, post.id, user.id):
        likes = await repo.add_to_counter(uow.session, post.id, Post.like_count, -1)
    else:
        likes = await repo.counter_value(uow.session, post.id, Post.like_count)
    return LikeState(liked=False, likes=likes)


async def likers(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    post_id: UUID,
    cursor: str | None,
    limit: int,
) -> tuple[list[PersonSummary], str | None]:
    """Who liked a post, newest first (people the viewer blocked, or who blocked them, and
    deleted accounts are left out)."""
    post = await _published(uow, viewer, post_id)
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.likers(uow.session, post.id, viewer.id if viewer else None, after, limit)
    items, next_cursor = page_of(rows, limit, lambda r: (r[1], r[0].id))
    return [accounts.summary(ctx, person) for person, _ in items], next_cursor


# --- comments ------------------------------------------------------------------------


def _comment_out(
    ctx: AppContext, comment: Comment, author: User, viewer: User | None, post_author_id: UUID
) -> CommentOut:
    return CommentOut(
        id=comment.id,
        post_id=comment.post_id,
        author=accounts.summary(ctx, author),
        body=comment.body,
        parent_id=comment.parent_id,
        reply_count=comment.reply_count,
        created_at=comment.created_at,
        can_delete=viewer is not None and viewer.id in (comment.author_id, post_author_id),
    )


async def _thread_for_reply(uow: UnitOfWork, user: User, post: Post, parent_id: UUID) -> UUID:
    """The top-level comment a reply to ``parent_id`` joins: replies are one level deep, so
    a reply to a reply joins its thread (as most apps do)."""
    found = await repo.visible_comment(uow.session, parent_id, user.id)
    if found is None or found[0].post_id != post.id:
        raise CommentNotFound(field="parent_id")
    parent = found[0]
    if parent.parent_id is None:
        return parent.id
    top = await repo.visible_comment(uow.session, parent.parent_id, user.id)
    if top is None:
        raise CommentNotFound(field="parent_id")
    return top[0].id


async def add_comment(
    ctx: AppContext,
    uow: UnitOfWork,
    user: User,
    post_id: UUID,
    body: str,
    parent_id: UUID | None = None,
) -> CommentOut:
    """Comment on a post, or reply to one of its comments."""
    try:
        text = clean_comment_body(body)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="body") from exc
    post = await _published(uow, user, post_id)
    if not post.comments_enabled:
        raise CommentsOff()
    thread_id = await _thread_for_reply(uow, user, post, parent_id) if parent_id else None
    await enforce(
        ctx.limiter, Limit.parse(ctx.settings.rate_limit_comment), f"comment:user:{user.id}"
    )
    # The thread's row first (its reply count), then the reply: the order a thread's
    # deletion takes its locks in too. No row means the thread was just deleted.
    if thread_id is not None and not await repo.count_reply_on_parent(
        uow.session, post.id, thread_id
    ):
        raise CommentNotFound(field="parent_id")
    comment = Comment(
        id=uuid7(),
        post_id=post.id,
        author_id=user.id,
        parent_id=thread_id,
        body=text,
        reply_count=0,
        created_at=utcnow(),
    )
    with _post_must_exist():
        await repo.insert_comment(uow.session, comment)
    await repo.add_to_counter(uow.session, post.id, Post.comment_count, 1)
    return _comment_out(ctx, comment, user, user, post.author_id)


async def list_comments(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    post_id: UUID,
    cursor: str | None,
    limit: int,
) -> tuple[list[CommentOut], str | None]:
    """A post's top-level comments, newest first, each with its number of replies (listed
    even when comments are off)."""
    post = await _published(uow, viewer, post_id)
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.comments(
        uow.session, post.id, None, viewer.id if viewer else None, after, limit, newest_first=True
    )
    items, next_cursor = page_of(rows, limit, lambda r: (r[0].created_at, r[0].id))
    return [_comment_out(ctx, c, a, viewer, post.author_id) for c, a in items], next_cursor


async def list_replies(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    comment_id: UUID,
    cursor: str | None,
    limit: int,
) -> tuple[list[CommentOut], str | None]:
    """The replies to a comment, oldest first (they read as a conversation)."""
    viewer_id = viewer.id if viewer else None
    found = await repo.visible_comment(uow.session, comment_id, viewer_id)
    if found is None:
        raise CommentNotFound()
    comment = found[0]
    try:
        post = await _published(uow, viewer, comment.post_id)
    except posts.PostNotFound as exc:
        raise CommentNotFound() from exc
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.comments(
        uow.session, post.id, comment.id, viewer_id, after, limit, newest_first=False
    )
    items, next_cursor = page_of(rows, limit, lambda r: (r[0].created_at, r[0].id))
    return [_comment_out(ctx, c, a, viewer, post.author_id) for c, a in items], next_cursor


async def delete_comment(ctx: AppContext, uow: UnitOfWork, user: User, comment_id: UUID) -> None:
    """Delete a comment: its author may, and so may the post's author, whatever blocks came
    since. A top-level comment takes its replies with it; the post's comment count drops by
    exactly as many rows as went."""
    comment = await repo.comment_by_id(uow.session, comment_id)
    if comment is None:
        raise CommentNotFound()
    post = await repo.post_of(uow.session, comment.post_id)
    if post is None:
        raise CommentNotFound()
    if user.id not in (comment.author_id, post.author_id):
        seen = await repo.visible_comment(uow.session, comment.id, user.id) is not None
        if seen and await _may_see(uow, user, post.id):
            raise NotAllowed()
        raise CommentNotFound()
    if comment.parent_id is None:
        replies = await repo.delete_comment(uow.session, comment.id)
        if replies is not None:
            await repo.add_to_counter(uow.session, post.id, Post.comment_count, -(1 + replies))
        return
    # A reply: lock its thread first (the order adding a reply and deleting a thread use),
    # then delete it; if the thread went meanwhile, the reply went with it.
    if not await repo.lock_comment(uow.session, comment.parent_id):
        return
    if await repo.delete_comment(uow.session, comment.id) is None:
        return
    await repo.uncount_reply_on_parent(uow.session, comment.parent_id)
    await repo.add_to_counter(uow.session, post.id, Post.comment_count, -1)


# --- saves and collections -----------------------------------------------------------


async def _own_collection(uow: UnitOfWork, user: User, collection_id: UUID) -> None:
    if await repo.own_collection(uow.session, user.id, collection_id) is None:
        raise CollectionNotFound(field="collection_id")


async def save(
    ctx: AppContext,
    uow: UnitOfWork,
    user: User,
    post_id: UUID,
    collection_id: UUID | None = None,
    *,
    keep_collection: bool = False,
) -> SaveState:
    """Save a post (into one of my collections, or unfiled). Saving it again moves it to
    ``collection_id`` — or, with ``keep_collection``, leaves it where it is; the post's save
    count moves only when the save is new."""
    post = await _published(uow, user, post_id)
    if collection_id is not None:
        await _own_collection(uow, user, collection_id)
    move_on_commit(uow, [user.id])  # my kept feed pages show my saves
    try:
        inserted = await repo.insert_save(uow.session, user.id, post.id, collection_id, utcnow())
        if inserted:
            saves = await repo.add_to_counter(uow.session, post.id, Post.save_count, 1)
            return SaveState(saved=True, saves=saves, collection_id=collection_id)
        if keep_collection:
            collection_id = await repo.save_collection(uow.session, user.id, post.id)
        else:
            await repo.file_save(uow.session, user.id, post.id, collection_id)
    except IntegrityError as exc:  # the collection (or the post) was deleted a moment ago
        if collection_id is not None:
            raise CollectionNotFound(field="collection_id") from exc
        raise posts.PostNotFound() from exc
    saves = await repo.counter_value(uow.session, post.id, Post.save_count)
    return SaveState(saved=True, saves=saves, collection_id=collection_id)


async def unsave(ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID) -> SaveState:
    post = await _published(uow, user, post_id)
    move_on_commit(uow, [user.id])
    if await repo.delete_save(uow.session, user.id, post.id):
        saves = await repo.add_to_counter(uow.session, post.id, Post.save_count, -1)
    else:
        saves = await repo.counter_value(uow.session, post.id, Post.save_count)
    return SaveState(saved=False, saves=saves, collection_id=None)


def _collection_name(name: str) -> str:
    try:
        return clean_collection_name(name)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="name") from exc


async def create_collection(
    ctx: AppContext, uow: UnitOfWork, user: User, name: str
) -> CollectionOut:
    name = _collection_name(name)
    collection_id, now = uuid7(), utcnow()
    if not await repo.insert_collection(uow.session, collection_id, user.id, name, now):
        raise CollectionExists(field="name")
    return CollectionOut(id=collection_id, name=name, saves=0, created_at=now)


async def collections(
    ctx: AppContext, uow: UnitOfWork, user: User, cursor: str | None, limit: int
) -> tuple[list[CollectionOut], str | None]:
    """My collections, by name."""
    after: tuple[str, UUID] | None = None
    if cursor:
        value, row_id = decode_cursor(cursor)
        after = (str(value), row_id)
    rows = await repo.collections(uow.session, user.id, after, limit)
    items, next_cursor = page_of(rows, limit, lambda r: (r[0].name, r[0].id))
    return [
        CollectionOut(id=c.id, name=c.name, saves=saves, created_at=c.created_at)
        for c, saves in items
    ], next_cursor


async def rename_collection(
    ctx: AppContext, uow: UnitOfWork, user: User, collection_id: UUID, name: str
) -> CollectionOut:
    name = _collection_name(name)
    collection = await repo.own_collection(uow.session, user.id, collection_id)
    if collection is None:
        raise CollectionNotFound()
    if name != collection.name:
        if await repo.collection_name_taken(uow.session, user.id, name, collection.id):
            raise CollectionExists(field="name")
        collection.name = name
        try:
            await uow.session.flush()
        except IntegrityError as exc:  # the same name taken a moment ago
            raise CollectionExists(field="name") from exc
    saves = await repo.collection_saves(uow.session, collection.id)
    return CollectionOut(
        id=collection.id, name=collection.name, saves=saves, created_at=collection.created_at
    )


async def delete_collection(
    ctx: AppContext, uow: UnitOfWork, user: User, collection_id: UUID
) -> None:
    """Delete a collection; the posts in it stay saved, unfiled."""
    if not await repo.delete_collection(uow.session, user.id, collection_id):
        raise CollectionNotFound()


async def saved(
    ctx: AppContext,
    uow: UnitOfWork,
    user: User,
    collection_id: UUID | None,
    cursor: str | None,
    limit: int,
    *,
    unfiled: bool = False,
) -> tuple[list[post_schemas.PostOut], str | None]:
    """My saved posts (all, one collection's, or with ``unfiled`` those in none), newest
    save first; posts I may no longer see are left out."""
    if collection_id is not None:
        await _own_collection(uow, user, collection_id)
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.saved_posts(
        uow.session, user.id, collection_id, after, limit, unfiled=unfiled
    )
    items, next_cursor = page_of(rows, limit, lambda r: (r[1], r[0].id))
    return await posts.to_out(ctx, uow, user, [p for p, _ in items]), next_cursor


async def saved_counts(ctx: AppContext, uow: UnitOfWork, user: User) -> dict[UUID | None, int]:
    """How many saved posts I may still see in each collection (``None``: unfiled) — what
    the saved page shows, unlike ``CollectionOut.saves``, which counts every save."""
    return await repo.visible_saves_by_collection(uow.session, user.id)


# --- shares --------------------------------------------------------------------------


async def share(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    post_id: UUID,
    channel: ShareChannel,
    *,
    ip: str,
) -> ShareOut:
    """Record a share (anyone may share what they see) and give the link to share.

    An address that shares very often stops adding to the count, but still gets its link:
    sharing never fails because of the counter."""
    if channel not in SHARE_CHANNELS:
        raise InvalidInput("Unknown share channel.", field="channel")
    post = await _published(uow, viewer, post_id)
    wait = await ctx.limiter.hit(f"share:ip:{ip}", Limit.parse(ctx.settings.rate_limit_share_ip))
    counted = wait == 0
    if counted:
        with _post_must_exist():
            await repo.insert_share(
                uow.session, post.id, viewer.id if viewer else None, channel, utcnow()
            )
        shares = await repo.add_to_counter(uow.session, post.id, Post.share_count, 1)
    else:
        shares = await repo.counter_value(uow.session, post.id, Post.share_count)
    return ShareOut(url=posts.share_url(ctx, post.id), shares=shares, counted=counted)


# --- views ---------------------------------------------------------------------------


async def _anonymous_view_allowed(ctx: AppContext, ip: str | None, post_id: UUID) -> bool:
    """Whether one more anonymous view of the post from this address may count (one hit on
    the address's limit for the post; only views about to count are hit)."""
    if ip is None:
        return True  # a caller inside the app (tests, jobs), not a request
    limit = Limit.parse(ctx.settings.rate_limit_anonymous_views)
    return await ctx.limiter.hit(f"views:ip:{ip}:{post_id}", limit) == 0


def anonymous_viewer_id(cookie: str | None) -> tuple[str, bool]:
    """The anonymous browser's viewer id from its cookie, and whether it is new (so the
    response must set the cookie). A malformed cookie is replaced."""
    if cookie and _COOKIE_VALUE.match(cookie):
        return cookie, False
    return secrets.token_urlsafe(16), True


def viewer_key(user: User | None, anonymous_id: str | None) -> str:
    """Whose view it is: ``u:<user id>`` signed in, else ``a:`` and a hash of the browser's
    cookie (the cookie itself is never stored)."""
    if user is not None:
        return f"u:{user.id}"
    if not anonymous_id:
        raise ValueError("an anonymous viewer needs a viewer id")
    return "a:" + hashlib.sha256(anonymous_id.encode()).hexdigest()[:32]


async def record_view(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer_key: str,
    post_id: UUID,
    watched_ms: int,
    completed: bool,
    today: date | None = None,
    *,
    viewer: User | None,
    ip: str | None = None,
) -> ViewOut:
    """A player's beacon: how long this viewer has watched the post in this session.

    A view counts once per viewer, post and UTC day, once 3 s have played; a completion
    (the player says it finished, or 90% of the duration was watched) once per counted
    view. A maker's own plays are not counted. Anonymous viewers are told apart by a cookie
    a script can simply drop, so their views of one post also count at most
    ``CRAFTREEL_RATE_LIMIT_ANONYMOUS_VIEWS`` times per client address (``ip``): past it the
    beacon is recorded but the view does not count (playback never fails because of it).
    """
    if watched_ms < 0:
        raise InvalidInput("Watched time cannot be negative.", field="watched_ms")
    post = await _published(uow, viewer, post_id)
    if viewer is not None and viewer.id == post.author_id:
        return ViewOut(counted=False, completed=False, views=post.view_count)
    day = today or utcnow().date()
    session = uow.session
    # The upsert holds the day's row locked until commit: the flips below see it as it is.
    with _post_must_exist():
        watched, counted, done = await repo.upsert_view(
            session, post.id, viewer_key, day, watched_ms, utcnow()
        )
    views = post.view_count
    if not counted and watched >= MIN_VIEW_MS:
        if viewer is None and not await _anonymous_view_allowed(ctx, ip, post.id):
            return ViewOut(counted=False, completed=False, views=views)
        if await repo.mark_view_counted(session, post.id, viewer_key, day, MIN_VIEW_MS):
            views = await repo.add_to_counter(session, post.id, Post.view_count, 1)
        counted = True
    if counted and not done:
        finished = completed
        if not finished:
            duration = await repo.media_duration(session, post.id)
            finished = duration is not None and watched >= math.ceil(
                duration * 1000 * COMPLETION_RATIO
            )
        if finished:
            if await repo.mark_view_completed(session, post.id, viewer_key, day):
                await repo.add_to_counter(session, post.id, Post.completion_count, 1)
            done = True
    return ViewOut(counted=counted, completed=done, views=views)
