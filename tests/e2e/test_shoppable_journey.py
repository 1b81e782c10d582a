"""Shoppable video, in Chromium at 390×844, against a real server with real, processed video.

A maker with a shop posts a 12 s video (through the API: tus upload, processing, publish) and
tags a mug from 0:02 to 0:10, and links the post's material to it ("get the kit"). A viewer
who follows the maker opens the feed: the video plays, the mug's chip appears once 0:02
plays, "Add" puts it in the cart while the video keeps playing; the post page's "Get the kit"
adds another; the viewer checks out with the test card 4242…, the maker ships (the test
marks it delivered through the API), and the viewer reviews it. Screenshots go to
tests/e2e/screenshots/shoppable-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PHONE, Server
from tests.e2e.test_feed_journey import _publish, _upload, _wait_until_ready
from tests.e2e.test_shop_journey import ORDER_URL, PAID_TIMEOUT_MS, _sign_up, _signed_in
from tests.media import media_factory

pytestmark = pytest.mark.e2e


def _snap(page: Page, folder: Path, step: str) -> None:
    page.screenshot(path=str(folder / f"shoppable-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _token(api: httpx.Client, email: str) -> dict[str, str]:
    from tests.conftest import PASSWORD

    signed = api.post("/api/v1/auth/signin", json={"email": email, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    return {"Authorization": f"Bearer {signed.json()['access_token']}"}


@dataclass(frozen=True)
class Shoppable:
    post_id: str
    listing_id: str
    maker: str
    viewer: str


@pytest.fixture(scope="module")
def shoppable(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shoppable]:
    folder = tmp_path_factory.mktemp("shoppable-media")
    clip = media_factory.landscape_video(folder, seconds=12, width=360, height=640, name="mug.mp4")
    maker = _sign_up(server, "glaze_and_gather", "Noor Haddad", "203.0.113.140")
    viewer = _sign_up(server, "tea_time_tom", "Tom Ferris", "203.0.113.141")
    with httpx.Client(base_url=server.base_url, timeout=60) as api:
        auth = _token(api, maker)
        shop = api.post(
            "/api/v1/shops",
            headers=auth,
            json={
                "name": "Glaze & Gather",
                "handle": "glaze-and-gather",
                "currency": "GBP",
                "shipping_rates": {"GB": 395, "*": 1200},
            },
        )
        assert shop.status_code == 201, shop.text
        listing = api.post(
            "/api/v1/listings",
            headers=auth,
            json={
                "title": "Ash-glazed tea bowl",
                "category": "pottery",
                "variants": [{"name": "Ash", "price_minor": 2600, "stock": 3}],
            },
        )
        assert listing.status_code == 201, listing.text
        listing_id = str(listing.json()["id"])
        assert api.post(f"/api/v1/listings/{listing_id}/publish", headers=auth).status_code == 200
        media_id = _upload(api, auth, clip, "video")
        _wait_until_ready(api, auth, media_id)
        post_id = _publish(
            api,
            auth,
            media_id,
            caption="Throwing a chawan, then the ash glaze #teaware",
            chapters=[{"at": 0, "title": "Throw"}, {"at": 6, "title": "Glaze"}],
            materials=["Ash-glazed tea bowl"],
        )
        tagged = api.post(
            f"/api/v1/posts/{post_id}/products",
            headers=auth,
            json={"listing_id": listing_id, "start_s": 2, "end_s": 10},
        )
        assert tagged.status_code == 201, tagged.text
        kit = api.put(
            f"/api/v1/posts/{post_id}/kit",
            headers=auth,
            json={"items": [{"material_index": 0, "listing_id": listing_id}]},
        )
        assert kit.status_code == 200, kit.text
        viewer_auth = _token(api, viewer)
        followed = api.put("/api/v1/people/glaze_and_gather/follow", headers=viewer_auth)
        assert followed.status_code == 200, followed.text
    yield Shoppable(post_id, listing_id, maker, viewer)


def test_a_viewer_buys_from_the_video_without_stopping_it(
    server: Server, browser: Browser, screenshots: Path, shoppable: Shoppable
) -> None:
    context, page = _signed_in(browser, server, shoppable.viewer, "/")
    try:
        reel = page.locator(f"[data-reel][data-post-id='{shoppable.post_id}']")
        expect(reel).to_be_visible()
        video = reel.locator("video")
        page.wait_for_function(
            "v => !v.paused && v.currentTime > 0.2", arg=video.element_handle(), timeout=30_000
        )
        # Before 0:02 there is no chip; once it plays, the mug shows with its price.
        chip = reel.locator("[data-product-chip]")
        expect(chip).to_have_count(1, timeout=15_000)
        expect(chip).to_contain_text("Ash-glazed tea bowl")
        expect(chip).to_contain_text("£26.00")
        _snap(page, screenshots, "01-chip-in-feed")

        before = video.evaluate("v => v.currentTime")
        chip.get_by_role("button", name="Add Ash-glazed tea bowl to your cart").click()
        expect(page.get_by_text("Ash-glazed tea bowl is in your cart.")).to_be_visible()
        # Still on the feed, and the video never stopped.
        assert page.url.rstrip("/") == server.base_url.rstrip("/")
        page.wait_for_function(
            "([v, t]) => !v.paused && v.currentTime > t + 0.5",
            arg=[video.element_handle(), before],
            timeout=10_000,
        )
        _snap(page, screenshots, "02-added-video-plays")

        # The post page: the kit adds another one at once.
        page.goto(f"/p/{shoppable.post_id}")
        kit = page.locator("[data-post-kit]")
        expect(kit).to_contain_text("Ash-glazed tea bowl")
        kit.scroll_into_view_if_needed()
        _snap(page, screenshots, "03-get-the-kit")
        kit.get_by_role("button", name="Add the kit to my cart").click()
        expect(page.get_by_text("1 item added to your cart.")).to_be_visible()

        # Cart → checkout with the test card → paid.
        page.goto("/cart")
        expect(page.get_by_role("heading", name="Your cart")).to_be_visible()
        expect(page.get_by_text("£52.00").first).to_be_visible()
        _snap(page, screenshots, "04-cart")
        page.get_by_role("link", name="Check out").click()
        page.get_by_label("Full name").fill("Tom Ferris")
        page.get_by_label(re.compile(r"^Address")).fill("4 Teapot Lane")
        page.get_by_label("Town or city").fill("Bath")
        page.get_by_label("Postcode").fill("BA1 1AA")
        page.get_by_text("Test cards: no real money moves").click()
        page.get_by_role("button", name="Use 4242 4242 4242 4242").click()
        page.get_by_role("button", name=re.compile(r"^Pay £")).click()
        expect(page).to_have_url(ORDER_URL)
        expect(page.locator(".timeline-step.is-current")).to_contain_text(
            "Paid", timeout=PAID_TIMEOUT_MS
        )
        _snap(page, screenshots, "05-paid")
        found = ORDER_URL.search(page.url)
        assert found
        order_id = found.group(1)

        # The maker ships it; it arrives; the viewer reviews it.
        with httpx.Client(base_url=server.base_url) as api:
            maker_auth = _token(api, shoppable.maker)
            shipped = api.post(
                f"/api/v1/orders/{order_id}/ship",
                headers=maker_auth,
                json={"carrier": "Royal Mail", "tracking_number": "RM100200300GB"},
            )
            assert shipped.status_code == 200, shipped.text
            delivered = api.post(
                f"/api/v1/orders/{order_id}/delivered", headers=_token(api, shoppable.viewer)
            )
            assert delivered.status_code == 200, delivered.text
        page.reload()
        expect(page.locator(".timeline-step.is-current")).to_contain_text("Delivered")
        page.locator("label.star-choice", has_text="4 stars").click()
        page.get_by_label("Your review").fill("Saw it in the video, bought it mid-scroll. Lovely.")
        page.get_by_role("button", name="Post review").click()
        expect(page.get_by_text("Thank you for your review!")).to_be_visible()
        _snap(page, screenshots, "06-reviewed")
    finally:
        context.close()


# A browser without its own HLS player (desktop Firefox, older Chrome): the page falls back to
# the vendored hls.js over Media Source Extensions.
NO_NATIVE_HLS = """
const original = HTMLMediaElement.prototype.canPlayType;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return /mpegurl/i.test(type) ? "" : original.call(this, type);
};
"""


def test_the_post_page_plays_through_hls_js_where_the_browser_cannot(
    server: Server, browser: Browser, screenshots: Path, shoppable: Shoppable
) -> None:
    context = browser.new_context(**PHONE, base_url=server.base_url)
    context.add_init_script(NO_NATIVE_HLS)
    page = context.new_page()
    try:
        page.goto(f"/p/{shoppable.post_id}")
        video = page.locator("[data-post-player] video")
        page.wait_for_function(
            "v => v.dataset.stream === 'hls.js' && !v.paused && v.currentTime > 1",
            arg=video.element_handle(),
            timeout=30_000,
        )
        # hls.js feeds the element from a MediaSource, never the playlist URL itself.
        assert video.evaluate("v => v.src.startsWith('blob:')")
        _snap(page, screenshots, "07-hls-js-fallback")
    finally:
        context.close()


def test_the_feed_plays_through_hls_js_where_the_browser_cannot(
    server: Server, browser: Browser, screenshots: Path, shoppable: Shoppable
) -> None:
    context, page = _signed_in(
        browser, server, shoppable.viewer, "/discover", java_script_enabled=True
    )
    context.add_init_script(NO_NATIVE_HLS)
    try:
        page.goto("/")
        reel = page.locator(f"[data-reel][data-post-id='{shoppable.post_id}']")
        video = reel.locator("video")
        page.wait_for_function(
            "v => v.dataset.stream === 'hls.js' && !v.paused && v.currentTime > 1",
            arg=video.element_handle(),
            timeout=30_000,
        )
        expect(reel.locator("[data-product-chip]")).to_have_count(1, timeout=15_000)
        _snap(page, screenshots, "08-feed-hls-js")
    finally:
        context.close()
