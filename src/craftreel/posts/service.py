"""Post rules: drafts from uploaded media, publishing (now, when ready, on schedule), edits,
deletion, and who may see what."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, InvalidInput, NotFound
from craftreel.core.ids import uuid7
from craftreel.core.pagination import decode_time_cursor, page_of
from craftreel.core.stamps import move_on_commit
from craftreel.media import service as media_service
from craftreel.media.models import MediaKind, MediaObject, MediaStatus
from craftreel.posts import cards, ranking, schemas, text
from craftreel.posts import repository as repo
from craftreel.posts.models import Post, PostKind, PostMedia, PostStatus, Visibility

PUBLIC_MEDIA = {Visibility.PUBLIC, Visibility.UNLISTED}
MAX_SCHEDULE_AHEAD = timedelta(days=365)

log = logging.getLogger(__name__)


class PostNotFound(NotFound):
    """No such post, or not one this person may see."""

    code = "post_not_found"
    message = "That post does not exist."


class MediaNotReady(Conflict):
    """Publishing now needs media that can already play."""

    code = "media_not_ready"
    message = "The video is still processing. Publish when it is ready, or wait a moment."


class MediaFailed(Conflict):
    """A post's media could not be processed; it cannot be published."""

    code = "media_failed"
    message = "The media of this post could not be processed. Upload it again."


class MediaInUse(Conflict):
    code = "media_in_use"
    message = "That upload already belongs to another post."


class WrongStatus(Conflict):
    code = "post_wrong_status"
    message = "That cannot be done to this post now."


# --- reading -------------------------------------------------------------------------


def share_url(ctx: AppContext, post_id: UUID) -> str:
    return f"{str(ctx.settings.base_url).rstrip('/')}/p/{post_id}"


async def to_out(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    posts: Sequence[Post],
    flags: tuple[set[UUID], set[UUID]] | None = None,
) -> list[schemas.PostOut]:
    """Posts as the API shows them, in a fixed number of queries whatever their number:
    authors, media, the viewer's likes and saves (unless ``flags`` already says which they
    liked and saved), and the shop's product tags."""
    session = uow.session
    ids = [p.id for p in posts]
    people = await repo.authors(session, {p.author_id for p in posts})
    media = await repo.media_for_posts(session, ids)
    liked: set[UUID] = set()
    saved: set[UUID] = set()
    if viewer is not None:
        liked, saved = flags or await repo.liked_and_saved(session, viewer.id, ids)
    products = await _product_tags(ctx, uow, ids)
    out = []
    for post in posts:
        out.append(
            schemas.PostOut(
                id=post.id,
                author=accounts.summary(ctx, people[post.author_id]),
                kind=post.kind,
                status=post.status,
                caption=post.caption,
                hashtags=text.hashtags(post.caption),
                mentions=text.mentions(post.caption),
                chapters=[schemas.Chapter.model_validate(c) for c in post.chapters or []],
                materials=list(post.materials or []),
                visibility=Visibility(post.visibility),
                comments_enabled=post.comments_enabled,
                media=[media_service.to_schema(ctx, m) for m in media[post.id]],
                counts=schemas.Counts(
                    likes=post.like_count,
                    comments=post.comment_count,
                    saves=post.save_count,
                    shares=post.share_count,
                    views=post.view_count,
                ),
                viewer=(
                    schemas.ViewerState(liked=post.id in liked, saved=post.id in saved)
                    if viewer is not None
                    else None
                ),
                products=products.get(post.id, []),
                share_url=share_url(ctx, post.id),
                publish_error=post.publish_error,
                scheduled_at=post.scheduled_at,
                published_at=post.published_at,
                edited_at=post.edited_at,
                created_at=post.created_at,
            )
        )
    return out


