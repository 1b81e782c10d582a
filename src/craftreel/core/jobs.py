"""Background jobs whose state lives in the database.

A job is a row first (written in the same transaction as the change that needs it), then a
message to a runner: the in-process runner inside ``craftreel serve`` by default, or an arq
queue on Redis served by ``craftreel worker`` processes. Runners only carry job ids; the row
decides. A running job holds a lease it keeps renewing; when its process dies the lease lapses
and a sweep runs the job again, so a restart loses nothing. Failures retry with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import JSON, Index, String, Uuid, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base, UnitOfWork
from craftreel.core.ids import uuid7

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    kind: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class LeaseLost(Exception):
    """Another runner took this job (our lease lapsed); stop without writing results."""


@dataclass
class JobRun:
    """What a handler gets: the job, its attempt number and a way to check it still owns it."""

    job_id: UUID
    kind: str
    payload: dict[str, Any]
    attempt: int
    worker_id: str
    queue: JobQueue
    max_attempts: int = 1

    @property
    def last_attempt(self) -> bool:
        """No retry follows if this attempt fails (a handler may then record a final outcome)."""
        return self.attempt >= self.max_attempts

    async def still_mine(self) -> None:
        """Raise LeaseLost if another runner has taken this job."""
        if not await self.queue.owns(self.job_id, self.worker_id):
            raise LeaseLost(str(self.job_id))


Handler = Callable[[JobRun], Awaitable[None]]


class JobNotifier(Protocol):
    async def notify(self, job_id: UUID, run_at: datetime) -> None:
        """Tell a runner a job is ready (or will be at ``run_at``)."""
        ...


def retry_delay(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, … capped at 10 minutes."""
    return timedelta(seconds=min(600, 5 * 2 ** max(0, attempts - 1)))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid7().hex[-6:]}"


