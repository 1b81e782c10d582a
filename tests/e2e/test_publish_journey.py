"""A maker publishes on a phone, in Chromium at 390×844, against a real server.

Upload a short vertical video → continue to the composer → caption with a #hashtag → two steps
added at the preview's current time → a material → publish (when ready, if it isn't yet) →
the post page lists the steps, and a step seeks the video. Then a second upload becomes a
draft scheduled for tomorrow morning, shown in the drafts list in the browser's time zone.
A second test drops the signal while typing and reloads: nothing typed is lost. Each step
is saved to tests/e2e/screenshots/publish-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server
from tests.media import media_factory

pytestmark = pytest.mark.e2e

PROCESSING_TIMEOUT_MS = 180_000
ZONE = "Europe/Paris"
POST_URL = re.compile(r"/compose/([0-9a-f-]{36})$")
SCROLL_SETTLED = """() => new Promise((resolve) => {
    let last = -1;
    let still = 0;
    const tick = () => {
        still = window.scrollY === last ? still + 1 : 0;
        last = window.scrollY;
        if (still >= 3) resolve(true);
        else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
})"""


def _snap(page: Page, folder: Path, step: str, *, full: bool = False) -> None:
    """Save what the phone shows now (once scrolling has settled); nothing may stick out
    sideways at 390 px."""
    page.evaluate(SCROLL_SETTLED)
    page.screenshot(path=str(folder / f"publish-{step}.png"), animations="disabled", full_page=full)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


@pytest.fixture(scope="module")
def knitter(server: Server) -> str:
    """Sasha, a knitter with an account made through the JSON API; her email."""
    email = "sasha@example.org"
    with httpx.Client(base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.88"}) as api:
        signup = api.post(
            "/api/v1/auth/signup",
            json={
                "email": email,
                "handle": "sock_sasha",
                "password": PASSWORD,
                "display_name": "Sasha Lind",
            },
        )
        assert signup.status_code == 201, signup.text
    return email


@pytest.fixture
def phone(server: Server, browser: Any, knitter: str) -> Iterator[Page]:
    """A phone in Paris, signed in as the knitter through the /signin form, on Create."""
    context = browser.new_context(**PHONE, base_url=server.base_url, timezone_id=ZONE)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/signin?next=/create")
    page.get_by_label("Email").fill(knitter)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{server.base_url}/create")
    try:
        yield page
    finally:
        context.close()


def _upload_and_compose(page: Page, clip: Path) -> str:
    """Pick ``clip`` on Create, continue to its post; the draft's id."""
    page.goto("/create")
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card.locator("[data-upload-name]")).to_have_text(clip.name)
    compose = card.get_by_role("link", name="Continue to post")
    expect(compose).to_be_visible(timeout=60_000)
    compose.click()
    # the composer made the draft at once and the address became the draft's
    expect(page).to_have_url(POST_URL)
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    match = POST_URL.search(page.url)
    assert match
    return match.group(1)


def _preview_at(page: Page, seconds: float) -> None:
    """Seek the composer's preview player to ``seconds`` and wait until it is there."""
    page.evaluate(
        """t => {
            const video = document.querySelector('[data-composer-preview] video');
            video.pause();
            video.currentTime = t;
        }""",
        seconds,
    )
    page.wait_for_function(
        """t => {
            const video = document.querySelector('[data-composer-preview] video');
            return !video.seeking && Math.abs(video.currentTime - t) < 0.3;
        }""",
        arg=seconds,
    )


def _post(page: Page, post_id: str) -> dict[str, Any]:
    response = page.request.get(f"/api/v1/posts/{post_id}")
    assert response.ok, response.text()
    body: dict[str, Any] = response.json()
    return body