async def feed_models(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, items: Sequence[repo.FeedPost]
) -> list[schemas.PostOut]:
    """A feed's posts as models (for pages), the viewer's likes and saves as the feed read them."""
    flags = ({i.id for i in items if i.liked}, {i.id for i in items if i.saved})
    posts = await repo.posts_by_id(uow.session, (i.id for i in items))
    # A post deleted since the feed's query ran is left out.
    return await to_out(ctx, uow, viewer, [posts[i.id] for i in items if i.id in posts], flags)


async def feed_items(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, items: Sequence[repo.FeedPost]
) -> list[bytes]:
    """A feed's posts as the API's items, rendered JSON: each post's card (reused from
    ``ctx.cards`` while valid, see :mod:`craftreel.posts.cards`) with its counts and the
    viewer's like and save as the feed's own query read them. No query at all when every
    card is reused; one for the rows of the others, then :func:`to_out`'s. Cards served old
    are rendered again in the background, after this page."""
    cache = ctx.cards
    rest: dict[UUID, bytes] = {}
    missing: list[UUID] = []
    old: list[UUID] = []
    for item in items:
        kept = cache.get(item.id, item.updated_at)
        if kept is None:
            missing.append(item.id)
        else:
            rest[item.id] = kept[0]
            if kept[1]:
                old.append(item.id)
    if missing:
        rest.update(await _render_cards(ctx, uow, missing))
    if old:
        cache.queue_refresh(old)
        if cache.refresher is None and cache.refresh_queued:
            cache.refresher = asyncio.create_task(_refresh_cards(ctx), name="refresh-feed-cards")
    return [
        cards.item(rest[item.id], item.counts, (item.liked, item.saved) if viewer else None)
        for item in items
        if item.id in rest
    ]


async def _render_cards(
    ctx: AppContext, uow: UnitOfWork, post_ids: list[UUID]
) -> dict[UUID, bytes]:
    """These posts' cards, rendered and kept (a post gone meanwhile has none)."""
    session = uow.session
    seen = cards.shown.seen(session.sync_session)
    found = await repo.posts_by_id(session, post_ids)
    posts = [found[i] for i in post_ids if i in found]
    rendered: dict[UUID, bytes] = {}
    for post, out in zip(posts, await to_out(ctx, uow, None, posts), strict=True):
        body = cards.without_live_parts(out.model_dump_json(exclude={"counts", "viewer"}).encode())
        ctx.cards.put(post.id, post.updated_at, body, seen)
        rendered[post.id] = body
    return rendered


#: How long old cards are gathered before they are rendered again, and how many at most are
#: rendered together: one card alone costs ~3 ms of CPU (the queries to_out makes), one in a
#: batch of 20 ~0.3 ms, while a batch's CPU between two queries holds up every request.
REFRESH_GATHER_SECONDS = 0.1
REFRESH_BATCH = 32


async def _refresh_cards(ctx: AppContext) -> None:
    """Render the queued old cards again, in batches, each in a unit of work of its own, until
    none are queued. A failure only leaves a batch's cards to be rendered by the next request
    that finds them too old."""
    cache = ctx.cards
    try:
        while cache.refresh_queued:
            await asyncio.sleep(REFRESH_GATHER_SECONDS)
            batch = cache.take_refresh(REFRESH_BATCH)
            try:
                async with ctx.uow(read_only=True) as uow:
                    await _render_cards(ctx, uow, batch)
            except Exception:
                log.exception("rendering %d feed cards again failed", len(batch))
            finally:
                cache.refreshed(batch)
    finally:
        cache.refresher = None


async def _product_tags(
    ctx: AppContext, uow: UnitOfWork, post_ids: list[UUID]
) -> dict[UUID, list[schemas.ProductTagOut]]:
    """The shop's product tags for these posts (one query), if the shop offers them."""
    from craftreel.shop import tags as shop_tags  # the shop builds on posts, not the reverse

    return await shop_tags.for_posts(ctx, uow, post_ids)


async def one_out(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, post: Post
) -> schemas.PostOut:
    [out] = await to_out(ctx, uow, viewer, [post])
    return out


