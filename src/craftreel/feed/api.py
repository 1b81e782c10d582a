"""Timelines JSON API: Following, Discover, hashtag feeds and makers' profile grids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from craftreel.accounts.deps import ApiOrWebOptionalUser
from craftreel.core.errors import NotAuthenticated
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.feed import service
from craftreel.posts import cards
from craftreel.posts.schemas import PostOut
from craftreel.posts.service import feed_items

router = APIRouter(prefix="/api/v1", tags=["feed"])

Limit = Annotated[int, Query(ge=1, le=50)]


def _page(items: list[bytes], next_cursor: str | None) -> Response:
    """A page of rendered feed items (see ``posts.service.feed_items``), sent as it is."""
    return Response(cards.page(items, next_cursor), media_type="application/json")


class HashtagOut(BaseModel):
    tag: str
    post_count: int


@router.get("/feed/following", response_model=Page[PostOut])
async def following_feed(
    viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: Limit = 20
) -> Response:
    """Posts of the people I follow, newest first."""
    if viewer is None:
        raise NotAuthenticated()
    return _page(*await service.following(ctx, uow, viewer, cursor, limit, feed_items))


@router.get("/feed/discover", response_model=Page[PostOut])
async def discover_feed(
    viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow, cursor: str | None = None, limit: Limit = 20
) -> Response:
    """Everyone's posts by recency and engagement, at most two in a row by one maker."""
    return _page(*await service.discover(ctx, uow, viewer, cursor, limit, feed_items))


@router.get("/hashtags/{tag}")
async def hashtag_info(tag: str, viewer: ApiOrWebOptionalUser, uow: Uow) -> HashtagOut:
    """A hashtag and how many posts with it I may see."""
    name = service.normalize_tag(tag)
    return HashtagOut(tag=name, post_count=await service.hashtag_count(uow, viewer, name))


@router.get("/hashtags/{tag}/posts", response_model=Page[PostOut])
async def hashtag_feed(
    tag: str,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: Limit = 20,
) -> Response:
    """Posts with the hashtag, newest first."""
    return _page(*await service.hashtag(ctx, uow, viewer, tag, cursor, limit, feed_items))


@router.get("/people/{handle}/posts", response_model=Page[PostOut])
async def profile_posts(
    handle: str,
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: Limit = 20,
) -> Response:
    """A maker's published posts, newest first (their profile grid)."""
    return _page(*await service.profile_posts(ctx, uow, viewer, handle, cursor, limit, feed_items))
