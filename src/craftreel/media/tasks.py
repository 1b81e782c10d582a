"""Media jobs: turn a finished upload into what is served, and sweep lapsed uploads.

Each attempt writes into a work folder and an output prefix of its own (``media/<id>/r<n>``)
and every database update is fenced on that prefix, so an attempt whose process died can
never overwrite a later one's result; the next attempt removes its leftovers first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import delete, update

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.jobs import JobRun
from craftreel.core.storage import content_type_for
from craftreel.media import processing, uploads
from craftreel.media.models import MediaKind, MediaObject, MediaStatus
from craftreel.media.probe import Limits, MediaRejected, ProbeResult, probe

log = logging.getLogger(__name__)


def register(ctx: AppContext) -> None:
    """Media's job handlers."""

    async def process(run: JobRun) -> None:
        await process_media(ctx, run)

    async def delete(run: JobRun) -> None:
        await delete_media(ctx, UUID(str(run.payload["media_id"])))

    ctx.jobs.register("media.process", process)
    ctx.jobs.register("media.delete", delete)


class Attempt:
    """One processing attempt: its output prefix, its work folder, its fenced updates."""

    def __init__(self, ctx: AppContext, media: MediaObject, run: JobRun) -> None:
        self.ctx = ctx
        self.media = media
        self.run = run
        self.prefix = f"media/{media.id}/r{run.attempt}"
        # Absolute, so that a file made under it is told from one named relative to ``out``
        # (``publish``) also when CRAFTREEL_VAR_DIR is relative, as ``make run`` has it.
        self.work = (ctx.settings.work_dir / f"{media.id}-r{run.attempt}").absolute()
        self.out = self.work / "out"

    async def update(self, **values: Any) -> None:
        """Write to the media row, only if this attempt still owns it."""
        await self.run.still_mine()
        settles = (values.get("playable") is True and not self.media.playable) or values.get(
            "status"
        ) == MediaStatus.FAILED
        async with self.ctx.uow() as uow:
            result = await uow.session.execute(
                update(MediaObject)
                .where(
                    MediaObject.id == self.media.id,
                    MediaObject.output_prefix == self.prefix,
                    MediaObject.status == MediaStatus.PROCESSING,
                )
                .values(**values)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise LookupError("the media object moved on without this attempt")
            if settles:
                # Whatever waits for this media (a post to publish when ready) hears of it
                # in the same transaction that makes it playable or failed.
                self.ctx.jobs.enqueue(uow, "media.settled", {"media_id": str(self.media.id)})
        for name, value in values.items():
            setattr(self.media, name, value)

    async def publish(self, *paths: Path) -> list[str]:
        """Upload files from the output folder under this attempt's prefix."""
        keys = []
        for path in paths:
            relative = path.relative_to(self.out) if path.is_absolute() else path
            key = f"{self.prefix}/{relative.as_posix()}"
            await self.ctx.storage.put_file(key, self.out / relative, content_type_for(key))
            keys.append(key)
        return keys


async def process_media(ctx: AppContext, run: JobRun) -> None:
    """Check a finished upload by content, then make its renditions (smallest rung first)."""
    media_id = UUID(str(run.payload["media_id"]))
    async with ctx.sessions() as session:
        media = await session.get(MediaObject, media_id)
    if media is None or media.status != MediaStatus.PROCESSING:
        return
    attempt = Attempt(ctx, media, run)
    await _clear_earlier_attempts(ctx, media, run.attempt)
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(MediaObject)
            .where(MediaObject.id == media.id, MediaObject.status == MediaStatus.PROCESSING)
            .values(output_prefix=attempt.prefix, playable=False, renditions=[], assets={})
        )
    media.playable, media.renditions, media.assets = False, [], {}
    await asyncio.to_thread(attempt.out.mkdir, parents=True, exist_ok=True)
    try:
        source = await ctx.storage.fetch(media.source_key, attempt.work / "source")
        limits = Limits(
            max_pixels=ctx.settings.media_max_pixels,
            max_duration_s=float(ctx.settings.media_max_duration_seconds),
        )
        try:
            kind = MediaKind(media.kind)
            found = await asyncio.to_thread(probe, source, kind, limits)
        except MediaRejected as rejected:
            await _reject(ctx, attempt, rejected)
            return
        await attempt.update(
            mime=found.mime, duration_s=found.duration_s, width=found.width, height=found.height
        )
        ffmpeg = processing.ffmpeg_path(ctx.settings.ffmpeg_path)
        if media.kind == MediaKind.VIDEO:
            await _video(attempt, ffmpeg, source, found)
        elif media.kind == MediaKind.AUDIO:
            await _audio(attempt, ffmpeg, source)
        else:
            await _image(attempt, source, limits)
        await attempt.update(status=MediaStatus.READY, processed_at=utcnow())
        log.info("media ready", extra={"media_id": str(media.id), "kind": media.kind})
    finally:
        await asyncio.to_thread(shutil.rmtree, attempt.work, True)


