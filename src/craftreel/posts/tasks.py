"""Posts jobs: scheduled publishing, and publishing posts whose media just became playable."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.jobs import JobRun
from craftreel.posts import service

log = logging.getLogger(__name__)


def register(ctx: AppContext) -> None:
    async def scheduled(run: JobRun) -> None:
        post_id = UUID(str(run.payload["post_id"]))
        at = datetime.fromisoformat(str(run.payload["at"]))
        async with ctx.uow() as uow:
            outcome = await service.publish_scheduled(uow, post_id, at)
        log.info("scheduled publish", extra={"post_id": str(post_id), "outcome": outcome})

    async def media_settled(run: JobRun) -> None:
        async with ctx.uow() as uow:
            published = await service.media_settled(uow, UUID(str(run.payload["media_id"])))
        if published:
            log.info("published when ready", extra={"count": published})

    ctx.jobs.register("posts.publish_scheduled", scheduled)
    ctx.jobs.register("media.settled", media_settled)