@dataclass
class JobQueue:
    """Enqueue inside a unit of work; claim, run, retry and sweep against the jobs table."""

    sessions: async_sessionmaker[AsyncSession]
    lease_seconds: int = 120
    max_attempts: int = 5
    handlers: dict[str, Handler] = field(default_factory=dict)
    notifier: JobNotifier | None = None

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def enqueue(
        self,
        uow: UnitOfWork,
        kind: str,
        payload: dict[str, Any],
        *,
        run_at: datetime | None = None,
        dedupe_key: str | None = None,
        max_attempts: int | None = None,
    ) -> UUID:
        """Add a job with the current transaction; runners hear of it once that commits.
        ``max_attempts`` overrides the queue's (the setting) for this job."""
        job = Job(
            id=uuid7(),
            kind=kind,
            payload=payload,
            run_at=run_at or utcnow(),
            max_attempts=max_attempts or self.max_attempts,
            dedupe_key=dedupe_key,
        )
        uow.session.add(job)
        uow.after_commit(self._notify, job.id, job.run_at)
        return job.id

    async def _notify(self, job_id: UUID, run_at: datetime) -> None:
        if self.notifier is not None:
            await self.notifier.notify(job_id, run_at)

    async def claim(self, job_id: UUID, worker_id: str) -> Job | None:
        """Take a due job, or one whose runner's lease lapsed. None if someone else has it."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    or_(
                        and_(Job.status == JobStatus.QUEUED, Job.run_at <= now),
                        and_(Job.status == JobStatus.RUNNING, Job.locked_until < now),
                    ),
                )
                .values(
                    status=JobStatus.RUNNING,
                    attempts=Job.attempts + 1,
                    locked_by=worker_id,
                    locked_until=now + timedelta(seconds=self.lease_seconds),
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            return await session.get(Job, job_id)

    async def owns(self, job_id: UUID, worker_id: str) -> bool:
        async with self.sessions() as session:
            holder = await session.scalar(
                select(Job.locked_by).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            )
        return holder == worker_id

    async def _renew(self, job_id: UUID, worker_id: str) -> bool:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id, Job.locked_by == worker_id, Job.status == JobStatus.RUNNING
                )
                .values(locked_until=utcnow() + timedelta(seconds=self.lease_seconds))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _finish(self, job_id: UUID, worker_id: str, values: dict[str, Any]) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Job)
                .where(
                    Job.id == job_id, Job.locked_by == worker_id, Job.status == JobStatus.RUNNING
                )
                .values(**values)
            )

    async def run(self, job_id: UUID, worker_id: str) -> str | None:
        """Claim and run one job; returns its new status, or None if it was not ours to run."""
        job = await self.claim(job_id, worker_id)
        if job is None:
            return None
        handler = self.handlers.get(job.kind)
        run = JobRun(
            job.id, job.kind, dict(job.payload), job.attempts, worker_id, self, job.max_attempts
        )
        task = asyncio.create_task(self._call(handler, run))
        renewer = asyncio.create_task(self._keep_lease(job.id, worker_id, task))
        error: BaseException | None = None
        try:
            await task
        except LeaseLost:
            log.warning("job lease lost", extra={"job_id": str(job.id), "kind": job.kind})
            return None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                # The renewer cancelled the handler: another runner holds the job now.
                log.warning("job lease lost", extra={"job_id": str(job.id), "kind": job.kind})
                return None
            # This process is shutting down: hand the job back for the next runner.
            await self._finish(
                job.id,
                worker_id,
                {
                    "status": JobStatus.QUEUED,
                    "run_at": utcnow(),
                    "locked_by": None,
                    "locked_until": None,
                    "attempts": job.attempts - 1,
                },
            )
            raise
        except Exception as exc:  # every failure is recorded and retried
            error = exc
        finally:
            renewer.cancel()
        now = utcnow()
        if error is None:
            await self._finish(
                job.id,
                worker_id,
                {
                    "status": JobStatus.DONE,
                    "finished_at": now,
                    "locked_until": None,
                    "last_error": None,
                },
            )
            log.info("job done", extra={"job_id": str(job.id), "kind": job.kind})
            return JobStatus.DONE
        message = f"{type(error).__name__}: {error}"[:1000]
        gave_up = job.attempts >= job.max_attempts or handler is None
        log.warning(
            "job failed",
            extra={
                "job_id": str(job.id),
                "kind": job.kind,
                "attempt": job.attempts,
                "error": message,
                "final": gave_up,
            },
        )
        retry_at = now + retry_delay(job.attempts)
        await self._finish(
            job.id,
            worker_id,
            {
                "status": JobStatus.FAILED if gave_up else JobStatus.QUEUED,
                "last_error": message,
                "locked_by": None,
                "locked_until": None,
                "run_at": retry_at,
                "finished_at": now if gave_up else None,
            },
        )
        if not gave_up:
            await self._notify(job.id, retry_at)
        return JobStatus.FAILED if gave_up else JobStatus.QUEUED

    async def _call(self, handler: Handler | None, run: JobRun) -> None:
        if handler is None:
            raise LookupError(f"no handler for job kind {run.kind!r}")
        await handler(run)

    async def _keep_lease(self, job_id: UUID, worker_id: str, task: asyncio.Task[None]) -> None:
        while not task.done():
            await asyncio.sleep(max(1.0, self.lease_seconds / 3))
            if not await self._renew(job_id, worker_id):
                task.cancel()
                return

    async def due(self, limit: int = 100) -> list[UUID]:
        """Jobs that should be running now: due, or abandoned by a dead runner."""
        now = utcnow()
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Job.id)
                .where(
                    or_(
                        and_(Job.status == JobStatus.QUEUED, Job.run_at <= now),
                        and_(Job.status == JobStatus.RUNNING, Job.locked_until < now),
                    )
                )
                .order_by(Job.run_at)
                .limit(limit)
            )
            return list(rows.all())

    async def get(self, job_id: UUID) -> Job | None:
        async with self.sessions() as session:
            return await session.get(Job, job_id)


class InProcessRunner:
    """Runs jobs inside the web process: a few worker tasks fed by notifications and sweeps."""

    def __init__(self, queue: JobQueue, concurrency: int = 1, sweep_seconds: float = 2.0) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self.sweep_seconds = sweep_seconds
        self.worker_id = worker_name()
        self._ready: asyncio.Queue[UUID] = asyncio.Queue()
        self._pending: set[UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def notify(self, job_id: UUID, run_at: datetime) -> None:
        if run_at <= utcnow():
            self._offer(job_id)
        # A later job is picked up by the sweep once it is due.

    def _offer(self, job_id: UUID) -> None:
        if job_id not in self._pending:
            self._pending.add(job_id)
            self._ready.put_nowait(job_id)

    async def _work(self) -> None:
        while True:
            job_id = await self._ready.get()
            try:
                await self.queue.run(job_id, self.worker_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job runner error", extra={"job_id": str(job_id)})
            finally:
                self._pending.discard(job_id)

    async def _sweep(self) -> None:
        while True:
            try:
                for job_id in await self.queue.due():
                    self._offer(job_id)
            except Exception:
                log.exception("job sweep failed")
            await asyncio.sleep(self.sweep_seconds)

    def start(self) -> None:
        self.queue.notifier = self
        self._tasks = [
            asyncio.create_task(self._work(), name=f"job-worker-{n}")
            for n in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._sweep(), name="job-sweeper"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def idle(self) -> bool:
        """True when nothing is waiting, due or running."""
        if self._pending or await self.queue.due():
            return False
        async with self.queue.sessions() as session:
            running = await session.scalar(
                select(Job.id).where(Job.status == JobStatus.RUNNING).limit(1)
            )
        return running is None

    async def drain(self) -> None:
        """Wait until nothing is due or running (for tests and the demo seed)."""
        while not await self.idle():  # noqa: ASYNC110 - the state lives in the database
            await asyncio.sleep(0.05)
