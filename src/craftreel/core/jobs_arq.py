"""The Redis-backed runner: arq carries job ids between ``serve`` and ``craftreel worker``.

arq (asyncio, Redis, maintained) fits our async stack and does only what we need from a
queue: deliver an id to some worker, soon, at a given time. Everything that must not be lost
— status, attempts, leases, results — stays in the jobs table, so a flushed Redis or a dead
worker loses nothing: the sweep re-sends what the table says is due.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from arq import cron, func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker

from craftreel.core.clock import utcnow
from craftreel.core.jobs import JobQueue, worker_name

log = logging.getLogger(__name__)

QUEUE_NAME = "craftreel:jobs"


class ArqNotifier:
    """Sends job ids to the arq queue."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, redis_url: str) -> ArqNotifier:
        return cls(
            await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
        )

    async def notify(self, job_id: UUID, run_at: datetime, tag: str = "new") -> None:
        await self.pool.enqueue_job(
            "run_job",
            str(job_id),
            _job_id=f"{job_id}:{tag}:{int(run_at.timestamp())}",
            _defer_until=run_at if run_at > utcnow() else None,
        )

    async def close(self) -> None:
        await self.pool.aclose()


def build_worker(queue: JobQueue, redis_url: str, concurrency: int) -> Worker:
    """An arq worker that runs our jobs by id and sweeps the table for lost or due ones."""
    worker_id = worker_name()

    async def run_job(ctx: dict[str, Any], job_id: str) -> None:
        await queue.run(UUID(job_id), worker_id)

    async def sweep(ctx: dict[str, Any]) -> None:
        notifier = ArqNotifier(ctx["redis"])
        # Only jobs due a while ago: fresh ones already have their message on the way.
        cutoff = utcnow() - timedelta(seconds=10)
        minute = utcnow().replace(second=0, microsecond=0)
        for job_id in await queue.due():
            job = await queue.get(job_id)
            if job is not None and job.run_at <= cutoff:
                await notifier.notify(job_id, minute, tag="sweep")

    return Worker(
        functions=[func(run_job, name="run_job", keep_result=0, max_tries=1)],
        cron_jobs=[cron(sweep, second=set(range(0, 60, 5)), run_at_startup=True)],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=QUEUE_NAME,
        max_jobs=concurrency,
        job_timeout=6 * 3600,
        keep_result=0,
        handle_signals=True,
        poll_delay=0.2,
    )
