"""Renditions of checked uploads: an HLS ladder, poster, seek sprite, audio HLS with a
waveform, and image variants. Everything is written into a caller-given work directory and
carries no metadata from the upload (location, device, creation time)."""

from __future__ import annotations

import asyncio
import ctypes
import io
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av
import blurhash
import imageio_ffmpeg
import numpy as np
from av.audio.resampler import AudioResampler
from PIL import Image, ImageCms, ImageOps

from craftreel.media.probe import Limits, MediaRejected, ProbeResult, check_pixels

SEGMENT_SECONDS = 4
KEYFRAME_SECONDS = 2
MAX_FPS = 60
POSTER_MAX_SIDE = 1280
SPRITE_TILE_WIDTH = 160
SPRITE_MAX_TILES = 100
SPRITE_COLUMNS = 10
AUDIO_KBPS = 128
AAC_LC = "mp4a.40.2"

_QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
# Drop every tag and chapter of the upload, and the "Lavf/Lavc" version stamps of our own.
_NO_METADATA = (
    *("-map_metadata", "-1", "-map_chapters", "-1"),
    *("-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"),
)
# fMP4 (CMAF) segments rather than MPEG-TS: ~10% less muxing overhead at our bitrates, the
# same files could serve DASH, every current player (Safari, hls.js, ExoPlayer) takes them,
# and the mpegts muxer would stamp an "FFmpeg" service provider into every segment.
_HLS = (
    *("-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod"),
    *("-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"),
    *("-hls_flags", "independent_segments"),
)
_PR_SET_PDEATHSIG = 1
_STDERR_TAIL = 4096


class ProcessingFailed(Exception):
    """ffmpeg could not make a rendition; the message ends with its error output."""


@dataclass(frozen=True)
class Rung:
    name: str
    height: int  # of the picture's shorter side, so portrait and landscape get the same rungs
    video_kbps: int
    audio_kbps: int


LADDER = (
    Rung("360p", 360, 800, 96),
    Rung("720p", 720, 2800, 128),
    Rung("1080p", 1080, 5000, 160),
)


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int | None  # None for audio
    height: int | None
    #: Peak bits per second over the full-length segments, as HLS BANDWIDTH wants.
    bandwidth: int
    #: Paths relative to the out_dir the rendition was made in.
    playlist: Path
    files: list[Path]
    codecs: str


@dataclass(frozen=True)
class Poster:
    jpeg: Path
    webp: Path
    width: int
    height: int


@dataclass(frozen=True)
class ImageVariant:
    width: int
    height: int
    format: str  # "webp" or "jpeg"
    path: Path  # relative to out_dir


@dataclass(frozen=True)
class ImageResult:
    width: int  # upright
    height: int
    blurhash: str
    variants: list[ImageVariant]


def ffmpeg_path(override: str | None) -> str:
    """The ffmpeg binary: the configured one if set, else the one in the imageio-ffmpeg wheel."""
    if not override:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    found = shutil.which(override)
    if found is None:
        raise ValueError(f"ffmpeg binary {override!r} was not found or is not executable")
    return found


def ladder_for(width: int, height: int) -> list[Rung]:
    """The rungs at or below the source; a source below the smallest rung gets it at its size."""
    shorter = min(width, height)
    rungs = [rung for rung in LADDER if rung.height <= shorter]
    if rungs:
        return rungs
    smallest = LADDER[0]
    scaled = _even_floor(shorter)
    share = (scaled / smallest.height) ** 2  # bitrate follows the pixel count
    return [
        replace(
            smallest,
            name=f"{scaled}p",
            height=scaled,
            video_kbps=max(150, round(smallest.video_kbps * share)),
        )
    ]


