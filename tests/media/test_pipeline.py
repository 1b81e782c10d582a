"""From a finished upload to what is served: checks by content, renditions, clean metadata."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from uuid import UUID

import av
import httpx
import pytest
from PIL import Image
from sqlalchemy import update

from craftreel.context import AppContext
from craftreel.media.models import MediaObject
from tests.factories import Person, sign_up
from tests.media import media_factory
from tests.media.test_uploads import TUS, metadata

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def upload(
    client: httpx.AsyncClient, person: Person, path: Path, kind: str, chunk: int = 256 * 1024
) -> str:
    data = await asyncio.to_thread(path.read_bytes)
    created = await client.post(
        "/api/v1/uploads",
        headers={
            **TUS,
            **person.auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(kind=kind, filename=path.name),
        },
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    for offset in range(0, len(data), chunk):
        response = await client.patch(
            url,
            content=data[offset : offset + chunk],
            headers={
                **TUS,
                **person.auth,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 204, response.text
    return url.rsplit("/", 1)[1]


async def processed(
    app: Any, client: httpx.AsyncClient, person: Person, media_id: str
) -> dict[str, Any]:
    await asyncio.wait_for(app.state.background.runner.drain(), 120)
    response = await client.get(f"/api/v1/media/{media_id}", headers=person.auth)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Person:
    return await sign_up(client, "filmmaker")


def _assert_clean(data: bytes) -> None:
    for marker in media_factory.PRIVATE_MARKERS:
        assert marker not in data, f"{marker!r} survived into served media"


async def _get(client: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    return await client.get(url, headers=headers)


async def test_landscape_video_gets_a_ladder_poster_and_thumbnails(
    app: Any, client: httpx.AsyncClient, maker: Person, tmp_path: Path
) -> None:
    source = media_factory.landscape_video(tmp_path, seconds=2)
    media_id = await upload(client, maker, source, "video", chunk=4 * 1024 * 1024)
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    assert media["playable"] is True
    assert [r["name"] for r in media["renditions"]] == ["360p", "720p"]
    assert media["duration_s"] == pytest.approx(2, abs=0.2)
    assert (media["width"], media["height"]) == (1280, 720)
    assert media["aspect"] == pytest.approx(16 / 9, abs=0.01)

    master = await _get(client, media["playback_url"])
    assert master.status_code == 200
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert master.text.count("#EXT-X-STREAM-INF") == 2
    # Relative URLs in the playlists resolve under the same signed path.
    playlist_url = urljoin(media["playback_url"], master.text.splitlines()[-1])
    playlist = await _get(client, playlist_url)
    assert playlist.status_code == 200
    files = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    segment_url = urljoin(playlist_url, files[0])
    segment = await _get(client, segment_url)
    assert segment.status_code == 200
    assert segment.headers["x-content-type-options"] == "nosniff"
    ranged = await _get(client, segment_url, Range="bytes=0-99")
    assert ranged.status_code == 206 and len(ranged.content) == 100
    cached = await _get(client, segment_url, **{"If-None-Match": segment.headers["etag"]})
    assert cached.status_code == 304
    vtt = await _get(client, media["thumbnails_url"])
    assert vtt.text.startswith("WEBVTT") and "#xywh=" in vtt.text


async def test_served_video_carries_no_location_or_device_tags(
    app: Any, client: httpx.AsyncClient, maker: Person, tmp_path: Path
) -> None:
    source = media_factory.video_with_location(tmp_path)
    assert b"48.8584" in source.read_bytes()
    media_id = await upload(client, maker, source, "video")
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    master = await _get(client, media["playback_url"])
    playlist_url = urljoin(media["playback_url"], master.text.splitlines()[-1])
    playlist = (await _get(client, playlist_url)).text
    init = [
        line.split('URI="')[1].rstrip('"')
        for line in playlist.splitlines()
        if line.startswith("#EXT-X-MAP")
    ]
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    whole = (await _get(client, urljoin(playlist_url, init[0]))).content
    for name in segments:
        whole += (await _get(client, urljoin(playlist_url, name))).content
    _assert_clean(whole)
    with av.open(io.BytesIO(whole)) as container:
        tags = {k.lower() for k in container.metadata}
        assert not tags & {"location", "creation_time", "make", "model"}
    poster = await _get(client, media["poster_url"])
    assert poster.headers["content-type"] == "image/jpeg"
    _assert_clean(poster.content)
    assert not Image.open(io.BytesIO(poster.content)).getexif()
    sprite = await _get(client, urljoin(media["thumbnails_url"], "sprite.jpg"))
    _assert_clean(sprite.content)


async def test_portrait_phone_video_comes_out_upright(
    app: Any, client: httpx.AsyncClient, maker: Person, tmp_path: Path
) -> None:
    media_id = await upload(client, maker, media_factory.portrait_phone_video(tmp_path), "video")
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    assert media["width"] < media["height"]
    assert media["renditions"][0]["width"] < media["renditions"][0]["height"]


async def test_audio_gets_hls_and_a_waveform(
    app: Any, client: httpx.AsyncClient, maker: Person, tmp_path: Path
) -> None:
    media_id = await upload(client, maker, media_factory.audio_only(tmp_path), "audio")
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    assert [r["name"] for r in media["renditions"]] == ["audio"]
    peaks = (await _get(client, media["waveform_url"])).json()["peaks"]
    assert len(peaks) == 200 and all(0 <= p <= 1 for p in peaks) and max(peaks) > 0.1


async def test_photo_gets_clean_variants(
    app: Any, client: httpx.AsyncClient, maker: Person, tmp_path: Path
) -> None:
    media_id = await upload(client, maker, media_factory.jpeg_with_gps(tmp_path), "image")
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    assert media["blurhash"]
    assert {v["format"] for v in media["variants"]} == {"webp", "jpeg"}
    for variant in media["variants"]:
        served = await _get(client, variant["url"])
        _assert_clean(served.content)
        image = Image.open(io.BytesIO(served.content))
        assert not image.getexif()
        # The stored picture was sideways with an orientation tag; variants are upright.
        assert image.height > image.width


@pytest.mark.parametrize(
    ("make", "kind", "code"),
    [
        (media_factory.png_named_mp4, "video", "type_mismatch"),
        (media_factory.text_named_mp4, "video", "not_media"),
        (media_factory.truncated_mp4, "video", "corrupt"),
        (media_factory.audio_only, "video", "type_mismatch"),
        (media_factory.audio_in_mp4, "video", "no_video_stream"),
        (media_factory.pixel_bomb_png, "image", "too_many_pixels"),
    ],
)
async def test_files_that_are_not_what_they_claim_are_refused(
    app: Any,
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    tmp_path: Path,
    make: Any,
    kind: str,
    code: str,
) -> None:
    media_id = await upload(client, maker, make(tmp_path), kind)
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "failed"
    assert media["failure"]["code"] == code
    assert media["playback_url"] is None and media["renditions"] == []
    # Nothing of it is kept or served.
    assert not list((ctx.settings.media_dir / "media" / media_id).rglob("*.*"))
    assert not (ctx.settings.media_dir / "media" / media_id / "source").exists()


async def test_media_is_private_until_published(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, maker: Person, tmp_path: Path
) -> None:
    media_id = await upload(client, maker, media_factory.jpeg_with_gps(tmp_path), "image")
    media = await processed(app, client, maker, media_id)
    stranger = await sign_up(client, "stranger")
    assert (await client.get(f"/api/v1/media/{media_id}", headers=stranger.auth)).status_code == 404
    key = media["variants"][0]["url"].split("/media/_s/", 1)[1].split("/", 2)[2]
    assert (await _get(client, f"/media/{key}")).status_code == 404
    forged = media["variants"][0]["url"].replace("/media/_s/", "/media/_s/1").rsplit("/", 1)[0]
    assert (await _get(client, forged + "/x.webp")).status_code == 404

    # Once attached to something published (the posts feature sets this), anyone may fetch it.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(MediaObject).where(MediaObject.id == UUID(media_id)).values(is_public=True)
        )
    public = (await client.get(f"/api/v1/media/{media_id}", headers=stranger.auth)).json()
    served = await _get(client, public["variants"][0]["url"])
    assert served.status_code == 200
    assert "immutable" in served.headers["cache-control"]
    source = await _get(client, f"/media/media/{media_id}/source")
    assert source.status_code == 404
