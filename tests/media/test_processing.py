"""Renditions: what a viewer gets from an upload, and that nothing private comes along."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from av.sidedata.sidedata import Type as SideDataType
from PIL import Image

from craftreel.media.probe import Limits, MediaKind, MediaRejected, ProbeResult, probe
from craftreel.media.processing import (
    LADDER,
    Poster,
    ProcessingFailed,
    Rendition,
    Rung,
    audio_hls,
    ffmpeg_path,
    image_variants,
    ladder_for,
    make_poster,
    make_sprite,
    rung_size,
    sprite_layout,
    transcode_rung,
    waveform_peaks,
    write_master_playlist,
)
from tests.media import media_factory as make

PRIVATE_TAGS = {
    "location",
    "location-eng",
    "com.apple.quicktime.location.ISO6709",
    "creation_time",
    "make",
    "model",
    "com.apple.quicktime.make",
    "com.apple.quicktime.model",
}


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return ffmpeg_path(None)


@dataclass
class Processed:
    """One video taken through the whole pipeline."""

    source: Path
    probe: ProbeResult
    out: Path
    renditions: list[Rendition]
    master: Path
    poster: Poster
    sprite: Path
    vtt: Path


async def process(ffmpeg: str, source: Path, out: Path) -> Processed:
    probed = probe(source, MediaKind.VIDEO, Limits())
    assert probed.width is not None and probed.height is not None
    assert probed.duration_s is not None
    renditions = [
        await transcode_rung(ffmpeg, source, out, rung, probed)
        for rung in ladder_for(probed.width, probed.height)
    ]
    poster = await make_poster(ffmpeg, source, out / "poster.jpg", probed.duration_s)
    sprite, vtt = await make_sprite(ffmpeg, source, out, probed.duration_s)
    master = write_master_playlist(out, renditions)
    return Processed(source, probed, out, renditions, master, poster, out / sprite, out / vtt)


@pytest.fixture(scope="module")
async def with_location(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """A 9 s iPhone-style clip with GPS, device and creation tags, fully processed."""
    work = tmp_path_factory.mktemp("location")
    return await process(ffmpeg, make.video_with_location(work, seconds=9), work / "out")


@pytest.fixture(scope="module")
async def portrait(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    work = tmp_path_factory.mktemp("portrait")
    return await process(ffmpeg, make.portrait_phone_video(work), work / "out")


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


def served_files(processed: Processed) -> list[Path]:
    return [path for path in processed.out.rglob("*") if path.is_file()]


# The ladder


def test_a_720p_source_gets_360p_and_720p_only() -> None:
    assert [rung.name for rung in ladder_for(1280, 720)] == ["360p", "720p"]


def test_a_1080p_source_gets_every_rung() -> None:
    assert ladder_for(1920, 1080) == list(LADDER)
    assert ladder_for(3840, 2160) == list(LADDER)


def test_portrait_rungs_follow_the_shorter_side() -> None:
    rungs = ladder_for(1080, 1920)

    assert rungs == list(LADDER)
    assert [rung_size(1080, 1920, rung) for rung in rungs] == [
        (360, 640),
        (720, 1280),
        (1080, 1920),
    ]


def test_a_source_below_the_smallest_rung_gets_it_at_its_own_size() -> None:
    (only,) = ladder_for(320, 180)

    assert only.height == 180
    assert only.video_kbps < LADDER[0].video_kbps


def test_rung_sizes_are_even() -> None:
    width, height = rung_size(1280, 536, Rung("360p", 360, 800, 96))  # 2.39:1 cinema

    assert (width % 2, height % 2) == (0, 0)
    assert height == 360


# Video


def test_renditions_are_h264_and_aac_hls(with_location: Processed) -> None:
    (rendition,) = with_location.renditions
    playlist = with_location.out / rendition.playlist

    with av.open(str(playlist)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (320, 180)
    assert (rendition.width, rendition.height) == (320, 180)
    assert rendition.codecs.startswith("avc1.") and rendition.codecs.endswith(",mp4a.40.2")
    assert all((with_location.out / path).is_file() for path in rendition.files)
    assert all(path.parts[0] == rendition.name for path in rendition.files)


async def test_a_720p_source_scales_down_to_the_360p_rung(ffmpeg: str, tmp_path: Path) -> None:
    source = make.landscape_video(tmp_path, seconds=2)  # 1280×720
    probed = probe(source, MediaKind.VIDEO, Limits())

    rendition = await transcode_rung(ffmpeg, source, tmp_path / "out", LADDER[0], probed)

    frame = first_frame(tmp_path / "out" / rendition.playlist)
    assert (rendition.width, rendition.height) == (640, 360)
    assert (frame.width, frame.height) == (640, 360)


def test_segments_last_four_seconds(with_location: Processed) -> None:
    (rendition,) = with_location.renditions
    lines = (with_location.out / rendition.playlist).read_text().splitlines()
    durations = [float(line[8:].split(",")[0]) for line in lines if line.startswith("#EXTINF:")]

    assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    assert sum(durations) == pytest.approx(9.0, abs=0.1)
    assert durations[:-1] == pytest.approx([4.0] * (len(durations) - 1), abs=0.05)
    assert 0 < durations[-1] <= 4.05


def test_a_keyframe_every_two_seconds(with_location: Processed) -> None:
    (rendition,) = with_location.renditions

    with av.open(str(with_location.out / rendition.playlist)) as container:
        keyframes = [
            float(packet.pts * packet.time_base)
            for packet in container.demux(video=0)
            if packet.is_keyframe and packet.pts is not None and packet.time_base is not None
        ]

    gaps = [later - earlier for earlier, later in itertools.pairwise(keyframes)]
    assert len(keyframes) == 5  # 0, 2, 4, 6 and 8 s of a 9 s clip
    assert gaps == pytest.approx([2.0] * 4, abs=0.05)


def test_bandwidth_is_measured_from_the_segments(with_location: Processed) -> None:
    (rendition,) = with_location.renditions
    segment_bytes = sum(
        (with_location.out / path).stat().st_size
        for path in rendition.files
        if path.suffix == ".m4s"
    )
    average = segment_bytes * 8 / 9.0

    assert average * 0.8 <= rendition.bandwidth <= average * 2


def test_the_master_playlist_lists_each_rung(with_location: Processed) -> None:
    lines = with_location.master.read_text().splitlines()
    (rendition,) = with_location.renditions

    assert lines[0] == "#EXTM3U"
    stream = lines.index(
        f"#EXT-X-STREAM-INF:BANDWIDTH={rendition.bandwidth},RESOLUTION=320x180,"
        f'CODECS="{rendition.codecs}"'
    )
    assert lines[stream + 1] == "180p/index.m3u8"


def test_master_playlist_with_several_rungs(tmp_path: Path) -> None:
    renditions = [
        Rendition(rung.name, *size, bandwidth, Path(rung.name, "index.m3u8"), [], "avc1.64001f")
        for rung, size, bandwidth in (
            (LADDER[0], (640, 360), 900_000),
            (LADDER[1], (1280, 720), 3_000_000),
        )
    ]

    text = write_master_playlist(tmp_path, renditions).read_text()

    assert "BANDWIDTH=900000,RESOLUTION=640x360" in text
    assert "BANDWIDTH=3000000,RESOLUTION=1280x720" in text
    assert text.index("360p/index.m3u8") < text.index("720p/index.m3u8")


def test_video_outputs_carry_no_location_device_or_creation_tags(
    with_location: Processed,
) -> None:
    source_tags = set(av.open(str(with_location.source)).metadata)
    assert {"location", "com.apple.quicktime.location.ISO6709", "creation_time"} <= source_tags

    with av.open(str(with_location.out / with_location.renditions[0].playlist)) as container:
        tags = [container.metadata] + [stream.metadata for stream in container.streams]
    for found in tags:
        assert not PRIVATE_TAGS & set(found)
        assert found.get("handler_name") != "Core Media Video"


def test_no_served_file_holds_private_bytes(with_location: Processed) -> None:
    files = served_files(with_location)

    assert len(files) >= 8  # playlists, init, segments, poster, sprite, map
    for path in files:
        data = path.read_bytes()
        for marker in make.PRIVATE_MARKERS:
            assert marker not in data, f"{marker!r} in {path.name}"


def test_poster_and_sprite_have_no_metadata(with_location: Processed) -> None:
    poster = with_location.poster
    for path in (poster.jpeg, poster.webp, with_location.sprite):
        with Image.open(path) as image:
            assert not image.getexif()
            assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
    assert (poster.width, poster.height) == (320, 180)


def test_sprite_map_points_at_tiles(with_location: Processed) -> None:
    text = with_location.vtt.read_text()
    blocks = [block.splitlines() for block in text.split("\n\n")[1:] if block.strip()]
    with Image.open(with_location.sprite) as sprite:
        width, height = sprite.size

    assert text.startswith("WEBVTT\n")
    assert len(blocks) == 9  # one tile a second
    assert blocks[0] == ["00:00:00.000 --> 00:00:01.000", "sprite.jpg#xywh=0,0,160,90"]
    assert blocks[-1][0] == "00:00:08.000 --> 00:00:09.000"
    for _, target in blocks:
        x, y, w, h = (int(n) for n in target.split("#xywh=")[1].split(","))
        assert x + w <= width and y + h <= height


def test_a_long_video_gets_at_most_a_hundred_tiles() -> None:
    layout = sprite_layout(600.0)

    assert layout.tiles <= 100
    assert layout.columns * layout.rows >= layout.tiles
    assert layout.interval_s * layout.tiles >= 600


def test_phone_video_comes_out_upright(portrait: Processed) -> None:
    (rendition,) = portrait.renditions
    frame = first_frame(portrait.out / rendition.playlist)

    assert (rendition.width, rendition.height) == (180, 320)
    assert frame.width < frame.height
    assert frame.rotation == 0
    assert first_frame(portrait.source).side_data.get(SideDataType.DISPLAYMATRIX) is not None
    assert frame.side_data.get(SideDataType.DISPLAYMATRIX) is None
    # The stored picture's top (red) is on the right once turned clockwise.
    picture = frame.to_image()
    right = picture.getpixel((picture.width * 3 // 4, picture.height // 2))
    left = picture.getpixel((picture.width // 4, picture.height // 2))
    assert isinstance(right, tuple) and isinstance(left, tuple)
    assert right[0] > 200 and right[2] < 60
    assert left[2] > 200 and left[0] < 60


def test_phone_video_poster_and_sprite_are_upright(portrait: Processed) -> None:
    assert portrait.poster.width < portrait.poster.height
    with Image.open(portrait.poster.jpeg) as poster:
        right = poster.getpixel((poster.width * 3 // 4, poster.height // 2))
    assert isinstance(right, tuple) and right[0] > 200
    tile = portrait.vtt.read_text().split("#xywh=")[1].splitlines()[0].split(",")
    assert int(tile[3]) > int(tile[2])


async def test_a_video_without_sound(ffmpeg: str, tmp_path: Path) -> None:
    source = make.silent_video(tmp_path)
    probed = probe(source, MediaKind.VIDEO, Limits())

    rendition = await transcode_rung(ffmpeg, source, tmp_path / "out", LADDER[0], probed)

    with av.open(str(tmp_path / "out" / rendition.playlist)) as container:
        assert len(container.streams.video) == 1
        assert not container.streams.audio
    assert "mp4a" not in rendition.codecs


async def test_a_failed_transcode_leaves_nothing(ffmpeg: str, tmp_path: Path) -> None:
    source = make.text_named_mp4(tmp_path)
    pretend = ProbeResult(MediaKind.VIDEO, "video/mp4", 3.0, 320, 180, 0, 30.0, True, True)

    with pytest.raises(ProcessingFailed):
        await transcode_rung(ffmpeg, source, tmp_path / "out", LADDER[0], pretend)

    assert not (tmp_path / "out" / LADDER[0].name).exists()


def process_status(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent pid) of a process from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    return name, rest[0], int(rest[1])


def is_alive(pid: int) -> bool:
    status = process_status(pid)
    return status is not None and status[1] != "Z"


def ffmpeg_children(parent: int) -> list[int]:
    """Live ffmpeg processes whose parent is `parent`."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [
        pid
        for pid in pids
        if (status := process_status(pid)) is not None
        and "ffmpeg" in status[0]
        and status[2] == parent
        and status[1] != "Z"
    ]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_cancelling_kills_ffmpeg_and_removes_the_rung(ffmpeg: str, tmp_path: Path) -> None:
    source = tmp_path / "never_arrives.mp4"
    os.mkfifo(source)  # ffmpeg waits on it for ever
    pretend = ProbeResult(MediaKind.VIDEO, "video/mp4", 3.0, 320, 180, 0, 30.0, True, True)
    task = asyncio.create_task(transcode_rung(ffmpeg, source, tmp_path / "out", LADDER[0], pretend))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if ffmpeg_children(os.getpid()):
            break
    assert ffmpeg_children(os.getpid())

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert ffmpeg_children(os.getpid()) == []
    assert not (tmp_path / "out" / LADDER[0].name).exists()


