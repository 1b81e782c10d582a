"""A maker uploads on a phone, in Chromium at 390×844, against a real server.

Open Create → choose Video → pick a file → the progress bar fills → processing reports
itself → the preview plays → scrubbing shows the sprite thumbnail and seeks. Then a bigger
file is paused after its first 8 MiB chunk and resumed, and another survives a reload of the
page. Each step is saved to tests/e2e/screenshots/upload-*.png.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server
from tests.media import media_factory

pytestmark = pytest.mark.e2e

CHUNK = 8 * 1024 * 1024
PROCESSING_TIMEOUT_MS = 180_000


def _snap(page: Page, folder: Path, step: str) -> None:
    """Save what the phone shows now; nothing may stick out sideways at 390 px."""
    page.screenshot(path=str(folder / f"upload-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


@pytest.fixture(scope="module")
def potter(server: Server) -> str:
    """Wanda, a potter with an account made through the JSON API; her email."""
    email = "wanda@example.org"
    # Sign-ups are limited per address and the e2e tests share one server, so this one comes
    # from an address of its own (the server trusts X-Forwarded-For from 127.0.0.1, its proxy).
    with httpx.Client(base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.77"}) as api:
        signup = api.post(
            "/api/v1/auth/signup",
            json={
                "email": email,
                "handle": "wheel_wanda",
                "password": PASSWORD,
                "display_name": "Wanda Reyes",
            },
        )
        assert signup.status_code == 201, signup.text
    return email


@pytest.fixture
def phone(server: Server, browser: Any, potter: str) -> Iterator[Page]:
    """A phone signed in as the potter through the /signin form."""
    context = browser.new_context(**PHONE, base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/signin?next=/create")
    page.get_by_label("Email").fill(potter)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{server.base_url}/create")
    try:
        yield page
    finally:
        context.close()


def _hold_second_chunk(page: Page) -> list[Route]:
    """Let the first PATCH through and hold the second, as a signal dropping mid-upload would."""
    held: list[Route] = []
    patches = 0

    def route(route: Route) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches == 2:
                held.append(route)
                return
        route.continue_()

    page.route("**/api/v1/uploads/**", route)
    return held


def _wait_for(page: Page, condition: Callable[[], bool], seconds: float = 20) -> None:
    """Wait while the page runs (route handlers fire only while Playwright waits)."""
    for _ in range(int(seconds * 10)):
        if condition():
            return
        page.wait_for_timeout(100)
    raise AssertionError("gave up waiting")


def _release(page: Page, held: list[Route]) -> None:
    page.unroute("**/api/v1/uploads/**")
    for route in held:
        with contextlib.suppress(Exception):  # the page already gave up on this request
            route.abort()


def _media(page: Page, media_id: str) -> dict[str, Any]:
    response = page.request.get(f"/api/v1/media/{media_id}")
    assert response.ok, response.text()
    body: dict[str, Any] = response.json()
    return body


def test_maker_uploads_a_video_watches_it_process_plays_and_scrubs(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(tmp_path, seconds=6, width=640, height=360)

    # The Create tab: three kinds; Photos shows its own picker, Video comes back.
    expect(page.get_by_role("heading", name="Create", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Create")).to_have_attribute("aria-current", "page")
    _snap(page, screenshots, "01-create")
    page.locator("label.kind-option", has_text="Photos").click()
    expect(page.get_by_role("heading", name="Choose photos")).to_be_visible()
    expect(page.get_by_role("heading", name="Record or choose a video")).to_be_hidden()
    _snap(page, screenshots, "02-photos-picker")
    page.locator("label.kind-option", has_text="Video").click()
    expect(page.get_by_role("radio", name="Video")).to_be_checked()
    expect(page.get_by_role("heading", name="Record or choose a video")).to_be_visible()

    # Pick the clip: the bar fills to 100%.
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card.locator("[data-upload-name]")).to_have_text(clip.name)
    bar = card.get_by_role("progressbar", name="Upload progress")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(card.locator("[data-upload-percent]")).to_have_text("100%")
    expect(card.locator("[data-upload-sent]")).to_have_text("1.5 of 1.5 MB")

    # Processing reports itself, by itself, until the video is ready.
    expect(card.locator("[data-upload-status]")).to_have_text(
        re.compile(r"Checking your video…|Making the first version…|Playable now|Ready")
    )
    _snap(page, screenshots, "03-uploaded-processing")
    expect(card).to_have_attribute("data-state", "ready", timeout=PROCESSING_TIMEOUT_MS)
    expect(card.locator("[data-upload-badge]")).to_have_text("Ready")
    expect(card.locator("[data-upload-status]")).to_have_text(re.compile(r"^Ready"))

    # The preview plays (muted autoplay) with the poster behind it.
    player = card.locator("[data-player]")
    video = player.locator("video")
    expect(video).to_have_attribute("poster", re.compile(r"poster\.jpg"))
    expect(video).to_have_js_property("playsInline", True)
    page.wait_for_function(
        "() => document.querySelector('[data-upload-card] video').currentTime > 1",
        timeout=30_000,
    )
    card.scroll_into_view_if_needed()
    _snap(page, screenshots, "04-playing")

    # Hovering the scrub bar shows the sprite tile for that moment.
    expect(player).to_have_attribute("data-thumbnails", "ready")
    scrub = player.locator("[data-player-range]")
    duration = float(scrub.get_attribute("max") or 0)
    assert duration == pytest.approx(6, abs=0.3)
    box = scrub.bounding_box()
    assert box is not None
    thumb = 16  # the range thumb's width: its centre travels from thumb/2 to width - thumb/2

    def x_at(fraction: float) -> float:
        return box["x"] + thumb / 2 + fraction * (box["width"] - thumb)

    y = box["y"] + box["height"] / 2
    page.mouse.move(x_at(0.7), y)
    preview = player.locator("[data-player-preview]")
    expect(preview).to_be_visible()
    expect(preview.locator("[data-player-preview-time]")).to_have_text("0:04")
    tile = preview.locator("[data-player-preview-image]")
    background = tile.evaluate("el => getComputedStyle(el).backgroundImage")
    assert re.search(r"url\(\".*/thumbs/sprite\.jpg\"\)", background), background
    position = tile.evaluate("el => getComputedStyle(el).backgroundPosition")
    assert position != "0px 0px", "the tile for 0:04 is not the sprite's first"
    _snap(page, screenshots, "05-scrub-hover-thumbnail")

    # Dragging shows the tile under the finger; letting go seeks there.
    page.mouse.down()
    page.mouse.move(x_at(0.5), y, steps=6)
    expect(preview).to_be_visible()
    expect(preview.locator("[data-player-preview-time]")).to_have_text("0:03")
    _snap(page, screenshots, "06-scrub-drag-thumbnail")
    page.mouse.up()
    target = duration * 0.5
    page.wait_for_function(
        "target => Math.abs(document.querySelector('[data-upload-card] video').currentTime"
        " - target) < 0.75",
        arg=target,
    )
    page.mouse.move(10, 200)  # away from the bar: the preview goes
    expect(preview).to_be_hidden()


def test_a_paused_upload_resumes_from_the_first_chunk(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(tmp_path, seconds=20, width=1280, height=720)
    size = clip.stat().st_size
    assert size > 2 * CHUNK

    # Given an upload whose second chunk is stuck in the air
    held = _hold_second_chunk(page)
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card).to_have_attribute("data-bytes-accepted", str(CHUNK))
    _wait_for(page, lambda: len(held) == 1)
    media_id = card.get_attribute("data-media-id")
    assert media_id

    # when the maker pauses it
    card.get_by_role("button", name="Pause").click()
    expect(card.locator("[data-upload-badge]")).to_have_text("Paused")
    expect(card.locator("[data-upload-status]")).to_contain_text("Resume carries on from there")
    expect(card.get_by_role("button", name="Pause")).to_be_hidden()
    _release(page, held)
    _snap(page, screenshots, "07-paused")
    assert _media(page, media_id)["upload"]["offset"] == CHUNK

    # then Resume carries on from the server's 8 MiB, and the upload completes
    card.get_by_role("button", name="Resume").click()
    expect(card.get_by_role("progressbar", name="Upload progress")).to_have_attribute(
        "aria-valuenow", "100"
    )
    expect(card).to_have_attribute(
        "data-state", re.compile(r"processing|playable|ready"), timeout=60_000
    )
    upload = _media(page, media_id)["upload"]
    assert upload["offset"] == upload["length"] == size
    assert card.get_attribute("data-media-id") == media_id
    _snap(page, screenshots, "08-resumed-and-processing")


def test_a_reload_resumes_the_same_upload_once_the_file_is_picked_again(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(tmp_path, seconds=20, width=1280, height=720)
    size = clip.stat().st_size

    # Given an upload that had sent its first chunk when the page was reloaded
    held = _hold_second_chunk(page)
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card).to_have_attribute("data-bytes-accepted", str(CHUNK))
    _wait_for(page, lambda: len(held) == 1)
    media_id = card.get_attribute("data-media-id")
    assert media_id
    page.reload()
    _release(page, held)

    # the page names the upload, says how far it got, and asks for the file again
    resume = page.locator("[data-resume-card]")
    expect(resume).to_contain_text(f"Resuming your earlier upload of {clip.name}")
    expect(resume).to_contain_text("can’t keep a file across a reload")
    assert _media(page, media_id)["upload"]["offset"] == CHUNK
    percent = CHUNK * 100 // size
    expect(resume.locator("[data-resume-meta]")).to_contain_text(f"{percent}% sent")
    _snap(page, screenshots, "09-reload-asks-for-the-file")

    # when the same file is picked again, the same upload carries on to the end
    resume.get_by_label(f"Pick {clip.name} again").set_input_files(str(clip))
    expect(resume).to_have_count(0)
    card = page.locator("[data-upload-card]").first
    expect(card.locator("[data-upload-status]")).to_have_text(
        re.compile(r"Carrying on from where it stopped…|Finishing|Checking|Making|Playable|Ready")
    )
    expect(card).to_have_attribute(
        "data-state", re.compile(r"processing|playable|ready"), timeout=60_000
    )
    assert card.get_attribute("data-media-id") == media_id
    upload = _media(page, media_id)["upload"]
    assert upload["offset"] == upload["length"] == size
    _snap(page, screenshots, "10-resumed-after-reload")


def test_cancelling_deletes_the_upload_and_a_mislabelled_file_is_refused(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(tmp_path, seconds=20, width=1280, height=720)

    # Given an upload under way
    held = _hold_second_chunk(page)
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card).to_have_attribute("data-bytes-accepted", str(CHUNK))
    _wait_for(page, lambda: len(held) == 1)
    media_id = card.get_attribute("data-media-id")
    assert media_id

    # when the maker cancels it, and confirms
    card.get_by_role("button", name="Cancel").click()
    expect(card.get_by_text("Stop this upload and delete what has been sent?")).to_be_visible()
    _snap(page, screenshots, "11-cancel-confirm")
    card.get_by_role("button", name="Delete upload").click()
    _release(page, held)

    # then the card goes and so does everything the server held of it
    expect(page.get_by_text(f"Upload of {clip.name} cancelled.")).to_be_visible()
    expect(page.locator("[data-upload-card]")).to_have_count(0)
    assert page.request.get(f"/api/v1/media/{media_id}").status == 404

    # A PNG renamed .mp4 uploads, and processing says what it really is.
    fake = media_factory.png_named_mp4(tmp_path)
    page.get_by_label("Choose a video").set_input_files(str(fake))
    card = page.locator("[data-upload-card]").first
    expect(card).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(card).to_have_attribute("data-failure", "type_mismatch")
    expect(card.locator("[data-upload-badge]")).to_have_text("Failed")
    expect(card.locator("[data-upload-status]")).to_have_text("This image/png file is not a video.")
    expect(card.locator("video")).to_have_count(0)
    _snap(page, screenshots, "12-refused-by-content")


def test_photos_and_a_sound_upload_and_preview(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    photos = [
        media_factory.jpeg_with_gps(tmp_path, 800, 600),
        media_factory.jpeg_with_gps(tmp_path, 1200, 900),
    ]
    sound = media_factory.audio_only(tmp_path, seconds=3)

    # Photos: several at once, one card each, each previewed when its sizes are made.
    page.locator("label.kind-option", has_text="Photos").click()
    page.get_by_label("Choose photos").set_input_files([str(p) for p in photos])
    cards = page.locator("[data-upload-card][data-kind='image']")
    expect(cards).to_have_count(2)
    for i in range(2):
        expect(cards.nth(i)).to_have_attribute("data-state", "ready", timeout=60_000)
        image = cards.nth(i).locator("img.photo-preview")
        expect(image).to_have_attribute("src", re.compile(r"\.webp"))
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
    # the stored picture was landscape; EXIF said "turn it": the preview stands upright
    assert cards.first.locator("img.photo-preview").evaluate(
        "img => img.naturalHeight > img.naturalWidth"
    )
    _snap(page, screenshots, "13-photos-ready")

    # A sound: playable, with its waveform drawn.
    page.locator("label.kind-option", has_text="Audio").click()
    page.get_by_label("Choose an audio file").set_input_files(str(sound))
    card = page.locator("[data-upload-card][data-kind='audio']")
    expect(card).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(card.locator("audio")).to_have_attribute("src", re.compile(r"\.m3u8"))
    expect(card.locator(".waveform span")).to_have_count(100)
    card.scroll_into_view_if_needed()
    _snap(page, screenshots, "14-sound-ready")

    # The same screen in dark mode.
    page.emulate_media(color_scheme="dark")
    page.evaluate("window.scrollTo(0, 0)")
    _snap(page, screenshots, "15-dark-mode")
