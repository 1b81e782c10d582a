"""Resumable uploads (tus 1.0): bytes stream to a spool on disk, then to storage in parts.

The database row holds the offset the server has acknowledged. Bytes reach disk (fsynced)
before the offset that covers them is committed, so after a crash — even ``kill -9`` mid-PATCH
— the row's offset is always safe to resume from: anything past it is cut off and resent.
Nothing is held in memory beyond one network chunk; storage receives parts of
``upload_part_mib`` MiB (S3 multipart), so a 4 GiB upload never needs 4 GiB of anything but disk.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from uuid import UUID

from sqlalchemy import select, update

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, DomainError, InvalidInput, NotFound, PayloadTooLarge
from craftreel.core.ids import uuid7
from craftreel.media.models import MediaKind, MediaObject, MediaStatus, UploadPart

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class UploadNotFound(NotFound):
    """No such upload, or not yours."""

    code = "upload_not_found"
    message = "That upload does not exist."


class UploadExpired(DomainError):
    """The upload lapsed and its bytes were removed."""

    status_code = 410
    code = "upload_expired"
    message = "That upload expired. Start it again."


class OffsetMismatch(Conflict):
    """A PATCH did not start where the server's copy ends."""

    code = "offset_mismatch"
    message = "The upload offset does not match the server's."


class UploadTooLarge(PayloadTooLarge):
    """The upload is (or would become) larger than allowed."""

    code = "upload_too_large"
    message = "That file is larger than allowed for its kind."


class UploadBusy(DomainError):
    """Another request is writing to this upload right now."""

    status_code = 423
    code = "upload_busy"
    message = "This upload is already receiving data. Try again in a moment."


class UploadClosed(Conflict):
    """The upload is complete; no more bytes are taken."""

    code = "upload_closed"
    message = "This upload is already complete."


class EmptyUpload(InvalidInput):
    """A 0-byte file was offered."""

    code = "empty_upload"
    message = "That file is empty."


class UnsupportedKind(InvalidInput):
    """The upload is not a video, image or audio file."""

    code = "unsupported_kind"
    message = "Upload a video, a photo or an audio file."


