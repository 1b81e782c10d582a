"""Test media made on the spot with ffmpeg's lavfi sources and Pillow: nothing committed,
nothing downloaded. Each function writes one file into `directory` and returns its path."""

from __future__ import annotations

import subprocess
import wave
import zlib
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
from PIL import Image, ImageCms

GPS_LATITUDE = (48.0, 51.0, 30.24)  # the Eiffel tower
GPS_LONGITUDE = (2.0, 17.0, 40.2)
ORIENTATION_RIGHT_TOP = 6  # EXIF: turn the stored picture 90° clockwise to show it
XMP_WITH_LOCATION = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.504N" '
    b'exif:GPSLongitude="2,17.67E"/></rdf:RDF></x:xmpmeta>'
)
#: Byte strings from the uploads that must not survive into anything served.
PRIVATE_MARKERS = (
    b"48.8584",
    b"48,51.504N",
    b"iPhone",
    b"Core Media",
    b"2024-05-01",
    b"Exif\x00",
)

Factory = Callable[[Path], Path]

_QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
_X264_FAST = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), *_QUIET, *args], check=True)


def _test_pattern(seconds: float, width: int, height: int, rate: int = 30) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}:duration={seconds}"]


def _tone(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]


def landscape_video(
    directory: Path, seconds: float = 3, width: int = 1280, height: int = 720, name: str = ""
) -> Path:
    out = directory / (name or f"landscape_{width}x{height}_{seconds}s.mp4")
    ffmpeg(
        *_test_pattern(seconds, width, height),
        *_tone(seconds),
        *_X264_FAST,
        *["-c:a", "aac", "-b:a", "64k", "-shortest", str(out)],
    )
    return out


def portrait_phone_video(directory: Path, seconds: float = 3, rotation: int = 90) -> Path:
    """Landscape pixels plus a display matrix saying "turn `rotation`° clockwise", as phones
    record. The stored picture's top half is red, so turned 90° the red half is on the right."""
    landscape = directory / "portrait_source.mp4"
    halves = f"color=c=blue:s=320x180:r=30:d={seconds},drawbox=x=0:y=0:w=320:h=90:c=red:t=fill"
    ffmpeg(
        *["-f", "lavfi", "-i", halves],
        *_tone(seconds),
        *_X264_FAST,
        *["-c:a", "aac", "-b:a", "64k", "-shortest", str(landscape)],
    )
    out = directory / f"phone_{rotation}.mov"
    # -display_rotation counts counter-clockwise: a phone held upright writes -90 (rotate=90).
    ffmpeg("-display_rotation", str(-rotation), "-i", str(landscape), "-c", "copy", str(out))
    landscape.unlink()
    return out


def video_with_location(directory: Path, seconds: float = 3) -> Path:
    """A QuickTime file carrying GPS, device and creation tags the way an iPhone writes them."""
    out = directory / "with_location.mov"
    tags = {
        "location": "+48.8584+002.2945/",
        "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
        "make": "Apple",
        "model": "iPhone 15 Pro",
        "com.apple.quicktime.make": "Apple",
        "com.apple.quicktime.model": "iPhone 15 Pro",
        "creation_time": "2024-05-01T10:00:00Z",
    }
    metadata = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
    ffmpeg(
        *_test_pattern(seconds, 320, 180),
        *_tone(seconds),
        *_X264_FAST,
        *["-c:a", "aac", "-b:a", "64k", "-shortest"],
        *metadata,
        *["-metadata:s:v", "handler_name=Core Media Video"],
        *["-metadata:s:v", "creation_time=2024-05-01T10:00:00Z"],
        *["-movflags", "use_metadata_tags", str(out)],
    )
    return out


def browser_recording(directory: Path, seconds: float = 2) -> Path:
    """A WebM written as a stream, like MediaRecorder's: no duration, no cues."""
    out = directory / "recording.webm"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), *_QUIET]
    command += _test_pattern(seconds, 160, 120) + _tone(seconds)
    command += ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm", "-"]
    out.write_bytes(subprocess.run(command, check=True, capture_output=True).stdout)
    return out


def silent_video(directory: Path, seconds: float = 3) -> Path:
    out = directory / "silent.mp4"
    ffmpeg(*_test_pattern(seconds, 320, 180), *_X264_FAST, str(out))
    return out


