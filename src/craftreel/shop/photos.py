"""Review photos: one per review, checked by content and cleaned as every image on Craftreel is
(upright, sRGB, no EXIF/GPS/device tags; WebP and JPEG at a few widths), then served publicly
with the review.

The photo arrives with the review form, so it is processed here and now, with the media
pipeline's own probe and image code, and recorded as a ready, public media object (which is
what ``reviews.photo_media_id`` points at) rather than going through a resumable upload.
"""

from __future__ import annotations

import asyncio
import shutil
from uuid import UUID

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import InvalidInput, PayloadTooLarge
from craftreel.core.ids import uuid7
from craftreel.core.storage import content_type_for
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


async def store_review_photo(ctx: AppContext, uow: UnitOfWork, owner_id: UUID, data: bytes) -> UUID:
    """Check, clean and store a review photo; the id of its (public, ready) media object."""
    settings = ctx.settings
    if len(data) > settings.upload_max_image_bytes:
        raise ReviewPhotoTooLarge(max_bytes=settings.upload_max_image_bytes, field="photo")
    if not data:
        raise ReviewPhotoInvalid("That file is empty.", field="photo")
    media_id = uuid7()
    prefix = f"media/{media_id}/r1"
    work = settings.work_dir / f"review-photo-{media_id}"
    source = work / "source"
    limits = Limits(max_pixels=settings.media_max_pixels)
    try:
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(source.write_bytes, data)
        try:
            found = await asyncio.to_thread(probe, source, MediaKind.IMAGE, limits)
            result = await asyncio.to_thread(
                processing.image_variants, source, work / "out", WIDTHS, limits.max_pixels
            )
        except MediaRejected as rejected:
            raise ReviewPhotoInvalid(rejected.message, field="photo") from rejected
        variants = []
        for variant in result.variants:
            key = f"{prefix}/{variant.path.as_posix()}"
            await ctx.storage.put_file(key, work / "out" / variant.path, content_type_for(key))
            variants.append(
                {
                    "width": variant.width,
                    "height": variant.height,
                    "format": variant.format,
                    "key": key,
                }
            )
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    largest_jpeg = max((v["width"], v["key"]) for v in variants if v["format"] == "jpeg")[1]
    now = utcnow()
    uow.session.add(
        MediaObject(
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
            is_public=True,
            completed_at=now,
            processed_at=now,
        )
    )
    await uow.session.flush()
    return media_id


def photo_url(ctx: AppContext, media: MediaObject, width: int = 640) -> str | None:
    """The WebP copy closest to ``width`` without going over (the smallest if all are wider)."""
    webps = [v for v in (media.assets or {}).get("variants", []) if v.get("format") == "webp"]
    if not webps:
        return None
    fitting = [v for v in webps if v["width"] <= width]
    if fitting:
        chosen = max(fitting, key=lambda v: v["width"])
    else:
        chosen = min(webps, key=lambda v: v["width"])
    return media_url(ctx, media, str(chosen["key"]))
