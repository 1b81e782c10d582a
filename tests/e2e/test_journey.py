"""A newcomer's first visit, in Chromium at a phone's size, against a real server.

Sign up → confirm the email from the mailed link → sign in → profile with a photo →
follow a maker → sign out → sign back in. Each step is saved to tests/e2e/screenshots/.
"""

from __future__ import annotations

import email
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import PHONE, Server

pytestmark = pytest.mark.e2e


def _snap(page: Page, folder: Path, step: str) -> None:
    """Save what the phone's screen shows now; nothing may stick out sideways at 390 px."""
    page.screenshot(path=str(folder / f"{step}.png"))
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["viewport"]["width"], f"{step}: page is {overflow}px wide"


@pytest.fixture(scope="module")
def maker(server: Server) -> str:
    """Mira, a potter already on Craftreel (made through the JSON API); her access token."""
    with httpx.Client(base_url=server.base_url) as api:
        signup = api.post(
            "/api/v1/auth/signup",
            json={
                "email": "mira@example.org",
                "handle": "clay_mira",
                "password": PASSWORD,
                "display_name": "Mira Okafor",
            },
        )
        assert signup.status_code == 201, signup.text
        tokens = api.post(
            "/api/v1/auth/signin", json={"email": "mira@example.org", "password": PASSWORD}
        ).json()
        profile = api.patch(
            "/api/v1/me/profile",
            json={"is_maker": True, "bio": "Wheel-thrown stoneware from a tiny studio in Leeds."},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert profile.status_code == 200, profile.text
        return str(tokens["access_token"])


def _link_in_mail(mail_dir: Path, address: str, path: str) -> str:
    for eml in sorted(mail_dir.glob("*.eml"), reverse=True):
        message = email.message_from_bytes(eml.read_bytes())
        if str(message["To"]).lower() != address:
            continue
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        found = re.search(rf"https?://\S+{re.escape(path)}\?token=\S+", body.decode())
        if found:
            return found.group(0)
    raise AssertionError(f"no {path} link mailed to {address}")


def _portrait_jpeg() -> bytes:
    """A 600×600 JPEG: warm background, a round 'face'."""
    image = Image.new("RGB", (600, 600), (199, 96, 58))
    draw = ImageDraw.Draw(image)
    for y in range(600):
        draw.line([(0, y), (600, y)], fill=(199 - y // 8, 96 + y // 10, 58 + y // 6))
    draw.ellipse((170, 120, 430, 380), fill=(246, 224, 200))
    draw.ellipse((110, 380, 490, 760), fill=(79, 111, 88))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def test_newcomer_signs_up_follows_a_maker_and_signs_back_in(
    server: Server, browser: Any, screenshots: Path, maker: str
) -> None:
    base = server.base_url

    # Sign up with the form.
    phone = browser.new_context(**PHONE, base_url=base)
    page = phone.new_page()
    page.set_default_timeout(10_000)
    page.goto("/signup")
    expect(page.get_by_role("heading", name="Join Craftreel")).to_be_visible()
    page.get_by_label("Your name").fill("Wren Hollis")
    page.get_by_label("Handle").fill("wren_weaves")
    page.get_by_label("Email").fill("wren@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    _snap(page, screenshots, "01-sign-up-form")
    page.get_by_role("button", name="Create account").click()

    expect(page).to_have_url(f"{base}/verify")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.get_by_text("Welcome to Craftreel, Wren Hollis!")).to_be_visible()
    expect(page.get_by_text("wren@example.org")).to_be_visible()
    _snap(page, screenshots, "02-check-your-email")
    phone.close()

    # The mailed link opens in a fresh browser, as from a mail app.
    link = _link_in_mail(server.mail_dir, "wren@example.org", "/verify")
    phone = browser.new_context(**PHONE, base_url=base)
    page = phone.new_page()
    page.set_default_timeout(10_000)
    page.goto(link)
    expect(page.get_by_role("heading", name="Your email is confirmed")).to_be_visible()
    _snap(page, screenshots, "03-email-confirmed")

    # Sign in: a wrong password first, then the right one; on to the profile editor.
    page.get_by_role("link", name="Sign in and finish your profile").click()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    page.get_by_label("Email").fill("wren@example.org")
    page.get_by_label("Password").fill("not my password at all")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("do not match an account")
    expect(page.get_by_label("Email")).to_have_value("wren@example.org")
    expect(page.get_by_label("Password")).to_have_value("")
    _snap(page, screenshots, "04-wrong-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()

    # Edit the profile, with a photo.
    expect(page).to_have_url(f"{base}/settings/profile")
    expect(page.get_by_role("heading", name="Edit profile")).to_be_visible()
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_have_value("Wren Hollis")
    _snap(page, screenshots, "05-signed-in-profile-editor")
    page.get_by_label("Profile photo").set_input_files(
        {"name": "wren.jpg", "mimeType": "image/jpeg", "buffer": _portrait_jpeg()}
    )
    page.get_by_label("Bio").fill("Weaving wool on a floor loom.\nCommissions open in spring.")
    page.get_by_label("Links").fill("wrenweaves.example/shop")
    page.get_by_label("I make things to sell").check()
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Your profile is saved.")).to_be_visible()
    expect(page.get_by_label("Bio")).to_have_value(
        "Weaving wool on a floor loom.\nCommissions open in spring."
    )
    expect(page.get_by_label("Links")).to_have_value("https://wrenweaves.example/shop")
    expect(page.locator("#avatar-preview img")).to_have_attribute("src", re.compile(r"\.webp$"))
    _snap(page, screenshots, "06-profile-saved")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
    expect(page).to_have_url(f"{base}/@wren_weaves")
    expect(page.get_by_text("Weaving wool on a floor loom.")).to_be_visible()
    expect(page.get_by_role("link", name="wrenweaves.example/shop")).to_be_visible()
    expect(page.locator(".profile-handle .badge", has_text="Maker")).to_be_visible()
    avatar = page.locator(".profile-head .avatar img")
    expect(avatar).to_be_visible()
    assert avatar.evaluate("img => img.complete && img.naturalWidth > 0")
    _snap(page, screenshots, "07-own-profile")

    # Find the maker and follow her.
    page.goto("/people")
    page.get_by_label("Search people").fill("mira")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=re.compile("Mira Okafor")).click()
    expect(page.get_by_role("heading", name="Mira Okafor")).to_be_visible()
    expect(page.get_by_text("0 followers")).to_be_visible()
    page.get_by_role("button", name="Follow @clay_mira").click()
    expect(page.get_by_role("button", name="Unfollow @clay_mira")).to_be_visible()
    expect(page.get_by_text("1 follower", exact=True)).to_be_visible()
    expect(page.get_by_text("You follow @clay_mira.")).to_be_visible()
    _snap(page, screenshots, "08-following-maker")

    page.get_by_role("link", name="More options for @clay_mira").click()
    sheet = page.get_by_role("dialog", name="@clay_mira")
    expect(sheet.get_by_role("button", name="Block @clay_mira")).to_be_visible()
    page.wait_for_timeout(400)  # let the sheet finish rising before the picture
    page.screenshot(path=str(screenshots / "09-profile-sheet.png"))
    sheet.get_by_role("button", name="Cancel").click()
    expect(sheet).to_be_hidden()

    # The follow stuck: a reload shows it.
    page.reload()
    expect(page.get_by_role("button", name="Unfollow @clay_mira")).to_be_visible()

    # Sign out from settings.
    page.goto("/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    _snap(page, screenshots, "10-settings")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base}/signin")
    expect(page.get_by_text("You’re signed out.")).to_be_visible()
    _snap(page, screenshots, "11-signed-out")

    page.goto("/settings")
    expect(page).to_have_url(re.compile(r"/signin\?next=/settings$"))

    # And back in: straight to where she was going.
    page.get_by_label("Email").fill("wren@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{base}/settings")
    expect(page.get_by_text("@wren_weaves")).to_be_visible()
    _snap(page, screenshots, "12-signed-back-in")
    phone.close()


def test_settings_lists_and_errors_fit_a_phone(
    server: Server, browser: Any, screenshots: Path, maker: str
) -> None:
    """The other accounts pages, each checked for what it says and that it fits 390 px."""
    base = server.base_url
    phone = browser.new_context(**PHONE, base_url=base)
    page = phone.new_page()
    page.set_default_timeout(10_000)

    # A sign-up that runs into a taken handle and a weak password, one after the other.
    page.goto("/signup")
    page.get_by_label("Your name").fill("Tia Turner")
    page.get_by_label("Handle").fill("clay_mira")
    page.get_by_label("Email").fill("tia@example.org")
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#field-password-error")).to_contain_text("too common")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#field-handle-error")).to_contain_text("taken")
    expect(page.get_by_label("Email")).to_have_value("tia@example.org")
    _snap(page, screenshots, "t01-sign-up-error")
    page.get_by_label("Handle").fill("tia_turns")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    # Privacy: go private.
    page.goto("/settings/privacy")
    page.get_by_label("Private account").check()
    page.get_by_label("Who can message you").select_option("following")
    page.get_by_role("button", name="Save privacy settings").click()
    expect(page.get_by_text("Your privacy settings are saved.")).to_be_visible()
    expect(page.get_by_label("Private account")).to_be_checked()
    _snap(page, screenshots, "t02-privacy")

    # Mira asks to follow; the request is approved with htmx, in place.
    with httpx.Client(base_url=base) as api:
        asked = api.put(
            "/api/v1/people/tia_turns/follow", headers={"Authorization": f"Bearer {maker}"}
        )
        assert asked.json()["status"] == "pending"
    page.goto("/settings/requests")
    expect(page.get_by_text("@clay_mira")).to_be_visible()
    _snap(page, screenshots, "t03-follow-requests")
    page.get_by_role("button", name="Approve @clay_mira").click()
    expect(page.get_by_text("@clay_mira now follows you.")).to_be_visible()
    expect(page.get_by_role("button", name="Approve @clay_mira")).to_have_count(0)

    page.goto("/@tia_turns/followers")
    expect(page.get_by_role("link", name=re.compile("Mira Okafor"))).to_be_visible()
    _snap(page, screenshots, "t04-followers")

    # Sessions and account.
    page.goto("/settings/sessions")
    expect(page.get_by_text("This device")).to_be_visible()
    expect(
        page.get_by_text("Chrome on Linux").or_(page.get_by_text("Chrome on Android"))
    ).to_be_visible()
    _snap(page, screenshots, "t05-sessions")
    page.goto("/settings/account")
    expect(page.get_by_text("Not confirmed")).to_be_visible()
    _snap(page, screenshots, "t06-account")
    page.get_by_label("Type your handle").fill("tia_turns")
    page.locator("#field-delete-password").fill("a wrong password")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#field-delete-password-error")).to_contain_text("not right")
    _snap(page, screenshots, "t07-delete-refused")

    # People search, and a private profile as a stranger sees it.
    page.goto("/people?q=clay")
    expect(page.get_by_role("link", name=re.compile("Mira Okafor"))).to_be_visible()
    _snap(page, screenshots, "t08-people-search")
    stranger = browser.new_context(**PHONE, base_url=base).new_page()
    stranger.goto("/@tia_turns")
    expect(stranger.get_by_text("This account is private")).to_be_visible()
    expect(stranger.get_by_role("link", name="Follow")).to_have_attribute(
        "href", "/signin?next=/%40tia_turns"
    )
    _snap(stranger, screenshots, "t09-private-profile-signed-out")

    # Links that don't work, and the reset request.
    stranger.goto("/verify?token=made-up-token")
    expect(
        stranger.get_by_role("heading", name="This confirmation link doesn’t work")
    ).to_be_visible()
    expect(stranger.get_by_text("token_invalid")).to_be_visible()
    _snap(stranger, screenshots, "t10-bad-link")
    stranger.goto("/forgot")
    stranger.get_by_label("Email").fill("tia@example.org")
    stranger.get_by_role("button", name="Send the link").click()
    expect(stranger.get_by_role("heading", name="Check your email")).to_be_visible()
    _snap(stranger, screenshots, "t11-reset-sent")
    link = _link_in_mail(server.mail_dir, "tia@example.org", "/reset")
    stranger.goto(link)
    stranger.get_by_label("New password").fill("password")
    stranger.get_by_role("button", name="Save password").click()
    expect(stranger.locator("#field-password-error")).to_contain_text("too common")
    _snap(stranger, screenshots, "t12-reset-weak")
    phone.close()
