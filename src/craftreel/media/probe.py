"""Content checks on a finished upload: magic bytes, then a real probe with PyAV or Pillow."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.video.stream import VideoStream
from PIL import Image, UnidentifiedImageError

from craftreel.media.models import MediaKind

HEAD_BYTES = 4096

# How far before a file's end the tail check starts decoding, in seconds.
_TAIL_SECONDS = 2.0
# Frames decoded at each end: enough to trip over broken data, cheap on any size of file.
_FRAMES_PER_END = 3


class MediaRejected(Exception):
    """An upload is not acceptable media; `code` is stable and shown to the uploader."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 40_000_000
    max_video_pixels: int = 4096 * 4096
    max_duration_s: float = 600.0


@dataclass(frozen=True)
class ProbeResult:
    kind: MediaKind
    mime: str
    duration_s: float | None
    #: As displayed, i.e. after the rotation is applied.
    width: int | None
    height: int | None
    #: Clockwise degrees a player turns the stored picture to show it (0, 90, 180 or 270).
    rotation: int
    fps: float | None
    has_video: bool
    has_audio: bool


# ISO base media (ftyp) brands that decide the type on their own; anything else is MP4.
_FTYP_BRANDS: dict[bytes, str] = {
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"M4P ": "audio/mp4",
    b"F4A ": "audio/mp4",
    b"qt  ": "video/quicktime",
    b"M4V ": "video/x-m4v",
    b"M4VH": "video/x-m4v",
    b"M4VP": "video/x-m4v",
    b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp",
    b"3gp6": "video/3gpp",
    b"3g2a": "video/3gpp2",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"hevc": "image/heic-sequence",
    b"hevx": "image/heic-sequence",
    b"mif1": "image/heif",
    b"msf1": "image/heif-sequence",
    b"avif": "image/avif",
    b"avis": "image/avif",
}

# Which kinds a sniffed type may turn out to be; the probe settles the ambiguous ones.
_KINDS: dict[str, frozenset[MediaKind]] = {
    "video/mp4": frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
    "video/x-m4v": frozenset({MediaKind.VIDEO}),
    "video/quicktime": frozenset({MediaKind.VIDEO}),
    "video/3gpp": frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
    "video/3gpp2": frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
    "video/webm": frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
    "video/x-matroska": frozenset({MediaKind.VIDEO, MediaKind.AUDIO}),
    "audio/mp4": frozenset({MediaKind.AUDIO}),
    "audio/mpeg": frozenset({MediaKind.AUDIO}),
    "audio/wav": frozenset({MediaKind.AUDIO}),
    "audio/ogg": frozenset({MediaKind.AUDIO}),
    "audio/flac": frozenset({MediaKind.AUDIO}),
    "audio/aac": frozenset({MediaKind.AUDIO}),
    "image/jpeg": frozenset({MediaKind.IMAGE}),
    "image/png": frozenset({MediaKind.IMAGE}),
    "image/webp": frozenset({MediaKind.IMAGE}),
    "image/gif": frozenset({MediaKind.IMAGE}),
    "image/avif": frozenset({MediaKind.IMAGE}),
    "image/heic": frozenset({MediaKind.IMAGE}),
    "image/heif": frozenset({MediaKind.IMAGE}),
    "image/heic-sequence": frozenset({MediaKind.IMAGE}),
    "image/heif-sequence": frozenset({MediaKind.IMAGE}),
}

_KIND_NAMES = {MediaKind.VIDEO: "a video", MediaKind.IMAGE: "an image", MediaKind.AUDIO: "audio"}

# The Pillow format each image type we can process must decode as (HEIC needs a plugin).
_PILLOW_FORMATS = {
    "image/jpeg": {"JPEG", "MPO"},
    "image/png": {"PNG"},
    "image/webp": {"WEBP"},
    "image/gif": {"GIF"},
    "image/avif": {"AVIF"},
}

# The MIME type an audio-only file in a video-capable container is served as.
_AUDIO_MIME = {
    "video/mp4": "audio/mp4",
    "video/3gpp": "audio/3gpp",
    "video/3gpp2": "audio/3gpp2",
    "video/webm": "audio/webm",
    "video/x-matroska": "audio/x-matroska",
}

