"""Request dependencies shared by every feature: the app context and the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork

_READS = frozenset({"GET", "HEAD"})
_WRITES_ON_GET = "craftreel_writes_on_get"
F = TypeVar("F", bound=Callable[..., Any])


async def get_ctx(request: Request) -> AppContext:
    # async on purpose: FastAPI runs a plain-function dependency in a worker thread.
    ctx: AppContext = request.app.state.ctx
    return ctx


def writes_on_get(endpoint: F) -> F:
    """Mark a GET handler that changes something by design (an emailed link being used), so
    its unit of work takes the write lock like any POST's."""
    setattr(endpoint, _WRITES_ON_GET, True)
    return endpoint


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """One transaction per request, committed before the response is sent; read-only for
    GET and HEAD unless the handler is marked :func:`writes_on_get` (see ``UnitOfWork``)."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    read_only = request.method in _READS and not getattr(endpoint, _WRITES_ON_GET, False)
    async with (await get_ctx(request)).uow(read_only=read_only) as uow:
        yield uow


Ctx = Annotated[AppContext, Depends(get_ctx)]
# scope="function": commit (or roll back) as soon as the handler returns, before the response
# goes out, so a client never sees success for a write that then failed to commit.
Uow = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
