"""A post's own page (/p/{id}), in Chromium at 390×844, against a real server with a real,
processed video.

A maker posts an 8 s video and a photo post with comments off (through the API: tus upload,
processing, publish). A viewer opens the video's link and signs in on the way: the video
plays; Like fills the heart and still does after a reload; the keyboard takes the like back
and a double tap on the video gives it again; Save keeps the post; the comments sheet takes
a comment; Share falls back to copying the link; after 3 s of playback the view is counted.
A visitor who is not signed in opens the photo post: the comment button says comments are
off, and Like leads to sign in. Each step is saved to tests/e2e/screenshots/postpage-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server
from tests.e2e.test_feed_journey import _publish, _upload, _wait_until_ready
from tests.media import media_factory

pytestmark = pytest.mark.e2e

MAKER = "pia_pots"
VIEWER_EMAIL = "remy.reads@example.org"


@dataclass(frozen=True)
class Posts:
    video: str  # 8 s, two steps, comments on
    photos: str  # one photo, comments off


def _snap(page: Page, folder: Path, step: str, *, moving: bool = False) -> None:
    """Save what the phone shows now; nothing may stick out sideways at 390 px."""
    animations = "allow" if moving else "disabled"
    page.screenshot(path=str(folder / f"postpage-{step}.png"), animations=animations)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _sign_up(api: httpx.Client, email: str, handle: str, name: str) -> None:
    signup = api.post(
        "/api/v1/auth/signup",
        json={"email": email, "handle": handle, "password": PASSWORD, "display_name": name},
    )
    assert signup.status_code == 201, signup.text


@pytest.fixture(scope="module")
def posts(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Posts:
    """Pia's two posts, made from real uploads through the JSON API, and Remy's account."""
    folder = tmp_path_factory.mktemp("postpage-media")
    clip = media_factory.landscape_video(folder, seconds=8, width=360, height=640, name="jug.mp4")
    photo = media_factory.jpeg_with_gps(folder, 640, 800)
    # Sign-ups are limited per address: this module's people come from an address of its own.
    with httpx.Client(
        base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.150"}, timeout=60
    ) as api:
        _sign_up(api, "pia.pots@example.org", MAKER, "Pia Marsh")
        _sign_up(api, VIEWER_EMAIL, "remy_reads", "Remy Dube")
        tokens = api.post(
            "/api/v1/auth/signin", json={"email": "pia.pots@example.org", "password": PASSWORD}
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        video_media = _upload(api, auth, clip, "video")
        photo_media = _upload(api, auth, photo, "image")
        _wait_until_ready(api, auth, video_media)
        _wait_until_ready(api, auth, photo_media)
        video = _publish(
            api,
            auth,
            video_media,
            caption="A slip-cast jug, poured and trimmed #slipcasting",
            chapters=[{"at": 0, "title": "Pour the slip"}, {"at": 4, "title": "Trim the rim"}],
            materials=["Porcelain casting slip", "Plaster mould"],
        )
        photos = _publish(
            api, auth, photo_media, caption="Drying rack, day two", comments_enabled=False
        )
    return Posts(video=video, photos=photos)


@pytest.fixture
def phone(server: Server, browser: Any, posts: Posts) -> Iterator[Page]:
    """A phone allowed to use the clipboard, not signed in yet."""
    context = browser.new_context(**PHONE, base_url=server.base_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


def _actions(page: Page) -> Locator:
    return page.locator("[data-post-actions]")


def _button(page: Page, name: str) -> Locator:
    return _actions(page).get_by_role("button", name=re.compile(rf"^{name}\b"))


def _link(page: Page, name: str) -> Locator:
    return _actions(page).get_by_role("link", name=re.compile(rf"^{name}\b"))


def _video(page: Page) -> Locator:
    return page.locator("[data-post-player] video")


def _wait_playing(page: Page, beyond: float) -> None:
    page.wait_for_function(
        "t => document.querySelector('[data-post-player] video')?.currentTime > t",
        arg=beyond,
        timeout=30_000,
    )


def _show_actions(page: Page) -> None:
    """Scroll so the actions row sits under the video's controls."""
    page.evaluate(
        "() => window.scrollTo(0, document.querySelector('[data-post-actions]')"
        ".getBoundingClientRect().top + window.scrollY - 240)"
    )


