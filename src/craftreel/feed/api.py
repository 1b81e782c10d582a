"""Timelines JSON API: Following, Discover, hashtag feeds and makers' profile grids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

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


#: The paths whose pages are kept, and their feeds.
_KEPT_PATHS = {"/api/v1/feed/following": "following", "/api/v1/feed/discover": "discover"}


@dataclass(frozen=True)
class _Route:
    """What the request metrics read of a route: its path."""

    path: str


class KeptPages:
    """ASGI middleware: a request for a kept Following or Discover page is answered before
    routing when its reader is known without the database — a bearer token whose session was
    read moments ago (``accounts.service.known_identity``), or for Discover no one signed in
    (no token, no session cookie) — and its query is plainly ``cursor`` and ``limit``. Any
    other request, and any page not kept, goes on to the app, which reads the page, keeps it,
    and answers a bad request as it always does.

    Routing, FastAPI's handling of a request and the unit of work are most of what such a
    request would otherwise cost: in-process, 85 µs a request answered here, 158–163 µs by the
    route without a unit of work, 360–390 µs with one (``/healthz``, which only routes:
    120–140 µs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        feed = _KEPT_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        body = _kept_page(scope, feed) if feed is not None and scope["method"] == "GET" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _Route(scope["path"])
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_SESSION_COOKIE = SESSION_COOKIE.encode()


def _kept_page(scope: Scope, feed: str) -> bytes | None:
    ctx: AppContext = scope["app"].state.ctx
    query = _page_query(scope["query_string"])
    if query is None or not ctx.pages.enabled:
        return None
    authorization: str | None = None
    session_cookie = False
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:  # the first, as the app reads
            authorization = value.decode("latin-1")
        elif name == b"cookie" and _SESSION_COOKIE in value:
            session_cookie = True
    reader: UUID | None = None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        identity = accounts.known_identity(ctx, token.strip())
        if identity is None:
            return None
        reader = identity.user.id
    elif feed == "following" or session_cookie:
        return None
    cursor, limit = query
    return ctx.pages.get((feed, reader, cursor, limit), ctx.pages.seen(feed, reader))


def _page_query(raw: bytes) -> tuple[str | None, int] | None:
    """``cursor`` and ``limit`` from a query string of those two at most, each once, the limit
    plainly 1–50 (read as FastAPI reads them); None for anything else."""
    cursor: str | None = None
    limit = 20
    seen = set()
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return None
        seen.add(name)
        if name == "cursor":
            cursor = value
        elif name == "limit" and value.isascii() and value.isdigit() and 1 <= int(value) <= 50:
            limit = int(value)
        else:
            return None
    return cursor, limit


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

    return await _feed_page(request, fetch, signed_in=True, kept=("following", cursor, limit))


@router.get("/feed/discover", response_model=Page[PostOut])
async def discover_feed(request: Request, cursor: str | None = None, limit: Limit = 20) -> Response:
    """Everyone's posts by recency and engagement, at most two in a row by one maker."""

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
