"""The upload screen (/create), fetched as a browser would: sign-in, its inputs and scripts,
and the session-plus-CSRF pair its script uploads with."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.accounts.test_pages import Browser
from tests.factories import sign_up as api_sign_up
from tests.media.test_uploads import TUS, metadata

VENDOR = Path(__file__).resolve().parents[2] / "src" / "craftreel" / "web" / "static" / "vendor"


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Browser:
    """A browser signed in (through the sign-in form) as a maker made through the API."""
    await api_sign_up(client, "glaze_gwen")
    browser = Browser(client)
    signed = await browser.sign_in("glaze_gwen@example.org")
    assert signed.status_code == 303, signed.text
    return browser


def _csrf_meta(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "no csrf-token meta on the page"
    return match.group(1)


async def test_create_sends_visitors_to_sign_in_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/create")

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/create"


async def test_create_offers_video_photos_and_audio_with_the_uploader(maker: Browser) -> None:
    page = await maker.get("/create")

    assert page.status_code == 200
    html = page.text
    # the three kinds, each with its own file input (a video can be recorded on the spot)
    video_inputs = re.findall(
        r'<input class="pick-input" type="file" accept="video/\*"[^>]*>', html
    )
    assert len(video_inputs) == 2
    assert 'capture="environment"' in video_inputs[0]
    assert "capture" not in video_inputs[1]
    assert re.search(r'accept="image/\*" multiple data-kind="image"', html)
    assert re.search(r'accept="audio/\*" data-kind="audio"', html)
    for label in ("Video", "Photos", "Audio", "Record a video", "Choose a video", "Choose photos"):
        assert f"<span>{label}</span>" in html
    # the vendored tus client and the page's modules, nothing from another site
    assert '<script src="/static/vendor/tus.min.js" defer></script>' in html
    assert '<script src="/static/js/uploader.js" type="module"></script>' in html
    assert 'id="player-template"' in html
    assert not re.search(r'<script[^>]+src="(https?:)?//', html)
    # the limits the server enforces, said up front; the Create tab is the current one
    assert "up to 4 GB and 10 minutes" in html
    assert "up to 30 MB each" in html
    assert re.search(r'class="tab tab-create" href="/create" aria-current="page"', html)
    assert "Not built yet" not in html


async def test_the_pages_session_and_csrf_token_may_upload(
    maker: Browser, client: httpx.AsyncClient
) -> None:
    # given the page's CSRF token and the browser's session cookie (no bearer token)
    token = _csrf_meta((await maker.get("/create")).text)
    create = {
        **TUS,
        "Upload-Length": "1024",
        "Upload-Metadata": metadata(kind="video", filename="wheel.mp4", filetype="video/mp4"),
    }

    # when the uploader starts a tus upload with them, it is accepted
    started = await client.post("/api/v1/uploads", headers={**create, "X-CSRF-Token": token})
    assert started.status_code == 201, started.text
    media_id = started.headers["location"].rsplit("/", 1)[1]
    media = await client.get(f"/api/v1/media/{media_id}")
    assert media.json()["status"] == "uploading"

    # and without the token (another site posting with the cookie) it is refused
    forged = await client.post("/api/v1/uploads", headers=create)
    assert forged.status_code == 403


def test_the_vendored_clients_match_their_recorded_checksums() -> None:
    readme = (VENDOR / "README.md").read_text()
    for name in ("tus.min.js", "tus.LICENSE", "hls.light.min.mjs", "hls.LICENSE"):
        recorded = re.search(rf"- `{re.escape(name)}`: `([0-9a-f]{{64}})`", readme)
        assert recorded, f"{name} has no sha256 in vendor/README.md"
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == recorded.group(1)
    assert "| `tus.min.js` | [tus-js-client]" in readme
    assert "4.3.1" in readme