def test_a_viewer_likes_saves_comments_and_shares_from_the_post_page(
    phone: Page, posts: Posts, screenshots: Path, server: Server
) -> None:
    page = phone
    url = f"{server.base_url}/p/{posts.video}"

    # The link, opened by someone who signs in on the way, leads back to the post.
    page.goto(f"/signin?next=/p/{posts.video}")
    page.get_by_label("Email").fill(VIEWER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(url)
    _wait_playing(page, 0.3)
    like = _button(page, "Like")
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(like).to_have_text("Like 0")
    _snap(page, screenshots, "01-opened")

    # Like: the heart fills, the counts follow, and a reload still shows it.
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator("[data-like-count]")).to_have_text("1")
    expect(page.locator("[data-post-count='likes']")).to_have_text("1 like")
    _show_actions(page)
    _snap(page, screenshots, "02-liked")
    page.wait_for_load_state("networkidle")
    page.reload()
    like = _button(page, "Like")
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator("[data-like-count]")).to_have_text("1")

    # The keyboard takes it back; a double tap on the video likes it again, with a heart.
    like.focus()
    page.keyboard.press("Enter")
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(like.locator("[data-like-count]")).to_have_text("0")
    _wait_playing(page, 0.3)
    _video(page).dblclick()
    expect(page.locator("[data-post-media] .reel-heart-burst")).to_have_count(1)
    _snap(page, screenshots, "03-double-tap-heart", moving=True)
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator("[data-like-count]")).to_have_text("1")
    # one tap still plays and pauses (after waiting to see whether a second one comes)
    _video(page).click()
    page.wait_for_function("() => document.querySelector('[data-post-player] video').paused")
    _video(page).click()
    page.wait_for_function("() => !document.querySelector('[data-post-player] video').paused")

    # Save: kept, counted, and still saved after a reload.
    save = _button(page, "Save")
    expect(save).to_have_attribute("aria-pressed", "false")
    save.click()
    expect(save).to_have_attribute("aria-pressed", "true")
    expect(save.locator("[data-save-count]")).to_have_text("1")
    expect(page.locator("[data-post-count='saves']")).to_have_text("1 save")
    _show_actions(page)
    _snap(page, screenshots, "04-saved")
    page.wait_for_load_state("networkidle")
    page.reload()
    expect(_button(page, "Save")).to_have_attribute("aria-pressed", "true")
    expect(_button(page, "Like")).to_have_attribute("aria-pressed", "true")

    # Comments: the feed's sheet, for this post; a comment goes in and is counted.
    _link(page, "Comments").click()
    sheet = page.locator("#comments-sheet")
    expect(sheet).to_be_visible()
    expect(sheet.get_by_text("No comments yet")).to_be_visible()
    sheet.get_by_label("Add a comment").fill("Do you trim it leather-hard?")
    _snap(page, screenshots, "05-comment-typed")
    sheet.get_by_role("button", name="Post comment").click()
    comment = sheet.locator("[data-comment]").first
    expect(comment).to_contain_text("@remy_reads")
    expect(comment).to_contain_text("Do you trim it leather-hard?")
    expect(page.locator("#comments-sheet-title")).to_have_text("1 comment")
    expect(_link(page, "Comments").locator("[data-comment-count]")).to_have_text("1")
    expect(page.locator("[data-post-count='comments']")).to_have_text("1 comment")
    _snap(page, screenshots, "06-commented")
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_be_hidden()

    # Share: no Web Share API here, so the sheet offers the link; copying counts a share.
    assert not page.evaluate("'share' in navigator"), "this Chromium has navigator.share"
    _link(page, "Share").click()
    share = page.locator("#share-sheet")
    expect(share).to_be_visible()
    expect(share.get_by_label("Link to this post")).to_have_value(url)
    expect(share.get_by_role("link", name="Open the post page")).to_have_count(0)
    share.get_by_role("button", name="Copy link").click()
    expect(share.get_by_text("Link copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    expect(_link(page, "Share").locator("[data-share-count]")).to_have_text("1")
    expect(page.locator("[data-post-count='shares']")).to_have_text("1 share")
    _snap(page, screenshots, "07-share-copied")
    share.get_by_role("button", name="Close").click()
    expect(share).to_be_hidden()

    # Once more than 3 s have played, the player's beacon counts one view (one a day, however
    # often the page was loaded).
    views = 0
    for _ in range(100):
        views = page.request.get(f"/api/v1/posts/{posts.video}").json()["counts"]["views"]
        if views:
            break
        page.wait_for_timeout(200)
    assert views == 1

    # The same page in dark mode.
    page.emulate_media(color_scheme="dark")
    _show_actions(page)
    _snap(page, screenshots, "08-dark")
    _link(page, "Comments").click()
    expect(page.locator("#comments-sheet [data-comment]")).to_have_count(1)
    _snap(page, screenshots, "09-dark-comments")


def test_a_visitor_sees_comments_off_and_is_asked_to_sign_in_to_like(
    phone: Page, posts: Posts, screenshots: Path, server: Server
) -> None:
    page = phone
    page.goto(f"/p/{posts.photos}")

    comments = _link(page, "Comments")
    expect(comments).to_have_text("Comments Off")
    _show_actions(page)
    _snap(page, screenshots, "10-visitor-actions")
    comments.click()
    sheet = page.locator("#comments-sheet")
    expect(sheet.get_by_text("The maker turned comments off for this post.")).to_be_visible()
    expect(sheet.get_by_label("Add a comment")).to_have_count(0)
    _snap(page, screenshots, "11-visitor-comments-off")
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_be_hidden()

    # A link to the post's comments opens them.
    page.goto(f"/p/{posts.video}#comments")
    expect(sheet).to_be_visible()
    expect(sheet.locator("[data-comments-loading]")).to_be_hidden()
    expect(sheet.locator("[data-comments-error]")).to_be_hidden()
    expect(sheet.get_by_role("link", name="Sign in")).to_have_attribute(
        "href", f"/signin?next={quote('/p/' + posts.video, safe='')}"
    )
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_be_hidden()

    # Liking needs an account: the heart is a link to sign in and come back.
    page.emulate_media(color_scheme="dark")
    _show_actions(page)
    _snap(page, screenshots, "12-visitor-dark")
    _actions(page).get_by_role("link", name="Sign in to like").click()
    expect(page).to_have_url(f"{server.base_url}/signin?next=/p/{posts.video}")
    expect(page.get_by_label("Email")).to_be_visible()

    # On a wide screen the row stays one line under the author.
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/p/{posts.video}")
    _show_actions(page)
    page.screenshot(path=str(screenshots / "postpage-13-desktop.png"), animations="disabled")
    boxes = [_actions(page).locator("li").nth(i).bounding_box() for i in range(4)]
    assert all(box is not None for box in boxes)
    assert len({round(box["y"]) for box in boxes if box}) == 1
