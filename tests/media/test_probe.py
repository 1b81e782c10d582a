"""Content checks: what an upload really is, and every reason it can be refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from craftreel.media.probe import Limits, MediaKind, MediaRejected, probe, sniff
from tests.media import media_factory as make

VIDEO, IMAGE, AUDIO = MediaKind.VIDEO, MediaKind.IMAGE, MediaKind.AUDIO


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe")


def head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4096)


@pytest.fixture(scope="module")
def samples(media: Path) -> dict[str, Path]:
    """One small real file per container we sniff, made by ffmpeg or Pillow."""
    made: dict[str, Path] = {}
    tone = ["-f", "lavfi", "-i", "sine=duration=0.5"]
    picture = ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=0.5"]
    for name, args in {
        "a.wav": tone,
        "a.flac": tone,
        "a.mp3": tone,
        "a.ogg": tone,
        "a.aac": tone,
        "a.m4a": [*tone, "-c:a", "aac"],
        "v.mp4": [*picture, "-c:v", "libx264", "-preset", "ultrafast"],
        "v.mov": [*picture, "-c:v", "libx264", "-preset", "ultrafast"],
        "v.mkv": [*picture, "-c:v", "libx264", "-preset", "ultrafast"],
        "v.webm": [*picture, "-c:v", "libvpx", "-deadline", "realtime"],
    }.items():
        made[name] = media / name
        make.ffmpeg(*args, str(made[name]))
    for name, fmt in {"i.jpg": "JPEG", "i.png": "PNG", "i.webp": "WEBP", "i.gif": "GIF"}.items():
        made[name] = media / name
        Image.new("RGB", (32, 32), "orange").save(made[name], fmt)
    made["i.avif"] = media / "i.avif"
    Image.new("RGB", (32, 32), "orange").save(made["i.avif"], "AVIF")
    return made


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("a.wav", "audio/wav"),
        ("a.flac", "audio/flac"),
        ("a.mp3", "audio/mpeg"),
        ("a.ogg", "audio/ogg"),
        ("a.aac", "audio/aac"),
        ("a.m4a", "audio/mp4"),
        ("v.mp4", "video/mp4"),
        ("v.mov", "video/quicktime"),
        ("v.mkv", "video/x-matroska"),
        ("v.webm", "video/webm"),
        ("i.jpg", "image/jpeg"),
        ("i.png", "image/png"),
        ("i.webp", "image/webp"),
        ("i.gif", "image/gif"),
        ("i.avif", "image/avif"),
    ],
)
def test_sniff_real_files(samples: dict[str, Path], name: str, mime: str) -> None:
    assert sniff(head(samples[name])) == mime


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 32


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        (ftyp(b"mif1", b"heic"), "image/heic"),  # a generic major brand, heic compatible
        (ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
        (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4"),
        (ftyp(b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4"),
        (ftyp(b"mp42", b"isom"), "video/mp4"),
        (ftyp(b"M4V ", b"M4V ", b"mp42"), "video/x-m4v"),
        (ftyp(b"qt  ", b"qt  "), "video/quicktime"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64\x00", "audio/mpeg"),  # MPEG-1 layer III frame, no ID3 tag
        (b"\xff\xf1\x50\x80\x02", "audio/aac"),  # ADTS
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),
        (b"%PDF-1.7\n", None),
        (b"<!DOCTYPE html><script>", None),
        (b"PK\x03\x04", None),
        (b"\xff\xfe\x00\x00", None),
        (b"", None),
    ],
)
def test_sniff_headers(data: bytes, mime: str | None) -> None:
    assert sniff(data) == mime


def test_landscape_video(media: Path) -> None:
    result = probe(make.landscape_video(media), VIDEO, Limits())

    assert result.kind is VIDEO
    assert result.mime == "video/mp4"
    assert result.duration_s == pytest.approx(3.0, abs=0.1)
    assert (result.width, result.height, result.rotation) == (1280, 720, 0)
    assert result.fps == pytest.approx(30)
    assert result.has_video and result.has_audio


@pytest.mark.parametrize(
    ("rotation", "size"), [(90, (180, 320)), (180, (320, 180)), (270, (180, 320))]
)
def test_phone_video_reports_rotation_and_displayed_size(
    media: Path, rotation: int, size: tuple[int, int]
) -> None:
    result = probe(make.portrait_phone_video(media, rotation=rotation), VIDEO, Limits())

    assert result.mime == "video/quicktime"
    assert result.rotation == rotation
    assert (result.width, result.height) == size


def test_a_browser_recording_without_a_declared_duration(media: Path) -> None:
    result = probe(make.browser_recording(media), VIDEO, Limits())

    assert result.mime == "video/webm"
    assert result.duration_s == pytest.approx(2.0, abs=0.1)
    assert (result.width, result.height) == (160, 120)


def test_silent_video(media: Path) -> None:
    result = probe(make.silent_video(media), VIDEO, Limits())

    assert result.has_video and not result.has_audio


def test_audio_only(media: Path) -> None:
    result = probe(make.audio_only(media), AUDIO, Limits())

    assert result.kind is AUDIO
    assert result.mime == "audio/mp4"
    assert result.duration_s == pytest.approx(3.0, abs=0.1)
    assert result.width is None and result.fps is None
    assert result.has_audio and not result.has_video


def test_sound_in_a_plain_mp4_is_audio(media: Path) -> None:
    result = probe(make.audio_in_mp4(media), AUDIO, Limits())

    assert (result.kind, result.mime) == (AUDIO, "audio/mp4")


def test_photo_reports_upright_size(media: Path) -> None:
    result = probe(make.jpeg_with_gps(media, 400, 300), IMAGE, Limits())

    assert (result.kind, result.mime) == (IMAGE, "image/jpeg")
    assert result.rotation == 90
    assert (result.width, result.height) == (300, 400)
    assert result.duration_s is None


def truncated_faststart_mp4(directory: Path) -> Path:
    return make.truncated_mp4(directory, faststart=True)


def header_only_bomb_png(directory: Path) -> Path:
    """48 megapixels: over our limit, under Pillow's own bomb guard."""
    return make.pixel_bomb_png(directory, 8000, 6000)


