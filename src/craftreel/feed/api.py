"""Timelines JSON API: Following, Discover, hashtag feeds and makers' profile grids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from craftreel.accounts.deps import ApiOrWebOptionalUser
from craftreel.core.errors import NotAuthenticated
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.feed import service
from craftreel.posts.schemas import PostOut

router = APIRouter(prefix="/api/v1", tags=["feed"])

Limit = Annotated[int, Query(ge=1, le=50)]


class HashtagOut(BaseModel):
    tag: str
    post_count: int


@router.get("/feed/following")
async def following_feed(
    viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: Limit = 20
) -> Page[PostOut]:
    """Posts of the people I follow, newest first."""
    if viewer is None:
        raise NotAuthenticated()
    items, next_cursor = await service.following(ctx, uow, viewer, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/feed/discover")
async def discover_feed(
    viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: Limit = 20
) -> Page[PostOut]:
    """Everyone's posts by recency and engagement, at most two in a row by one maker."""
    items, next_cursor = await service.discover(ctx, uow, viewer, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/hashtags/{tag}")
async def hashtag_info(tag: str, viewer: ApiOrWebOptionalUser, uow: Uow) -> HashtagOut:
    """A hashtag and how many posts with it I may see."""
    name = service.normalize_tag(tag)
    return HashtagOut(tag=name, post_count=await service.hashtag_count(uow, viewer, name))


@router.get("/hashtags/{tag}/posts")
async def hashtag_feed(
    tag: str,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: Limit = 20,
) -> Page[PostOut]:
    """Posts with the hashtag, newest first."""
    items, next_cursor = await service.hashtag(ctx, uow, viewer, tag, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/people/{handle}/posts")
async def profile_posts(
    handle: str,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: Limit = 20,
) -> Page[PostOut]:
    """A maker's published posts, newest first (their profile grid)."""
    items, next_cursor = await service.profile_posts(ctx, uow, viewer, handle, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)
