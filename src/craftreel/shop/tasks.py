"""Shop jobs."""

from __future__ import annotations

from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.jobs import JobRun
from craftreel.shop import service


def register(ctx: AppContext) -> None:
    async def expire_checkout(run: JobRun) -> None:
        async with ctx.uow() as uow:
            await service.expire_checkout(uow, UUID(str(run.payload["checkout_id"])))

    ctx.jobs.register("shop.expire_checkout", expire_checkout)