WORKER = """
import asyncio, sys
from pathlib import Path
from craftreel.media.probe import MediaKind, ProbeResult
from craftreel.media.processing import LADDER, ffmpeg_path, transcode_rung
pretend = ProbeResult(MediaKind.VIDEO, "video/mp4", 3.0, 320, 180, 0, 30.0, True, True)
source, out = Path(sys.argv[1]), Path(sys.argv[2])
asyncio.run(transcode_rung(ffmpeg_path(None), source, out, LADDER[0], pretend))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_ffmpeg_dies_with_a_killed_worker(tmp_path: Path) -> None:
    source = tmp_path / "never_arrives.mp4"
    os.mkfifo(source)
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(source), str(tmp_path / "out")])
    try:
        children: list[int] = []
        for _ in range(200):
            children = ffmpeg_children(worker.pid)
            if children:
                break
            time.sleep(0.02)
        assert children, "the worker never started ffmpeg"

        worker.kill()  # kill -9: no cleanup code runs in the worker
        worker.wait()

        for _ in range(100):
            if not is_alive(children[0]):
                break
            time.sleep(0.02)
        assert not is_alive(children[0])
    finally:
        worker.kill()
        worker.wait()


# Audio


async def test_audio_becomes_aac_hls(ffmpeg: str, tmp_path: Path) -> None:
    source = make.audio_only(tmp_path)

    rendition = await audio_hls(ffmpeg, source, tmp_path / "out")

    with av.open(str(tmp_path / "out" / rendition.playlist)) as container:
        assert [stream.codec_context.name for stream in container.streams] == ["aac"]
        assert not PRIVATE_TAGS & set(container.metadata)
    assert (rendition.name, rendition.width, rendition.codecs) == ("audio", None, "mp4a.40.2")
    assert rendition.bandwidth > 0


def test_waveform_peaks_follow_the_loudness(tmp_path: Path) -> None:
    peaks = waveform_peaks(make.audio_only(tmp_path), buckets=50)

    assert len(peaks) == 50
    assert all(0.0 <= peak <= 1.0 for peak in peaks)
    assert peaks[0] < 0.1 and peaks[-1] > 0.8  # the tone swells from silence to full scale
    assert peaks[10] < peaks[25] < peaks[40]
    assert json.loads(json.dumps(peaks)) == peaks


def test_waveform_of_a_file_without_sound(tmp_path: Path) -> None:
    with pytest.raises(MediaRejected) as rejected:
        waveform_peaks(make.silent_video(tmp_path))

    assert rejected.value.code == "no_audio_stream"


# Images


def test_image_variants_are_upright_and_clean(tmp_path: Path) -> None:
    source = make.jpeg_with_gps(tmp_path, 800, 600)  # shown as 600×800

    result = image_variants(source, tmp_path / "out")

    assert (result.width, result.height) == (600, 800)
    assert sorted({(v.width, v.height) for v in result.variants}) == [(320, 427), (600, 800)]
    assert sorted(v.format for v in result.variants) == ["jpeg", "jpeg", "webp", "webp"]
    for variant in result.variants:
        path = tmp_path / "out" / variant.path
        data = path.read_bytes()
        for marker in make.PRIVATE_MARKERS:
            assert marker not in data, f"{marker!r} in {path.name}"
        with Image.open(path) as image:
            assert image.format == variant.format.upper()
            assert image.size == (variant.width, variant.height)
            assert not image.getexif()
            assert not {"exif", "xmp", "icc_profile"} & set(image.info)
            right = image.convert("RGB").getpixel((image.width * 3 // 4, image.height // 2))
            assert isinstance(right, tuple) and right[0] > 200 and right[2] < 60


def test_image_variants_never_upscale(tmp_path: Path) -> None:
    source = tmp_path / "small.png"
    Image.new("RGBA", (200, 100), (0, 128, 0, 128)).save(source)

    result = image_variants(source, tmp_path / "out", widths=(320, 640))

    assert {(v.width, v.height, v.format) for v in result.variants} == {
        (200, 100, "webp"),
        (200, 100, "jpeg"),
    }


def test_image_blurhash(tmp_path: Path) -> None:
    result = image_variants(make.jpeg_with_gps(tmp_path), tmp_path / "out")

    # Size flag, maximum, DC (4 chars) and 2 chars per AC component of a 3×4 (portrait) hash.
    assert len(result.blurhash) == 6 + 2 * (3 * 4 - 1)


@pytest.mark.parametrize(
    ("factory", "max_pixels"),
    [(make.pixel_bomb_png, 40_000_000), (make.jpeg_with_gps, 100_000)],
)
def test_image_variants_refuse_too_many_pixels(
    tmp_path: Path, factory: make.Factory, max_pixels: int
) -> None:
    with pytest.raises(MediaRejected) as rejected:
        image_variants(factory(tmp_path), tmp_path / "out", max_pixels=max_pixels)

    assert rejected.value.code == "too_many_pixels"
    assert not list((tmp_path / "out").glob("*"))
