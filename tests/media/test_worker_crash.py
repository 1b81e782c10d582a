"""``kill -9`` of a worker mid-transcode ends in exactly one finished result and no partial
files: the job's lease lapses, another worker runs it again and clears the dead attempt."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.ids import uuid7
from craftreel.core.jobs import Job, JobStatus
from craftreel.media.models import MediaObject, MediaStatus
from tests.media import media_factory

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def start_worker(
    settings: Settings, backend: str, redis_url: str | None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRAFTREEL_DEMO_MODE": "true",
        "CRAFTREEL_VAR_DIR": str(settings.var_dir),
        "CRAFTREEL_DATABASE_URL": settings.effective_database_url,
        "CRAFTREEL_JOB_LEASE_SECONDS": "10",
        "CRAFTREEL_JOBS_BACKEND": backend,
        "CRAFTREEL_LOG_LEVEL": "WARNING",
    }
    if redis_url:
        env["CRAFTREEL_REDIS_URL"] = redis_url
    return subprocess.Popen(
        [sys.executable, "-m", "craftreel.cli_main", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _media(ctx: AppContext, media_id: UUID) -> MediaObject:
    async with ctx.sessions() as session:
        media = await session.get(MediaObject, media_id)
    assert media is not None
    return media


async def _wait_for(ctx: AppContext, media_id: UUID, check: object, seconds: float) -> MediaObject:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        media = await _media(ctx, media_id)
        if check(media):  # type: ignore[operator]
            return media
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out; media is {media.status}, prefix {media.output_prefix}")


@pytest.mark.parametrize("jobs_backend", ["inprocess", "redis"])
async def test_killed_worker_leaves_one_result_and_no_partial_files(
    ctx: AppContext, settings: Settings, tmp_path: Path, jobs_backend: str
) -> None:
    redis_url = os.environ.get("CRAFTREEL_TEST_REDIS_URL") if jobs_backend == "redis" else None
    if jobs_backend == "redis" and not redis_url:
        pytest.skip("CRAFTREEL_TEST_REDIS_URL is not set")
    clip = await asyncio.to_thread(media_factory.landscape_video, tmp_path, 8, 1280, 720)
    media_id = uuid7()
    async with ctx.uow() as uow:
        owner = User(
            email="w@example.org",
            email_normalized="w@example.org",
            handle="worker_owner",
            handle_normalized="worker_owner",
            display_name="W",
            links=[],
        )
        uow.session.add(owner)
        await uow.session.flush()
        media = MediaObject(
            id=media_id,
            owner_id=owner.id,
            kind="video",
            status=MediaStatus.PROCESSING,
            upload_length=clip.stat().st_size,
            upload_offset=clip.stat().st_size,
            source_key=f"media/{media_id}/source",
            renditions=[],
            assets={},
        )
        uow.session.add(media)
    await ctx.storage.put_file(media.source_key, clip, "video/mp4")

    first = start_worker(settings, jobs_backend, redis_url)
    second: subprocess.Popen[bytes] | None = None
    try:
        if redis_url:
            from craftreel.core.jobs_arq import ArqNotifier

            ctx.jobs.notifier = await ArqNotifier.connect(redis_url)
        async with ctx.uow() as uow:
            ctx.jobs.enqueue(uow, "media.process", {"media_id": str(media_id)})
        # Kill the first worker once it is transcoding (its attempt has written output).
        await _wait_for(ctx, media_id, lambda m: m.playable, 60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        dead_prefix = (await _media(ctx, media_id)).output_prefix
        assert dead_prefix == f"media/{media_id}/r1"

        second = start_worker(settings, jobs_backend, redis_url)
        done = await _wait_for(ctx, media_id, lambda m: m.status == MediaStatus.READY, 120)
        # The job row is marked done just after the media row turns ready.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with ctx.sessions() as session:
                statuses = (
                    await session.scalars(select(Job.status).where(Job.kind == "media.process"))
                ).all()
            if statuses == [JobStatus.DONE]:
                break
            await asyncio.sleep(0.1)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
        if ctx.jobs.notifier is not None:
            await ctx.jobs.notifier.close()  # type: ignore[attr-defined]
            ctx.jobs.notifier = None

    assert done.output_prefix == f"media/{media_id}/r2"
    assert [r["name"] for r in done.renditions] == ["360p", "720p"]
    media_root = settings.media_dir / "media" / str(media_id)
    # Exactly one finished result: the dead attempt's files are gone, nothing half-made remains.
    assert sorted(p.name for p in media_root.iterdir()) == ["r2", "source"]
    assert not list(settings.work_dir.glob(f"{media_id}-*"))
    for rendition in done.renditions:
        assert (settings.media_dir / rendition["playlist"]).is_file()
    async with ctx.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "media.process"))).all()
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.DONE, 2)]
