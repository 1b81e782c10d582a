"""What runs in the background of a process: job runners and the mail sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from craftreel.context import AppContext
from craftreel.core.jobs import InProcessRunner
from craftreel.core.jobs_arq import ArqNotifier

log = logging.getLogger(__name__)


def register_job_handlers(ctx: AppContext) -> None:
    """Every feature's job handlers, by kind."""
    from craftreel.media import tasks as media_tasks
    from craftreel.posts import tasks as posts_tasks
    from craftreel.shop import payments_tasks
    from craftreel.shop import tasks as shop_tasks

    media_tasks.register(ctx)
    posts_tasks.register(ctx)
    shop_tasks.register(ctx)
    payments_tasks.register(ctx)


@dataclass
class Background:
    ctx: AppContext
    runner: InProcessRunner | None = None
    notifier: ArqNotifier | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.notifier is not None:
            await self.notifier.close()


Periodic = tuple[float, str, Callable[[], Awaitable[object]], bool]


async def _every(
    seconds: float, name: str, action: Callable[[], Awaitable[object]], at_start: bool
) -> None:
    """Run ``action`` every ``seconds`` (first right away when ``at_start``), logging (never
    dying of) failures."""
    if not at_start:
        await asyncio.sleep(seconds)
    while True:
        try:
            await action()
        except Exception:
            log.exception("periodic task failed", extra={"task": name})
        await asyncio.sleep(seconds)


def _periodic(ctx: AppContext) -> list[Periodic]:
    """Housekeeping that runs wherever jobs run. Lapsed uploads are swept at start (a crash may
    have left some), and so are live events past their retention (a cheap range delete on the
    primary key, so a process restarted often still prunes); rank scores are stored and set at
    publish, so their refresh waits a turn rather than rewriting two weeks of posts while the
    server starts."""
    from craftreel.feed.tasks import refresh_rank_scores
    from craftreel.media.tasks import sweep_uploads
    from craftreel.realtime.service import prune

    return [
        (600.0, "media.sweep_uploads", lambda: sweep_uploads(ctx), True),
        (
            3600.0,
            "realtime.prune_events",
            lambda: prune(ctx.sessions, ctx.settings.realtime_retention_days),
            True,
        ),
        (
            float(ctx.settings.rank_refresh_seconds),
            "feed.refresh_rank_scores",
            lambda: refresh_rank_scores(ctx),
            False,
        ),
    ]


async def start_background(ctx: AppContext, run_jobs: bool) -> Background:
    """Start the mail sweeper; send jobs to the Redis queue when configured; and when this
    process runs jobs (``serve`` on the in-process backend, or ``worker``), housekeeping too.
    """
    register_job_handlers(ctx)
    background = Background(ctx)
    # Retries failed mail and sends what a crashed process left queued.
    background.tasks.append(asyncio.create_task(ctx.outbox.run(), name="mail-outbox"))
    if ctx.settings.jobs_backend == "redis":
        assert ctx.settings.redis_url is not None  # the settings validator guarantees it
        background.notifier = await ArqNotifier.connect(ctx.settings.redis_url)
        ctx.jobs.notifier = background.notifier
    elif run_jobs:
        background.runner = InProcessRunner(ctx.jobs, ctx.settings.job_concurrency)
        background.runner.start()
    if run_jobs:
        for seconds, name, action, at_start in _periodic(ctx):
            background.tasks.append(
                asyncio.create_task(_every(seconds, name, action, at_start), name=name)
            )
    return background