def _even_floor(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _even_round(value: float) -> int:
    return max(2, 2 * round(value / 2))


def rung_size(width: int, height: int, rung: Rung) -> tuple[int, int]:
    """The even output size of `rung` for a source displayed at width×height."""
    if width <= height:
        return rung.height, _even_round(height * rung.height / width)
    return _even_round(width * rung.height / height), rung.height


async def transcode_rung(
    ffmpeg: str, source: Path, out_dir: Path, rung: Rung, probe: ProbeResult
) -> Rendition:
    """Encode one rung as H.264/AAC HLS into out_dir/<rung.name>/."""
    if probe.width is None or probe.height is None:
        raise ValueError("transcode_rung needs a probed video")
    width, height = rung_size(probe.width, probe.height, rung)
    rung_dir = out_dir / rung.name
    await asyncio.to_thread(_fresh_dir, rung_dir)
    audio: list[str] = []
    if probe.has_audio:
        audio = [
            *("-map", "0:a:0", "-c:a", "aac", "-b:a", f"{rung.audio_kbps}k"),
            *("-ac", "2", "-ar", "48000"),
        ]
    args = [
        # Autorotation (the default) turns phone video upright before our filters run, and
        # the output then carries no display matrix.
        *("-autorotate", "-i", str(source)),
        *("-map", "0:V:0"),  # capital V: not cover art
        *_NO_METADATA,
        *("-vf", f"scale={width}:{height},setsar=1", "-fpsmax", str(MAX_FPS)),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-profile:v", "main" if rung.height <= 360 else "high"),
        *("-b:v", f"{rung.video_kbps}k", "-maxrate", f"{round(rung.video_kbps * 1.07)}k"),
        *("-bufsize", f"{round(rung.video_kbps * 1.5)}k"),
        # Keyframes on a fixed 2 s clock (no extra ones at scene cuts) so 4 s segments line up
        # across rungs and a player can switch rungs at any segment.
        *("-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})", "-sc_threshold", "0"),
        *audio,
        *_HLS,
        *("-hls_segment_filename", str(rung_dir / "seg_%04d.m4s")),
        str(rung_dir / "index.m3u8"),
    ]
    try:
        await _run(ffmpeg, args)
        return await asyncio.to_thread(
            _rendition, out_dir, rung_dir, rung.name, width, height, probe.has_audio
        )
    except BaseException:
        shutil.rmtree(rung_dir, ignore_errors=True)
        raise


async def audio_hls(ffmpeg: str, source: Path, out_dir: Path) -> Rendition:
    """Encode the first audio stream as AAC HLS into out_dir/audio/."""
    audio_dir = out_dir / "audio"
    await asyncio.to_thread(_fresh_dir, audio_dir)
    args = [
        *("-i", str(source), "-map", "0:a:0", "-vn"),
        *_NO_METADATA,
        *("-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2", "-ar", "48000"),
        *_HLS,
        *("-hls_segment_filename", str(audio_dir / "seg_%04d.m4s")),
        str(audio_dir / "index.m3u8"),
    ]
    try:
        await _run(ffmpeg, args)
        return await asyncio.to_thread(_rendition, out_dir, audio_dir, "audio", None, None, True)
    except BaseException:
        shutil.rmtree(audio_dir, ignore_errors=True)
        raise


def write_master_playlist(out_dir: Path, renditions: list[Rendition]) -> Path:
    """Write out_dir/master.m3u8 listing `renditions` in the given order (first plays first)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in renditions:
        attributes = [f"BANDWIDTH={rendition.bandwidth}"]
        if rendition.width and rendition.height:
            attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
        attributes.append(f'CODECS="{rendition.codecs}"')
        lines += [f"#EXT-X-STREAM-INF:{','.join(attributes)}", rendition.playlist.as_posix()]
    master = out_dir / "master.m3u8"
    # Replaced whole, never rewritten in place: players may be reading it as rungs are added.
    staging = out_dir / "master.m3u8.tmp"
    staging.write_text("\n".join(lines) + "\n")
    staging.replace(master)
    return master


async def make_poster(ffmpeg: str, source: Path, out: Path, duration_s: float | None) -> Poster:
    """Write a JPEG poster at `out` and a WebP beside it, from about 10% into the video."""
    webp = out.with_suffix(".webp")
    fit = (
        f"scale='if(gte(iw,ih),min({POSTER_MAX_SIDE},iw),-2)'"
        f":'if(gte(iw,ih),-2,min({POSTER_MAX_SIDE},ih))',setsar=1"
    )
    at = (duration_s or 0) * 0.1
    try:
        for seek in (at, 0.0) if at > 0 else (0.0,):
            args = [
                *("-ss", f"{seek:.3f}", "-autorotate", "-i", str(source)),
                *("-map", "0:V:0", "-frames:v", "1", "-vf", fit, *_NO_METADATA),
                *("-c:v", "mjpeg", "-q:v", "3", "-update", "1", str(out)),
                *("-map", "0:V:0", "-frames:v", "1", "-vf", fit, *_NO_METADATA),
                # image2, not the webp muxer: a still picture, not a one-frame animation.
                *("-c:v", "libwebp", "-quality", "80", "-f", "image2", "-update", "1", str(webp)),
            ]
            await _run(ffmpeg, args)
            if await asyncio.to_thread(_all_exist, out, webp):
                break  # else the seek overshot a short or badly timed file: take the start
        else:
            raise ProcessingFailed("ffmpeg produced no poster frame")
        width, height = await asyncio.to_thread(_image_size, out)
    except BaseException:
        _remove(out, webp)
        raise
    return Poster(jpeg=out, webp=webp, width=width, height=height)


@dataclass(frozen=True)
class SpriteLayout:
    interval_s: int  # one tile per this many seconds
    tiles: int
    columns: int
    rows: int


def sprite_layout(duration_s: float) -> SpriteLayout:
    """One tile a second, or fewer so that there are at most SPRITE_MAX_TILES."""
    interval = max(1, math.ceil(duration_s / SPRITE_MAX_TILES))
    tiles = max(1, math.ceil(duration_s / interval))
    columns = min(SPRITE_COLUMNS, tiles)
    return SpriteLayout(interval, tiles, columns, math.ceil(tiles / columns))


async def make_sprite(
    ffmpeg: str, source: Path, out_dir: Path, duration_s: float
) -> tuple[Path, Path]:
    """Write sprite.jpg (a grid of thumbnails) and sprite.vtt (time range → tile) into out_dir.

    Returns both paths relative to out_dir."""
    layout = sprite_layout(duration_s)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    sprite, vtt = out_dir / "sprite.jpg", out_dir / "sprite.vtt"
    tile = f"tile={layout.columns}x{layout.rows}"
    args = [
        *("-autorotate", "-i", str(source), "-map", "0:V:0", *_NO_METADATA),
        *("-vf", f"fps=1/{layout.interval_s},scale={SPRITE_TILE_WIDTH}:-2,setsar=1,{tile}"),
        *("-frames:v", "1", "-c:v", "mjpeg", "-q:v", "5", "-update", "1", str(sprite)),
    ]
    try:
        await _run(ffmpeg, args)
        await asyncio.to_thread(_write_sprite_map, sprite, vtt, duration_s, layout)
    except BaseException:
        _remove(sprite, vtt)
        raise
    return Path(sprite.name), Path(vtt.name)


def _write_sprite_map(sprite: Path, vtt: Path, duration_s: float, layout: SpriteLayout) -> None:
    _, height = _image_size(sprite)
    tile_height = height // layout.rows
    cues = ["WEBVTT", ""]
    for index in range(layout.tiles):
        start = index * layout.interval_s
        end = max(start + 0.001, min(start + layout.interval_s, duration_s))
        x = (index % layout.columns) * SPRITE_TILE_WIDTH
        y = (index // layout.columns) * tile_height
        cues += [
            f"{_vtt_time(start)} --> {_vtt_time(end)}",
            f"{sprite.name}#xywh={x},{y},{SPRITE_TILE_WIDTH},{tile_height}",
            "",
        ]
    vtt.write_text("\n".join(cues))


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def waveform_peaks(source: Path, buckets: int = 200) -> list[float]:
    """Peak amplitude (0..1) of the first audio stream in `buckets` equal slices of time."""
    block = 64  # samples folded into one peak while streaming; keeps memory small on long files
    peaks: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float32)
    resampler = AudioResampler(format="fltp")
    with av.open(str(source)) as container:
        if not container.streams.audio:
            raise MediaRejected("no_audio_stream", "The file has no sound in it.")
        for frame in container.decode(container.streams.audio[0]):
            for planar in resampler.resample(frame):
                samples = np.abs(planar.to_ndarray()).max(axis=0)
                samples = np.concatenate([carry, samples])
                whole = len(samples) // block * block
                peaks.append(samples[:whole].reshape(-1, block).max(axis=1))
                carry = samples[whole:]
    if carry.size:
        peaks.append(carry.max(keepdims=True))
    everything = np.concatenate(peaks) if peaks else np.zeros(0, dtype=np.float32)
    return [
        round(min(1.0, float(part.max())), 4) if part.size else 0.0
        for part in np.array_split(everything, buckets)
    ]


def image_variants(
    source: Path,
    out_dir: Path,
    widths: Sequence[int] = (320, 640, 1280),
    max_pixels: int = Limits.max_pixels,
) -> ImageResult:
    """Upright, metadata-free WebP and JPEG copies of an image at each width (never upscaled)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(source) as opened:
            check_pixels(opened.width, opened.height, max_pixels)
            icc = opened.info.get("icc_profile")
            upright = ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError as e:
        raise MediaRejected("too_many_pixels", "The image has too many pixels.") from e
    except OSError as e:
        raise MediaRejected("corrupt", "The image could not be read.") from e
    picture = _plain_srgb(upright, icc)
    written: list[Path] = []
    variants: list[ImageVariant] = []
    try:
        for width in sorted({min(width, picture.width) for width in widths}):
            height = max(1, round(picture.height * width / picture.width))
            scaled = picture.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
            for fmt, suffix in (("webp", "webp"), ("jpeg", "jpg")):
                path = out_dir / f"{width}.{suffix}"
                written.append(path)
                if fmt == "webp":
                    scaled.save(path, "WEBP", quality=80)
                else:
                    _flatten(scaled).save(path, "JPEG", quality=82, optimize=True, progressive=True)
                variants.append(ImageVariant(width, height, fmt, Path(path.name)))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return ImageResult(picture.width, picture.height, _blurhash(picture), variants)


def _plain_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB(A) pixels in sRGB and nothing else: no EXIF, XMP, ICC or comments carried along."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    mode = "RGBA" if has_alpha else "RGB"
    if icc:
        # Phones tag wide-gamut photos (Display P3); convert rather than drop, or colours dull.
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source_profile, srgb, outputMode=mode)
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: keep the pixels as they are
    clean = image.convert(mode)
    clean.info = {}
    return clean


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, "white")
    return Image.alpha_composite(background, image).convert("RGB")


