"""The accounts pages, driven as a browser would: forms, cookies, redirects, htmx."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from starlette.routing import Route

from craftreel.accounts import views
from craftreel.app import create_app
from craftreel.config import Settings
from craftreel.context import AppContext
from tests.accounts.test_social import IdentityProvider, providers  # noqa: F401 - a fixture
from tests.conftest import PASSWORD, Outbox
from tests.factories import sign_up as api_sign_up

HTMX = {"HX-Request": "true"}


class Browser:
    """One browser: its cookie jar, and forms posted with the CSRF token pages hand out."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def csrf(self) -> str:
        if "cr_csrf" not in self.client.cookies:
            await self.client.get("/forgot")
        return str(self.client.cookies["cr_csrf"])

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        form = {"csrf_token": await self.csrf(), **(data or {})}
        return await self.client.post(path, data=form, **kwargs)

    async def sign_up(self, handle: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
        return await self.post(
            "/signup",
            {"email": f"{handle}@example.org", "handle": handle, "password": password, **extra},
        )

    async def sign_in(
        self, email: str, password: str = PASSWORD, next_path: str = ""
    ) -> httpx.Response:
        return await self.post("/signin", {"email": email, "password": password, "next": next_path})


BrowserFactory = Callable[[str], Browser]


@pytest.fixture
async def browsers(app: Any) -> AsyncIterator[BrowserFactory]:
    """Separate browsers (each its own address, so rate limits stay apart)."""
    clients: list[httpx.AsyncClient] = []

    def open_browser(ip: str) -> Browser:
        transport = httpx.ASGITransport(app=app, client=(ip, 50000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return Browser(client)

    yield open_browser
    for client in clients:
        await client.aclose()


@pytest.fixture
def browser(client: httpx.AsyncClient) -> Browser:
    return Browser(client)


async def signed_in(browsers: BrowserFactory, handle: str, ip: str) -> Browser:
    """A browser whose person just signed up through the form (and is signed in)."""
    person = browsers(ip)
    response = await person.sign_up(handle, display_name=handle.title())
    assert response.status_code == 303, response.text
    return person


def set_cookie(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return found[0]


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="field-{field}-error">.*?<span>(.*?)</span>', html, flags=re.DOTALL)
    assert match, f"no error shown for {field}"
    return match.group(1)


def jpeg(width: int = 300, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 72, 42)).save(out, format="JPEG")
    return out.getvalue()


# --- sign up, sign in, sign out ---------------------------------------------------------


async def test_sign_up_signs_in_and_asks_to_confirm_the_email(
    browser: Browser, outbox: Outbox
) -> None:
    # given the sign-up form
    page = await browser.get("/signup")
    assert page.status_code == 200
    assert 'autocomplete="new-password"' in page.text

    # when someone fills it in
    response = await browser.sign_up("wool_mara", display_name="Mara Wool")

    # then they are signed in on this browser and asked to open the mailed link
    assert response.status_code == 303
    assert response.headers["location"] == "/verify"
    session = set_cookie(response, "cr_session").lower()
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session
    check = await browser.get("/verify")
    assert "Check your email" in check.text
    assert "wool_mara@example.org" in check.text
    assert "Welcome to Craftreel, Mara Wool!" in check.text

    # and the link confirms the address once
    token = outbox.link("wool_mara@example.org", "/verify")
    opened = await browser.get(f"/verify?token={token}")
    assert opened.status_code == 200
    assert "Your email is confirmed" in opened.text
    again = await browser.get(f"/verify?token={token}")
    assert again.status_code == 401
    assert "token_invalid" in again.text
    assert "Your email is confirmed" in (await browser.get("/verify")).text


async def test_sign_up_errors_sit_next_to_their_fields(
    browser: Browser, browsers: BrowserFactory
) -> None:
    # given someone already uses the handle
    await signed_in(browsers, "taken_handle", "198.51.100.1")

    # when another person picks it, with a weak password
    response = await browser.sign_up("taken_handle", password="password", display_name="Tess")

    # then the form comes back with the password error by its field and the rest kept
    assert response.status_code == 400
    assert "too common" in field_error(response.text, "password")
    assert 'value="taken_handle@example.org"' in response.text
    assert 'value="Tess"' in response.text
    assert 'value="password"' not in response.text
    assert "cr_session" not in browser.client.cookies

    # and with a strong password the taken handle is named
    response = await browser.sign_up("taken_handle", display_name="Tess")
    assert response.status_code in (409, 400)
    assert "handle" in response.text.lower()
    response = await browser.post(
        "/signup", {"email": "not-an-email", "handle": "x", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert "Enter an email address" in field_error(response.text, "email")
    assert "3 to 30 letters" in field_error(response.text, "handle")


async def test_sign_in_sets_a_session_cookie_a_browser_keeps_to_itself(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    # given an account made through the API
    await api_sign_up(client, "kiln_kai")

    # when its owner signs in with the form
    response = await browser.sign_in("Kiln_Kai@example.org")

    # then a session cookie, HttpOnly and SameSite=Lax, opens the signed-in pages
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = set_cookie(response, "cr_session").lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert f"max-age={30 * 24 * 3600}" in cookie
    settings_page = await browser.get("/settings")
    assert settings_page.status_code == 200
    assert "@kiln_kai" in settings_page.text
    # and the sign-in page now sends them on
    assert (await browser.get("/signin")).status_code == 303


async def test_a_wrong_password_keeps_the_email_and_says_so(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    await api_sign_up(client, "dye_dora")

    response = await browser.sign_in("dye_dora@example.org", password="not the right one")

    assert response.status_code == 401
    assert 'value="dye_dora@example.org"' in response.text
    assert "That email and password do not match an account." in response.text
    assert "not the right one" not in response.text
    assert "cr_session" not in browser.client.cookies


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
async def test_sign_in_never_sends_people_off_site(
    browser: Browser, client: httpx.AsyncClient, target: str
) -> None:
    await api_sign_up(client, "safe_sam")

    signed = await browser.sign_in("safe_sam@example.org", next_path=target)
    assert signed.headers["location"] == "/"
    page = await browser.get("/signin", params={"next": target})
    assert page.headers["location"] == "/"


async def test_sign_in_goes_on_to_a_local_next_page(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    await api_sign_up(client, "next_nia")

    page = await browser.get("/signin", params={"next": "/settings/privacy"})
    assert 'name="next" value="/settings/privacy"' in page.text
    signed = await browser.sign_in("next_nia@example.org", next_path="/settings/privacy")

    assert signed.headers["location"] == "/settings/privacy"


async def test_sign_out_ends_the_session(browsers: BrowserFactory) -> None:
    person = await signed_in(browsers, "bye_bea", "198.51.100.2")
    cookie = person.client.cookies["cr_session"]

    response = await person.post("/signout")

    assert response.headers["location"] == "/signin"
    assert "cr_session" not in person.client.cookies
    assert "You’re signed out." in (await person.get("/signin")).text
    # the old cookie, replayed, opens nothing
    person.client.cookies.set("cr_session", cookie)
    replay = await person.get("/settings")
    assert replay.status_code == 303


@pytest.mark.parametrize(
    "path",
    [
        "/settings",
        "/settings/profile",
        "/settings/privacy",
        "/settings/requests",
        "/settings/sessions",
        "/settings/account",
        "/settings/account/export",
    ],
)
async def test_settings_pages_send_signed_out_people_to_sign_in(
    browser: Browser, path: str
) -> None:
    response = await browser.get(path)

    assert response.status_code == 303
    assert response.headers["location"] == f"/signin?next={path}"


# --- CSRF -------------------------------------------------------------------------------


def _post_paths() -> list[str]:
    """Every accounts page POST route but the provider callback, with sample parameters."""
    paths = []
    for route in views.router.routes:
        if not isinstance(route, Route) or "POST" not in (route.methods or ()):
            continue
        if route.path.endswith("/callback"):
            continue
        paths.append(
            route.path.replace("{handle}", "other_olu")
            .replace("{session_id}", "0190b7a6-5f5e-7c9a-8d4e-1a2b3c4d5e6f")
            .replace("{provider}", "google")
        )
    return paths


async def test_every_page_post_needs_the_csrf_token(
    browsers: BrowserFactory, client: httpx.AsyncClient
) -> None:
    # given a signed-in person and someone to act on
    await api_sign_up(client, "other_olu")
    person = await signed_in(browsers, "csrf_cat", "198.51.100.3")
    paths = _post_paths()
    assert {"/signup", "/signin", "/signout", "/@other_olu/follow", "/settings/profile"} <= set(
        paths
    )

    for path in paths:
        # when a form arrives without the token, or with another browser's
        missing = await person.client.post(path, data={"display_name": "Hacked"})
        forged = await person.client.post(path, data={"csrf_token": "forged-token-value"})

        # then it is refused
        for response in (missing, forged):
            assert response.status_code == 403, path
            assert "csrf_failed" in response.text, path

    # and nothing changed: still signed in, not following, profile as it was
    profile = await person.get("/@csrf_cat")
    assert profile.status_code == 200
    assert "Hacked" not in profile.text
    other = await person.get("/@other_olu")
    assert "<strong>0</strong> followers" in other.text


async def test_an_htmx_post_carries_the_token_in_a_header(
    browsers: BrowserFactory, client: httpx.AsyncClient
) -> None:
    await api_sign_up(client, "maker_mo")
    person = await signed_in(browsers, "fan_fay", "198.51.100.4")
    token = await person.csrf()

    refused = await person.client.post("/@maker_mo/follow", headers=HTMX)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"

    response = await person.client.post(
        "/@maker_mo/follow", headers={**HTMX, "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert "Unfollow" in response.text
    assert 'hx-swap-oob="true"' in response.text
    assert "<strong>1</strong> follower" in response.text
    trigger = json.loads(response.headers["HX-Trigger"])
    assert trigger["craftreel:toast"]["message"] == "You follow @maker_mo."


# --- profile ----------------------------------------------------------------------------


async def test_profile_edit_saves_fields_and_a_photo(browsers: BrowserFactory) -> None:
    person = await signed_in(browsers, "weave_wen", "198.51.100.5")
    form = await person.get("/settings/profile")
    assert 'enctype="multipart/form-data"' in form.text
    assert 'accept="image/*"' in form.text

    response = await person.post(
        "/settings/profile",
        {
            "display_name": "Wen Weaves",
            "handle": "weave_wen",
            "bio": "Tapestry and rugs.",
            "links": "wenweaves.example/shop\nhttps://portfolio.example/wen\n",
            "is_maker": "on",
        },
        files={"avatar": ("me.jpg", jpeg(), "image/jpeg")},
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/settings/profile"
    saved = await person.get("/settings/profile")
    assert "Your profile is saved." in saved.text
    assert "https://wenweaves.example/shop\nhttps://portfolio.example/wen" in saved.text
    assert re.search(r'<img src="/media/avatars/[^"]+\.webp"', saved.text)
    profile = await person.get("/@weave_wen")
    assert "Wen Weaves" in profile.text
    assert "Tapestry and rugs." in profile.text
    assert "Maker" in profile.text
    assert 'href="https://portfolio.example/wen"' in profile.text
    # the toast was for that one page view
    assert "Your profile is saved." not in (await person.get("/settings/profile")).text


async def test_a_bad_photo_is_named_by_its_field_and_nothing_else_changes(
    browsers: BrowserFactory,
) -> None:
    person = await signed_in(browsers, "photo_pia", "198.51.100.6")

    response = await person.post(
        "/settings/profile",
        {"display_name": "Renamed Pia", "handle": "photo_pia", "bio": "New bio"},
        files={"avatar": ("me.jpg", b"this is not a picture", "image/jpeg")},
    )

    assert response.status_code == 400
    assert field_error(response.text, "avatar")
    assert 'value="Renamed Pia"' in response.text  # what was typed stays in the form
    profile = await person.get("/@photo_pia")
    assert "Renamed Pia" not in profile.text
    assert "New bio" not in profile.text


async def test_profile_field_errors(browsers: BrowserFactory, client: httpx.AsyncClient) -> None:
    await api_sign_up(client, "first_fin")
    person = await signed_in(browsers, "second_sol", "198.51.100.7")

    taken = await person.post("/settings/profile", {"display_name": "Sol", "handle": "first_fin"})
    assert taken.status_code == 409
    assert "taken" in field_error(taken.text, "handle")

    many = "\n".join(f"https://example.org/{n}" for n in range(6))
    too_many = await person.post(
        "/settings/profile", {"display_name": "Sol", "handle": "second_sol", "links": many}
    )
    assert too_many.status_code == 400
    assert "up to 5 links" in field_error(too_many.text, "links")
    assert "@second_sol" in (await person.get("/@second_sol")).text


# --- follows, privacy, blocks -------------------------------------------------------------


async def test_a_private_account_approves_followers_on_its_requests_page(
    browsers: BrowserFactory,
) -> None:
    owner = await signed_in(browsers, "quiet_quin", "198.51.100.8")
    fan = await signed_in(browsers, "keen_kit", "198.51.100.9")

    # given the owner makes the account private
    saved = await owner.post(
        "/settings/privacy", {"is_private": "on", "message_policy": "following"}
    )
    assert saved.headers["location"] == "/settings/privacy"
    privacy = await owner.get("/settings/privacy")
    assert "Your privacy settings are saved." in privacy.text
    assert re.search(r'id="field-is_private"[^>]*checked', privacy.text)
    assert re.search(r'<option value="following" selected>', privacy.text)

    # when the fan follows, it becomes a request
    asked = await fan.post("/@quiet_quin/follow")
    assert asked.headers["location"] == "/@quiet_quin"
    page = await fan.get("/@quiet_quin")
    assert "Request sent to @quiet_quin." in page.text
    assert "Requested" in page.text
    assert 'href="/@quiet_quin/followers"' not in page.text
    assert (await fan.get("/@quiet_quin/followers")).status_code == 403

    # then the owner sees it and approves
    requests = await owner.get("/settings/requests")
    assert "@keen_kit" in requests.text
    approved = await owner.post("/settings/requests/keen_kit/approve")
    assert approved.headers["location"] == "/settings/requests"
    assert "@keen_kit now follows you." in (await owner.get("/settings/requests")).text

    # and the fan now follows, and may see the lists
    page = await fan.get("/@quiet_quin")
    assert "Unfollow" in page.text
    followers = await fan.get("/@quiet_quin/followers")
    assert followers.status_code == 200
    assert "@keen_kit" in followers.text


async def test_unfollow_and_decline(browsers: BrowserFactory) -> None:
    owner = await signed_in(browsers, "calm_cy", "198.51.100.10")
    fan = await signed_in(browsers, "eager_eve", "198.51.100.11")
    await fan.post("/@calm_cy/follow")
    assert "<strong>1</strong> follower" in (await fan.get("/@calm_cy")).text

    await fan.post("/@calm_cy/unfollow")
    assert "<strong>0</strong> followers" in (await fan.get("/@calm_cy")).text

    await owner.post("/settings/privacy", {"is_private": "on", "message_policy": "everyone"})
    await fan.post("/@calm_cy/follow")
    declined = await owner.post("/settings/requests/eager_eve/decline", headers=HTMX)
    assert declined.status_code == 200
    assert declined.text == ""
    assert "Follow @calm_cy" in (await fan.get("/@calm_cy")).text


async def test_blocking_from_a_profile_and_unblocking_from_privacy(
    browsers: BrowserFactory,
) -> None:
    me = await signed_in(browsers, "firm_fox", "198.51.100.12")
    pest = await signed_in(browsers, "pesky_pat", "198.51.100.13")
    await pest.post("/@firm_fox/follow")
    profile = await me.get("/@pesky_pat")
    assert 'action="/@pesky_pat/block"' in profile.text

    blocked = await me.post("/@pesky_pat/block")

    assert blocked.headers["location"] == "/settings/privacy"
    privacy = await me.get("/settings/privacy")
    assert "You blocked @pesky_pat." in privacy.text
    assert 'action="/@pesky_pat/unblock"' in privacy.text
    assert (await pest.get("/@firm_fox")).status_code == 404
    assert "<strong>0</strong> followers" in (await me.get("/@firm_fox")).text
    search = await pest.get("/people", params={"q": "firm"})
    assert "@firm_fox" not in search.text

    unblocked = await me.post("/@pesky_pat/unblock", {"next": "/settings/privacy"})
    assert unblocked.headers["location"] == "/settings/privacy"
    assert (await pest.get("/@firm_fox")).status_code == 200


async def test_a_missing_profile_is_a_friendly_404(browser: Browser) -> None:
    response = await browser.get("/@nobody_here")

    assert response.status_code == 404
    assert "not_found" in response.text


# --- lists and search ---------------------------------------------------------------------


async def test_people_search_pages_with_load_more(app: Any, browsers: BrowserFactory) -> None:
    # given 23 potters (signed up from several addresses, as rate limits allow)
    for n in range(23):
        transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{n + 1}", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            signed = await api.post(
                "/api/v1/auth/signup",
                json={
                    "email": f"potter{n:02}@example.org",
                    "handle": f"potter_{n:02}",
                    "password": PASSWORD,
                    "display_name": f"Potter {n:02}",
                },
            )
            assert signed.status_code == 201, signed.text
    visitor = browsers("198.51.100.14")

    first = await visitor.get("/people", params={"q": "potter"})

    assert first.status_code == 200
    assert first.text.count('class="list-row" href="/@potter_') == 20
    more = re.search(r'hx-get="([^"]+)"', first.text)
    assert more
    rest = await visitor.get(more.group(1).replace("&amp;", "&"), headers=HTMX)
    assert rest.status_code == 200
    assert "<html" not in rest.text
    assert rest.text.count('class="list-row" href="/@potter_') == 3
    assert "Load more" not in rest.text

    nothing = await visitor.get("/people", params={"q": "glassblower"})
    assert "No one found" in nothing.text


# --- sessions and account -----------------------------------------------------------------


async def test_sessions_page_signs_out_another_device(browsers: BrowserFactory) -> None:
    phone = await signed_in(browsers, "two_tam", "198.51.100.15")
    laptop = browsers("198.51.100.16")
    await laptop.sign_in("two_tam@example.org")

    page = await phone.get("/settings/sessions")
    assert page.text.count('action="/settings/sessions/') == 2
    assert "This device" in page.text
    other = [
        m.group(1) for m in re.finditer(r'action="/settings/sessions/([^/]+)/revoke"', page.text)
    ]
    # the current device is listed first
    revoked = await phone.post(f"/settings/sessions/{other[1]}/revoke")

    assert revoked.headers["location"] == "/settings/sessions"
    assert (await laptop.get("/settings")).status_code == 303
    assert (await phone.get("/settings")).status_code == 200


async def test_change_password_keeps_this_device_only(browsers: BrowserFactory) -> None:
    phone = await signed_in(browsers, "pass_pru", "198.51.100.17")
    laptop = browsers("198.51.100.18")
    await laptop.sign_in("pass_pru@example.org")

    wrong = await phone.post(
        "/settings/account/password",
        {"current_password": "nope nope nope", "new_password": "a brand new passphrase"},
    )
    assert wrong.status_code == 401
    assert "not right" in field_error(wrong.text, "current_password")
    weak = await phone.post(
        "/settings/account/password", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 400
    assert "at least" in field_error(weak.text, "new_password")

    changed = await phone.post(
        "/settings/account/password",
        {"current_password": PASSWORD, "new_password": "a brand new passphrase"},
    )

    assert changed.headers["location"] == "/settings/account"
    assert (await phone.get("/settings")).status_code == 200
    assert (await laptop.get("/settings")).status_code == 303


async def test_change_email_needs_the_password_and_a_link(
    browsers: BrowserFactory, outbox: Outbox
) -> None:
    person = await signed_in(browsers, "move_max", "198.51.100.19")

    wrong = await person.post(
        "/settings/account/email", {"new_email": "max@new.example", "password": "wrong guess!"}
    )
    assert wrong.status_code == 401
    assert 'value="max@new.example"' in wrong.text
    asked = await person.post(
        "/settings/account/email", {"new_email": "max@new.example", "password": PASSWORD}
    )
    assert asked.headers["location"] == "/settings/account"

    token = outbox.link("max@new.example", "/verify-email-change")
    confirmed = await person.get(f"/verify-email-change?token={token}")
    assert confirmed.status_code == 200
    assert "max@new.example" in confirmed.text
    assert "max@new.example" in (await person.get("/settings/account")).text


async def test_export_downloads_my_data(browsers: BrowserFactory) -> None:
    person = await signed_in(browsers, "data_dee", "198.51.100.20")

    response = await person.get("/settings/account/export")

    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="craftreel-data_dee-'
    )
    assert response.json()["account"]["handle"] == "data_dee"


async def test_delete_account_needs_the_handle_and_password(browsers: BrowserFactory) -> None:
    person = await signed_in(browsers, "gone_gus", "198.51.100.21")

    wrong = await person.post(
        "/settings/account/delete", {"confirm_handle": "someone", "password": PASSWORD}
    )
    assert wrong.status_code == 400
    assert "Type your handle" in field_error(wrong.text, "confirm_handle")

    deleted = await person.post(
        "/settings/account/delete", {"confirm_handle": "gone_gus", "password": PASSWORD}
    )

    assert deleted.status_code == 200
    assert "Your account is deleted" in deleted.text
    assert "cr_session" not in person.client.cookies
    assert (await person.get("/@gone_gus")).status_code == 404
    again = await person.sign_in("gone_gus@example.org")
    assert again.status_code == 401


# --- email links ----------------------------------------------------------------------------


async def test_reset_password_from_the_mailed_link(
    browser: Browser, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await api_sign_up(client, "lost_lu")

    asked = await browser.post("/forgot", {"email": "lost_lu@example.org"})
    assert asked.headers["location"] == "/forgot?sent=1"
    assert "If an account exists" in (await browser.get("/forgot?sent=1")).text
    nobody = await browser.post("/forgot", {"email": "nobody@example.org"})
    assert nobody.headers["location"] == "/forgot?sent=1"

    token = outbox.link("lost_lu@example.org", "/reset")
    form = await browser.get(f"/reset?token={token}")
    assert f'value="{token}"' in form.text

    weak = await browser.post("/reset", {"token": token, "password": "password1"})
    assert weak.status_code == 400
    assert field_error(weak.text, "password")

    done = await browser.post("/reset", {"token": token, "password": "a whole new phrase"})
    assert done.headers["location"] == "/signin"
    assert (await browser.sign_in("lost_lu@example.org", "a whole new phrase")).status_code == 303

    reused = await browser.post("/reset", {"token": token, "password": "another new phrase"})
    assert reused.status_code == 401
    assert "This reset link doesn’t work" in reused.text
    assert "token_invalid" in reused.text


# --- social sign-in -------------------------------------------------------------------------


async def test_unconfigured_providers_are_shown_but_disabled(browser: Browser) -> None:
    page = await browser.get("/signin")

    assert "Continue with Google" in page.text
    assert "/auth/google/start" not in page.text
    assert re.search(r"<button[^>]*disabled[^>]*>.*?Continue with Apple", page.text, re.S)
    assert "aren’t set up on this server" in page.text
    assert (await browser.get("/auth/google/start")).status_code == 404


@pytest.fixture
async def google_app(
    settings: Settings,
    ctx: AppContext,
    providers: dict[str, IdentityProvider],  # noqa: F811
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with Google configured (pointed at the local stand-in)."""
    idp = providers["google"]
    configured = settings.model_copy(
        update={
            "google_client_id": idp.client_id,
            "google_issuer": idp.issuer,
            "google_jwks_url": idp.jwks_url,
        }
    )
    ctx.settings = configured
    application = create_app(configured, ctx)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_google_sign_in_round_trip(
    google_app: httpx.AsyncClient,
    providers: dict[str, IdentityProvider],  # noqa: F811
) -> None:
    page = await google_app.get("/signin")
    assert 'href="/auth/google/start"' in page.text

    # the start sends the browser to Google with a nonce and state it remembers
    start = await google_app.get("/auth/google/start", params={"next": "/settings"})
    assert start.status_code == 303
    sent = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(sent.query).items()}
    assert query["client_id"] == providers["google"].client_id
    assert query["redirect_uri"] == "http://127.0.0.1:8000/auth/google/callback"
    assert query["response_type"] == "id_token"
    assert query["response_mode"] == "form_post"
    assert query["scope"].split() == ["openid", "email", "profile"]
    ticket = set_cookie(start, "cr_social").lower()
    assert "httponly" in ticket and "path=/auth/google/callback" in ticket

    # a post back with another state is turned away (no CSRF token needed, none given)
    token = providers["google"].id_token("g-42", "rowan@example.org", nonce=query["nonce"])
    forged = await google_app.post(
        "/auth/google/callback", data={"id_token": token, "state": "someone-elses"}
    )
    assert forged.status_code == 401
    assert "does not match" in forged.text
    assert "cr_session" not in google_app.cookies

    # the genuine answer signs in and goes on to where the person was headed
    start = await google_app.get("/auth/google/start", params={"next": "/settings"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
    token = providers["google"].id_token("g-42", "rowan@example.org", nonce=query["nonce"])
    answer = await google_app.post(
        "/auth/google/callback", data={"id_token": token, "state": query["state"]}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/settings"
    assert "httponly" in set_cookie(answer, "cr_session").lower()
    assert "rowan" in (await google_app.get("/settings")).text


async def test_a_refused_action_shows_its_error_page_to_a_signed_in_person(
    browsers: BrowserFactory,
) -> None:
    person = await signed_in(browsers, "self_sid", "198.51.100.22")

    myself = await person.post("/@self_sid/follow")
    assert myself.status_code == 400
    assert "You cannot follow yourself." in myself.text
    assert 'href="/@self_sid"' in myself.text  # the tab bar still knows who is signed in

    unknown = await person.post("/settings/sessions/not-a-session/revoke")
    assert unknown.status_code == 404
    assert "No such session." in unknown.text


async def test_a_stale_session_cookie_is_cleared(browser: Browser) -> None:
    browser.client.cookies.set("cr_session", "left-over-from-a-deleted-session")

    response = await browser.get("/people")

    assert response.status_code == 200
    assert 'href="/signin"' in response.text
    cleared = set_cookie(response, "cr_session").lower()
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared


async def test_home_and_tabs_know_who_is_signed_in(browsers: BrowserFactory) -> None:
    person = await signed_in(browsers, "homebody", "198.51.100.61")
    home = await person.get("/")
    assert "Follow makers to fill this feed" in home.text  # the home page is the feed
    # The Profile tab leads to the person's own profile, on every tab.
    for path in ("/", "/feed", "/discover", "/inbox"):
        assert 'href="/@homebody"' in (await person.get(path)).text


async def test_an_error_page_for_a_signed_in_person_renders(browsers: BrowserFactory) -> None:
    blocker = await signed_in(browsers, "blockade", "198.51.100.62")
    nosy = await signed_in(browsers, "nosy_one", "198.51.100.63")
    await blocker.post("/@nosy_one/block")
    # The blocked person sees a friendly 404 (rendered after the rollback), not a crash.
    response = await nosy.get("/@blockade")
    assert response.status_code == 404
    assert "nosy_one" in response.text  # the signed-in chrome still shows who they are
