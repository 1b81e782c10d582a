"""A viewer's feed, in Chromium at 390×844, against a real server with real, processed video.

A maker uploads two short videos through the API (tus), waits for processing, and publishes
them — the older one with two chapters. A viewer signs in, follows the maker, and scrolls
the feed: the post snaps into place and plays muted; a tap turns the sound on, a double tap
likes (still liked after a reload), the comments sheet takes a comment, the steps sheet
jumps to step 2, and Share falls back to copying the link. Then the hashtag page, search
and the profile grid. Each step is saved to tests/e2e/screenshots/feed-*.png.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server
from tests.media import media_factory

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
PROCESSING_SECONDS = 240
CHUNK = 512 * 1024
MAKER = "mina_makes"
VIEWER_EMAIL = "vic@example.org"


def _snap(page: Page, folder: Path, step: str, *, moving: bool = False) -> None:
    """Save what the phone shows now; nothing may stick out sideways at 390 px."""
    animations = "allow" if moving else "disabled"
    page.screenshot(path=str(folder / f"feed-{step}.png"), animations=animations)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _upload(api: httpx.Client, auth: dict[str, str], path: Path, kind: str) -> str:
    """Send a file with the tus protocol, as the Create page does; its media id."""
    data = path.read_bytes()
    created = api.post(
        "/api/v1/uploads",
        headers={
            **TUS,
            **auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": _metadata(kind=kind, filename=path.name),
        },
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    for offset in range(0, len(data), CHUNK):
        sent = api.patch(
            url,
            content=data[offset : offset + CHUNK],
            headers={
                **TUS,
                **auth,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.text
    return url.rsplit("/", 1)[1]


def _wait_until_ready(api: httpx.Client, auth: dict[str, str], media_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + PROCESSING_SECONDS
    while time.monotonic() < deadline:
        media: dict[str, Any] = api.get(f"/api/v1/media/{media_id}", headers=auth).json()
        if media["status"] == "ready":
            return media
        assert media["status"] != "failed", media
        time.sleep(1)
    raise AssertionError(f"media {media_id} was not processed in {PROCESSING_SECONDS} s")


def _publish(
    api: httpx.Client,
    auth: dict[str, str],
    media_id: str,
    extra_media: list[str] | None = None,
    **fields: Any,
) -> str:
    media_ids = [media_id, *(extra_media or [])]
    created = api.post("/api/v1/posts", json={"media_ids": media_ids, **fields}, headers=auth)
    assert created.status_code == 201, created.text
    post_id = str(created.json()["id"])
    published = api.post(f"/api/v1/posts/{post_id}/publish", json={}, headers=auth)
    assert published.status_code == 200, published.text
    return post_id


@dataclass(frozen=True)
class Posts:
    tutorial: str  # the second newest: 12 s, chapters at 0:00 and 0:06
    teaser: str  # the newest: first in the feed
    photos: list[str]  # older photo posts, newest first: the feed's second page holds one


@pytest.fixture(scope="module")
def posts(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Posts:
    """Mina's two posts, made from real uploads through the JSON API."""
    folder = tmp_path_factory.mktemp("feed-media")
    tutorial_clip = media_factory.landscape_video(
        folder, seconds=12, width=360, height=640, name="bowl.mp4"
    )
    teaser_clip = media_factory.landscape_video(
        folder, seconds=5, width=360, height=640, name="teaser.mp4"
    )
    # Sign-ups are limited per address: this module's people come from addresses of their own.
    with httpx.Client(
        base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.90"}, timeout=60
    ) as api:
        signup = api.post(
            "/api/v1/auth/signup",
            json={
                "email": "mina.makes@example.org",
                "handle": MAKER,
                "password": PASSWORD,
                "display_name": "Mina Okoro",
            },
        )
        assert signup.status_code == 201, signup.text
        tokens = api.post(
            "/api/v1/auth/signin",
            json={"email": "mina.makes@example.org", "password": PASSWORD},
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        api.patch("/api/v1/me/profile", json={"is_maker": True}, headers=auth)
        # Five photo posts first (the first with two photos), so the videos are the newest.
        photos = []
        for n in range(5):
            shots = [
                _upload(
                    api, auth, media_factory.jpeg_with_gps(folder, 600 + 10 * n + i, 800), "image"
                )
                for i in range(2 if n == 0 else 1)
            ]
            for shot in shots:
                _wait_until_ready(api, auth, shot)
            photos.append(
                _publish(
                    api, auth, shots[0], caption=f"Glaze test {n + 1} #glaze", extra_media=shots[1:]
                )
            )
        tutorial_media = _upload(api, auth, tutorial_clip, "video")
        teaser_media = _upload(api, auth, teaser_clip, "video")
        _wait_until_ready(api, auth, tutorial_media)
        _wait_until_ready(api, auth, teaser_media)
        tutorial = _publish(
            api,
            auth,
            tutorial_media,
            caption="Throwing a small #stoneware bowl, start to finish. Glaze by @" + MAKER,
            chapters=[{"at": 0, "title": "Centre the clay"}, {"at": 6, "title": "Pull the walls"}],
        )
        teaser = _publish(
            api, auth, teaser_media, caption="Fresh out of the kiln #stoneware #pottery"
        )
    with httpx.Client(
        base_url=server.base_url, headers={"X-Forwarded-For": "203.0.113.91"}, timeout=60
    ) as api:
        viewer = api.post(
            "/api/v1/auth/signup",
            json={
                "email": VIEWER_EMAIL,
                "handle": "vic_views",
                "password": PASSWORD,
                "display_name": "Vic Hale",
            },
        )
        assert viewer.status_code == 201, viewer.text
    return Posts(tutorial=tutorial, teaser=teaser, photos=list(reversed(photos)))


@pytest.fixture
def phone(server: Server, browser: Any, posts: Posts) -> Iterator[Page]:
    """A phone signed in as the viewer, allowed to use the clipboard."""
    context = browser.new_context(**PHONE, base_url=server.base_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/signin")
    page.get_by_label("Email").fill(VIEWER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server.base_url}/")
    try:
        yield page
    finally:
        context.close()


def _reel(page: Page, post_id: str) -> Any:
    return page.locator(f"#post-{post_id}")


def _current_time(page: Page, post_id: str) -> float:
    return float(page.evaluate(f"document.querySelector('#post-{post_id} video').currentTime"))


def _wait_playing(page: Page, post_id: str, beyond: float) -> None:
    page.wait_for_function(
        f"() => document.querySelector('#post-{post_id} video').currentTime > {beyond}",
        timeout=30_000,
    )


def _wait_first_playing(page: Page) -> None:
    """Discover ranks by engagement too: whichever post comes first plays."""
    page.wait_for_function(
        "() => document.querySelector('[data-reel] video')?.currentTime > 0.3", timeout=30_000
    )


def test_a_viewer_follows_scrolls_likes_comments_jumps_to_a_step_and_shares(
    phone: Page, posts: Posts, screenshots: Path, server: Server
) -> None:
    page = phone

    # A new follower: the Following feed is empty and says what to do.
    expect(page.get_by_text("Follow makers to fill this feed")).to_be_visible()
    _snap(page, screenshots, "01-following-empty")

    # Discover offers the maker's posts; Follow on a card follows her in place.
    page.get_by_role("link", name="Find makers in Discover").click()
    card = _reel(page, posts.teaser)
    card.get_by_role("button", name=f"Follow @{MAKER}").click()
    expect(card.get_by_text("Following", exact=True)).to_be_visible()
    expect(page.get_by_text(f"You follow @{MAKER}.")).to_be_visible()
    # her other card changed too
    expect(_reel(page, posts.tutorial).get_by_text("Following", exact=True)).to_have_count(1)
    _snap(page, screenshots, "02-followed-from-discover")

    # Her profile: the grid shows all seven posts.
    page.goto(f"/@{MAKER}")
    expect(page.get_by_role("button", name=f"Unfollow @{MAKER}")).to_be_visible()
    grid = page.locator("#profile-grid .post-grid")
    expect(grid.locator(".grid-tile")).to_have_count(7)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#profile-grid img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    _snap(page, screenshots, "02-profile-grid")

    # The feed: the newest post fills the screen and plays muted.
    page.goto("/")
    teaser = _reel(page, posts.teaser)
    expect(teaser).to_be_visible()
    _wait_playing(page, posts.teaser, 0.5)
    assert page.evaluate(f"document.querySelector('#post-{posts.teaser} video').muted")
    expect(teaser.get_by_role("button", name="Sound off. Turn sound on")).to_be_visible()
    _snap(page, screenshots, "03-feed-plays-muted")

    # A flick past half a screen snaps to the next post, which plays (muted) in its turn.
    scroller = page.locator("[data-feed-scroller]")
    box = scroller.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, box["height"] * 0.6)
    tutorial = _reel(page, posts.tutorial)
    page.wait_for_function(
        "id => { const s = document.querySelector('[data-feed-scroller]');"
        " const r = document.getElementById('post-' + id);"
        " return Math.abs(s.scrollTop - r.offsetTop) < 1; }",
        arg=posts.tutorial,
    )
    _wait_playing(page, posts.tutorial, 0.5)
    assert page.evaluate(f"document.querySelector('#post-{posts.teaser} video').paused")
    attached = page.evaluate("document.querySelectorAll('[data-feed] video[src]').length")
    assert 1 <= attached <= 3
    # the steps are marked on the progress bar: 0:06 of 0:12 is half way
    mark = tutorial.locator("[data-reel-mark]")
    expect(mark).to_have_count(1)
    assert mark.get_attribute("style") == "left: 50.0%"
    _snap(page, screenshots, "04-snapped-to-the-next-post")

    # One tap turns the sound on (and it stays on for the session).
    tap = tutorial.locator("[data-reel-tap]")
    tap.click(position={"x": 120, "y": 300})
    page.wait_for_function(f"() => !document.querySelector('#post-{posts.tutorial} video').muted")
    expect(tutorial.get_by_role("button", name="Sound on. Turn sound off")).to_be_visible()
    before = _current_time(page, posts.tutorial)
    _wait_playing(page, posts.tutorial, before + 0.3)
    _snap(page, screenshots, "05-sound-on")

    # A double tap likes it: a heart, the count goes to 1, and a reload still shows it liked.
    like = tutorial.get_by_role("button", name="Like", exact=True)
    expect(like).to_have_attribute("aria-pressed", "false")
    tap.dblclick(position={"x": 180, "y": 320})
    expect(tutorial.locator(".reel-heart-burst")).to_have_count(1)
    _snap(page, screenshots, "06-double-tap-heart", moving=True)
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator("[data-like-count]")).to_have_text("1")
    _snap(page, screenshots, "06-double-tap-liked-count")
    page.wait_for_load_state("networkidle")
    page.reload()
    tutorial = _reel(page, posts.tutorial)
    like = tutorial.get_by_role("button", name="Like", exact=True)
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator("[data-like-count]")).to_have_text("1")
    # the reload starts at the top again; the keyboard moves through the feed too
    _wait_playing(page, posts.teaser, 0.2)
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "id => Math.abs(document.querySelector('[data-feed-scroller]').scrollTop"
        " - document.getElementById('post-' + id).offsetTop) < 1",
        arg=posts.tutorial,
    )

    # Comments: the sheet says there are none yet, takes one, and counts it.
    tutorial.get_by_role("link", name="Comments", exact=True).click()
    sheet = page.locator("#comments-sheet")
    expect(sheet).to_be_visible()
    expect(sheet.get_by_text("No comments yet")).to_be_visible()
    sheet.get_by_label("Add a comment").fill("How thin do you throw the walls?")
    _snap(page, screenshots, "07-comment-typed")
    sheet.get_by_role("button", name="Post comment").click()
    comment = sheet.locator("[data-comment]").first
    expect(comment).to_contain_text("@vic_views")
    expect(comment).to_contain_text("How thin do you throw the walls?")
    expect(page.locator("#comments-sheet-title")).to_have_text("1 comment")
    expect(tutorial.locator("[data-comment-count]")).to_have_text("1")
    _snap(page, screenshots, "08-commented")
    # a reply joins the comment's thread
    comment.get_by_role("button", name="Reply to @vic_views").click()
    expect(sheet.get_by_text("Replying to @vic_views")).to_be_visible()
    sheet.get_by_label("Add a comment").fill("About 5 mm, thinner at the rim.")
    sheet.get_by_label("Add a comment").press("Enter")
    reply = comment.locator("[data-comment-reply-list] [data-comment]")
    expect(reply).to_contain_text("About 5 mm, thinner at the rim.")
    expect(page.locator("#comments-sheet-title")).to_have_text("2 comments")
    expect(sheet.get_by_text("Replying to @vic_views")).to_be_hidden()
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_be_hidden()

    # Steps: the sheet lists both; step 2 plays from 0:06.
    tutorial.get_by_role("link", name="Steps", exact=True).click()
    steps = page.locator("#chapters-sheet")
    expect(steps.locator("[data-chapter]")).to_have_count(2)
    _snap(page, screenshots, "09-steps-sheet")
    steps.get_by_role("button", name="Step 2: Pull the walls, at 0:06").click()
    expect(steps).to_be_hidden()
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('#post-{posts.tutorial} video');"
        " return !v.paused && v.currentTime >= 6 && v.currentTime < 8; }"
    )
    expect(tutorial.locator("[data-reel-chapter-label]")).to_have_text("Step 2/2 · Pull the walls")
    _snap(page, screenshots, "10-jumped-to-step-2")
    # Once more than 3 s have played, the player's beacon counts one view.
    _wait_playing(page, posts.tutorial, 10)
    views = 0
    for _ in range(50):
        views = page.request.get(f"/api/v1/posts/{posts.tutorial}").json()["counts"]["views"]
        if views:
            break
        page.wait_for_timeout(200)
    assert views == 1

    # Share: no Web Share API here, so the sheet offers the link; copying counts a share.
    assert not page.evaluate("'share' in navigator"), "this Chromium has navigator.share"
    tutorial.get_by_role("link", name="Share", exact=True).click()
    share = page.locator("#share-sheet")
    expect(share).to_be_visible()
    url = f"{server.base_url}/p/{posts.tutorial}"
    expect(share.get_by_label("Link to this post")).to_have_value(url)
    share.get_by_role("button", name="Copy link").click()
    expect(share.get_by_text("Link copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    expect(tutorial.locator("[data-share-count]")).to_have_text("1")
    _snap(page, screenshots, "11-share-copied")
    share.get_by_role("button", name="Close").click()
    expect(share).to_be_hidden()

    # On down the feed with the keyboard: photo posts, and the next page before the end.
    reels = page.locator("[data-feed] [data-reel]")
    expect(reels).to_have_count(6)  # the first page
    for post_id in posts.photos:
        page.keyboard.press("ArrowDown")
        page.wait_for_function(
            "id => Math.abs(document.querySelector('[data-feed-scroller]').scrollTop"
            " - document.getElementById('post-' + id).offsetTop) < 1",
            arg=post_id,
        )
        attached = page.evaluate("document.querySelectorAll('[data-feed] video[src]').length")
        assert attached <= 3
        if post_id == posts.photos[-1]:
            _snap(page, screenshots, "12-photos-post")
    expect(reels).to_have_count(7)  # the second page came in on its own
    assert tutorial.locator("video").get_attribute("src") is None  # let go, far behind
    page.keyboard.press("ArrowDown")
    expect(page.get_by_text("You’re all caught up")).to_be_in_viewport()
    page.wait_for_function(
        "() => Math.abs(document.querySelector('[data-feed-scroller]').scrollTop"
        " - document.querySelector('[data-feed-end]').offsetTop) < 1"
    )
    _snap(page, screenshots, "13-all-caught-up")
    page.keyboard.press("ArrowUp")

    # The same feed in dark mode (the video's overlay is the same; the sheets follow).
    page.emulate_media(color_scheme="dark")
    tutorial.get_by_role("link", name="Comments", exact=True).click()
    comment = page.locator("#comments-sheet [data-comment]").first
    comment.get_by_role("button", name="View 1 reply").click()
    reply = comment.locator("[data-comment-reply-list] [data-comment]")
    expect(reply).to_contain_text("About 5 mm")
    _snap(page, screenshots, "14-dark-comments")
    # deleting one's own reply (after confirming) takes it away and out of the count
    page.once("dialog", lambda dialog: dialog.accept())
    reply.get_by_role("button", name="Delete the comment by @vic_views").click()
    expect(reply).to_have_count(0)
    expect(page.locator("#comments-sheet-title")).to_have_text("1 comment")


def test_a_visitor_browses_a_hashtag_search_and_discover(
    server: Server, browser: Any, posts: Posts, screenshots: Path
) -> None:
    context = browser.new_context(**PHONE, base_url=server.base_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        # Not signed in, the home page is Discover.
        page.goto("/")
        expect(page.get_by_role("link", name="Discover", exact=True).first).to_have_attribute(
            "aria-current", "page"
        )
        _wait_first_playing(page)
        _snap(page, screenshots, "15-visitor-discover")

        # A tag in the caption leads to its page: a grid of both posts.
        page.locator(f"#post-{posts.teaser} .reel-caption").get_by_role(
            "link", name="#stoneware"
        ).click()
        expect(page.get_by_role("heading", name="#stoneware")).to_be_visible()
        expect(page.get_by_text("2 posts")).to_be_visible()
        expect(page.locator(".post-grid .grid-tile")).to_have_count(2)
        _snap(page, screenshots, "16-hashtag")

        # Search: posts by a word, people by name; nothing found says so.
        page.goto("/search")
        page.get_by_label("Search posts and people").fill("bowl")
        page.get_by_label("Search posts and people").press("Enter")
        expect(page.locator(".post-grid .grid-tile")).to_have_count(1)
        _snap(page, screenshots, "17-search-posts")
        page.get_by_role("link", name="People").click()
        page.get_by_label("Search posts and people").fill("mina")
        page.get_by_label("Search posts and people").press("Enter")
        expect(page.get_by_role("link", name="Follow @" + MAKER)).to_be_visible()
        _snap(page, screenshots, "18-search-people")
        page.get_by_label("Search posts and people").fill("unobtainium")
        page.get_by_label("Search posts and people").press("Enter")
        expect(page.get_by_text("No one found")).to_be_visible()

        # Discover's tab: a search box over the popular posts.
        page.get_by_role("link", name="Discover", exact=True).click()
        expect(page.get_by_text("Popular now")).to_be_visible()
        expect(page.locator(".post-grid .grid-tile")).to_have_count(7)
        _snap(page, screenshots, "19-discover-tab")

        # On a wide screen the tab bar becomes a rail and the post keeps a phone's shape.
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto("/")
        _wait_first_playing(page)
        page.screenshot(path=str(screenshots / "feed-20-desktop.png"), animations="disabled")
        reel = page.locator("[data-reel]").first.bounding_box()
        assert reel is not None and reel["width"] < 800 and reel["height"] == 800
    finally:
        context.close()
