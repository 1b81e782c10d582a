"""The post page's actions (/p/{id}): like, comment, save and share under the author, drawn
by the server as the person looking should see them — pressed or not, with the counts — and
the feed's comments and share sheets that post.js opens from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from craftreel.context import AppContext
from tests.accounts.test_pages import Browser, BrowserFactory, browsers  # noqa: F401 - fixture
from tests.conftest import client_for
from tests.factories import Person, sign_up
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


# --- reading the page ---------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text inside, as a person reads it (spaces collapsed)."""
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join("".join(parts).split())

    def all(self, attr: str, value: str | None = None) -> list[Element]:
        """Every element inside with ``attr`` (set to ``value``, when given)."""
        found: list[Element] = []
        for child in self.children:
            if isinstance(child, Element):
                if attr in child.attrs and (value is None or child.attrs[attr] == value):
                    found.append(child)
                found.extend(child.all(attr, value))
        return found

    def one(self, attr: str, value: str | None = None) -> Element:
        found = self.all(attr, value)
        assert len(found) == 1, f"{len(found)} elements with {attr}={value!r}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(page: str) -> Element:
    builder = _Builder()
    builder.feed(page)
    return builder.root


@dataclass
class Actions:
    """The actions row and what else on the page belongs to it."""

    page: Element

    @property
    def article(self) -> Element:
        return self.page.one("data-post-page")

    @property
    def row(self) -> Element:
        return self.page.one("data-post-actions")

    def link(self, label: str) -> Element:
        return self.row.one("aria-label", label)

    def count(self, selector: str) -> str:
        return self.row.one(selector).text

    def pressed(self, selector: str) -> bool:
        return self.row.one(selector).attrs["aria-pressed"] == "true"

    def listed(self, name: str) -> str:
        """The line for ``name`` in the counts under the caption ("2 likes")."""
        return self.page.one("data-post-count", name).text


async def actions_on(browser: Browser | httpx.AsyncClient, post_id: str) -> Actions:
    response = await browser.get(f"/p/{post_id}")
    assert response.status_code == 200, response.text
    return Actions(parse(response.text))


async def signed_in_browser(browsers: BrowserFactory, person: Person, ip: str) -> Browser:  # noqa: F811
    browser = browsers(ip)
    response = await browser.sign_in(person.email)
    assert response.status_code == 303, response.text
    return browser