def audio_only(directory: Path, seconds: float = 3) -> Path:
    """An m4a of a tone whose loudness rises: silent at the start, full scale at the end."""
    out = directory / "voice_memo.m4a"
    ffmpeg(
        *["-f", "lavfi", "-i", f"aevalsrc=sin(440*2*PI*t)*t/{seconds}:s=48000:d={seconds}"],
        *["-c:a", "aac", "-b:a", "96k", str(out)],
    )
    return out


def audio_in_mp4(directory: Path, seconds: float = 2) -> Path:
    """Sound only, in a plain .mp4 (brand isom): only the probe can tell it has no video."""
    out = directory / "sound_only.mp4"
    ffmpeg(*_tone(seconds), *["-c:a", "aac", "-b:a", "64k", str(out)])
    return out


def subtitles_only_mp4(directory: Path) -> Path:
    """An MP4 with neither pictures nor sound: just a subtitle track."""
    subtitles = directory / "words.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:02,000\nHello\n")
    out = directory / "words_only.mp4"
    ffmpeg("-i", str(subtitles), "-c:s", "mov_text", str(out))
    subtitles.unlink()
    return out


def empty_wav(directory: Path) -> Path:
    """A valid WAV header with no samples: zero duration."""
    out = directory / "nothing.wav"
    with wave.open(str(out), "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(48000)
    return out


def jpeg_with_gps(directory: Path, width: int = 400, height: int = 300) -> Path:
    """A landscape-stored JPEG that is shown portrait (EXIF orientation 6), with GPS and camera
    tags in EXIF and XMP and an ICC profile. Its top half is red, so upright red is on the right."""
    out = directory / f"photo_with_gps_{width}x{height}.jpg"
    image = Image.new("RGB", (width, height), "blue")
    image.paste("red", (0, 0, width, height // 2))
    exif = Image.Exif()
    exif[0x0112] = ORIENTATION_RIGHT_TOP
    exif[0x010F] = "Apple"  # Make
    exif[0x0110] = "iPhone 15 Pro"  # Model
    exif[0x8825] = {1: "N", 2: GPS_LATITUDE, 3: "E", 4: GPS_LONGITUDE}  # GPSInfo
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(out, "JPEG", exif=exif, quality=90, icc_profile=icc, xmp=XMP_WITH_LOCATION)
    return out


def truncated_jpeg(directory: Path) -> Path:
    source = jpeg_with_gps(directory)
    out = directory / "cut_photo.jpg"
    data = source.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    source.unlink()
    return out


def heic_header(directory: Path) -> Path:
    """The first box of an iPhone HEIC photo: enough to be sniffed, not to be decoded."""
    out = directory / "IMG_0001.heic"
    brands = b"heic" + b"\x00\x00\x00\x00" + b"mif1heic"
    out.write_bytes((8 + len(brands)).to_bytes(4, "big") + b"ftyp" + brands + b"\x00" * 64)
    return out


def truncated_mp4(directory: Path, faststart: bool = False) -> Path:
    """A real MP4 cut in half. With faststart the index survives and only the samples are
    missing; without it the index (at the end) is gone."""
    source = landscape_video(directory, 4, 320, 180, name="whole.mp4")
    if faststart:
        moved = directory / "whole_faststart.mp4"
        ffmpeg("-i", str(source), "-c", "copy", "-movflags", "+faststart", str(moved))
        source.unlink()
        source = moved
    data = source.read_bytes()
    source.unlink()
    out = directory / f"truncated{'_faststart' if faststart else ''}.mp4"
    out.write_bytes(data[: len(data) // 2])
    return out


def png_named_mp4(directory: Path) -> Path:
    out = directory / "holiday.mp4"
    Image.new("RGB", (64, 64), "green").save(out, "PNG")
    return out


def empty_file(directory: Path) -> Path:
    out = directory / "empty.mp4"
    out.write_bytes(b"")
    return out


def text_named_mp4(directory: Path) -> Path:
    out = directory / "notes.mp4"
    out.write_bytes(b"Just some text, not a film at all.\n" * 100)
    return out


def pixel_bomb_png(directory: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header declares `width`×`height` pixels over a few hundred bytes of data."""
    out = directory / "bomb.png"

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    # One row of 1-bit pixels is enough: a bomb is refused before its data is read.
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8), 9)
    out.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return out
