"""Posts test data: media that stands for a processed upload, and posts made through the API.

``ready_media`` writes the row the media pipeline leaves behind (status ready, playable,
renditions) without running ffmpeg, so feed and interaction tests stay fast; the pipeline
itself, and a real upload → publish-when-ready, are tested with real media."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import select

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.ids import uuid7
from craftreel.media.models import MediaKind, MediaObject, MediaStatus
from tests.factories import Person


async def user_id(ctx: AppContext, handle: str) -> UUID:
    async with ctx.sessions() as session:
        found = await session.scalar(select(User.id).where(User.handle_normalized == handle))
    assert found is not None, handle
    return found


async def ready_media(
    ctx: AppContext,
    owner: Person | UUID,
    kind: MediaKind = MediaKind.VIDEO,
    duration_s: float | None = 90.0,
    *,
    status: MediaStatus = MediaStatus.READY,
    playable: bool = True,
) -> UUID:
    """A media object as processing leaves it (or, with ``status``, still processing/failed)."""
    owner_id = owner if isinstance(owner, UUID) else await user_id(ctx, owner.handle)
    media_id = uuid7()
    prefix = f"media/{media_id}/r1"
    if kind == MediaKind.IMAGE:
        assets: dict[str, Any] = {
            "variants": [
                {"width": 640, "height": 800, "format": "jpeg", "key": f"{prefix}/640.jpg"}
            ],
            "poster": f"{prefix}/640.jpg",
            "blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        }
        renditions: list[dict[str, Any]] = []
        duration_s = None
    else:
        assets = {"master": f"{prefix}/master.m3u8", "poster": f"{prefix}/poster.jpg"}
        renditions = [
            {
                "name": "360p",
                "width": 360,
                "height": 640,
                "bandwidth": 800_000,
                "playlist": f"{prefix}/360p/index.m3u8",
            }
        ]
    done = status == MediaStatus.READY
    async with ctx.uow() as uow:
        uow.session.add(
            MediaObject(
                id=media_id,
                owner_id=owner_id,
                kind=kind,
                status=status,
                upload_length=1000,
                upload_offset=1000,
                source_key=f"media/{media_id}/source",
                mime="video/mp4" if kind == MediaKind.VIDEO else None,
                duration_s=duration_s,
                width=360 if kind != MediaKind.AUDIO else None,
                height=640 if kind != MediaKind.AUDIO else None,
                playable=playable and status != MediaStatus.FAILED,
                renditions=renditions if playable else [],
                assets=assets if playable else {},
                output_prefix=prefix,
                failure_code="corrupt" if status == MediaStatus.FAILED else None,
                completed_at=utcnow(),
                processed_at=utcnow() if done else None,
            )
        )
    return media_id


async def make_post(
    client: httpx.AsyncClient,
    ctx: AppContext,
    person: Person,
    *,
    caption: str = "",
    visibility: str = "public",
    publish: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """A post by ``person`` through the API, published unless ``publish`` is False."""
    media_id = await ready_media(ctx, person)
    created = await client.post(
        "/api/v1/posts",
        json={"media_ids": [str(media_id)], "caption": caption, "visibility": visibility, **fields},
        headers=person.auth,
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    if publish:
        published = await client.post(
            f"/api/v1/posts/{body['id']}/publish", json={}, headers=person.auth
        )
        assert published.status_code == 200, published.text
        body = published.json()
    return body
