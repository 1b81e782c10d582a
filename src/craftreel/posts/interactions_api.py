"""Interactions JSON API: likes, comments and replies, saves and collections, shares and
view beacons. Writes take a bearer token, or the web app's session cookie with its
X-CSRF-Token header; shares and view beacons also come from people not signed in."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from craftreel.accounts.deps import ApiOrWebOptionalUser, ApiOrWebUser, ClientInfo
from craftreel.accounts.schemas import PersonSummary
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.posts import interactions as service
from craftreel.posts import interactions_schemas as schemas
from craftreel.posts.schemas import PostOut

router = APIRouter(prefix="/api/v1", tags=["interactions"])

PageLimit = Query(default=20, ge=1, le=50)


# --- likes ---------------------------------------------------------------------------


@router.put("/posts/{post_id}/like")
async def like(post_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> schemas.LikeState:
    """Like a post (again: no change)."""
    return await service.like(ctx, uow, user, post_id)


@router.delete("/posts/{post_id}/like")
async def unlike(post_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> schemas.LikeState:
    return await service.unlike(ctx, uow, user, post_id)


@router.get("/posts/{post_id}/likes")
async def likers(
    post_id: UUID,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[PersonSummary]:
    """Who liked the post, newest first."""
    items, next_cursor = await service.likers(ctx, uow, viewer, post_id, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


# --- comments ------------------------------------------------------------------------


@router.post("/posts/{post_id}/comments", status_code=201)
async def add_comment(
    post_id: UUID, body: schemas.CommentCreate, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.CommentOut:
    """Comment, or reply (``parent_id``); a reply to a reply joins its thread. 403
    ``comments_off`` when the author turned comments off."""
    return await service.add_comment(ctx, uow, user, post_id, body.body, body.parent_id)


@router.get("/posts/{post_id}/comments")
async def list_comments(
    post_id: UUID,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[schemas.CommentOut]:
    """Top-level comments, newest first, with their reply counts."""
    items, next_cursor = await service.list_comments(ctx, uow, viewer, post_id, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/comments/{comment_id}/replies")
async def list_replies(
    comment_id: UUID,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[schemas.CommentOut]:
    """A comment's replies, oldest first."""
    items, next_cursor = await service.list_replies(ctx, uow, viewer, comment_id, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.delete("/comments/{comment_id}", status_code=204)
async def delete_comment(comment_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> Response:
    """Its author or the post's author deletes a comment (and its replies); anyone else who
    can see it gets 403 ``not_allowed``."""
    await service.delete_comment(ctx, uow, user, comment_id)
    return Response(status_code=204)


# --- saves and collections -----------------------------------------------------------


@router.put("/posts/{post_id}/save")
async def save(
    post_id: UUID,
    user: ApiOrWebUser,
    ctx: Ctx,
    uow: Uow,
    body: schemas.SaveRequest | None = None,
) -> schemas.SaveState:
    """Save a post; with ``collection_id``, into (or over to) that collection, ``null`` for
    unfiled. Without it, a saved post stays where it is."""
    keep = body is None or "collection_id" not in body.model_fields_set
    collection_id = body.collection_id if body is not None else None
    return await service.save(ctx, uow, user, post_id, collection_id, keep_collection=keep)


@router.delete("/posts/{post_id}/save")
async def unsave(post_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> schemas.SaveState:
    return await service.unsave(ctx, uow, user, post_id)


@router.post("/collections", status_code=201)
async def create_collection(
    body: schemas.CollectionCreate, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.CollectionOut:
    """A new collection (409 ``collection_exists`` if I have one by that name)."""
    return await service.create_collection(ctx, uow, user, body.name)


@router.get("/collections")
async def my_collections(
    user: ApiOrWebUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: int = PageLimit
) -> Page[schemas.CollectionOut]:
    """My collections, by name."""
    items, next_cursor = await service.collections(ctx, uow, user, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.patch("/collections/{collection_id}")
async def rename_collection(
    collection_id: UUID, body: schemas.CollectionUpdate, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.CollectionOut:
    return await service.rename_collection(ctx, uow, user, collection_id, body.name)


@router.delete("/collections/{collection_id}", status_code=204)
async def delete_collection(
    collection_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> Response:
    """Delete a collection; its posts stay saved, unfiled."""
    await service.delete_collection(ctx, uow, user, collection_id)
    return Response(status_code=204)


@router.get("/saved")
async def saved_posts(
    user: ApiOrWebUser,
    ctx: Ctx,
    uow: Uow,
    collection_id: UUID | None = None,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[PostOut]:
    """My saved posts (or one collection's), newest save first."""
    items, next_cursor = await service.saved(ctx, uow, user, collection_id, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


# --- shares and views ----------------------------------------------------------------


@router.post("/posts/{post_id}/shares")
async def share(
    post_id: UUID,
    body: schemas.ShareCreate,
    viewer: ApiOrWebOptionalUser,
    client: ClientInfo,
    ctx: Ctx,
    uow: Uow,
) -> schemas.ShareOut:
    """Record a share and get the link to share (signed in or not)."""
    return await service.share(ctx, uow, viewer, post_id, body.channel, ip=client.ip)


@router.post("/posts/{post_id}/views")
async def record_view(
    post_id: UUID,
    body: schemas.ViewBeacon,
    viewer: ApiOrWebOptionalUser,
    client: ClientInfo,
    request: Request,
    response: Response,
    ctx: Ctx,
    uow: Uow,
) -> schemas.ViewOut:
    """The player's beacon (signed in or not): a view counts after 3 s of playback, once a
    day per viewer. A browser not signed in gets a random ``cr_vid`` cookie to be told
    apart by; past ``CRAFTREEL_RATE_LIMIT_ANONYMOUS_VIEWS`` views of the post from one
    address, an anonymous one is recorded but not counted."""
    anonymous_id: str | None = None
    if viewer is None:
        anonymous_id, new = service.anonymous_viewer_id(request.cookies.get(service.VIEWER_COOKIE))
        if new:
            response.set_cookie(
                service.VIEWER_COOKIE,
                anonymous_id,
                max_age=service.VIEWER_COOKIE_SECONDS,
                httponly=True,
                samesite="lax",
                secure=ctx.settings.cookies_secure,
            )
    return await service.record_view(
        ctx,
        uow,
        service.viewer_key(viewer, anonymous_id),
        post_id,
        body.watched_ms,
        body.completed,
        viewer=viewer,
        ip=client.ip,
    )
