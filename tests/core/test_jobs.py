"""Background jobs: state in the database, retries, leases, both runners."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import update

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.jobs import InProcessRunner, Job, JobQueue, JobRun, JobStatus


async def _job(ctx: AppContext, job_id: UUID) -> Job:
    job = await ctx.jobs.get(job_id)
    assert job is not None
    return job


async def _enqueue(ctx: AppContext, kind: str, payload: dict[str, object] | None = None) -> UUID:
    async with ctx.uow() as uow:
        return ctx.jobs.enqueue(uow, kind, dict(payload or {}))


async def test_a_job_runs_once_its_transaction_commits(ctx: AppContext) -> None:
    seen: list[dict[str, object]] = []

    async def handler(run: JobRun) -> None:
        seen.append(run.payload)

    ctx.jobs.register("test.record", handler)
    runner = InProcessRunner(ctx.jobs, sweep_seconds=0.1)
    runner.start()
    try:

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            async with ctx.uow() as uow:
                ctx.jobs.enqueue(uow, "test.record", {"n": 0})
                raise Boom
        job_id = await _enqueue(ctx, "test.record", {"n": 1})
        await asyncio.wait_for(runner.drain(), 10)
    finally:
        await runner.stop()
    assert seen == [{"n": 1}]
    job = await _job(ctx, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 1)


async def test_a_failing_job_retries_with_backoff_then_gives_up(ctx: AppContext) -> None:
    calls = 0

    async def flaky(run: JobRun) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"attempt {run.attempt} failed")

    queue = JobQueue(ctx.sessions, lease_seconds=30, max_attempts=2, handlers={"test.flaky": flaky})
    async with ctx.uow() as uow:
        job_id = queue.enqueue(uow, "test.flaky", {})

    assert await queue.run(job_id, "w1") == JobStatus.QUEUED
    job = await _job(ctx, job_id)
    assert job.last_error == "RuntimeError: attempt 1 failed"
    assert job.run_at > utcnow()
    # Not due yet: a second runner cannot take it early.
    assert await queue.run(job_id, "w2") is None
    await _make_due(ctx, job_id)
    assert await queue.run(job_id, "w2") == JobStatus.FAILED
    job = await _job(ctx, job_id)
    assert (job.status, job.attempts, calls) == (JobStatus.FAILED, 2, 2)


async def _make_due(ctx: AppContext, job_id: UUID) -> None:
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job_id).values(run_at=utcnow() - timedelta(seconds=1))
        )


async def test_a_job_whose_runner_died_runs_again_after_its_lease(ctx: AppContext) -> None:
    done: list[str] = []

    async def handler(run: JobRun) -> None:
        done.append(run.worker_id)

    queue = JobQueue(ctx.sessions, lease_seconds=30, handlers={"test.lease": handler})
    async with ctx.uow() as uow:
        job_id = queue.enqueue(uow, "test.lease", {})
    # A runner claims it and dies (nothing more happens on its side).
    assert await queue.claim(job_id, "dead-worker") is not None
    assert job_id not in await queue.due()
    assert await queue.run(job_id, "w2") is None
    # Its lease lapses; the sweep sees the job again and another runner finishes it.
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == job_id).values(locked_until=utcnow() - timedelta(seconds=1))
        )
    assert job_id in await queue.due()
    assert await queue.run(job_id, "w2") == JobStatus.DONE
    assert done == ["w2"]
    job = await _job(ctx, job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)


async def test_a_runner_that_lost_its_lease_writes_nothing(ctx: AppContext) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(run: JobRun) -> None:
        started.set()
        await release.wait()
        await run.still_mine()

    queue = JobQueue(ctx.sessions, lease_seconds=30, handlers={"test.slow": slow})
    async with ctx.uow() as uow:
        job_id = queue.enqueue(uow, "test.slow", {})
    first = asyncio.create_task(queue.run(job_id, "slow-worker"))
    await started.wait()
    # The lease is taken over by another runner (as after a long pause).
    async with ctx.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(locked_by="other-worker"))
    release.set()
    assert await first is None
    job = await _job(ctx, job_id)
    assert (job.status, job.locked_by) == (JobStatus.RUNNING, "other-worker")


async def test_dedupe_key_makes_one_job(ctx: AppContext) -> None:
    from sqlalchemy.exc import IntegrityError

    async with ctx.uow() as uow:
        ctx.jobs.enqueue(uow, "test.once", {}, dedupe_key="once:1")
    with pytest.raises(IntegrityError):
        async with ctx.uow() as uow:
            ctx.jobs.enqueue(uow, "test.once", {}, dedupe_key="once:1")


async def test_arq_worker_runs_jobs_sent_through_redis(ctx: AppContext, redis_url: str) -> None:
    from redis.asyncio import Redis

    from craftreel.core.jobs_arq import QUEUE_NAME, ArqNotifier, build_worker

    flushed = Redis.from_url(redis_url)
    await flushed.delete(QUEUE_NAME)
    await flushed.aclose()
    seen: list[object] = []

    async def handler(run: JobRun) -> None:
        seen.append(run.payload["n"])

    ctx.jobs.register("test.arq", handler)
    notifier = await ArqNotifier.connect(redis_url)
    ctx.jobs.notifier = notifier
    worker = build_worker(ctx.jobs, redis_url, concurrency=2)
    task = asyncio.create_task(worker.async_run())
    try:
        ids = [await _enqueue(ctx, "test.arq", {"n": n}) for n in range(3)]
        for _ in range(200):
            jobs = [await _job(ctx, i) for i in ids]
            if all(j.status == JobStatus.DONE for j in jobs):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()
        await notifier.close()
    assert sorted(seen) == [0, 1, 2]  # type: ignore[type-var]
