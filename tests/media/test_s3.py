"""The S3 backend against moto running as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import boto3
import httpx
import pytest
from pydantic import SecretStr

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.storage import S3Storage
from craftreel.media import uploads
from tests.conftest import client_for, fresh_context, running_app
from tests.factories import sign_up
from tests.media.test_uploads import MIB, create, head, patch

BUCKET = "craftreel-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    return settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_bucket": BUCKET,
            "s3_endpoint_url": s3_endpoint,
            "s3_access_key": "test",
            "s3_secret_key": SecretStr("test"),
            "s3_path_style": True,
        }
    )


@pytest.fixture
async def s3_ctx(s3_settings: Settings) -> AsyncIterator[AppContext]:
    async with fresh_context(s3_settings) as context:
        yield context


@pytest.fixture
async def s3_app(s3_settings: Settings, s3_ctx: AppContext) -> AsyncIterator[Any]:
    async with running_app(s3_settings, s3_ctx) as app:
        yield app


@pytest.fixture
async def s3_client(s3_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(s3_app, "203.0.113.9") as client:
        yield client


def _raw(ctx: AppContext) -> Any:
    assert isinstance(ctx.storage, S3Storage)
    return ctx.storage.client


async def test_storage_basics(s3_ctx: AppContext) -> None:
    storage = s3_ctx.storage
    await storage.put("media/abc/poster.jpg", b"jpeg-bytes", "image/jpeg")
    info = await storage.stat("media/abc/poster.jpg")
    assert info is not None and info.size == 10
    async with httpx.AsyncClient() as http:
        fetched = await http.get(storage.signed_url("media/abc/poster.jpg", 60))
    assert fetched.status_code == 200 and fetched.content == b"jpeg-bytes"
    assert await storage.delete_prefix("media/abc") == 1
    assert await storage.stat("media/abc/poster.jpg") is None


async def test_tus_upload_lands_in_s3_in_multipart_parts(
    s3_app: Any, s3_client: httpx.AsyncClient, s3_ctx: AppContext
) -> None:
    # Random bytes: stop the job runner so it does not refuse (and delete) them mid-test.
    await s3_app.state.background.runner.stop()
    maker = await sign_up(s3_client, "s3maker")
    data = os.urandom(17 * MIB + 5)
    url = (await create(s3_client, maker, len(data))).headers["Location"]
    assert (await patch(s3_client, maker, url, 0, data[: 10 * MIB])).status_code == 204
    assert (await patch(s3_client, maker, url, 10 * MIB, data[10 * MIB :])).status_code == 204
    media_id = url.rsplit("/", 1)[1]
    obj = _raw(s3_ctx).get_object(Bucket=BUCKET, Key=f"media/{media_id}/source")
    body = obj["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    # Three parts: 8 MiB, 8 MiB and the rest (S3 marks a multipart object's ETag "-N").
    assert obj["ETag"].strip('"').endswith("-3")
    assert _raw(s3_ctx).list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


async def test_expired_s3_upload_aborts_its_multipart(
    s3_client: httpx.AsyncClient, s3_ctx: AppContext
) -> None:
    maker = await sign_up(s3_client, "s3quitter")
    url = (await create(s3_client, maker, 20 * MIB)).headers["Location"]
    await patch(s3_client, maker, url, 0, os.urandom(9 * MIB))
    pending = _raw(s3_ctx).list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert len(pending) == 1
    later = utcnow() + timedelta(hours=25)
    assert await uploads.expire(s3_ctx, now=later) == 1
    assert _raw(s3_ctx).list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert (await head(s3_client, maker, url)).status_code == 410


async def test_private_hls_on_s3_plays_through_signed_app_urls(
    s3_app: Any, s3_client: httpx.AsyncClient, s3_ctx: AppContext, tmp_path: Path
) -> None:
    from tests.media import media_factory
    from tests.media.test_pipeline import processed, upload

    maker = await sign_up(s3_client, "s3film")
    clip = await asyncio.to_thread(media_factory.landscape_video, tmp_path, 2, 320, 180)
    media_id = await upload(s3_client, maker, clip, "video")
    media = await processed(s3_app, s3_client, maker, media_id)
    assert media["status"] == "ready", media
    assert media["playback_url"].startswith("/media/_s/")
    master = await s3_client.get(media["playback_url"])
    assert master.status_code == 200 and "#EXT-X-STREAM-INF" in master.text
    playlist_url = urljoin(media["playback_url"], master.text.splitlines()[-1])
    playlist = await s3_client.get(playlist_url)
    assert playlist.status_code == 200
    segment = next(line for line in playlist.text.splitlines() if line and line[0] != "#")
    redirect = await s3_client.get(urljoin(playlist_url, segment))
    # Segments come straight from the store, through a short-lived presigned URL.
    assert redirect.status_code == 307
    async with httpx.AsyncClient() as http:
        fetched = await http.get(redirect.headers["location"])
    assert fetched.status_code == 200 and len(fetched.content) > 100
    # Without the signature nothing of a private video is handed out.
    key = playlist_url.split("/media/_s/", 1)[1].split("/", 2)[2]
    assert (await s3_client.get(f"/media/{key}")).status_code == 404