@pytest.mark.parametrize(
    ("factory", "expected", "limits", "code"),
    [
        (make.empty_file, VIDEO, Limits(), "empty"),
        (make.text_named_mp4, VIDEO, Limits(), "not_media"),
        (make.png_named_mp4, VIDEO, Limits(), "type_mismatch"),
        (make.audio_only, VIDEO, Limits(), "type_mismatch"),
        (make.silent_video, AUDIO, Limits(), "type_mismatch"),
        (make.truncated_mp4, VIDEO, Limits(), "corrupt"),
        (truncated_faststart_mp4, VIDEO, Limits(), "corrupt"),
        (make.truncated_jpeg, IMAGE, Limits(), "corrupt"),
        (make.audio_in_mp4, VIDEO, Limits(), "no_video_stream"),
        (make.subtitles_only_mp4, AUDIO, Limits(), "no_audio_stream"),
        (make.pixel_bomb_png, IMAGE, Limits(), "too_many_pixels"),
        (header_only_bomb_png, IMAGE, Limits(), "too_many_pixels"),
        (make.jpeg_with_gps, IMAGE, Limits(max_pixels=100_000), "too_many_pixels"),
        (make.silent_video, VIDEO, Limits(max_video_pixels=320 * 180 - 1), "too_many_pixels"),
        (make.silent_video, VIDEO, Limits(max_duration_s=2.5), "too_long"),
        (make.audio_only, AUDIO, Limits(max_duration_s=2.5), "too_long"),
        (make.empty_wav, AUDIO, Limits(), "too_short"),
        (make.heic_header, IMAGE, Limits(), "unsupported"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_rejections(
    tmp_path: Path, factory: make.Factory, expected: MediaKind, limits: Limits, code: str
) -> None:
    path = factory(tmp_path)

    with pytest.raises(MediaRejected) as rejected:
        probe(path, expected, limits)

    assert rejected.value.code == code
    assert rejected.value.message


def test_a_longer_video_within_the_limit_passes(media: Path) -> None:
    result = probe(make.silent_video(media), VIDEO, Limits(max_duration_s=3.5))

    assert result.duration_s == pytest.approx(3.0, abs=0.1)
