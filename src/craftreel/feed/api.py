"""Timelines JSON API: Following, Discover, hashtag feeds and makers' profile grids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from craftreel.accounts import service as accounts
from craftreel.accounts.deps import SESSION_COOKIE, ApiOrWebOptionalUser, api_or_web_optional_user
from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import NotAuthenticated
from craftreel.core.pagination import Page
from craftreel.deps import Uow, get_ctx
from craftreel.feed import service
from craftreel.feed.pages import PageKey
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


#: A page that may be kept: (feed, cursor, size).
Kept = tuple[str, str | None, int]


async def _feed_page(
    request: Request, fetch: Fetch, *, signed_in: bool = False, kept: Kept | None = None
) -> Response:
    """A feed page, read in a read-only unit of work that ends before the page is sent.

    With ``kept`` — (feed, cursor, size): Following's and Discover's pages — a page sent
    to this reader before is sent again while it may be (:mod:`craftreel.feed.pages`).

    The feeds get their unit of work and viewer here rather than from dependencies (``Uow``,
    ``ApiOrWebOptionalUser``): FastAPI's dependency machinery for them — a generator
    dependency with its exit stack, and three more resolved per request — cost a quarter of a
    feed request's CPU (measured in-process: 0.25 of 1.1 ms)."""
    ctx = await get_ctx(request)
    if kept is not None and ctx.pages.enabled:
        known = _known_page(request, ctx, kept)
        if known is not None:
            return known
    async with ctx.uow(read_only=True) as uow:
        viewer = await api_or_web_optional_user(request, ctx, uow)
        if signed_in and viewer is None:
            raise NotAuthenticated()
        if kept is None or not ctx.pages.enabled:
            return _page(*await fetch(ctx, uow, viewer))
        reader = viewer.id if viewer is not None else None
        feed, page_cursor, size = kept
        key: PageKey = (feed, reader, page_cursor, size)
        seen = ctx.pages.seen(feed, reader)  # before the page's data is read
        body = ctx.pages.get(key, seen)
        if body is None:
            body = cards.page(*await fetch(ctx, uow, viewer))
            ctx.pages.put(key, seen, body)
        return Response(body, media_type="application/json")


def _known_page(request: Request, ctx: AppContext, kept: Kept) -> Response | None:
    """The kept page, when the reader is known without the database (a bearer token whose
    session was read moments ago, or no one signed in); None otherwise, and on any doubt:
    the request then goes the whole way, which also says what is wrong with it."""
    header = request.headers.get("authorization")
    reader: UUID | None = None
    if header is not None:
        scheme, _, token = header.partition(" ")
        identity = (
            accounts.known_identity(ctx, token.strip()) if scheme.lower() == "bearer" else None
        )
        if identity is None:
            return None
        reader = identity.user.id
    elif kept[0] == "following" or SESSION_COOKIE in request.cookies:
        return None
    feed, page_cursor, size = kept
    body = ctx.pages.get((feed, reader, page_cursor, size), ctx.pages.seen(feed, reader))
    return Response(body, media_type="application/json") if body is not None else None


class HashtagOut(BaseModel):
    tag: str
    post_count: int


#: The query parameters of Following and Discover, which read them themselves.
_PAGE_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Cursor"},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
        },
    ]
}


def _page_params(request: Request) -> tuple[str | None, int]:
    """``cursor`` and ``limit`` (1–50, default 20), read by hand: FastAPI's parameter
    handling for them was more than half of what a request for a kept page costs beyond the
    app's routing (in-process, best of 5 × 4,000 calls: 158–163 µs a request against 180–205
    with FastAPI's; ``/healthz`` 120–129). A bad ``limit`` is a 422 as FastAPI's was."""
    query = request.query_params
    raw = query.get("limit")
    if raw is None:
        return query.get("cursor"), 20
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 4 else 0
    if not 1 <= limit <= 50:
        error = {
            "loc": ("query", "limit"),
            "msg": "Input should be a whole number from 1 to 50",
            "type": "int_range",
            "input": raw,
        }
        raise RequestValidationError([error])
    return query.get("cursor"), limit


@router.get("/feed/following", response_model=Page[PostOut], openapi_extra=_PAGE_PARAMETERS)
async def following_feed(request: Request) -> Response:
    """Posts of the people I follow, newest first."""
    cursor, limit = _page_params(request)

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        assert viewer is not None
        return await service.following(ctx, uow, viewer, cursor, limit, feed_items)

    return await _feed_page(request, fetch, signed_in=True, kept=("following", cursor, limit))


@router.get("/feed/discover", response_model=Page[PostOut], openapi_extra=_PAGE_PARAMETERS)
async def discover_feed(request: Request) -> Response:
    """Everyone's posts by recency and engagement, at most two in a row by one maker."""
    cursor, limit = _page_params(request)

    async def fetch(ctx: AppContext, uow: UnitOfWork, viewer: User | None) -> PageOf:
        return await service.discover(ctx, uow, viewer, cursor, limit, feed_items)

    return await _feed_page(request, fetch, kept=("discover", cursor, limit))


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
