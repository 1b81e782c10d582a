"""Avatars: uploaded through the API, stored upright, square, small and without EXIF or GPS."""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ExifTags, Image

from craftreel.config import Settings
from tests.factories import Person, sign_up

RED = (220, 30, 30)
BLUE = (30, 30, 220)


@pytest.fixture
def avatar_max_bytes() -> int | None:
    """The byte limit for avatars; None keeps the default (a test may parametrize this)."""
    return None


@pytest.fixture
def settings(settings: Settings, avatar_max_bytes: int | None) -> Settings:
    if avatar_max_bytes is None:
        return settings
    return settings.model_copy(update={"avatar_max_bytes": avatar_max_bytes})


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def sideways_phone_photo() -> bytes:
    """A JPEG as a phone stores it when held sideways: the sky (red) on the stored left,
    EXIF orientation 6 ("turn 90° clockwise to show"), and where it was taken in GPS tags."""
    image = Image.new("RGB", (600, 400), BLUE)
    image.paste(RED, (0, 0, 300, 400))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PhoneCo"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 7.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 1.0)
    data = _encode(image, "JPEG", exif=exif, quality=95)
    # The photo really carries what the upload must strip.
    with Image.open(io.BytesIO(data)) as check:
        assert check.getexif()[ExifTags.Base.Orientation] == 6
        assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    return data


def small_png(colour: tuple[int, int, int] = BLUE) -> bytes:
    return _encode(Image.new("RGB", (64, 64), colour), "PNG")


def noisy_png(side: int = 64) -> bytes:
    """A real image that does not compress, so its size is easy to control."""
    return _encode(Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)), "PNG")


@functools.cache
def png_declaring(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of ``width`` x ``height``: kilobytes on disk, huge once decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte, then the packed pixels
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def upload(
    client: httpx.AsyncClient,
    person: Person,
    data: bytes,
    filename: str = "me.jpg",
    content_type: str = "image/jpeg",
) -> httpx.Response:
    return await client.put(
        "/api/v1/me/avatar", files={"file": (filename, data, content_type)}, headers=person.auth
    )


async def avatar_url_of(client: httpx.AsyncClient, person: Person) -> str | None:
    response = await client.get("/api/v1/me", headers=person.auth)
    assert response.status_code == 200, response.text
    url: str | None = response.json()["avatar_url"]
    return url


def stored_path(settings: Settings, url: str) -> Path:
    assert url.startswith("/media/"), url
    return settings.media_dir / url.removeprefix("/media/")


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.media_dir.rglob("*") if p.is_file())


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 150 and pixel[2] < 100


def is_blue(pixel: tuple[int, ...]) -> bool:
    return pixel[2] > 150 and pixel[0] < 100


# --- accepted ----------------------------------------------------------------------------


