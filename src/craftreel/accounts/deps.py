"""Who is asking: bearer tokens for the API, the session cookie for pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from craftreel.accounts import service
from craftreel.accounts.models import User
from craftreel.accounts.service import Client, Identity
from craftreel.core.errors import NotAuthenticated
from craftreel.core.web import verify_csrf
from craftreel.deps import Ctx, Uow

SESSION_COOKIE = "cr_session"


async def client_of(request: Request) -> Client:  # async: no worker thread
    ip = request.client.host if request.client else "unknown"
    return Client(ip=ip, device=request.headers.get("user-agent", "")[:200])


async def _bearer_identity(request: Request, ctx: Ctx, uow: Uow) -> Identity | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    identity = await service.authenticate_access_token(uow, ctx, token.strip())
    request.state.user = service.summary(ctx, identity.user)
    return identity


async def api_identity(request: Request, ctx: Ctx, uow: Uow) -> Identity:
    identity = await _bearer_identity(request, ctx, uow)
    if identity is None:
        raise NotAuthenticated()
    return identity


async def api_user(identity: Annotated[Identity, Depends(api_identity, scope="function")]) -> User:
    return identity.user


async def api_optional_user(request: Request, ctx: Ctx, uow: Uow) -> User | None:
    identity = await _bearer_identity(request, ctx, uow)
    return identity.user if identity else None


async def web_optional_identity(request: Request, ctx: Ctx, uow: Uow) -> Identity | None:
    """The browser's signed-in person, if any. Templates get a plain summary of them (not the
    database row), which stays readable even after the request's transaction rolled back."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        identity = await service.authenticate_web_cookie(uow, cookie)
    except NotAuthenticated:
        request.state.clear_session_cookie = True
        return None
    request.state.user = service.summary(ctx, identity.user)
    request.state.identity = identity
    if not request.url.path.startswith("/api/"):
        # What other features add to every page's app bar (the cart count): each one cheap
        # query, registered in app.py as app.state.page_extras.
        for extra in getattr(request.app.state, "page_extras", ()):
            await extra(request, uow, identity.user)
    return identity


async def web_identity(
    identity: Annotated[Identity | None, Depends(web_optional_identity, scope="function")],
) -> Identity:
    if identity is None:
        raise NotAuthenticated()
    return identity


async def api_or_web_user(request: Request, ctx: Ctx) -> User:
    """A bearer token, or the browser's session cookie plus its CSRF header (for uploads and
    other endpoints the web app's scripts call directly).

    It checks in a transaction of its own that ends before the handler runs, so a handler
    that streams for minutes (an upload) holds no database connection or lock meanwhile.
    """
    async with ctx.uow() as uow:
        identity = await _bearer_identity(request, ctx, uow)
        if identity is None:
            identity = await web_optional_identity(request, ctx, uow)
    if identity is None:
        raise NotAuthenticated()
    if not request.headers.get("authorization"):
        await verify_csrf(request)
    return identity.user


async def api_or_web_optional_user(request: Request, ctx: Ctx, uow: Uow) -> User | None:
    """For reads the web app's scripts make: a bearer token or the session cookie, or no one.
    (Reads change nothing, so no CSRF check.)"""
    identity = await _bearer_identity(request, ctx, uow)
    if identity is None:
        identity = await web_optional_identity(request, ctx, uow)
    return identity.user if identity else None


ApiIdentity = Annotated[Identity, Depends(api_identity, scope="function")]
ApiUser = Annotated[User, Depends(api_user, scope="function")]
ApiOptionalUser = Annotated[User | None, Depends(api_optional_user, scope="function")]
ApiOrWebUser = Annotated[User, Depends(api_or_web_user)]
ApiOrWebOptionalUser = Annotated[User | None, Depends(api_or_web_optional_user, scope="function")]
WebIdentity = Annotated[Identity, Depends(web_identity, scope="function")]
WebOptionalIdentity = Annotated[Identity | None, Depends(web_optional_identity, scope="function")]
ClientInfo = Annotated[Client, Depends(client_of)]
