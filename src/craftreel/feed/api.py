"""Timelines JSON API: Following, Discover, hashtag feeds and makers' profile grids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from craftreel.accounts.deps import ApiOrWebOptionalUser, api_or_web_optional_user
from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import NotAuthenticated
from craftreel.core.pagination import Page
from craftreel.deps import Uow, get_ctx
from craftreel.feed import service
from craftreel.posts import cards
from craftreel.posts.schemas import PostOut
from craftreel.posts.service import feed_items

router = APIRouter(prefix="/api/v1", tags=["feed"])

Limit = Annotated[int, Query(ge=1, le=50)]
#: A page of rendered items and the cursor to the next one.
PageOf = tuple[list[bytes], str | None]


def _page(items: list[bytes], next_cursor: str | None) -> Response:
    """A page of rendered feed items (see ``posts.service.feed_items``), sent as it is."""
    return Response(cards.page(items, next_cursor), media_type="application/json")


Fetch = Callable[[AppContext, UnitOfWork, User | None], Awaitable[PageOf]]


async def _feed_page(request: Request, fetch: Fetch, *, signed_in: bool = False) -> Response:
    """A feed page, read in a read-only unit of work that ends before the page is sent.

    The feeds get their unit of work and viewer here rather than from dependencies (``Uow``,
    ``ApiOrWebOptionalUser``): FastAPI's dependency machinery for them — a generator
    dependency with its exit stack, and three more resolved per request — cost a quarter of a
    feed request's CPU (measured in-process: 0.25 of 1.1 ms)."""
    ctx = await get_ctx(request)
    async with ctx.uow(read_only=True) as uow:
        viewer = await api_or_web_optional_user(request, ctx, uow)
        if signed_in and viewer is None:
            raise NotAuthenticated()
        return _page(*await fetch(ctx, uow, viewer))


class HashtagOut(BaseModel):
    tag: str
    post_count: int


@router.get("/feed/following", response_model=Page[PostOut])
async def following_feed(
    request: Request, cursor: str | None = None, limit: Limit = 20
) -> Response:
    """Posts of the people I follow, newest first."""

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        assert viewer is not None
        return await service.following(ctx, uow, viewer, cursor, limit, feed_items)

    return await _feed_page(request, fetch, signed_in=True)


@router.get("/feed/discover", response_model=Page[PostOut])
async def discover_feed(request: Request, cursor: str | None = None, limit: Limit = 20) -> Response:
    """Everyone's posts by recency and engagement, at most two in a row by one maker."""

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        return await service.discover(ctx, uow, viewer, cursor, limit, feed_items)

    return await _feed_page(request, fetch)


@router.get("/hashtags/{tag}")
async def hashtag_info(tag: str, viewer: ApiOrWebOptionalUser, uow: Uow) -> HashtagOut:
    """A hashtag and how many posts with it I may see."""
    name = service.normalize_tag(tag)
    return HashtagOut(tag=name, post_count=await service.hashtag_count(uow, viewer, name))


@router.get("/hashtags/{tag}/posts", response_model=Page[PostOut])
async def hashtag_feed(
    tag: str, request: Request, cursor: str | None = None, limit: Limit = 20
) -> Response:
    """Posts with the hashtag, newest first."""

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        return await service.hashtag(ctx, uow, viewer, tag, cursor, limit, feed_items)

    return await _feed_page(request, fetch)


@router.get("/people/{handle}/posts", response_model=Page[PostOut])
async def profile_posts(
    handle: str, request: Request, cursor: str | None = None, limit: Limit = 20
) -> Response:
    """A maker's published posts, newest first (their profile grid)."""

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        return await service.profile_posts(ctx, uow, viewer, handle, cursor, limit, feed_items)

    return await _feed_page(request, fetch)