async def viewable_post(uow: UnitOfWork, viewer: User | None, post_id: UUID) -> Post:
    """A post the viewer may open by its link: published and visible to them, or their own
    (a draft too). Anything else is "not found" — never "forbidden", which would tell."""
    if viewer is not None:
        own = await repo.own_post(uow.session, viewer.id, post_id)
        if own is not None:
            return own
    post = await repo.visible_post(uow.session, viewer.id if viewer else None, post_id)
    if post is None:
        raise PostNotFound()
    return post


async def get_post(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, post_id: UUID
) -> schemas.PostOut:
    return await one_out(ctx, uow, viewer, await viewable_post(uow, viewer, post_id))


async def drafts(
    ctx: AppContext, uow: UnitOfWork, user: User, cursor: str | None, limit: int
) -> tuple[list[schemas.PostOut], str | None]:
    """My unpublished posts: drafts, waiting for their media, scheduled."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.drafts(uow.session, user.id, after, limit)
    items, next_cursor = page_of(rows, limit, lambda p: (p.updated_at, p.id))
    return await to_out(ctx, uow, user, items), next_cursor


# --- writing -------------------------------------------------------------------------


def _kind_of(media: list[MediaObject]) -> PostKind:
    kinds = {m.kind for m in media}
    if kinds == {MediaKind.IMAGE}:
        return PostKind.PHOTOS
    if len(media) == 1 and kinds == {MediaKind.VIDEO}:
        return PostKind.VIDEO
    if len(media) == 1 and kinds == {MediaKind.AUDIO}:
        return PostKind.AUDIO
    raise InvalidInput(
        "A post holds one video, one audio piece, or up to 10 photos.", field="media_ids"
    )


def _check_chapters(post: Post, media: list[MediaObject], chapters: list[schemas.Chapter]) -> None:
    if chapters and post.kind == PostKind.PHOTOS:
        raise InvalidInput("Chapters are for videos and audio.", field="chapters")
    duration = media[0].duration_s if media else None
    if duration is not None and any(c.at >= duration for c in chapters):
        raise InvalidInput(
            f"A chapter starts after the end ({text.format_timestamp(duration)}).",
            field="chapters",
        )


async def _apply_edit(
    uow: UnitOfWork, post: Post, media: list[MediaObject], body: schemas.PostEdit
) -> None:
    if body.chapters is not None:
        _check_chapters(post, media, body.chapters)
        post.chapters = [c.model_dump() for c in body.chapters]
    if body.materials is not None:
        post.materials = body.materials
    if body.comments_enabled is not None:
        post.comments_enabled = body.comments_enabled
    if body.visibility is not None and body.visibility != post.visibility:
        post.visibility = body.visibility
        if post.status == PostStatus.PUBLISHED:
            await repo.set_media_public(uow.session, post.id, body.visibility in PUBLIC_MEDIA)
            await repo.refresh_feed_span(uow.session, post.author_id)
    if body.caption is not None:
        post.caption = body.caption.strip()
        await repo.replace_tags(
            uow.session, post, text.hashtags(post.caption), text.mentions(post.caption)
        )


async def create_draft(
    ctx: AppContext, uow: UnitOfWork, user: User, body: schemas.PostCreate
) -> schemas.PostOut:
    """A draft from my uploaded media (processing may still be going on)."""
    media_ids = list(dict.fromkeys(body.media_ids))
    found = {m.id: m for m in await repo.media_owned_by(uow.session, user.id, media_ids)}
    if len(found) != len(media_ids):
        raise media_service.MediaNotFound(field="media_ids")
    media = [found[i] for i in media_ids]
    if any(m.status == MediaStatus.FAILED for m in media):
        raise MediaFailed(field="media_ids")
    if await repo.media_in_posts(uow.session, media_ids):
        raise MediaInUse(field="media_ids")
    post = Post(id=uuid7(), author_id=user.id, kind=_kind_of(media), status=PostStatus.DRAFT)
    post.chapters, post.materials, post.caption = [], [], ""
    uow.session.add(post)
    for position, m in enumerate(media):
        uow.session.add(PostMedia(post_id=post.id, position=position, media_id=m.id))
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # the same upload attached twice at the same moment
        raise MediaInUse(field="media_ids") from exc
    await _apply_edit(uow, post, media, body)
    await uow.session.flush()
    return await one_out(ctx, uow, user, post)


async def owned_post(uow: UnitOfWork, user: User, post_id: UUID) -> tuple[Post, list[MediaObject]]:
    """My post (any status) and its media, for features that attach things to posts."""
    post = await _own(uow, user, post_id, lock=False)
    return post, await _media_of(uow, post)


async def _own(uow: UnitOfWork, user: User, post_id: UUID, lock: bool = True) -> Post:
    post = await repo.own_post(uow.session, user.id, post_id, lock=lock)
    if post is None:
        raise PostNotFound()
    return post


async def _media_of(uow: UnitOfWork, post: Post) -> list[MediaObject]:
    return (await repo.media_for_posts(uow.session, [post.id]))[post.id]


async def update_post(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID, body: schemas.PostEdit
) -> schemas.PostOut:
    """Autosave a draft, or edit a published post (caption, chapters, materials, visibility,
    comments)."""
    post = await _own(uow, user, post_id)
    await _apply_edit(uow, post, await _media_of(uow, post), body)
    now = utcnow()
    post.updated_at = now
    if post.status == PostStatus.PUBLISHED and body.model_fields_set:
        post.edited_at = now
        move_on_commit(uow, ["everyone"])  # feed pages kept anywhere may show it
    await uow.session.flush()
    return await one_out(ctx, uow, user, post)


def _media_state(media: list[MediaObject]) -> str:
    if any(m.status == MediaStatus.FAILED for m in media):
        return "failed"
    if all(m.playable for m in media):
        return "playable"
    return "processing"


async def _go_public(uow: UnitOfWork, post: Post, from_status: str, now: datetime) -> bool:
    """Publish ``post`` if still in ``from_status``; exactly once, whoever else tries."""
    score = ranking.score(now, 0, 0, 0, 0, 0)
    scheduled_for = post.scheduled_at if from_status == PostStatus.SCHEDULED else None
    if not await repo.mark_published(
        uow.session, post.id, from_status, now, score, scheduled_for=scheduled_for
    ):
        return False
    await repo.set_media_public(uow.session, post.id, post.visibility in PUBLIC_MEDIA)
    await repo.stamp_tags_published(uow.session, post.id, now)
    await repo.refresh_feed_span(uow.session, post.author_id)
    await _tell_followers(uow, post.author_id)
    await uow.session.refresh(post)
    return True


#: A maker with more followers than this moves everyone's stamp when they publish, rather
#: than each follower's.
TELL_FOLLOWERS = 10_000


async def _tell_followers(uow: UnitOfWork, author_id: UUID) -> None:
    """Once this commits, the feed pages kept for the maker's followers are read again (so
    the new post shows at once; see ``feed/pages.py``)."""
    followers = await repo.follower_ids(uow.session, author_id, TELL_FOLLOWERS + 1)
    move_on_commit(uow, followers if len(followers) <= TELL_FOLLOWERS else ["everyone"])


async def publish(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID, body: schemas.Publish
) -> schemas.PostOut:
    """Publish now if the media plays; with ``when_ready``, the moment it does."""
    post = await _own(uow, user, post_id)
    if post.status == PostStatus.PUBLISHED:
        return await one_out(ctx, uow, user, post)
    media = await _media_of(uow, post)
    _check_chapters(post, media, [schemas.Chapter.model_validate(c) for c in post.chapters])
    state = _media_state(media)
    if state == "failed":
        raise MediaFailed()
    if state == "playable":
        await _go_public(uow, post, post.status, utcnow())
    elif body.when_ready:
        post.status = PostStatus.WAITING
        post.scheduled_at = None
        post.publish_error = None
        post.updated_at = utcnow()
    else:
        raise MediaNotReady()
    await uow.session.flush()
    return await one_out(ctx, uow, user, post)


async def schedule(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID, body: schemas.Schedule
) -> schemas.PostOut:
    """Publish at a chosen time (exactly once, also across a restart: the job is a row)."""
    post = await _own(uow, user, post_id)
    if post.status == PostStatus.PUBLISHED:
        raise WrongStatus("This post is already published.")
    at = body.at
    if at.tzinfo is None:
        raise InvalidInput("Give the time with its time zone.", field="at")
    now = utcnow()
    if at <= now + timedelta(seconds=30):
        raise InvalidInput("Pick a time in the future.", field="at")
    if at > now + MAX_SCHEDULE_AHEAD:
        raise InvalidInput("Schedule at most a year ahead.", field="at")
    if _media_state(await _media_of(uow, post)) == "failed":
        raise MediaFailed()
    post.status = PostStatus.SCHEDULED
    post.scheduled_at = at
    post.publish_error = None
    post.updated_at = now
    await uow.session.flush()
    await uow.session.refresh(post)  # the stored (normalised) time is what the job compares
    assert post.scheduled_at is not None
    ctx.jobs.enqueue(
        uow,
        "posts.publish_scheduled",
        {"post_id": str(post.id), "at": post.scheduled_at.isoformat()},
        run_at=post.scheduled_at,
    )
    return await one_out(ctx, uow, user, post)


async def unschedule(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID
) -> schemas.PostOut:
    """Back to a draft: a scheduled or waiting post stops going out."""
    post = await _own(uow, user, post_id)
    if post.status not in (PostStatus.SCHEDULED, PostStatus.WAITING):
        raise WrongStatus("Only a scheduled or waiting post can go back to draft.")
    post.status = PostStatus.DRAFT
    post.scheduled_at = None
    post.updated_at = utcnow()
    await uow.session.flush()
    return await one_out(ctx, uow, user, post)


async def delete_post(ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID) -> None:
    """Delete a post (draft or published); a job removes its media files afterwards."""
    post = await _own(uow, user, post_id)
    media_ids = await repo.post_media_ids(uow.session, post.id)
    await repo.delete_post(uow.session, post.id)
    if post.status == PostStatus.PUBLISHED:  # a draft is in no one's feed
        await repo.refresh_feed_span(uow.session, post.author_id)
        move_on_commit(uow, ["everyone"])
    for media_id in media_ids:
        ctx.jobs.enqueue(uow, "media.delete", {"media_id": str(media_id)})


# --- jobs ----------------------------------------------------------------------------


async def publish_scheduled(uow: UnitOfWork, post_id: UUID, at: datetime) -> str:
    """The scheduled moment: publish if still scheduled for this time. Media still processing
    → publish when ready; media failed → back to draft with the reason."""
    post = await uow.session.get(Post, post_id, with_for_update=True)
    if post is None or post.status != PostStatus.SCHEDULED or post.scheduled_at != at:
        return "skipped"
    state = _media_state(await _media_of(uow, post))
    if state == "playable":
        return (
            "published"
            if await _go_public(uow, post, PostStatus.SCHEDULED, utcnow())
            else "skipped"
        )
    if state == "failed":
        post.status = PostStatus.DRAFT
        post.scheduled_at = None
        post.publish_error = MediaFailed.message
        return "failed"
    post.status = PostStatus.WAITING
    post.scheduled_at = None
    return "waiting"


async def media_settled(uow: UnitOfWork, media_id: UUID) -> int:
    """A media object became playable or failed: publish (or stop) the posts waiting for it.
    Returns how many posts were published."""
    published = 0
    for post in await repo.waiting_posts_for_media(uow.session, media_id):
        state = _media_state(await _media_of(uow, post))
        if state == "playable":
            published += await _go_public(uow, post, PostStatus.WAITING, utcnow())
        elif state == "failed":
            post.status = PostStatus.DRAFT
            post.publish_error = MediaFailed.message
    return published
