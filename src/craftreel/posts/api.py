"""Posts JSON API: drafts, publishing, scheduling, editing and deleting posts."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Response

from craftreel.accounts.deps import ApiOrWebOptionalUser, ApiOrWebUser
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.posts import schemas, service

router = APIRouter(prefix="/api/v1", tags=["posts"])


@router.post("/posts", status_code=201)
async def create_post(
    body: schemas.PostCreate, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.PostOut:
    """A draft from my uploaded media (it may still be processing)."""
    return await service.create_draft(ctx, uow, user, body)


@router.get("/posts/drafts")
async def my_drafts(
    user: ApiOrWebUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=50),
) -> Page[schemas.PostOut]:
    """My drafts, posts waiting for their media, and scheduled posts; last edited first."""
    items, next_cursor = await service.drafts(ctx, uow, user, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/posts/{post_id}")
async def get_post(
    post_id: UUID, viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow
) -> schemas.PostOut:
    return await service.get_post(ctx, uow, viewer, post_id)


@router.patch("/posts/{post_id}")
async def update_post(
    post_id: UUID, body: schemas.PostEdit, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.PostOut:
    """Autosave a draft or edit a published post; omitted fields stay as they are."""
    return await service.update_post(ctx, uow, user, post_id, body)


@router.post("/posts/{post_id}/publish")
async def publish_post(
    post_id: UUID, body: schemas.Publish, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.PostOut:
    """Publish now (409 ``media_not_ready`` while processing), or ``when_ready``."""
    return await service.publish(ctx, uow, user, post_id, body)


@router.post("/posts/{post_id}/schedule")
async def schedule_post(
    post_id: UUID, body: schemas.Schedule, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> schemas.PostOut:
    return await service.schedule(ctx, uow, user, post_id, body)


@router.post("/posts/{post_id}/unschedule")
async def unschedule_post(post_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> schemas.PostOut:
    """A scheduled or waiting post goes back to being a draft."""
    return await service.unschedule(ctx, uow, user, post_id)


@router.delete("/posts/{post_id}", status_code=204)
async def delete_post(post_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> Response:
    await service.delete_post(ctx, uow, user, post_id)
    return Response(status_code=204)