async def _clear_earlier_attempts(ctx: AppContext, media: MediaObject, attempt: int) -> None:
    """Remove what attempts that died left behind, on disk and in storage."""
    for earlier in range(1, attempt):
        await ctx.storage.delete_prefix(f"media/{media.id}/r{earlier}")
        await asyncio.to_thread(
            shutil.rmtree, ctx.settings.work_dir / f"{media.id}-r{earlier}", True
        )


async def _reject(ctx: AppContext, attempt: Attempt, rejected: MediaRejected) -> None:
    """Not what it claims to be: say why on the object, serve nothing of it."""
    await attempt.update(
        status=MediaStatus.FAILED,
        failure_code=rejected.code,
        failure_message=rejected.message[:300],
        processed_at=utcnow(),
    )
    await ctx.storage.delete(attempt.media.source_key)
    await ctx.storage.delete_prefix(attempt.prefix)
    log.info("media rejected", extra={"media_id": str(attempt.media.id), "code": rejected.code})


def _rendition_row(attempt: Attempt, rendition: processing.Rendition) -> dict[str, Any]:
    return {
        "name": rendition.name,
        "width": rendition.width or 0,
        "height": rendition.height or 0,
        "bandwidth": rendition.bandwidth,
        "playlist": f"{attempt.prefix}/{rendition.playlist.as_posix()}",
    }


async def _publish_ladder(attempt: Attempt, made: list[processing.Rendition]) -> None:
    """Upload the newest rung and a master playlist listing every rung made so far."""
    await attempt.publish(*made[-1].files)
    master = await asyncio.to_thread(processing.write_master_playlist, attempt.out, made)
    [master_key] = await attempt.publish(master)
    assets = dict(attempt.media.assets or {}, master=master_key)
    await attempt.update(
        playable=True, renditions=[_rendition_row(attempt, r) for r in made], assets=assets
    )


async def _video(attempt: Attempt, ffmpeg: str, source: Path, found: ProbeResult) -> None:
    assert found.width is not None and found.height is not None
    duration = found.duration_s or 0.0
    rungs = processing.ladder_for(found.width, found.height)
    made = [await processing.transcode_rung(ffmpeg, source, attempt.out, rungs[0], found)]
    # The smallest rung plays as soon as it exists; the rest follow.
    await _publish_ladder(attempt, made)
    poster = await processing.make_poster(ffmpeg, source, attempt.out / "poster.jpg", duration)
    sprite, vtt = await processing.make_sprite(ffmpeg, source, attempt.out / "thumbs", duration)
    poster_key, _, sprite_key, vtt_key = await attempt.publish(
        poster.jpeg, poster.webp, attempt.out / "thumbs" / sprite, attempt.out / "thumbs" / vtt
    )
    await attempt.update(
        assets=dict(attempt.media.assets, poster=poster_key, thumbnails=vtt_key, sprite=sprite_key)
    )
    for rung in rungs[1:]:
        made.append(await processing.transcode_rung(ffmpeg, source, attempt.out, rung, found))
        await _publish_ladder(attempt, made)


async def _audio(attempt: Attempt, ffmpeg: str, source: Path) -> None:
    rendition = await processing.audio_hls(ffmpeg, source, attempt.out)
    await _publish_ladder(attempt, [rendition])
    peaks = await asyncio.to_thread(processing.waveform_peaks, source)
    waveform = attempt.out / "waveform.json"
    await asyncio.to_thread(waveform.write_text, json.dumps({"peaks": peaks}))
    [key] = await attempt.publish(waveform)
    await attempt.update(assets=dict(attempt.media.assets, waveform=key))


async def _image(attempt: Attempt, source: Path, limits: Limits) -> None:
    result = await asyncio.to_thread(
        processing.image_variants, source, attempt.out, max_pixels=limits.max_pixels
    )
    keys = await attempt.publish(*(v.path for v in result.variants))
    variants = [
        {"width": v.width, "height": v.height, "format": v.format, "key": key}
        for v, key in zip(result.variants, keys, strict=True)
    ]
    jpegs = [
        (v.width, key) for v, key in zip(result.variants, keys, strict=True) if v.format == "jpeg"
    ]
    largest = max(jpegs)[1]
    await attempt.update(
        width=result.width,
        height=result.height,
        playable=True,
        assets={"variants": variants, "blurhash": result.blurhash, "poster": largest},
    )


async def delete_media(ctx: AppContext, media_id: UUID) -> None:
    """Remove a media object no longer used (its post was deleted): files first, then the
    row, so a crash in between only leaves a row the next attempt removes."""
    async with ctx.sessions() as session:
        media = await session.get(MediaObject, media_id)
    if media is None:
        return
    await uploads.discard_upload(ctx, media)
    await ctx.storage.delete_prefix(f"media/{media_id}")
    async with ctx.uow() as uow:
        await uow.session.execute(delete(MediaObject).where(MediaObject.id == media_id))
    log.info("media deleted", extra={"media_id": str(media_id)})


async def sweep_uploads(ctx: AppContext) -> int:
    """Remove lapsed uploads (run periodically by whichever process runs jobs)."""
    return await uploads.expire(ctx)