# EXIF Orientation values, as the clockwise turn that shows the stored picture upright.
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}
_EXIF_ORIENTATION = 0x0112


def sniff(head: bytes) -> str | None:
    """The MIME type the first bytes of a file announce, or None for anything we don't take."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video/quicktime"  # QuickTime files from before the ftyp box
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head.startswith(b"RIFF"):
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav"}.get(head[8:12])
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 3 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # 12-bit sync and layer 0: an ADTS AAC frame
            return "audio/aac"
        version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
        bitrate_index, rate_index = head[2] >> 4, (head[2] >> 2) & 0b11
        # 11 sync bits and no reserved or "free format" values: an MPEG audio frame.
        valid = version != 1 and layer != 0 and bitrate_index not in (0, 0xF) and rate_index != 3
        if head[1] & 0xE0 == 0xE0 and valid:
            return "audio/mpeg"
    return None


def _sniff_ftyp(head: bytes) -> str:
    box_size = int.from_bytes(head[0:4], "big")
    end = min(box_size, len(head)) if box_size >= 16 else 16
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    known = [_FTYP_BRANDS[brand] for brand in brands if brand in _FTYP_BRANDS]
    # The major brand first, then compatible brands in order; a generic HEIF brand ("mif1")
    # gives way to a specific one ("heic", "avif") listed after it.
    specific = [mime for mime in known if not mime.startswith("image/heif")]
    return (specific or known or ["video/mp4"])[0]


def probe(path: Path, expected: MediaKind, limits: Limits) -> ProbeResult:
    """Check that the file at `path` is acceptable media of the `expected` kind."""
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("empty", "The file is empty.")
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    mime = sniff(head)
    if mime is None:
        raise MediaRejected("not_media", "This file is not a video, image or audio file we accept.")
    if expected not in _KINDS[mime]:
        raise MediaRejected("type_mismatch", f"This {mime} file is not {_KIND_NAMES[expected]}.")
    if expected is MediaKind.IMAGE:
        return _probe_image(path, mime, limits)
    return _probe_av(path, mime, expected, limits)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a picture over the pixel limit (call it before decoding any of it)."""
    if width * height > max_pixels:
        raise MediaRejected(
            "too_many_pixels",
            f"The picture is {width}×{height}; at most {max_pixels:,} pixels are accepted.",
        )


def _probe_image(path: Path, mime: str, limits: Limits) -> ProbeResult:
    if mime not in _PILLOW_FORMATS:
        raise MediaRejected("unsupported", f"{mime} images are not supported yet; use JPEG.")
    try:
        with Image.open(path) as image:
            if image.format not in _PILLOW_FORMATS[mime]:
                raise MediaRejected("corrupt", "The image could not be read.")
            # Image.open has read only the header, so a decompression bomb stops here.
            check_pixels(image.width, image.height, limits.max_pixels)
            rotation = _EXIF_ROTATION.get(image.getexif().get(_EXIF_ORIENTATION, 1), 0)
            width, height = image.size
            if image.format == "JPEG":
                # DCT scaling still reads every byte (so truncation shows) for 1/64 of the work.
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Image.DecompressionBombError as e:
        raise MediaRejected("too_many_pixels", "The image has too many pixels.") from e
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise MediaRejected("corrupt", "The image could not be read.") from e
    if rotation in (90, 270):
        width, height = height, width
    return ProbeResult(
        kind=MediaKind.IMAGE,
        mime=mime,
        duration_s=None,
        width=width,
        height=height,
        rotation=rotation,
        fps=None,
        has_video=False,
        has_audio=False,
    )