def parse_metadata(header: str | None) -> dict[str, str]:
    """tus Upload-Metadata: comma-separated ``key base64value`` pairs."""
    out: dict[str, str] = {}
    if not header:
        return out
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key:
            continue
        try:
            out[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidInput("Upload-Metadata is not valid base64.", key=key) from exc
    return out


def kind_of(metadata: dict[str, str]) -> MediaKind:
    declared = metadata.get("kind") or metadata.get("filetype", "").split("/")[0]
    try:
        return MediaKind(declared)
    except ValueError:
        raise UnsupportedKind(declared=declared) from None


def limit_for(ctx: AppContext, kind: MediaKind) -> int:
    settings = ctx.settings
    return {
        MediaKind.VIDEO: settings.upload_max_video_bytes,
        MediaKind.IMAGE: settings.upload_max_image_bytes,
        MediaKind.AUDIO: settings.upload_max_audio_bytes,
    }[kind]


def max_upload_size(ctx: AppContext) -> int:
    return max(limit_for(ctx, kind) for kind in MediaKind)


@dataclass(frozen=True)
class UploadFiles:
    """Where an upload's unsent bytes wait on local disk."""

    folder: Path

    @property
    def spool(self) -> Path:
        return self.folder / "spool"

    def part(self, number: int) -> Path:
        return self.folder / f"part-{number:05d}"

    @property
    def lock(self) -> Path:
        return self.folder / "lock"


def files_for(ctx: AppContext, media_id: UUID) -> UploadFiles:
    return UploadFiles(ctx.settings.uploads_dir / str(media_id))


@contextlib.contextmanager
def exclusive(files: UploadFiles) -> Iterator[None]:
    """One writer per upload, across processes on this machine."""
    files.folder.mkdir(parents=True, exist_ok=True)
    with files.lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadBusy() from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _expiry(ctx: AppContext) -> datetime:
    return utcnow() + timedelta(hours=ctx.settings.upload_expiry_hours)


async def create(
    ctx: AppContext, uow: UnitOfWork, owner: User, length: int, metadata: dict[str, str]
) -> MediaObject:
    """Start an upload; too large for its kind is refused before any byte is stored."""
    kind = kind_of(metadata)
    if length == 0:
        raise EmptyUpload()
    limit = limit_for(ctx, kind)
    if length > limit:
        raise UploadTooLarge(limit=limit, kind=kind)
    media_id = uuid7()
    media = MediaObject(
        id=media_id,
        owner_id=owner.id,
        kind=kind,
        status=MediaStatus.UPLOADING,
        declared_type=metadata.get("filetype", "")[:100],
        upload_length=length,
        upload_offset=0,
        parts_bytes=0,
        upload_expires_at=_expiry(ctx),
        source_key=f"media/{media_id}/source",
        renditions=[],
        assets={},
    )
    uow.session.add(media)
    await uow.session.flush()
    return media


async def _load(ctx: AppContext, owner_id: UUID, media_id: UUID) -> MediaObject:
    async with ctx.sessions() as session:
        media = await session.get(MediaObject, media_id)
    if media is None or media.owner_id != owner_id:
        raise UploadNotFound()
    if media.failure_code == UploadExpired.code or (
        media.status == MediaStatus.UPLOADING
        and media.upload_expires_at is not None
        and media.upload_expires_at <= utcnow()
    ):
        raise UploadExpired()
    return media


async def _parts(ctx: AppContext, media_id: UUID) -> list[tuple[int, str]]:
    async with ctx.sessions() as session:
        rows = await session.execute(
            select(UploadPart.number, UploadPart.etag)
            .where(UploadPart.media_id == media_id)
            .order_by(UploadPart.number)
        )
        return [(n, etag) for n, etag in rows.all()]


def _recover_spool(files: UploadFiles, media: MediaObject, next_part: int) -> int:
    """Make the spool hold exactly the acknowledged, not yet sent bytes; returns its size.

    A crash can leave unacknowledged bytes at the end (cut them off) or a part file that was
    being handed to storage when the process died (it becomes the spool again).
    """
    expected = media.upload_offset - media.parts_bytes
    part = files.part(next_part)
    if not files.spool.exists() and part.exists():
        part.replace(files.spool)
    files.spool.touch(exist_ok=True)
    size = files.spool.stat().st_size
    if size > expected:
        os.truncate(files.spool, expected)
        size = expected
    return size


async def status(ctx: AppContext, owner: User, media_id: UUID) -> MediaObject:
    """The upload as the server has it (for HEAD): an upload whose bytes are all in but whose
    completion was cut short by a crash is completed now."""
    media = await _load(ctx, owner.id, media_id)
    if media.status == MediaStatus.UPLOADING and media.upload_offset == media.upload_length:
        files = files_for(ctx, media_id)
        with exclusive(files):
            media = await _complete(ctx, await _load(ctx, owner.id, media_id), files)
    return media


async def _checkpoint(
    ctx: AppContext,
    media: MediaObject,
    offset: int,
    parts_bytes: int,
    new_part: tuple[int, str, int] | None = None,
) -> None:
    """Commit a new acknowledged offset (and a part now safely in storage)."""
    async with ctx.uow() as uow:
        if new_part is not None:
            number, etag, size = new_part
            uow.session.add(UploadPart(media_id=media.id, number=number, etag=etag, size=size))
        result = await uow.session.execute(
            update(MediaObject)
            .where(MediaObject.id == media.id, MediaObject.upload_offset == media.upload_offset)
            .values(
                upload_offset=offset,
                parts_bytes=parts_bytes,
                storage_upload_id=media.storage_upload_id,
                upload_expires_at=_expiry(ctx),
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise OffsetMismatch()
    media.upload_offset = offset
    media.parts_bytes = parts_bytes


async def _send_part(
    ctx: AppContext, media: MediaObject, files: UploadFiles, number: int
) -> tuple[int, str, int]:
    """Hand the spool to storage as part ``number``."""
    part = files.part(number)
    await asyncio.to_thread(files.spool.replace, part)
    size = part.stat().st_size
    if media.storage_upload_id is None:
        media.storage_upload_id = await ctx.storage.start_multipart(
            media.source_key, "application/octet-stream"
        )
    etag = await ctx.storage.upload_part(media.source_key, media.storage_upload_id, number, part)
    part.unlink(missing_ok=True)
    return number, etag, size


def _fsync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


async def append(
    ctx: AppContext,
    owner: User,
    media_id: UUID,
    offset: int,
    content_length: int | None,
    body: AsyncIterator[bytes],
) -> MediaObject:
    """Take the bytes of one PATCH; returns the upload with its new offset."""
    files = files_for(ctx, media_id)
    part_size = ctx.settings.upload_part_mib * MIB
    with exclusive(files):
        media = await _load(ctx, owner.id, media_id)
        if media.status != MediaStatus.UPLOADING:
            raise UploadClosed()
        if offset != media.upload_offset:
            raise OffsetMismatch(expected=media.upload_offset)
        if content_length is not None and offset + content_length > media.upload_length:
            raise UploadTooLarge(upload_length=media.upload_length)
        parts = await _parts(ctx, media_id)
        next_part = len(parts) + 1
        spooled = await asyncio.to_thread(_recover_spool, files, media, next_part)
        received = media.upload_offset
        handle = files.spool.open("r+b")
        handle.seek(spooled)
        too_large = False
        try:
            async for chunk in body:
                if received + len(chunk) > media.upload_length:
                    too_large = True
                    break
                view = memoryview(chunk)
                while view:
                    piece = view[: part_size - spooled]
                    handle.write(piece)
                    spooled += len(piece)
                    received += len(piece)
                    view = view[len(piece) :]
                    if spooled == part_size and received < media.upload_length:
                        await asyncio.to_thread(_fsync, handle)
                        handle.close()
                        sent = await _send_part(ctx, media, files, next_part)
                        await _checkpoint(ctx, media, received, media.parts_bytes + sent[2], sent)
                        next_part += 1
                        spooled = 0
                        handle = files.spool.open("w+b")
        finally:
            # Whatever arrived before the body ended (or the client vanished) is kept.
            await asyncio.to_thread(_fsync, handle)
            handle.close()
        if received != media.upload_offset:
            await _checkpoint(ctx, media, received, media.parts_bytes)
        if too_large:
            raise UploadTooLarge(upload_length=media.upload_length)
        if received == media.upload_length:
            media = await _complete(ctx, media, files)
    return media


async def _complete(ctx: AppContext, media: MediaObject, files: UploadFiles) -> MediaObject:
    """All bytes are in: join the parts into the source object, then queue processing."""
    parts = await _parts(ctx, media.id)
    if files.spool.exists() and files.spool.stat().st_size > 0:
        sent = await _send_part(ctx, media, files, len(parts) + 1)
        await _checkpoint(ctx, media, media.upload_offset, media.parts_bytes + sent[2], sent)
        parts.append((sent[0], sent[1]))
    if media.storage_upload_id is not None:
        try:
            await ctx.storage.complete_multipart(media.source_key, media.storage_upload_id, parts)
        except Exception:
            # Completed once already, before a crash: the joined object is there.
            if await ctx.storage.stat(media.source_key) is None:
                raise
    async with ctx.uow() as uow:
        result = await uow.session.execute(
            update(MediaObject)
            .where(MediaObject.id == media.id, MediaObject.status == MediaStatus.UPLOADING)
            .values(
                status=MediaStatus.PROCESSING,
                completed_at=utcnow(),
                upload_expires_at=None,
                storage_upload_id=None,
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            ctx.jobs.enqueue(
                uow,
                "media.process",
                {"media_id": str(media.id)},
                dedupe_key=f"media.process:{media.id}",
            )
    await asyncio.to_thread(shutil.rmtree, files.folder, True)
    async with ctx.sessions() as session:
        fresh = await session.get(MediaObject, media.id)
    assert fresh is not None
    return fresh


async def terminate(ctx: AppContext, owner: User, media_id: UUID) -> None:
    """tus termination: drop an unfinished upload and every byte of it."""
    files = files_for(ctx, media_id)
    with exclusive(files):
        async with ctx.sessions() as session:
            media = await session.get(MediaObject, media_id)
        if media is None or media.owner_id != owner.id:
            raise UploadNotFound()
        if media.status != MediaStatus.UPLOADING:
            raise UploadClosed("Only an unfinished upload can be cancelled.")
        await _discard(ctx, media, files, keep_row=False)


async def _discard(ctx: AppContext, media: MediaObject, files: UploadFiles, keep_row: bool) -> None:
    """Remove an unfinished upload's bytes; the row goes too, or stays marked expired."""
    if media.storage_upload_id is not None:
        await ctx.storage.abort_multipart(media.source_key, media.storage_upload_id)
    async with ctx.uow() as uow:
        row = await uow.session.get(MediaObject, media.id)
        if row is not None and keep_row:
            row.status = MediaStatus.FAILED
            row.failure_code = UploadExpired.code
            row.failure_message = UploadExpired.message
            row.storage_upload_id = None
        elif row is not None:
            await uow.session.delete(row)
    await asyncio.to_thread(shutil.rmtree, files.folder, True)


async def import_file(
    ctx: AppContext, owner_id: UUID, path: Path, kind: MediaKind, content_type: str
) -> UUID:
    """Bring a file already on this machine in as if it had been uploaded (demo data, tools):
    stored as the source, then processed like any upload."""
    media_id = uuid7()
    size = await asyncio.to_thread(os.path.getsize, path)
    source_key = f"media/{media_id}/source"
    await ctx.storage.put_file(source_key, path, content_type)
    async with ctx.uow() as uow:
        uow.session.add(
            MediaObject(
                id=media_id,
                owner_id=owner_id,
                kind=kind,
                status=MediaStatus.PROCESSING,
                declared_type=content_type,
                upload_length=size,
                upload_offset=size,
                parts_bytes=size,
                source_key=source_key,
                renditions=[],
                assets={},
                completed_at=utcnow(),
            )
        )
        await uow.session.flush()
        ctx.jobs.enqueue(
            uow,
            "media.process",
            {"media_id": str(media_id)},
            dedupe_key=f"media.process:{media_id}",
        )
    return media_id


async def discard_upload(ctx: AppContext, media: MediaObject) -> None:
    """Remove whatever an unfinished upload of ``media`` holds (spool, parts, multipart)."""
    if media.status != MediaStatus.UPLOADING:
        return
    files = files_for(ctx, media.id)
    with exclusive(files):
        await _discard(ctx, media, files, keep_row=False)


async def expire(ctx: AppContext, now: datetime | None = None) -> int:
    """Remove uploads that lapsed, with their bytes (spool, parts, multipart in storage)."""
    now = now or utcnow()
    async with ctx.sessions() as session:
        lapsed = (
            await session.scalars(
                select(MediaObject).where(
                    MediaObject.status == MediaStatus.UPLOADING,
                    MediaObject.upload_expires_at <= now,
                )
            )
        ).all()
    removed = 0
    for media in lapsed:
        files = files_for(ctx, media.id)
        try:
            with exclusive(files):
                await _discard(ctx, media, files, keep_row=True)
                removed += 1
        except UploadBusy:
            continue  # bytes are arriving right now; it is not abandoned
    if removed:
        log.info("expired uploads removed", extra={"count": removed})
    return removed