async def script(browser: Browser, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """What post.js sends: the session cookie and the X-CSRF-Token header."""
    headers = {"X-CSRF-Token": await browser.csrf()}
    return await browser.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Person:
    return await sign_up(client, "loom_lena", display_name="Lena Loom")


# --- the tests ------------------------------------------------------------------------------


async def test_a_signed_out_visitor_gets_sign_in_links_to_like_and_save(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    post = await make_post(client, ctx, maker, caption="Cuffs, cast on")

    actions = await actions_on(client, post["id"])

    # liking and saving need an account: links to sign in and come back, not buttons
    back = f"/signin?next=/p/{post['id']}"
    assert actions.link("Sign in to like").attrs["href"] == back
    assert actions.link("Sign in to save").attrs["href"] == back
    assert actions.row.all("data-like") == []
    assert actions.row.all("data-save") == []
    # comments and sharing are open to anyone
    comments = actions.row.one("data-open-comments")
    assert comments.attrs["href"] == "#comments-sheet"
    assert comments.text == "Comments 0"
    share = actions.row.one("data-share")
    assert share.text == "Share 0"
    article = actions.article
    assert article.attrs["data-signed-in"] == "false"
    assert article.attrs["data-share-url"] == post["share_url"]
    assert article.attrs["data-comments-enabled"] == "true"
    # the feed's sheets: comments with an invitation to sign in, and the link to copy
    sheet = actions.page.one("id", "comments-sheet")
    assert sheet.one("data-comment-signin").text == "Sign in to join the conversation."
    assert sheet.all("data-comment-form") == []
    share_sheet = actions.page.one("id", "share-sheet")
    assert share_sheet.one("data-share-url").attrs["value"] == post["share_url"]
    assert share_sheet.all("data-share-open") == []  # no link to the page one is on


async def test_my_like_and_save_show_pressed_with_everyones_counts(
    app: Any,
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    browsers: BrowserFactory,  # noqa: F811
) -> None:
    post = await make_post(client, ctx, maker, caption="A stoneware bowl")
    async with client_for(app, "198.51.100.60") as api:
        fay = await sign_up(api, "fan_fay")
        olu = await sign_up(api, "olu_looks")
    fay_browser = await signed_in_browser(browsers, fay, "198.51.100.61")
    olu_browser = await signed_in_browser(browsers, olu, "198.51.100.62")

    # Fay likes and saves it from the page (as post.js does); Olu only likes it.
    assert (await script(fay_browser, "PUT", f"/api/v1/posts/{post['id']}/like")).json() == {
        "liked": True,
        "likes": 1,
    }
    saved = (await script(fay_browser, "PUT", f"/api/v1/posts/{post['id']}/save")).json()
    assert (saved["saved"], saved["saves"]) == (True, 1)
    liked = await client.put(f"/api/v1/posts/{post['id']}/like", headers=olu.auth)
    assert liked.status_code == 200, liked.text

    # Fay's page shows both pressed
    mine = await actions_on(fay_browser, post["id"])
    assert mine.article.attrs["data-signed-in"] == "true"
    assert mine.pressed("data-like") and mine.pressed("data-save")
    assert mine.row.one("data-like").text == "Like 2"
    assert mine.row.one("data-like-count").attrs["data-count"] == "2"
    assert mine.row.one("data-save").text == "Save 1"
    assert mine.listed("likes") == "2 likes"
    assert mine.listed("saves") == "1 save"
    # and she can write a comment there
    assert mine.page.one("id", "comments-sheet").all("data-comment-form") != []

    # Olu's: liked, not saved — the same counts
    theirs = await actions_on(olu_browser, post["id"])
    assert theirs.pressed("data-like")
    assert not theirs.pressed("data-save")
    assert theirs.count("data-save-count") == "1"

    # When Fay takes both back, her page says so after a reload
    await script(fay_browser, "DELETE", f"/api/v1/posts/{post['id']}/like")
    await script(fay_browser, "DELETE", f"/api/v1/posts/{post['id']}/save")
    again = await actions_on(fay_browser, post["id"])
    assert not again.pressed("data-like") and not again.pressed("data-save")
    assert again.count("data-like-count") == "1"
    assert again.count("data-save-count") == "0"
    assert again.listed("likes") == "1 like"


async def test_comments_and_shares_are_counted_on_their_buttons(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    post = await make_post(client, ctx, maker, caption="Knitting the heel")
    for words in ("Lovely colour", "Which needles?"):
        said = await client.post(
            f"/api/v1/posts/{post['id']}/comments", json={"body": words}, headers=maker.auth
        )
        assert said.status_code == 201, said.text
    shared = await client.post(f"/api/v1/posts/{post['id']}/shares", json={"channel": "link"})
    assert shared.status_code == 200, shared.text

    actions = await actions_on(client, post["id"])

    assert actions.count("data-comment-count") == "2"
    assert actions.article.attrs["data-comment-count"] == "2"
    assert actions.count("data-share-count") == "1"
    assert actions.listed("comments") == "2 comments"
    assert actions.listed("shares") == "1 share"


async def test_with_comments_off_the_comment_button_says_so(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person
) -> None:
    post = await make_post(client, ctx, maker, caption="Quiet one", comments_enabled=False)

    actions = await actions_on(client, post["id"])

    assert actions.row.one("data-open-comments").text == "Comments Off"
    assert actions.article.attrs["data-comments-enabled"] == "false"
    assert "Comments are off for this post." in actions.page.text
    # the sheet it opens says who turned them off
    note = actions.page.one("data-comments-off")
    assert note.text == "The maker turned comments off for this post."


async def test_a_draft_has_no_actions_even_for_its_author(
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    browsers: BrowserFactory,  # noqa: F811
) -> None:
    draft = await make_post(client, ctx, maker, caption="not yet", publish=False)
    lena = await signed_in_browser(browsers, maker, "198.51.100.63")

    page = parse((await lena.get(f"/p/{draft['id']}")).text)

    assert page.one("data-post-page").attrs["data-published"] == "false"
    assert page.all("data-post-actions") == []
    assert page.all("id", "comments-sheet") == []
    assert page.all("id", "share-sheet") == []