def _blurhash(image: Image.Image) -> str:
    small = _flatten(image).convert("RGB")
    small.thumbnail((32, 32))
    x, y = (4, 3) if small.width >= small.height else (3, 4)
    return str(blurhash.encode(np.asarray(small), x, y))


def _all_exist(*paths: Path) -> bool:
    return all(path.exists() for path in paths)


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _fresh_dir(path: Path) -> None:
    # A retry after a killed worker starts from nothing, never from half a rendition.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _rendition(
    out_dir: Path,
    rendition_dir: Path,
    name: str,
    width: int | None,
    height: int | None,
    has_audio: bool,
) -> Rendition:
    playlist = rendition_dir / "index.m3u8"
    segments = _segments(playlist)
    if not segments:
        raise ProcessingFailed(f"ffmpeg wrote no segments for {name}")
    full = [(path, seconds) for path, seconds in segments if seconds >= SEGMENT_SECONDS / 2]
    # A short last segment (one keyframe in a fraction of a second) would overstate the peak.
    measured = full or segments
    bandwidth = max(
        round(path.stat().st_size * 8 / max(seconds, 0.001)) for path, seconds in measured
    )
    init = rendition_dir / "init.mp4"
    codecs = [_video_codec(init)] if width is not None else []
    if has_audio:
        codecs.append(AAC_LC)
    files = [init, *(path for path, _ in segments), playlist]
    return Rendition(
        name=name,
        width=width,
        height=height,
        bandwidth=bandwidth,
        playlist=playlist.relative_to(out_dir),
        files=[path.relative_to(out_dir) for path in files],
        codecs=",".join(codecs),
    )


