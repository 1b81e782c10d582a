"""Shop photos: a review's one photo and a listing's gallery, checked by content and cleaned
as every image on Craftreel is (upright, sRGB, no EXIF/GPS/device tags; WebP and JPEG at a
few widths).

A photo arrives whole with its form (images are small), so it is processed here and now,
with the media pipeline's own probe and image code, and recorded as a ready media object
rather than going through a resumable upload. Processing and storing happen first
(``process_photo``), recording the row after (``record``), so a caller can do the slow part
outside its transaction; whatever a failed photo had written is deleted before the error
goes up, ``discard`` removes processed photos a later failure left unrecorded, and a
recorded photo's files are deleted if its transaction rolls back or fails to commit.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import InvalidInput, PayloadTooLarge
from craftreel.core.ids import uuid7
from craftreel.core.storage import content_type_for, remove_on_rollback
from craftreel.media import processing
from craftreel.media.models import MediaKind, MediaObject, MediaStatus
from craftreel.media.probe import Limits, MediaRejected, probe
from craftreel.media.service import media_url

WIDTHS = (320, 640, 1280)


class ReviewPhotoInvalid(InvalidInput):
    """The review's photo is not a picture we can show."""

    code = "review_photo_invalid"
    message = "That file is not a photo we can use. Choose a JPEG, PNG, WebP or GIF."


class ReviewPhotoTooLarge(PayloadTooLarge):
    """The review's photo is over the image size limit."""

    code = "review_photo_too_large"
    message = "That photo is too large."


class ListingPhotoInvalid(InvalidInput):
    """A listing photo is not a picture we can show."""

    code = "listing_photo_invalid"
    message = "That file is not a photo we can use. Choose a JPEG, PNG, WebP or GIF."


class ListingPhotoTooLarge(PayloadTooLarge):
    """A listing photo is over the image size limit."""

    code = "listing_photo_too_large"
    message = "That photo is too large."


async def process_photo(
    ctx: AppContext,
    owner_id: UUID,
    data: bytes,
    *,
    field: str = "photo",
    invalid: type[InvalidInput] = ReviewPhotoInvalid,
    too_large: type[PayloadTooLarge] = ReviewPhotoTooLarge,
) -> MediaObject:
    """Check, clean and store one photo's variants; its media object, not yet recorded (and
    not public). Nothing stays in storage when this fails."""
    settings = ctx.settings
    if len(data) > settings.upload_max_image_bytes:
        raise too_large(max_bytes=settings.upload_max_image_bytes, field=field)
    if not data:
        raise invalid("That file is empty.", field=field)
    media_id = uuid7()
    prefix = f"media/{media_id}/r1"
    work = settings.work_dir / f"shop-photo-{media_id}"
    source = work / "source"
    limits = Limits(max_pixels=settings.media_max_pixels)
    variants: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(source.write_bytes, data)
        try:
            found = await asyncio.to_thread(probe, source, MediaKind.IMAGE, limits)
            result = await asyncio.to_thread(
                processing.image_variants, source, work / "out", WIDTHS, limits.max_pixels
            )
        except MediaRejected as rejected:
            raise invalid(rejected.message, field=field) from rejected
        for variant in result.variants:
            key = f"{prefix}/{variant.path.as_posix()}"
            variants.append(
                {
                    "width": variant.width,
                    "height": variant.height,
                    "format": variant.format,
                    "key": key,
                }
            )
            await ctx.storage.put_file(key, work / "out" / variant.path, content_type_for(key))
    except BaseException:
        if variants:
            await ctx.storage.delete_prefix(f"media/{media_id}")
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    largest_jpeg = max((v["width"], v["key"]) for v in variants if v["format"] == "jpeg")[1]
    now = utcnow()
    return MediaObject(
        id=media_id,
        owner_id=owner_id,
        kind=MediaKind.IMAGE,
        status=MediaStatus.READY,
        declared_type=found.mime,
        upload_length=len(data),
        upload_offset=len(data),
        parts_bytes=0,
        # The original (with its metadata) is never kept.
        source_key=f"media/{media_id}/source",
        mime=found.mime,
        width=result.width,
        height=result.height,
        playable=True,
        renditions=[],
        assets={"variants": variants, "blurhash": result.blurhash, "poster": largest_jpeg},
        output_prefix=prefix,
        is_public=False,
        completed_at=now,
        processed_at=now,
    )


async def record(
    ctx: AppContext, uow: UnitOfWork, photos: Iterable[MediaObject], public: bool
) -> None:
    """Add processed photos' rows to this unit of work; their files go if it never commits."""
    for media in photos:
        media.is_public = public
        uow.session.add(media)
        remove_on_rollback(uow, ctx.storage, f"media/{media.id}", prefix=True)
    await uow.session.flush()


async def discard(ctx: AppContext, photos: Iterable[MediaObject]) -> None:
    """Delete the files of processed photos that were never recorded (a later step failed)."""
    for media in photos:
        await ctx.storage.delete_prefix(f"media/{media.id}")


async def store_review_photo(ctx: AppContext, uow: UnitOfWork, owner_id: UUID, data: bytes) -> UUID:
    """Check, clean and store a review photo; the id of its (public, ready) media object."""
    media = await process_photo(ctx, owner_id, data)
    try:
        await record(ctx, uow, [media], public=True)
    except BaseException:
        await discard(ctx, [media])
        raise
    return media.id


def webp_variants(media: MediaObject) -> list[dict[str, Any]]:
    return [v for v in (media.assets or {}).get("variants", []) if v.get("format") == "webp"]


def photo_url(ctx: AppContext, media: MediaObject, width: int = 640) -> str | None:
    """The WebP copy closest to ``width`` without going over (the smallest if all are wider)."""
    webps = webp_variants(media)
    if not webps:
        return None
    fitting = [v for v in webps if v["width"] <= width]
    if fitting:
        chosen = max(fitting, key=lambda v: int(v["width"]))
    else:
        chosen = min(webps, key=lambda v: int(v["width"]))
    return media_url(ctx, media, str(chosen["key"]))
