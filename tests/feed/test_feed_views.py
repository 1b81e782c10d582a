"""The viewer's pages, driven as a browser would: the feed (Following / Discover) and its next
pages, a hashtag's grid, search and Discover's browse page, and a maker's profile grid —
each showing only what the person looking may see."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html import unescape
from typing import Any

import httpx
import pytest

from craftreel.context import AppContext
from craftreel.media.models import MediaKind
from tests.conftest import PASSWORD, client_for
from tests.factories import Person, sign_up
from tests.posts.factories import make_post, ready_media

HTMX = {"HX-Request": "true"}


class Browser:
    """One browser: its cookie jar, forms with the CSRF token, and the scripts' API calls."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def csrf(self) -> str:
        if "cr_csrf" not in self.client.cookies:
            await self.client.get("/signin")
        return str(self.client.cookies["cr_csrf"])

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post_form(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, data={"csrf_token": await self.csrf(), **(data or {})})

    async def script(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """What feed.js sends: the session cookie and the X-CSRF-Token header."""
        headers = {"X-CSRF-Token": await self.csrf()}
        return await self.client.request(method, path, headers=headers, **kwargs)


OpenBrowser = Callable[[str], Browser]


@pytest.fixture
async def browsers(app: Any) -> AsyncIterator[OpenBrowser]:
    """Separate browsers, each from its own address (sign-up limits are per address)."""
    clients: list[httpx.AsyncClient] = []

    def open_browser(ip: str) -> Browser:
        transport = httpx.ASGITransport(app=app, client=(ip, 50000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return Browser(client)

    yield open_browser
    for client in clients:
        await client.aclose()


async def maker(app: Any, handle: str, ip: str, **extra: Any) -> Person:
    """Someone with a bearer token, who posts through the API."""
    async with client_for(app, ip) as api:
        return await sign_up(api, handle, display_name=handle.title(), **extra)


async def signed_in(open_browser: OpenBrowser, handle: str, ip: str) -> Browser:
    """A browser whose person signed up through the form (and so is signed in)."""
    browser = open_browser(ip)
    response = await browser.post_form(
        "/signup",
        {
            "email": f"{handle}@example.org",
            "handle": handle,
            "password": PASSWORD,
            "display_name": handle.title(),
        },
    )
    assert response.status_code == 303, response.text
    return browser


def reel_ids(html: str) -> list[str]:
    return re.findall(r'<article class="reel[^"]*" id="post-([0-9a-f-]+)"', html)


def tile_ids(html: str) -> list[str]:
    return re.findall(r'class="grid-link" href="/p/([0-9a-f-]+)"', html)


def more_url(html: str) -> str | None:
    found = re.search(r'data-feed-more="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


# --- the feed ---------------------------------------------------------------------------


async def test_a_visitor_lands_on_discover_with_captions_linked(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    # given a maker's public post that tags a craft and mentions a friend
    potter = await maker(app, "potter", "198.51.100.1")
    await maker(app, "glazer", "198.51.100.2")
    post = await make_post(
        client,
        ctx,
        potter,
        caption="Throwing a #Mug for @glazer, then #trimming. Ask @nobody_here.",
        chapters=[{"at": 0, "title": "Centre the clay"}, {"at": 45, "title": "Pull the walls"}],
    )

    # when someone not signed in opens the home page
    page = await browsers("198.51.100.3").get("/")

    # then it is the Discover feed, with the post full screen
    assert page.status_code == 200
    assert 'href="/?tab=discover" aria-current="page"' in page.text
    assert reel_ids(page.text) == [post["id"]]
    assert 'data-src="' in page.text  # the HLS master playlist, attached by feed.js
    # tags and mentions are links; the sentence's full stop stays outside the link
    assert '<a href="/tags/mug">#Mug</a>' in page.text
    assert '<a href="/tags/trimming">#trimming</a>' in page.text
    assert '<a href="/@glazer">@glazer</a>' in page.text
    assert '<a href="/@nobody_here">@nobody_here</a>.' in page.text
    # the steps are marked on the progress bar (45 s of 90 s) and listed for the sheet
    assert 'class="reel-mark" style="left: 50.0%"' in page.text
    assert "Pull the walls" in page.text
    # a visitor's like and follow buttons lead to signing in
    assert f'href="/signin?next=/p/{post["id"]}"' in page.text
    assert 'aria-label="Follow @potter"' in page.text
    assert 'action="/@potter/follow"' not in page.text


async def test_following_nobody_says_how_to_fill_the_feed(browsers: OpenBrowser) -> None:
    viewer = await signed_in(browsers, "newcomer", "198.51.100.10")

    page = await viewer.get("/")

    assert page.status_code == 200
    assert 'href="/?tab=following" aria-current="page"' in page.text
    assert "Follow makers to fill this feed" in page.text
    assert 'href="/?tab=discover"' in page.text
    assert reel_ids(page.text) == []


async def test_an_empty_discover_asks_for_the_first_post(browsers: OpenBrowser) -> None:
    for page in (
        await browsers("198.51.100.11").get("/?tab=discover"),
        await browsers("198.51.100.12").get("/discover"),
    ):
        assert page.status_code == 200
        assert "No posts yet — be the first" in page.text
        assert 'href="/create"' in page.text


async def test_following_needs_signing_in(browsers: OpenBrowser) -> None:
    response = await browsers("198.51.100.13").get("/?tab=following")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/%3Ftab%3Dfollowing"


async def test_the_following_feed_pages_on_without_repeating(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    # given a maker with eight posts, one of them for followers only, and someone following
    weaver = await maker(app, "weaver", "198.51.100.20")
    made = [await make_post(client, ctx, weaver, caption=f"Row {n} #loom") for n in range(7)]
    made.append(await make_post(client, ctx, weaver, caption="Close up", visibility="followers"))
    viewer = await signed_in(browsers, "follower", "198.51.100.21")
    followed = await viewer.post_form("/@weaver/follow")
    assert followed.status_code == 303

    # when they open the feed and scroll to its end
    first = await viewer.get("/")
    seen = reel_ids(first.text)
    url = more_url(first.text)
    assert url is not None and url.startswith("/feed/more?tab=following&cursor=")
    rest = await viewer.get(url)
    assert rest.status_code == 200
    seen += reel_ids(rest.text)

    # then every post shows once, newest first, and there is no further page
    assert seen == [p["id"] for p in reversed(made)]
    assert more_url(rest.text) is None
    # everyone on Following is followed: no Follow buttons there
    assert 'action="/@weaver/follow"' not in first.text
    # without JavaScript, the next page is a plain link to the feed page itself
    plain = await viewer.get(url.replace("/feed/more", "/feed"))
    assert reel_ids(plain.text) == seen[len(reel_ids(first.text)) :]


async def test_discover_offers_to_follow_and_shows_what_i_liked(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    carver = await maker(app, "carver", "198.51.100.30")
    spoon = await make_post(client, ctx, carver, caption="A walnut spoon #carving")
    viewer = await signed_in(browsers, "browser", "198.51.100.31")

    # the card offers Follow (a form with the CSRF token) and an unpressed like button
    page = await viewer.get("/?tab=discover")
    form = re.search(
        r'<form class="follow-form" method="post" action="/@carver/follow".*?</form>',
        page.text,
        re.DOTALL,
    )
    assert form is not None
    assert 'name="csrf_token" value="' in form.group(0)
    assert 'data-like aria-pressed="false"' in page.text

    # a like as feed.js sends it (cookie + X-CSRF-Token); without the header it is refused
    refused = await viewer.client.put(f"/api/v1/posts/{spoon['id']}/like")
    assert refused.status_code == 403
    liked = await viewer.script("PUT", f"/api/v1/posts/{spoon['id']}/like")
    assert liked.status_code == 200, liked.text
    assert liked.json() == {"liked": True, "likes": 1}

    # following through the form (as feed.js does, with htmx's header) answers in place
    followed = await viewer.client.post(
        "/@carver/follow", data={"csrf_token": await viewer.csrf()}, headers=HTMX
    )
    assert followed.status_code == 200
    assert "You follow @carver." in followed.headers["HX-Trigger"]

    again = await viewer.get("/?tab=discover")
    assert 'data-like aria-pressed="true"' in again.text
    assert 'data-count="1"' in again.text
    assert 'action="/@carver/follow"' not in again.text


async def test_cards_for_photos_and_posts_with_comments_off(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    # given a photo post of two photos, and a video whose maker turned comments off
    painter = await maker(app, "painter", "198.51.100.32")
    shots = [await ready_media(ctx, painter, MediaKind.IMAGE) for _ in range(2)]
    created = await client.post(
        "/api/v1/posts",
        json={"media_ids": [str(m) for m in shots], "caption": "Two glazes"},
        headers=painter.auth,
    )
    assert created.status_code == 201, created.text
    photos = created.json()
    published = await client.post(
        f"/api/v1/posts/{photos['id']}/publish", json={}, headers=painter.auth
    )
    assert published.status_code == 200, published.text
    quiet = await make_post(client, ctx, painter, caption="No talking", comments_enabled=False)

    page = await browsers("198.51.100.33").get("/?tab=discover")

    # the photos swipe sideways (no video, no sound button, no progress bar)
    card = page.text[page.text.index(f'id="post-{photos["id"]}"') :]
    card = card[: card.index("</article>")]
    assert card.count('class="reel-photo"') == 2
    assert 'aria-label="2 photos, swipe sideways"' in card
    assert "data-reel-video" not in card and "data-reel-sound" not in card
    assert "data-reel-range" not in card
    # the quiet post says its comments are off
    card = page.text[page.text.index(f'id="post-{quiet["id"]}"') :]
    card = card[: card.index("</article>")]
    assert 'data-comments-enabled="false"' in card
    assert "data-comment-count>Off</span>" in card


async def test_a_follow_form_without_its_token_is_refused(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    dyer = await maker(app, "dyer", "198.51.100.35")
    await make_post(client, ctx, dyer, caption="Indigo vat")
    viewer = await signed_in(browsers, "stranger", "198.51.100.36")

    forged = await viewer.client.post("/@dyer/follow", data={"next": "/"})

    assert forged.status_code == 403
    page = await viewer.get("/?tab=discover")
    assert 'action="/@dyer/follow"' in page.text  # still not following


# --- hashtags ---------------------------------------------------------------------------


async def test_a_hashtag_page_counts_and_shows_only_what_i_may_see(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    knitter = await maker(app, "knitter", "198.51.100.40")
    public = await make_post(client, ctx, knitter, caption="Cuffs #Knitting")
    older = await make_post(client, ctx, knitter, caption="Heel turn #knitting #socks")
    secret = await make_post(
        client, ctx, knitter, caption="Pattern test #knitting", visibility="followers"
    )
    await make_post(client, ctx, knitter, caption="Unlisted #knitting", visibility="unlisted")
    stranger = browsers("198.51.100.41")

    page = await stranger.get("/tags/knitting")

    assert page.status_code == 200
    assert '<h1 class="tag-title">#knitting</h1>' in page.text
    assert "2 posts" in page.text
    assert tile_ids(page.text) == [older["id"], public["id"]]
    assert secret["id"] not in page.text

    # a follower sees the followers-only one too
    fan = await signed_in(browsers, "fan", "198.51.100.42")
    await fan.post_form("/@knitter/follow")
    theirs = await fan.get("/tags/knitting")
    assert "3 posts" in theirs.text
    assert tile_ids(theirs.text) == [secret["id"], older["id"], public["id"]]


async def test_hashtag_addresses_are_tidied_and_hostile_ones_go_to_search(
    browsers: OpenBrowser,
) -> None:
    visitor = browsers("198.51.100.43")

    upper = await visitor.get("/tags/Knitting")
    assert upper.status_code == 308
    assert upper.headers["location"] == "/tags/knitting"

    for tag in ("two words", "<script>", "%00", "a" * 200):
        response = await visitor.get(f"/tags/{tag}")
        assert response.status_code == 303, tag
        assert response.headers["location"].startswith("/search?q=")

    empty = await visitor.get("/tags/nothing_here")
    assert empty.status_code == 200
    assert "0 posts" in empty.text
    assert "No posts with #nothing_here yet" in empty.text


async def test_a_hashtag_grid_pages_with_more(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    turner = await maker(app, "turner", "198.51.100.44")
    made = [await make_post(client, ctx, turner, caption=f"Bowl {n} #bowls") for n in range(26)]
    visitor = browsers("198.51.100.45")

    page = await visitor.get("/tags/bowls")
    first = tile_ids(page.text)
    found = re.search(r'hx-get="(/tags/bowls\?cursor=[^"]+)"', page.text)
    assert len(first) == 24 and found
    rest = await visitor.get(unescape(found.group(1)), headers=HTMX)

    assert first + tile_ids(rest.text) == [p["id"] for p in reversed(made)]
    assert "<html" not in rest.text  # a fragment for htmx, not a page
    assert "More posts" not in rest.text


# --- search and Discover ------------------------------------------------------------------


async def test_search_finds_posts_and_people_with_follow_buttons(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    smith = await maker(app, "blacksmith", "198.51.100.50", is_maker=True)
    hook = await make_post(client, ctx, smith, caption="Forging a walnut handled hook")
    hidden = await make_post(
        client, ctx, smith, caption="Walnut offcuts for followers", visibility="followers"
    )
    viewer = await signed_in(browsers, "looker", "198.51.100.51")

    posts = await viewer.get("/search", params={"q": "walnut"})
    assert posts.status_code == 200
    assert 'aria-current="page">Posts</a>' in posts.text
    assert tile_ids(posts.text) == [hook["id"]]
    assert hidden["id"] not in posts.text

    people = await viewer.get("/search", params={"q": "blacks", "tab": "people"})
    assert 'aria-current="page">People</a>' in people.text
    assert 'href="/@blacksmith"' in people.text
    assert 'action="/@blacksmith/follow"' in people.text
    await viewer.post_form("/@blacksmith/follow")
    again = await viewer.get("/search", params={"q": "blacks", "tab": "people"})
    assert 'action="/@blacksmith/follow"' not in again.text
    assert ">Following</span>" in again.text


async def test_search_says_when_nothing_matches_and_survives_hostile_input(
    browsers: OpenBrowser,
) -> None:
    visitor = browsers("198.51.100.52")

    blank = await visitor.get("/search")
    assert blank.status_code == 200
    assert 'role="search"' in blank.text

    none = await visitor.get("/search", params={"q": "unobtainium"})
    assert "No posts found" in none.text
    nobody = await visitor.get("/search", params={"q": "unobtainium", "tab": "people"})
    assert "No one found" in nobody.text

    hostile = [
        '"',
        "'",
        "(",
        ")",
        "*",
        "-",
        ":",
        "^",
        "AND OR NOT",
        "NEAR(a b)",
        "#",
        "@",
        "@@",
        "%",
        "_",
        "\\",
        "a\x00b",
        "\x1b[2J",
        "<script>alert(1)</script>",
        "'; DROP TABLE posts; --",
        "x" * 5000,
        "🧶🧵",
    ]
    for q in hostile:
        for tab in ("posts", "people"):
            response = await visitor.get("/search", params={"q": q, "tab": tab})
            assert response.status_code == 200, (q, tab, response.text[:300])
            assert "<script>alert(1)</script>" not in response.text
    signs_only = await visitor.get("/search", params={"q": "*:()"})
    assert "Nothing to search for" in signs_only.text
    bad_cursor = await visitor.get("/search", params={"q": "mug", "cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400


async def test_discover_browses_the_ranked_posts(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    quilter = await maker(app, "quilter", "198.51.100.53")
    quilt = await make_post(client, ctx, quilter, caption="Binding a quilt")
    await make_post(client, ctx, quilter, caption="Just for fans", visibility="followers")

    page = await browsers("198.51.100.54").get("/discover")

    assert page.status_code == 200
    assert "Popular now" in page.text
    assert tile_ids(page.text) == [quilt["id"]]
    assert 'class="tab tab-discover" href="/discover" aria-current="page"' in page.text


# --- the profile grid ---------------------------------------------------------------------


async def test_the_profile_grid_shows_only_what_the_viewer_may_see(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    # given a maker's public, followers-only, unlisted and private posts, and a draft
    maker_ = await maker(app, "jeweller", "198.51.100.60")
    public = await make_post(client, ctx, maker_, caption="Ring")
    followers = await make_post(client, ctx, maker_, caption="Fans", visibility="followers")
    unlisted = await make_post(client, ctx, maker_, caption="Link", visibility="unlisted")
    private = await make_post(client, ctx, maker_, caption="Mine", visibility="private")
    draft = await make_post(client, ctx, maker_, caption="Draft", publish=False)

    # the profile page loads its grid from /@jeweller/posts
    profile = await browsers("198.51.100.61").get("/@jeweller")
    assert 'hx-get="/@jeweller/posts"' in profile.text

    # a visitor and a stranger see the public post only
    visitor = await browsers("198.51.100.62").get("/@jeweller/posts", headers=HTMX)
    assert tile_ids(visitor.text) == [public["id"]]
    stranger = await signed_in(browsers, "passerby", "198.51.100.63")
    seen = await stranger.get("/@jeweller/posts", headers=HTMX)
    assert tile_ids(seen.text) == [public["id"]]
    for other in (followers, unlisted, private, draft):
        assert other["id"] not in seen.text

    # a follower sees the followers-only one too; never the unlisted, private or draft
    follower = await signed_in(browsers, "admirer", "198.51.100.64")
    await follower.post_form("/@jeweller/follow")
    theirs = await follower.get("/@jeweller/posts", headers=HTMX)
    assert tile_ids(theirs.text) == [followers["id"], public["id"]]

    # and without JavaScript, the same grid is a page of its own
    plain = await follower.get("/@jeweller/posts")
    assert "<html" in plain.text
    assert tile_ids(plain.text) == [followers["id"], public["id"]]


async def test_a_private_account_grid_says_so_until_followed(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, browsers: OpenBrowser
) -> None:
    hermit = await maker(app, "hermit", "198.51.100.70")
    async with client_for(app, "198.51.100.70") as api:
        made_private = await api.patch(
            "/api/v1/me/privacy", json={"is_private": True}, headers=hermit.auth
        )
        assert made_private.status_code == 200, made_private.text
    post = await make_post(client, ctx, hermit, caption="Quiet work")

    for looker in (
        browsers("198.51.100.71"),
        await signed_in(browsers, "curious", "198.51.100.72"),
    ):
        grid = await looker.get("/@hermit/posts", headers=HTMX)
        assert grid.status_code == 200
        assert "Posts are for approved followers." in grid.text  # the profile says why
        assert post["id"] not in grid.text
        page = await looker.get("/@hermit/posts")
        assert "This account is private" in page.text
        assert post["id"] not in page.text

    # the maker, signed in on the web, sees their own grid
    own = browsers("198.51.100.73")
    signin = await own.post_form("/signin", {"email": "hermit@example.org", "password": PASSWORD})
    assert signin.status_code == 303, signin.text
    mine = await own.get("/@hermit/posts", headers=HTMX)
    assert tile_ids(mine.text) == [post["id"]]


async def test_an_unknown_profile_grid_is_not_found(browsers: OpenBrowser) -> None:
    response = await browsers("198.51.100.74").get("/@no_such_person/posts", headers=HTMX)
    assert response.status_code == 404
