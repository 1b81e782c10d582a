"""The maker's pages, fetched as a browser would: the composer (/compose), the drafts list
(/drafts) and the post page (/p/{id}) with its link-preview tags."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.media.models import MediaStatus
from tests.accounts.test_pages import Browser, BrowserFactory, browsers  # noqa: F401 - fixture
from tests.factories import Person, sign_up
from tests.posts.factories import make_post, ready_media

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def signed_in_browser(browsers: BrowserFactory, person: Person, ip: str) -> Browser:  # noqa: F811
    """A browser signed in through the sign-in form as ``person`` (made through the API)."""
    browser = browsers(ip)
    response = await browser.sign_in(person.email)
    assert response.status_code == 303, response.text
    return browser


async def api_post(client: httpx.AsyncClient, person: Person, post_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/posts/{post_id}", headers=person.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def og(page: str, prop: str) -> str | None:
    match = re.search(rf'<meta property="{re.escape(prop)}" content="([^"]*)">', page)
    return html.unescape(match.group(1)) if match else None


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Person:
    return await sign_up(client, "loom_lena", display_name="Lena Loom")


@pytest.fixture
async def lena(browsers: BrowserFactory, maker: Person) -> Browser:  # noqa: F811
    return await signed_in_browser(browsers, maker, "198.51.100.10")


# --- the composer ------------------------------------------------------------------------


async def test_the_composer_opens_for_new_media_and_for_my_draft(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    # Given an upload of mine that is not in a post yet, and a draft of mine
    fresh = await ready_media(ctx, maker, status=MediaStatus.PROCESSING, playable=False)
    draft = await make_post(
        client,
        ctx,
        maker,
        caption="Weaving a #scarf",
        publish=False,
        chapters=[{"at": 0, "title": "Warp the loom"}, {"at": 62, "title": "Weave"}],
        materials=["Cotton warp"],
        visibility="unlisted",
    )

    # without media, the composer sends the maker to upload some first
    bare = await lena.get("/compose")
    assert (bare.status_code, bare.headers["location"]) == (303, "/create")

    # the new-post composer carries the media and starts as a new post
    new = await lena.get(f"/compose?media={fresh}")
    assert new.status_code == 200
    assert '<h1 class="page-title" data-composer-heading>New post</h1>' in new.text
    assert f'<input type="hidden" name="media" value="{fresh}" data-new-media>' in new.text
    assert 'action="/compose"' in new.text
    assert "Your video is processing" in new.text
    assert '<script src="/static/js/composer.js" type="module"></script>' in new.text
    assert 'id="player-template"' in new.text

    # the draft's composer shows what is saved, in its fields
    page = await lena.get(f"/compose/{draft['id']}")
    assert page.status_code == 200
    text = page.text
    assert "Edit draft" in text
    assert f'action="/compose/{draft["id"]}"' in text
    assert ">Weaving a #scarf</textarea>" in text
    assert 'name="chapter_time" value="0:00"' in text
    assert 'name="chapter_title" value="Warp the loom"' in text
    assert 'name="chapter_time" value="1:02"' in text
    assert 'name="material" value="Cotton warp"' in text
    assert re.search(r'name="visibility" value="unlisted"[^>]*checked', text)
    for label in ("Public", "Followers", "Unlisted", "Private"):
        assert f'<span class="visibility-label">{label}</span>' in text
    for button in ("Save draft", "Publish", "Schedule post", "Add step at current time"):
        assert button in text
    assert 'action="/compose/' + draft["id"] + '/delete"' in text


async def test_someone_elses_posts_and_uploads_are_not_found_in_the_composer(
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    browsers: BrowserFactory,  # noqa: F811
) -> None:
    # Given Lena's draft, her published post and an upload of hers
    draft = await make_post(client, ctx, maker, caption="secret draft", publish=False)
    published = await make_post(client, ctx, maker, caption="out in the open")
    upload = await ready_media(ctx, maker)
    other = await sign_up(client, "nosy_ned")
    ned = await signed_in_browser(browsers, other, "198.51.100.20")

    # then none of it opens in Ned's composer, nor can his forms change it
    for post in (draft, published):
        assert (await ned.get(f"/compose/{post['id']}")).status_code == 404
        saved = await ned.post(f"/compose/{post['id']}", {"caption": "mine now"})
        assert saved.status_code == 404
        deleted = await ned.post(f"/compose/{post['id']}/delete")
        assert deleted.status_code == 404
        assert (await api_post(client, maker, post["id"]))["caption"] != "mine now"
    assert (await ned.get(f"/compose?media={upload}")).status_code == 404
    taken = await ned.post("/compose", {"media": str(upload), "caption": "stolen"})
    assert taken.status_code == 404
    assert (await client.get("/api/v1/posts/drafts", headers=other.auth)).json()["items"] == []

    # and signed out, the composer asks to sign in first
    anonymous = browsers("198.51.100.30")
    response = await anonymous.get(f"/compose/{draft['id']}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/signin?next=/compose/{draft['id']}"


async def test_every_form_post_needs_the_csrf_token(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    draft = await make_post(client, ctx, maker, caption="before", publish=False)
    upload = await ready_media(ctx, maker)
    await lena.get("/drafts")  # the browser holds its CSRF cookie
    forged = {"caption": "after", "action": "publish"}

    for path, form in (
        (f"/compose/{draft['id']}", forged),
        (f"/compose/{draft['id']}/delete", {}),
        ("/compose", {"media": str(upload), "caption": "forged"}),
    ):
        for token in (None, "not-the-token"):
            data = form if token is None else {**form, "csrf_token": token}
            response = await lena.client.post(path, data=data)
            assert response.status_code == 403, (path, token)

    after = await api_post(client, maker, draft["id"])
    assert (after["caption"], after["status"]) == ("before", "draft")
    drafts = (await client.get("/api/v1/posts/drafts", headers=maker.auth)).json()["items"]
    assert [d["id"] for d in drafts] == [draft["id"]]


async def test_the_form_works_without_javascript(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    upload = await ready_media(ctx, maker, duration_s=240)

    # Saving the new-post form makes the draft, the empty step row left out
    made = await lena.post(
        "/compose",
        {
            "media": str(upload),
            "caption": "Socks for winter #knitting",
            "chapter_time": ["1:42", "0:00", ""],
            "chapter_title": ["Knit the cuff", "Cast on", ""],
            "material": ["Merino 4-ply", "", "2.5 mm needles"],
            "visibility": "followers",
            "action": "save",
        },
    )
    assert made.status_code == 303, made.text
    post_id = made.headers["location"].removeprefix("/compose/")
    post = await api_post(client, maker, post_id)
    assert post["caption"] == "Socks for winter #knitting"
    assert post["chapters"] == [
        {"at": 0.0, "title": "Cast on"},
        {"at": 102.0, "title": "Knit the cuff"},
    ]
    assert post["materials"] == ["Merino 4-ply", "2.5 mm needles"]
    assert (post["visibility"], post["comments_enabled"], post["status"]) == (
        "followers",
        False,
        "draft",
    )

    # A step whose time isn't one comes back with the typing kept, and nothing changes
    refused = await lena.post(
        f"/compose/{post_id}",
        {
            "caption": "A new caption",
            "chapter_time": ["0:00", "1:7x"],
            "chapter_title": ["Cast on", "Heel"],
            "visibility": "public",
            "comments_enabled": "on",
            "action": "publish",
        },
    )
    assert refused.status_code == 400
    assert "Step 2: write its time like 1:42 or 1:02:03." in refused.text
    assert ">A new caption</textarea>" in refused.text
    assert 'name="chapter_time" value="1:7x"' in refused.text
    assert (await api_post(client, maker, post_id))["caption"] == "Socks for winter #knitting"

    # Publishing saves and publishes, then shows the post
    published = await lena.post(
        f"/compose/{post_id}",
        {
            "caption": "A new caption",
            "chapter_time": ["0:00"],
            "chapter_title": ["Cast on"],
            "visibility": "public",
            "comments_enabled": "on",
            "action": "publish",
        },
    )
    assert published.status_code == 303
    assert published.headers["location"] == f"/p/{post_id}"
    post = await api_post(client, maker, post_id)
    assert (post["status"], post["caption"], post["comments_enabled"]) == (
        "published",
        "A new caption",
        True,
    )
    shown = await lena.get(f"/p/{post_id}")
    assert "Your post is published." in shown.text


async def test_publishing_a_processing_video_offers_publish_when_ready(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    upload = await ready_media(ctx, maker, status=MediaStatus.PROCESSING, playable=False)
    draft = (
        await client.post("/api/v1/posts", json={"media_ids": [str(upload)]}, headers=maker.auth)
    ).json()
    form = {"caption": "Glazing day", "visibility": "public", "comments_enabled": "on"}

    # Publish now: not yet — the page offers to publish when ready, the caption kept
    now = await lena.post(f"/compose/{draft['id']}", {**form, "action": "publish"})
    assert now.status_code == 409
    assert re.search(r'<div class="when-ready" data-when-ready role="group"[^>]*>', now.text)
    assert not re.search(r'data-when-ready role="group"[^>]*hidden', now.text)
    assert ">Glazing day</textarea>" in now.text
    assert (await api_post(client, maker, draft["id"]))["status"] == "draft"

    # Publish when ready: it waits for the video
    later = await lena.post(f"/compose/{draft['id']}", {**form, "action": "publish_when_ready"})
    assert later.status_code == 303
    assert later.headers["location"] == f"/compose/{draft['id']}"
    post = await api_post(client, maker, draft["id"])
    assert (post["status"], post["caption"]) == ("waiting", "Glazing day")
    page = await lena.get(later.headers["location"])
    assert "It goes public by itself the moment your video is ready." in page.text
    assert "Publishes when ready" in page.text


async def test_scheduling_reads_the_time_in_the_browsers_zone(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    draft = await make_post(client, ctx, maker, caption="Kiln opening", publish=False)
    at = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    paris_summer = -120  # getTimezoneOffset() two hours ahead of UTC
    local = (at + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")

    response = await lena.post(
        f"/compose/{draft['id']}",
        {
            "caption": "Kiln opening",
            "visibility": "public",
            "comments_enabled": "on",
            "schedule_at": local,
            "tz_offset": str(paris_summer),
            "action": "schedule",
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/drafts"
    post = await api_post(client, maker, draft["id"])
    assert post["status"] == "scheduled"
    assert datetime.fromisoformat(post["scheduled_at"]).astimezone(UTC) == at
    listed = await lena.get("/drafts")
    assert "Your post is scheduled." in listed.text
    assert f'<time datetime="{at.isoformat()}" data-local-time>' in listed.text

    # a time in the past is refused next to the field
    past = await lena.post(
        f"/compose/{draft['id']}",
        {"schedule_at": "2001-01-01T10:00", "tz_offset": "0", "action": "schedule"},
    )
    assert past.status_code == 400
    assert "Pick a time in the future." in past.text


# --- drafts ------------------------------------------------------------------------------


async def test_the_drafts_page_lists_only_my_unpublished_posts(
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    lena: Browser,
    browsers: BrowserFactory,  # noqa: F811
) -> None:
    mine = await make_post(client, ctx, maker, caption="my draft scarf", publish=False)
    await make_post(client, ctx, maker, caption="my published shawl")
    other = await sign_up(client, "potter_pia")
    await make_post(client, ctx, other, caption="pia draft bowl", publish=False)

    page = await lena.get("/drafts")

    assert page.status_code == 200
    assert "my draft scarf" in page.text
    assert "my published shawl" not in page.text
    assert "pia draft bowl" not in page.text
    assert f'href="/compose/{mine["id"]}"' in page.text
    assert '<span class="badge badge-accent">Draft</span>' in page.text
    assert f'action="/compose/{mine["id"]}/delete"' in page.text
    assert "Delete this draft?" in page.text

    # Deleting (once confirmed in the sheet) removes it
    deleted = await lena.post(f"/compose/{mine['id']}/delete", {"next": "/drafts"})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/drafts"
    assert (await client.get(f"/api/v1/posts/{mine['id']}", headers=maker.auth)).status_code == 404
    empty = await lena.get("/drafts")
    assert "The draft is deleted." in empty.text
    assert "No drafts yet" in empty.text
    assert "Upload a video to start a post." in empty.text
    assert 'href="/create"' in empty.text

    # Pia sees only hers
    pia = await signed_in_browser(browsers, other, "198.51.100.40")
    assert "pia draft bowl" in (await pia.get("/drafts")).text


# --- the post page ------------------------------------------------------------------------


async def test_a_public_post_page_shows_the_post_and_its_link_preview(
    client: httpx.AsyncClient, ctx: AppContext, settings: Settings, maker: Person
) -> None:
    await sign_up(client, "yarn_yuri")
    post = await make_post(
        client,
        ctx,
        maker,
        caption="Cuffs with @yarn_yuri #Knitting <b>bold</b> #2024\nline two",
        chapters=[{"at": 0, "title": "Cast on"}, {"at": 62, "title": "Knit the cuff"}],
        materials=["Merino 4-ply"],
    )

    page = await client.get(f"/p/{post['id']}")

    assert page.status_code == 200
    text = page.text
    base = str(settings.base_url).rstrip("/")
    assert og(text, "og:type") == "video.other"
    assert og(text, "og:url") == f"{base}/p/{post['id']}" == post["share_url"]
    assert og(text, "og:title") == "Cuffs with @yarn_yuri #Knitting <b>bold</b> #2024"
    assert (og(text, "og:description") or "").endswith("line two")
    image = og(text, "og:image")
    assert image and image.startswith(f"{base}/media/") and image.endswith("poster.jpg")
    video = og(text, "og:video")
    assert video and video.startswith(f"{base}/media/") and video.endswith("master.m3u8")
    assert '<meta name="twitter:card" content="summary_large_image">' in text
    # the caption: escaped, tags and mentions linked (not an all-digit "tag")
    assert '<a class="caption-tag" href="/tags/knitting">#Knitting</a>' in text
    assert '<a class="caption-mention" href="/@yarn_yuri">@yarn_yuri</a>' in text
    assert "&lt;b&gt;bold&lt;/b&gt; #2024" in text
    assert "<b>bold</b>" not in text
    # author, steps that seek, materials, counts
    assert 'href="/@loom_lena"' in text
    assert 'data-seek="62.0"' in text
    assert '<span class="post-chapter-time">1:02</span>' in text
    assert "<li>Merino 4-ply</li>" in text
    assert "<strong>0</strong> likes" in text
    # a visitor gets no owner controls
    assert f"/compose/{post['id']}" not in text


async def test_the_owner_sees_edit_and_delete_on_the_post_page(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    post = await make_post(client, ctx, maker, caption="my bowl")

    page = await lena.get(f"/p/{post['id']}")

    assert f'href="/compose/{post["id"]}"' in page.text
    assert f'action="/compose/{post["id"]}/delete"' in page.text
    assert '<input type="hidden" name="next" value="/@loom_lena">' in page.text
    # its composer edits the live post: changes go out when saved, not as they are typed
    composer = await lena.get(f"/compose/{post['id']}")
    assert "Edit post" in composer.text
    assert "Save changes" in composer.text
    assert "Changes to a published post go live when you save them." in composer.text
    assert 'value="publish"' not in composer.text
    assert f'<a href="/p/{post["id"]}">View post</a>' in composer.text


@pytest.mark.parametrize("visibility", ["followers", "private"])
async def test_a_post_not_open_to_everyone_gives_a_signed_out_fetch_nothing(
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    browsers: BrowserFactory,  # noqa: F811
    visibility: str,
) -> None:
    post = await make_post(client, ctx, maker, caption="only for some", visibility=visibility)

    anonymous = await client.get(f"/p/{post['id']}")

    assert anonymous.status_code == 404
    assert "only for some" not in anonymous.text
    assert 'property="og:' not in anonymous.text
    assert "We couldn’t find that page" in anonymous.text
    # the people allowed see it, still without a link preview
    fan = await sign_up(client, "fan_fay")
    followed = await client.put("/api/v1/people/loom_lena/follow", headers=fan.auth)
    assert followed.status_code in (200, 201), followed.text
    fay = await signed_in_browser(browsers, fan, "198.51.100.50")
    seen = await fay.get(f"/p/{post['id']}")
    if visibility == "followers":
        assert seen.status_code == 200
        assert "only for some" in seen.text
        assert 'property="og:' not in seen.text
    else:
        assert seen.status_code == 404


async def test_an_unlisted_post_previews_without_its_video_and_drafts_stay_hidden(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, lena: Browser
) -> None:
    unlisted = await make_post(client, ctx, maker, caption="by link only", visibility="unlisted")
    draft = await make_post(client, ctx, maker, caption="not yet", publish=False)

    page = await client.get(f"/p/{unlisted['id']}")
    assert page.status_code == 200
    assert og(page.text, "og:title") == "by link only"
    assert og(page.text, "og:image")
    assert og(page.text, "og:video") is None

    assert (await client.get(f"/p/{draft['id']}")).status_code == 404
    own = await lena.get(f"/p/{draft['id']}")
    assert own.status_code == 200
    assert "Only you can see this until it is published." in own.text
    assert 'property="og:' not in own.text
    assert UUID(draft["id"])