async def test_a_phone_photo_becomes_an_upright_square_webp_without_exif(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a signed-in person and a sideways phone photo with GPS in its EXIF
    wren = await sign_up(client, "wren")
    photo = sideways_phone_photo()

    # when they upload it as their avatar
    response = await upload(client, wren, photo)

    # then it is accepted, and what is served is a clean, upright 512x512 WebP
    assert response.status_code == 200, response.text
    url = response.json()["avatar_url"]
    assert url == await avatar_url_of(client, wren)
    served = await client.get(url)
    assert served.status_code == 200
    assert b"PhoneCo" not in served.content
    with Image.open(io.BytesIO(served.content)) as avatar:
        assert avatar.format == "WEBP"
        assert avatar.size == (512, 512)
        assert "exif" not in avatar.info
        assert "xmp" not in avatar.info
        assert len(avatar.getexif()) == 0
        assert len(avatar.getexif().get_ifd(ExifTags.IFD.GPSInfo)) == 0
        rgb = avatar.convert("RGB")
        # the sky is at the top: the orientation was applied, clockwise
        assert is_red(rgb.getpixel((60, 60)))  # type: ignore[arg-type]
        assert is_red(rgb.getpixel((450, 60)))  # type: ignore[arg-type]
        assert is_blue(rgb.getpixel((60, 450)))  # type: ignore[arg-type]
        assert is_blue(rgb.getpixel((450, 450)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "filename", "content_type"),
    [("PNG", "me.png", "image/png"), ("WEBP", "me.webp", "image/webp"), ("GIF", "me.gif", "")],
)
async def test_png_webp_and_gif_are_accepted(
    client: httpx.AsyncClient, fmt: str, filename: str, content_type: str
) -> None:
    # given an image in another format we accept, with transparency and not square
    image = Image.new("RGBA", (300, 200), (*RED, 128))
    ash = await sign_up(client, "ash")

    # when it is uploaded
    response = await upload(
        client, ash, _encode(image.convert("P") if fmt == "GIF" else image, fmt), filename
    )

    # then it is served as a 512x512 WebP
    assert response.status_code == 200, response.text
    served = await client.get(response.json()["avatar_url"])
    with Image.open(io.BytesIO(served.content)) as avatar:
        assert (avatar.format, avatar.size) == ("WEBP", (512, 512))


async def test_replacing_an_avatar_removes_the_old_file(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given someone with an avatar
    finch = await sign_up(client, "finch")
    first = (await upload(client, finch, small_png(RED), "red.png")).json()["avatar_url"]
    assert stored_path(settings, first).is_file()

    # when they upload a new one
    response = await upload(client, finch, small_png(BLUE), "blue.png")

    # then the new one is served and the old file is gone from disk and from /media/
    assert response.status_code == 200, response.text
    second = response.json()["avatar_url"]
    assert second != first
    assert await avatar_url_of(client, finch) == second
    assert stored_files(settings) == [stored_path(settings, second)]
    assert (await client.get(first)).status_code == 404
    assert (await client.get(second)).status_code == 200


# --- refused -----------------------------------------------------------------------------


def _truncated_jpeg() -> bytes:
    photo = _encode(Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)), "JPEG")
    return photo[: len(photo) // 2]


REFUSED: dict[str, tuple[bytes, str]] = {
    "text named .png": (b"these are my notes, not a picture\n", "notes.png"),
    "empty file": (b"", "empty.jpg"),
    "pixel bomb 20000x20000": (png_declaring(20_000, 20_000), "bomb.png"),
    "over the pixel limit 8000x8000": (png_declaring(8_000, 8_000), "huge.png"),
    "truncated JPEG": (_truncated_jpeg(), "cut.jpg"),
    "BMP, not an accepted format": (_encode(Image.new("RGB", (32, 32), RED), "BMP"), "me.bmp"),
}


@pytest.mark.parametrize("had_avatar", [False, True], ids=["no avatar yet", "had an avatar"])
@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_file_that_is_not_an_acceptable_image_is_refused(
    client: httpx.AsyncClient, settings: Settings, case: str, had_avatar: bool
) -> None:
    # given someone with or without an avatar
    robin = await sign_up(client, "robin")
    before = None
    if had_avatar:
        before = (await upload(client, robin, small_png(), "ok.png")).json()["avatar_url"]
    files_before = stored_files(settings)

    # when they upload something that is not an image we accept
    data, filename = REFUSED[case]
    response = await upload(client, robin, data, filename, "image/png")

    # then it is refused with a stable code, and their avatar is as it was
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "image_invalid"
    assert await avatar_url_of(client, robin) == before
    assert stored_files(settings) == files_before
    if before is not None:
        assert (await client.get(before)).status_code == 200


@pytest.mark.parametrize("avatar_max_bytes", [4096])
@pytest.mark.parametrize("had_avatar", [False, True], ids=["no avatar yet", "had an avatar"])
async def test_a_file_over_the_byte_limit_is_refused(
    client: httpx.AsyncClient, settings: Settings, had_avatar: bool
) -> None:
    # given avatars limited to 4 KiB, and someone with or without one
    quill = await sign_up(client, "quill")
    before = None
    if had_avatar:
        before = (await upload(client, quill, small_png(), "ok.png")).json()["avatar_url"]
    files_before = stored_files(settings)
    big = noisy_png(64)
    assert len(big) > 4096

    # when they upload a real image over the limit
    response = await upload(client, quill, big, "big.png", "image/png")

    # then it is refused as too large, and their avatar is as it was
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "avatar_too_large"
    assert await avatar_url_of(client, quill) == before
    assert stored_files(settings) == files_before
