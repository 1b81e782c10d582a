"""Request dependencies shared by every feature: the app context and the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """One transaction per request, committed before the response is sent."""
    async with get_ctx(request).uow() as uow:
        yield uow


Ctx = Annotated[AppContext, Depends(get_ctx)]
# scope="function": commit (or roll back) as soon as the handler returns, before the response
# goes out, so a client never sees success for a write that then failed to commit.
Uow = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