def test_maker_writes_steps_publishes_and_schedules_a_second_post(
    phone: Page, server: Server, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(
        tmp_path, seconds=8, width=360, height=640, name="socks.mp4"
    )

    # Create → the upload offers to continue to its post
    page.get_by_label("Choose a video").set_input_files(str(clip))
    card = page.locator("[data-upload-card]").first
    expect(card.get_by_role("link", name="Continue to post")).to_be_visible(timeout=60_000)
    card.scroll_into_view_if_needed()
    _snap(page, screenshots, "01-upload-continue")
    card.get_by_role("link", name="Continue to post").click()
    expect(page).to_have_url(POST_URL)
    match = POST_URL.search(page.url)
    assert match
    post_id = match.group(1)
    expect(page.get_by_role("heading", name="Edit draft")).to_be_visible()
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    _snap(page, screenshots, "02-composer")

    # A caption with a #hashtag: the hint names it, and it autosaves
    caption = page.get_by_label("Caption")
    caption.fill("Toe-up socks in merino, start to finish #knitting")
    expect(page.locator("[data-caption-hints]")).to_have_text("Tags: #knitting")
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    assert _post(page, post_id)["caption"] == "Toe-up socks in merino, start to finish #knitting"

    # Two steps at the preview's current time (the video must play first)
    add_now = page.get_by_role("button", name="Add step at current time")
    expect(add_now).to_be_enabled(timeout=PROCESSING_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.querySelector('[data-composer-preview] video').readyState >= 1"
    )
    _preview_at(page, 4.3)
    add_now.click()
    expect(page.get_by_label("Step 1 time")).to_have_value("0:04")
    expect(page.get_by_label("Step 1 title")).to_be_focused()
    page.keyboard.type("Turn the heel")
    _preview_at(page, 0)
    add_now.click()
    # the new step sorts first; its title has the focus
    expect(page.get_by_label("Step 1 time")).to_have_value("0:00")
    expect(page.get_by_label("Step 1 title")).to_be_focused()
    page.keyboard.type("Cast on")
    expect(page.get_by_label("Step 2 title")).to_have_value("Turn the heel")

    # A material, typed after pressing "Add material" (Enter moves on instead of sending)
    page.get_by_role("button", name="Add material").click()
    expect(page.get_by_label("Material 1", exact=True)).to_be_focused()
    page.keyboard.type("Merino 4-ply, 100 g")
    page.get_by_label("Material 1", exact=True).scroll_into_view_if_needed()
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    page.get_by_role("group", name="Steps").scroll_into_view_if_needed()
    _snap(page, screenshots, "03-steps-and-materials")
    saved = _post(page, post_id)
    assert saved["chapters"] == [
        {"at": 0.0, "title": "Cast on"},
        {"at": 4.0, "title": "Turn the heel"},
    ]
    assert saved["materials"] == ["Merino 4-ply, 100 g"]
    assert saved["status"] == "draft"

    page.get_by_role("group", name="Who can see it").scroll_into_view_if_needed()
    _snap(page, screenshots, "04-visibility-and-actions")
    page.emulate_media(color_scheme="dark")
    _snap(page, screenshots, "05-composer-dark")
    page.emulate_media(color_scheme="light")

    # Publish (when ready, if processing isn't done)
    page.get_by_role("button", name="Publish", exact=True).click()
    when_ready = page.get_by_role("button", name="Publish when ready")
    for _ in range(200):
        if "/p/" in page.url:
            break
        if when_ready.is_visible():
            _snap(page, screenshots, "06-publish-when-ready")
            when_ready.click()
            view = page.get_by_role("link", name="View post")
            expect(view).to_be_visible(timeout=PROCESSING_TIMEOUT_MS)
            view.click()
            break
        page.wait_for_timeout(100)
    expect(page).to_have_url(f"{server.base_url}/p/{post_id}")

    # The post page: the video, the caption with its tag linked, the steps, the material
    expect(page.get_by_role("link", name="#knitting")).to_have_attribute("href", "/tags/knitting")
    expect(page.get_by_role("link", name="Sasha Lind @sock_sasha")).to_have_attribute(
        "href", "/@sock_sasha"
    )
    steps = page.locator("[data-post-chapters] [data-seek]")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_have_text(re.compile(r"0:00\s*Cast on"))
    expect(steps.nth(1)).to_have_text(re.compile(r"0:04\s*Turn the heel"))
    expect(page.get_by_text("Merino 4-ply, 100 g")).to_be_visible()
    video = page.locator("[data-post-player] video")
    expect(video).to_have_attribute("poster", re.compile(r"poster\.jpg"))
    page.wait_for_function(
        "() => document.querySelector('[data-post-player] video').currentTime > 0.5",
        timeout=30_000,
    )
    expect(page.get_by_role("button", name="Tap for sound")).to_be_visible()
    _snap(page, screenshots, "07-post-page")
    assert _post(page, post_id)["status"] == "published"

    # A step, reached with the keyboard, seeks the video there
    steps.nth(1).focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-post-player] video').currentTime >= 4"
    )
    expect(steps.nth(1)).to_have_attribute("aria-current", "step")
    page.get_by_role("button", name="Tap for sound").click()
    expect(page.get_by_role("button", name="Tap for sound")).to_be_hidden()
    assert page.evaluate("() => document.querySelector('[data-post-player] video').muted") is False
    steps.nth(1).scroll_into_view_if_needed()
    _snap(page, screenshots, "08-post-step-seeked")
    page.emulate_media(color_scheme="dark")
    _snap(page, screenshots, "09-post-page-dark")
    page.emulate_media(color_scheme="light")

    # A second post, scheduled for tomorrow morning in the browser's zone (Paris)
    second = media_factory.landscape_video(
        tmp_path, seconds=4, width=360, height=640, name="mittens.mp4"
    )
    second_id = _upload_and_compose(page, second)
    page.get_by_label("Caption").fill("Mittens for the winter market #knitting")
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    page.get_by_text("Schedule for later").click()
    tomorrow = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)
    when = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 30, tzinfo=ZoneInfo(ZONE))
    publish_on = page.get_by_label("Publish on")
    publish_on.fill(when.strftime("%Y-%m-%dT%H:%M"))
    expect(page.get_by_text(f"In your time zone ({ZONE}).")).to_be_visible()
    page.get_by_role("button", name="Schedule post").scroll_into_view_if_needed()
    expect(page.locator("[data-save-state]")).to_have_text("Saved")
    _snap(page, screenshots, "10-schedule")
    page.get_by_role("button", name="Schedule post").click()

    expect(page).to_have_url(f"{server.base_url}/drafts")
    expect(page.get_by_text(re.compile(r"^Scheduled for .*9:30"))).to_be_visible()
    row = page.locator(f"[data-draft='{second_id}']")
    expect(row.locator(".badge")).to_have_text("Scheduled")
    expect(row.locator("time")).to_have_text(re.compile(r"9:30"))
    expect(row).to_contain_text("Mittens for the winter market #knitting")
    scheduled = _post(page, second_id)
    assert scheduled["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled["scheduled_at"]) == when
    # the published post is not a draft any more
    expect(page.locator(f"[data-draft='{post_id}']")).to_have_count(0)
    _snap(page, screenshots, "11-drafts-scheduled")
    page.emulate_media(color_scheme="dark")
    _snap(page, screenshots, "12-drafts-dark")
    page.emulate_media(color_scheme="light")

    # Delete asks first, in a sheet the keyboard can reach
    row.get_by_role("link", name=re.compile("^Delete")).click()
    sheet = page.get_by_role("dialog", name="Delete this draft?")
    expect(sheet).to_be_visible()
    _snap(page, screenshots, "13-delete-confirm")
    sheet.get_by_role("button", name="Keep it").click()
    expect(sheet).to_be_hidden()
    expect(row).to_be_visible()


def test_typing_survives_a_dropped_signal_and_a_reload(
    phone: Page, screenshots: Path, tmp_path: Path
) -> None:
    page = phone
    clip = media_factory.landscape_video(
        tmp_path, seconds=3, width=360, height=640, name="yarn.mp4"
    )
    post_id = _upload_and_compose(page, clip)
    state = page.locator("[data-save-state]")

    # Given a signal that drops every save (the browser's network itself refuses them, so
    # the last-chance save sent while the page unloads is lost too)
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send("Network.setBlockedURLs", {"urls": [f"*/api/v1/posts/{post_id}"]})
    page.get_by_label("Caption").fill("Written on the train #yarn")
    expect(state).to_have_text("Offline — will retry")
    _snap(page, screenshots, "14-offline-will-retry")

    # when the page is reloaded before any save got through, the typing comes back from
    # this device's copy
    page.reload()
    expect(page.get_by_label("Caption")).to_have_value("Written on the train #yarn")
    expect(
        page.get_by_text("Your changes from earlier weren’t saved yet; they’re back.")
    ).to_be_visible()
    expect(state).to_have_text("Offline — will retry")
    assert _post(page, post_id)["caption"] == ""

    # and once saves get through again, the server has it and the copy goes
    network.send("Network.setBlockedURLs", {"urls": []})
    expect(state).to_have_text("Saved", timeout=40_000)
    assert _post(page, post_id)["caption"] == "Written on the train #yarn"
    assert page.evaluate(f"() => localStorage.getItem('craftreel:compose:{post_id}')") is None

    # Offline in the browser's own sense: it says so, and saves when the signal is back
    page.context.set_offline(True)
    page.get_by_label("Caption").fill("Written on the train #yarn, and in the tunnel")
    expect(state).to_have_text("Offline — will retry")
    page.context.set_offline(False)
    expect(state).to_have_text("Saved", timeout=40_000)
    assert _post(page, post_id)["caption"] == "Written on the train #yarn, and in the tunnel"
    _snap(page, screenshots, "15-back-online-saved")