def _segments(playlist: Path) -> list[tuple[Path, float]]:
    """(segment file, seconds) for each #EXTINF entry of a media playlist."""
    segments: list[tuple[Path, float]] = []
    seconds: float | None = None
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            seconds = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and seconds is not None:
            segments.append((playlist.parent / line, seconds))
            seconds = None
    return segments


def _video_codec(init: Path) -> str:
    """The RFC 6381 codec string (avc1.PPCCLL) of the H.264 stream in an init segment."""
    with av.open(str(init)) as container:
        extradata = container.streams.video[0].codec_context.extradata
    if not extradata or len(extradata) < 4:
        raise ProcessingFailed("the init segment has no H.264 configuration")
    profile, constraints, level = extradata[1], extradata[2], extradata[3]
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


async def _run(ffmpeg: str, args: Sequence[str]) -> None:
    """Run ffmpeg to completion; kill it if we are cancelled or fail."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg,
        *_QUIET,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_parent_death_signal(),
    )
    tail = b""
    try:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            tail = (tail + chunk)[-_STDERR_TAIL:]
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        message = tail.decode(errors="replace").strip()
        raise ProcessingFailed(f"ffmpeg exited with {process.returncode}: {message}")


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, have the kernel kill ffmpeg if this process dies (say, `kill -9` of a worker),
    so an orphan never keeps writing into a work directory a retry is using."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return set_death_signal
