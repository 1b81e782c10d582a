"""tus 1.0 uploads: creation, offsets, termination, expiry, limits, S3."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.media import uploads
from craftreel.media.models import MediaObject
from tests.factories import Person, sign_up

TUS = {"Tus-Resumable": "1.0.0"}
MIB = 1024 * 1024


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def create(
    client: httpx.AsyncClient, person: Person, length: int, kind: str = "video"
) -> httpx.Response:
    return await client.post(
        "/api/v1/uploads",
        headers={
            **TUS,
            **person.auth,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(kind=kind, filename="my holiday.mov"),
        },
    )


async def patch(
    client: httpx.AsyncClient, person: Person, url: str, offset: int, data: bytes
) -> httpx.Response:
    return await client.patch(
        url,
        content=data,
        headers={
            **TUS,
            **person.auth,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


async def head(client: httpx.AsyncClient, person: Person, url: str) -> httpx.Response:
    return await client.head(url, headers={**TUS, **person.auth})


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Person:
    return await sign_up(client, "uploader")


@pytest.fixture
async def no_processing(app: Any) -> None:
    """These uploads are random bytes: keep the job runner from checking (and refusing) them
    while a test still looks at the stored source."""
    await app.state.background.runner.stop()


async def test_options_advertises_tus(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/v1/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) >= {
        "creation",
        "expiration",
        "termination",
    }
    assert int(response.headers["Tus-Max-Size"]) == 4 * 1024**3


async def test_upload_in_chunks_then_processing_starts(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, no_processing: None
) -> None:
    data = os.urandom(17 * MIB + 123)
    created = await create(client, maker, len(data))
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    assert created.headers["Upload-Offset"] == "0"
    assert "Upload-Expires" in created.headers

    offset = 0
    for size in (5 * MIB, 7 * MIB, len(data) - 12 * MIB):
        response = await patch(client, maker, url, offset, data[offset : offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert int(response.headers["Upload-Offset"]) == offset
        assert int((await head(client, maker, url)).headers["Upload-Offset"]) == offset

    media_id = url.rsplit("/", 1)[1]
    got = (await client.get(f"/api/v1/media/{media_id}", headers=maker.auth)).json()
    assert got["status"] == "processing"
    assert got["upload"] == {"length": len(data), "offset": len(data), "expires_at": None}
    # The stored source is byte for byte what was sent, under a key we chose.
    stored = ctx.settings.media_dir / f"media/{media_id}/source"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not (ctx.settings.uploads_dir / media_id).exists()
    # A finished upload takes no more bytes.
    again = await patch(client, maker, url, len(data), b"x")
    assert again.status_code == 409


async def test_wrong_offset_is_409_and_changes_nothing(
    client: httpx.AsyncClient, maker: Person
) -> None:
    url = (await create(client, maker, 1000)).headers["Location"]
    assert (await patch(client, maker, url, 0, b"a" * 400)).status_code == 204
    for wrong in (0, 300, 401, 999):
        response = await patch(client, maker, url, wrong, b"b" * 100)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "offset_mismatch"
    assert (await head(client, maker, url)).headers["Upload-Offset"] == "400"


async def test_too_large_is_refused_before_any_byte(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    response = await create(client, maker, 30 * 1000**2 + 1, kind="image")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    too_big_video = await create(client, maker, 4 * 1024**3 + 1)
    assert too_big_video.status_code == 413
    async with ctx.sessions() as session:
        assert (await session.scalars(select(MediaObject))).all() == []
    assert not ctx.settings.uploads_dir.exists() or not any(ctx.settings.uploads_dir.iterdir())


async def test_more_bytes_than_declared_are_refused(
    client: httpx.AsyncClient, maker: Person
) -> None:
    url = (await create(client, maker, 100)).headers["Location"]
    response = await patch(client, maker, url, 0, b"z" * 101)
    assert response.status_code == 413
    assert (await head(client, maker, url)).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Tus-Resumable": "0.2.2", "Upload-Length": "10"}, 412, "tus_version_unsupported"),
        ({"Tus-Resumable": "1.0.0"}, 400, "invalid_input"),
        ({"Tus-Resumable": "1.0.0", "Upload-Length": "-5"}, 400, "invalid_input"),
        ({"Tus-Resumable": "1.0.0", "Upload-Length": "0"}, 400, "empty_upload"),
    ],
)
async def test_bad_creation_requests(
    client: httpx.AsyncClient, maker: Person, headers: dict[str, str], status: int, code: str
) -> None:
    response = await client.post(
        "/api/v1/uploads",
        headers={**maker.auth, **headers, "Upload-Metadata": metadata(kind="video")},
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_unknown_kind_and_bad_metadata(client: httpx.AsyncClient, maker: Person) -> None:
    for meta, code in (
        (metadata(filetype="application/pdf"), "unsupported_kind"),
        ("kind !!notbase64", "invalid_input"),
    ):
        response = await client.post(
            "/api/v1/uploads",
            headers={**maker.auth, **TUS, "Upload-Length": "10", "Upload-Metadata": meta},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code


async def test_wrong_content_type_is_415(client: httpx.AsyncClient, maker: Person) -> None:
    url = (await create(client, maker, 10)).headers["Location"]
    response = await client.patch(
        url,
        content=b"0123456789",
        headers={**TUS, **maker.auth, "Upload-Offset": "0", "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


async def test_uploads_are_private_to_their_owner(client: httpx.AsyncClient, maker: Person) -> None:
    url = (await create(client, maker, 10)).headers["Location"]
    other = await sign_up(client, "snooper")
    assert (await head(client, other, url)).status_code == 404
    assert (await patch(client, other, url, 0, b"0123456789")).status_code == 404
    assert (await client.head(url, headers=TUS)).status_code == 401
    assert (await head(client, maker, url)).headers["Upload-Offset"] == "0"


async def test_termination_removes_the_upload(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    url = (await create(client, maker, 1000)).headers["Location"]
    await patch(client, maker, url, 0, b"q" * 500)
    media_id = url.rsplit("/", 1)[1]
    assert (ctx.settings.uploads_dir / media_id).exists()
    response = await client.delete(url, headers={**TUS, **maker.auth})
    assert response.status_code == 204
    assert (await head(client, maker, url)).status_code == 404
    assert not (ctx.settings.uploads_dir / media_id).exists()


async def test_abandoned_uploads_expire_and_their_bytes_go(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    url = (await create(client, maker, 9 * MIB)).headers["Location"]
    await patch(client, maker, url, 0, os.urandom(8 * MIB + 10))
    media_id = url.rsplit("/", 1)[1]
    parts_dir = ctx.settings.media_dir / ".multipart"
    assert any(parts_dir.rglob("*"))  # one 8 MiB part already handed to storage
    assert await uploads.expire(ctx) == 0  # not yet
    later = utcnow() + timedelta(hours=ctx.settings.upload_expiry_hours, minutes=1)
    assert await uploads.expire(ctx, now=later) == 1
    assert not (ctx.settings.uploads_dir / media_id).exists()
    assert not [p for p in parts_dir.rglob("*") if p.is_file()]
    gone = await head(client, maker, url)
    assert gone.status_code == 410
    media = (await client.get(f"/api/v1/media/{media_id}", headers=maker.auth)).json()
    assert media["status"] == "failed"
    assert media["failure"]["code"] == "upload_expired"
