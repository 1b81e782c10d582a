"""Saving into a collection, in Chromium at 390×844, against a real server.

A maker posts a photo (real upload, processing, publish, through the API). A viewer signs
in on the way to it, taps Save, takes the toast's "Add to a collection", makes a collection
in the sheet — the post goes into it — then opens Saved from their profile and switches to
the collection. Each step is saved to tests/e2e/screenshots/saved-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server
from tests.e2e.test_feed_journey import _publish, _upload, _wait_until_ready
from tests.e2e.test_post_page_journey import _sign_up
from tests.media import media_factory

pytestmark = pytest.mark.e2e

VIEWER_EMAIL = "sol.saves@example.org"


def _snap(page: Page, folder: Path, step: str) -> None:
    """Save what the phone shows now; nothing may stick out sideways at 390 px."""
    page.screenshot(path=str(folder / f"saved-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


@pytest.fixture(scope="module")
def post_id(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("saved-media")
    photo = media_factory.jpeg_with_gps(folder, 640, 800)
    # Sign-ups are limited per address: this module's people come from an address of its own.
    with httpx.Client(
        base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.170"}, timeout=60
    ) as api:
        _sign_up(api, "odo.weaves@example.org", "odo_weaves", "Odo Weaver")
        _sign_up(api, VIEWER_EMAIL, "sol_saves", "Sol Saver")
        tokens = api.post(
            "/api/v1/auth/signin", json={"email": "odo.weaves@example.org", "password": PASSWORD}
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        media = _upload(api, auth, photo, "image")
        _wait_until_ready(api, auth, media)
        return _publish(api, auth, media, caption="A tablet-woven band, finished")


def test_save_a_post_into_a_new_collection_and_find_it_on_the_saved_page(
    server: Server, browser: Any, post_id: str, screenshots: Path
) -> None:
    context = browser.new_context(**PHONE, base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"/signin?next=/p/{post_id}")
        page.get_by_label("Email").fill(VIEWER_EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(f"{server.base_url}/p/{post_id}")
        page.wait_for_load_state("networkidle")  # post.js has wired the buttons

        # Save: the toast offers a collection
        save = page.locator("[data-post-actions]").get_by_role("button", name=re.compile("^Save"))
        save.click()
        expect(save).to_have_attribute("aria-pressed", "true")
        offer = page.get_by_role("button", name="Add to a collection")
        expect(offer).to_be_visible()
        _snap(page, screenshots, "01-saved-toast")

        # The sheet: no collections yet; an empty name is refused, then one is made
        offer.click()
        sheet = page.locator("#collection-sheet")
        expect(sheet).to_be_visible()
        expect(sheet.locator("[data-collection-status]")).to_have_text(
            "No collections yet. Make one below."
        )
        sheet.get_by_role("button", name="Create").click()
        expect(sheet.locator("[data-collection-error]")).to_have_text("Give the collection a name.")
        sheet.get_by_label("New collection").fill("Bands to try")
        _snap(page, screenshots, "02-collection-sheet")
        sheet.get_by_role("button", name="Create").click()
        expect(sheet).to_be_hidden()
        expect(page.locator("#toasts")).to_contain_text("Saved to “Bands to try”.")
        _snap(page, screenshots, "03-filed")

        # Saved, from my profile: the post is there, and in its collection, not unfiled
        page.goto("/@sol_saves")
        page.get_by_role("link", name="Saved", exact=True).click()
        expect(page).to_have_url(f"{server.base_url}/saved")
        chips = page.get_by_role("navigation", name="Collections")
        expect(chips.get_by_role("link", name="All saved 1")).to_have_attribute(
            "aria-current", "page"
        )
        expect(page.locator(".grid-link")).to_have_count(1)
        _snap(page, screenshots, "04-all-saved")
        chips.get_by_role("link", name="Bands to try 1").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Bands to try")
        expect(page.locator(f".grid-link[href='/p/{post_id}']")).to_be_visible()
        _snap(page, screenshots, "05-collection")

        # Delete the collection (confirm sheet): the post stays, unfiled
        page.get_by_role("link", name="Delete").click()
        confirm = page.locator("#saved-delete-sheet")
        expect(confirm).to_be_visible()
        _snap(page, screenshots, "06-delete-confirm")
        confirm.get_by_role("button", name="Delete collection").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Unfiled")
        expect(page.locator(f".grid-link[href='/p/{post_id}']")).to_be_visible()
        _snap(page, screenshots, "07-unfiled")
    finally:
        context.close()