def _probe_av(path: Path, mime: str, expected: MediaKind, limits: Limits) -> ProbeResult:
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        raise MediaRejected("corrupt", "The file could not be read; it may be damaged.") from e
    with container:
        video = _main_video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        if expected is MediaKind.VIDEO and video is None:
            raise MediaRejected("no_video_stream", "The file has no video in it.")
        if expected is MediaKind.AUDIO:
            if video is not None:
                raise MediaRejected("type_mismatch", "This file is a video, not audio.")
            if audio is None:
                raise MediaRejected("no_audio_stream", "The file has no sound in it.")
        if video is not None:
            context = video.codec_context
            check_pixels(context.width, context.height, limits.max_video_pixels)
        declared = container.duration / av.time_base if container.duration else None
        if declared is not None:
            _check_duration(declared, limits)
        try:
            covered = _demux_all(container)
            # Recordings from browsers (MediaRecorder WebM) often declare no duration at all.
            duration = declared if declared is not None else covered
            _check_duration(duration, limits)
            # A file cut short keeps its declared duration (index first) but loses its packets.
            if covered + 1.0 < duration * 0.98:
                raise MediaRejected("corrupt", "The file is incomplete; upload it again.")
            main = video if video is not None else audio
            assert main is not None
            first = _decode_some(container, main, 0.0)
            if duration > _TAIL_SECONDS:
                _decode_some(container, main, duration - _TAIL_SECONDS)
        except av.error.FFmpegError as e:
            raise MediaRejected("corrupt", "The file could not be read; it may be damaged.") from e
        rotation = 0
        width = height = None
        fps = None
        if video is not None:
            rotation = _rotation(first[0], video)
            width, height = _display_size(video, rotation)
            rate = video.average_rate or video.guessed_rate
            fps = round(float(rate), 3) if rate else None
    kind = MediaKind.VIDEO if video is not None else MediaKind.AUDIO
    if kind is MediaKind.AUDIO:
        mime = _AUDIO_MIME.get(mime, mime)
    return ProbeResult(
        kind=kind,
        mime=mime,
        duration_s=round(duration, 3),
        width=width,
        height=height,
        rotation=rotation,
        fps=fps,
        has_video=video is not None,
        has_audio=audio is not None,
    )


def _main_video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        # Cover art in an audio file is a one-picture "video" stream.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _check_duration(duration: float, limits: Limits) -> None:
    if duration <= 0:
        raise MediaRejected("too_short", "The file has no duration.")
    if duration > limits.max_duration_s:
        raise MediaRejected(
            "too_long",
            f"The file lasts {duration:.0f} s; at most {limits.max_duration_s:.0f} s is accepted.",
        )


def _demux_all(container: InputContainer) -> float:
    """Read every packet (no decoding) and return how many seconds they cover."""
    start = container.start_time / av.time_base if container.start_time else 0.0
    end = start
    for packet in container.demux():
        if packet.is_corrupt:
            raise MediaRejected("corrupt", "The file is damaged.")
        if packet.pts is None or packet.time_base is None:
            continue
        packet_end = (packet.pts + (packet.duration or 0)) * packet.time_base
        end = max(end, float(packet_end))
    return end - start


def _decode_some(
    container: InputContainer, stream: VideoStream | AudioStream, at_s: float
) -> list[av.VideoFrame | av.AudioFrame]:
    """Decode a few frames from `at_s` on; a file whose frames won't decode is corrupt."""
    assert stream.time_base is not None
    offset = int(at_s / stream.time_base) + (stream.start_time or 0)
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    frames: list[av.VideoFrame | av.AudioFrame] = []
    for frame in container.decode(stream):
        assert isinstance(frame, av.VideoFrame | av.AudioFrame)
        frames.append(frame)
        if len(frames) >= _FRAMES_PER_END:
            break
    if not frames:
        raise MediaRejected("corrupt", "The file has no pictures or sound that can be decoded.")
    return frames


def _rotation(frame: av.VideoFrame | av.AudioFrame, video: VideoStream) -> int:
    if isinstance(frame, av.VideoFrame) and frame.rotation:
        # PyAV reads the display matrix counter-clockwise; phones and players speak clockwise.
        return (-round(frame.rotation / 90) * 90) % 360
    legacy = video.metadata.get("rotate", "0")  # the tag older muxers wrote instead
    try:
        return (round(float(legacy) / 90) * 90) % 360
    except ValueError:
        return 0


def _display_size(video: VideoStream, rotation: int) -> tuple[int, int]:
    width, height = video.codec_context.width, video.codec_context.height
    sar = video.sample_aspect_ratio
    if sar and sar > 0 and sar != 1:
        width = _even(width * Fraction(sar))
    if rotation in (90, 270):
        width, height = height, width
    return width, height


def _even(value: float | Fraction) -> int:
    return max(2, 2 * math.floor(float(value) / 2 + 0.5))
