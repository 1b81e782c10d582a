"""Media objects as their owner (and, once published, everyone) sees them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.storage import S3Storage, app_signed_url
from craftreel.media import schemas
from craftreel.media.models import MediaObject
from craftreel.media.uploads import UploadNotFound


class MediaNotFound(UploadNotFound):
    """No such media object, or not visible to this person."""

    code = "media_not_found"
    message = "That media does not exist."


def media_url(ctx: AppContext, media: MediaObject, key: str) -> str:
    """Public media gets a cacheable URL; private media a short-lived signed one.

    Both are the app's own URLs (``/media/...``) unless public media on S3 has a CDN or public
    bucket to point at: an HLS playlist's segments are relative URLs, and only a URL that
    carries its signature in the path (not per-object presigning) lets them resolve."""
    storage = ctx.storage
    if media.is_public and isinstance(storage, S3Storage) and storage.public_base_url:
        return storage.public_url(key)
    if media.is_public:
        return "/media/" + quote(key)
    return app_signed_url(ctx.settings.signing_key, key, ctx.settings.private_url_seconds)


def _asset(ctx: AppContext, media: MediaObject, name: str) -> str | None:
    key = media.assets.get(name)
    return media_url(ctx, media, key) if isinstance(key, str) else None


def to_schema(ctx: AppContext, media: MediaObject) -> schemas.Media:
    renditions: list[dict[str, Any]] = list(media.renditions or [])
    return schemas.Media(
        id=media.id,
        kind=media.kind,
        status=media.status,
        failure=(
            schemas.Failure(code=media.failure_code, message=media.failure_message or "")
            if media.failure_code
            else None
        ),
        upload=schemas.UploadProgress(
            length=media.upload_length,
            offset=media.upload_offset,
            expires_at=media.upload_expires_at,
        ),
        duration_s=media.duration_s,
        width=media.width,
        height=media.height,
        aspect=media.aspect,
        playable=media.playable,
        playback_url=_asset(ctx, media, "master") if media.playable else None,
        poster_url=_asset(ctx, media, "poster"),
        thumbnails_url=_asset(ctx, media, "thumbnails"),
        waveform_url=_asset(ctx, media, "waveform"),
        blurhash=media.assets.get("blurhash"),
        renditions=[
            schemas.Rendition(
                name=r["name"],
                width=r["width"],
                height=r["height"],
                bandwidth=r["bandwidth"],
                url=media_url(ctx, media, r["playlist"]),
            )
            for r in renditions
            if "playlist" in r
        ],
        variants=[
            schemas.ImageVariant(
                width=v["width"],
                height=v["height"],
                format=v["format"],
                url=media_url(ctx, media, v["key"]),
            )
            for v in media.assets.get("variants", [])
        ],
        created_at=media.created_at,
    )


async def get_for_owner(
    ctx: AppContext, uow: UnitOfWork, user: User, media_id: UUID
) -> schemas.Media:
    """Only the owner sees a media object until it is attached to something published."""
    media = await uow.session.get(MediaObject, media_id)
    if media is None or (media.owner_id != user.id and not media.is_public):
        raise MediaNotFound()
    return to_schema(ctx, media)
