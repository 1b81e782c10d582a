"""Media JSON API: the tus 1.0 upload endpoint and media objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import format_datetime
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response
from starlette.requests import ClientDisconnect

from craftreel.accounts.deps import ApiOrWebUser
from craftreel.core.errors import DomainError, InvalidInput
from craftreel.deps import Ctx, Uow
from craftreel.media import service, uploads
from craftreel.media.models import MediaObject
from craftreel.media.schemas import Media

router = APIRouter(prefix="/api/v1", tags=["media"])

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration,termination"


class TusVersionUnsupported(DomainError):
    """The client speaks a tus version we do not."""

    status_code = 412
    code = "tus_version_unsupported"
    message = "Only tus 1.0.0 is supported."


class WrongContentType(DomainError):
    """A PATCH body must be application/offset+octet-stream."""

    status_code = 415
    code = "unsupported_media_type"
    message = "Send upload bytes as application/offset+octet-stream."


def _tus_headers(media: MediaObject | None = None) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if media is not None:
        headers["Upload-Offset"] = str(media.upload_offset)
        headers["Upload-Length"] = str(media.upload_length)
        if media.upload_expires_at is not None:
            headers["Upload-Expires"] = format_datetime(media.upload_expires_at, usegmt=True)
    return headers


def _check_version(tus_resumable: str | None) -> None:
    if tus_resumable != TUS_VERSION:
        raise TusVersionUnsupported(supported=TUS_VERSION)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that vanishes just ends it."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        return


@router.options("/uploads", status_code=204)
async def tus_options(ctx: Ctx) -> Response:
    """tus discovery: version, extensions and the largest upload accepted."""
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(uploads.max_upload_size(ctx)),
        },
    )


@router.post("/uploads", status_code=201)
async def tus_create(
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    uow: Uow,
    tus_resumable: str | None = Header(default=None),
    upload_length: str | None = Header(default=None),
    upload_metadata: str | None = Header(default=None),
) -> Response:
    """Start an upload. Metadata: ``kind`` (video, image, audio) or ``filetype``, ``filename``."""
    _check_version(tus_resumable)
    if upload_length is None or not upload_length.isdigit():
        raise InvalidInput("Upload-Length must be a whole number of bytes.", header="Upload-Length")
    media = await uploads.create(
        ctx, uow, user, int(upload_length), uploads.parse_metadata(upload_metadata)
    )
    headers = _tus_headers(media)
    headers["Location"] = str(request.url_for("tus_head", media_id=str(media.id)))
    return Response(status_code=201, headers=headers)


@router.head("/uploads/{media_id}", name="tus_head")
async def tus_head(
    media_id: UUID, user: ApiOrWebUser, ctx: Ctx, tus_resumable: str | None = Header(default=None)
) -> Response:
    """How many bytes the server holds (resume from there)."""
    _check_version(tus_resumable)
    media = await uploads.status(ctx, user, media_id)
    return Response(status_code=200, headers=_tus_headers(media))


@router.patch("/uploads/{media_id}", status_code=204)
async def tus_patch(
    media_id: UUID,
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    tus_resumable: str | None = Header(default=None),
    upload_offset: str | None = Header(default=None),
    content_type: str | None = Header(default=None),
    content_length: str | None = Header(default=None),
) -> Response:
    """Append bytes at ``Upload-Offset``; a wrong offset is a 409 and changes nothing."""
    _check_version(tus_resumable)
    if content_type != "application/offset+octet-stream":
        raise WrongContentType()
    if upload_offset is None or not upload_offset.isdigit():
        raise InvalidInput("Upload-Offset must be a whole number.", header="Upload-Offset")
    length = int(content_length) if content_length and content_length.isdigit() else None
    media = await uploads.append(ctx, user, media_id, int(upload_offset), length, _body(request))
    return Response(status_code=204, headers=_tus_headers(media))


@router.delete("/uploads/{media_id}", status_code=204)
async def tus_delete(
    media_id: UUID, user: ApiOrWebUser, ctx: Ctx, tus_resumable: str | None = Header(default=None)
) -> Response:
    """Cancel an unfinished upload and remove its bytes."""
    _check_version(tus_resumable)
    await uploads.terminate(ctx, user, media_id)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


@router.get("/media/{media_id}")
async def get_media(media_id: UUID, user: ApiOrWebUser, ctx: Ctx, uow: Uow) -> Media:
    """A media object: kind, status (with a failure code), renditions, poster, duration."""
    return await service.get_for_owner(ctx, uow, user, media_id)
