"""Serving media from local disk: Range (206), ETag (304), long cache for public media,
signed short-lived URLs for private media, safe content types. (On S3 the store serves.)"""

from __future__ import annotations

import time
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from craftreel.core.errors import NotFound
from craftreel.core.storage import (
    SAFE_INLINE,
    LocalStorage,
    S3Storage,
    content_type_for,
    verify_scope,
)
from craftreel.deps import Ctx
from craftreel.media.models import MediaObject

router = APIRouter(include_in_schema=False)

PUBLIC_CACHE = "public, max-age=31536000, immutable"
# Media is data, never a document: no scripts, no plugins, no framing, whatever it holds.
MEDIA_CSP = "default-src 'none'; media-src 'self'; img-src 'self'; sandbox"


class _PublicCache:
    """Which media objects are public, remembered for a few seconds per id. Only "public" is
    remembered, so something just published is served at once."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._seen: dict[UUID, tuple[float, bool]] = {}

    async def is_public(self, ctx: Ctx, media_id: UUID) -> bool:
        now = time.monotonic()
        hit = self._seen.get(media_id)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        async with ctx.sessions() as session:
            media = await session.get(MediaObject, media_id)
        public = media is not None and media.is_public
        if public:
            if len(self._seen) > 50_000:
                self._seen.clear()
            self._seen[media_id] = (now, public)
        return public


_public = _PublicCache()


def _media_id(key: str) -> UUID | None:
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "media":
        try:
            return UUID(parts[1])
        except ValueError:
            return None
    return None


async def _serve(request: Request, ctx: Ctx, key: str, signed: bool) -> Response:
    storage = ctx.storage
    # The original upload keeps the maker's metadata: it is never served.
    if key.endswith("/source") or key.startswith(".") or "/." in key:
        raise NotFound()
    media_id = _media_id(key)
    if not signed and media_id is not None and not await _public.is_public(ctx, media_id):
        raise NotFound()
    if isinstance(storage, S3Storage):
        return await _from_s3(ctx, storage, key, signed)
    if not isinstance(storage, LocalStorage):
        raise NotFound()
    try:
        path = storage.path(key)
    except Exception as exc:
        raise NotFound() from exc
    info = await storage.stat(key)
    if info is None or not path.is_file():
        raise NotFound()
    if key.endswith(".m3u8"):
        # Playlists change as rungs are added; segments never do.
        cache = "no-cache"
    elif signed:
        cache = f"private, max-age={ctx.settings.private_url_seconds}"
    else:
        cache = PUBLIC_CACHE
    headers = {
        "Cache-Control": cache,
        "ETag": info.etag,
        "Content-Security-Policy": MEDIA_CSP,
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if info.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    content_type = content_type_for(key)
    if content_type not in SAFE_INLINE:
        headers["Content-Disposition"] = "attachment"
        content_type = "application/octet-stream"
    return FileResponse(path, media_type=content_type, headers=headers, stat_result=None)


async def _from_s3(ctx: Ctx, storage: S3Storage, key: str, signed: bool) -> Response:
    """On S3 the store serves the bytes: playlists pass through the app (so their relative
    segment URLs come back here, under the same signed path), everything else is a redirect
    to a short-lived presigned URL."""
    from botocore.exceptions import ClientError

    ttl = ctx.settings.private_url_seconds
    headers = {"Content-Security-Policy": MEDIA_CSP, "Cache-Control": "no-cache"}
    if key.endswith(".m3u8"):
        try:
            body = await storage.read(key)
        except ClientError as exc:
            raise NotFound() from exc
        return Response(body, media_type=content_type_for(key), headers=headers)
    headers["Cache-Control"] = f"private, max-age={max(1, ttl // 2)}"
    return RedirectResponse(storage.signed_url(key, ttl), status_code=307, headers=headers)


@router.get("/media/_s/{expires}/{signature}/{key:path}")
async def serve_signed(
    request: Request, ctx: Ctx, expires: int, signature: str, key: str
) -> Response:
    """Private media through a short-lived signed URL."""
    if not verify_scope(ctx.settings.signing_key, key, expires, signature):
        raise NotFound()
    return await _serve(request, ctx, key, signed=True)


@router.get("/media/{key:path}")
async def serve_public(request: Request, ctx: Ctx, key: str) -> Response:
    """Public media (avatars, published posts' renditions)."""
    return await _serve(request, ctx, key, signed=False)
