"""Viewer pages: the vertical video feed (Following / Discover), a hashtag's grid, search,
Discover's browse page, and a maker's profile grid.

Every page renders its first page of posts on the server; "more" pages come as fragments of
the same templates (feed.js appends the feed's, htmx the grids'), so a card is drawn by one
template whether it arrives with the page or later."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from craftreel.accounts import service as accounts
from craftreel.accounts.deps import WebOptionalIdentity
from craftreel.accounts.models import User
from craftreel.accounts.schemas import PersonSummary
from craftreel.core.errors import InvalidInput, NotAuthenticated
from craftreel.core.web import render
from craftreel.deps import Ctx, Uow
from craftreel.feed import search as feed_search
from craftreel.feed import service as feed_service
from craftreel.media.schemas import Media
from craftreel.posts.schemas import PostOut
from craftreel.posts.service import feed_models
from craftreel.posts.text import format_timestamp

router = APIRouter(include_in_schema=False)

FEED_PAGE = 6  # full-screen posts: a few at a time, the next page asked for before the end
GRID_PAGE = 24  # 3 columns × 8 rows
PEOPLE_PAGE = 20
MAX_QUERY = 100

FeedTab = Literal["following", "discover"]
SearchTab = Literal["posts", "people"]

# Tokens of a caption that may be links: the posts service decides which are real tags and
# mentions (post.hashtags / post.mentions); this only finds where they are.
_CAPTION_TOKEN = re.compile(r"(?<![\w#&])#(\w{1,60})|(?<![\w@])@([A-Za-z0-9_.]{2,30})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CaptionPart:
    text: str
    href: str | None = None


@dataclass(frozen=True)
class Chapter:
    at: float
    title: str
    label: str  # "1:42"
    percent: float | None  # where its mark sits on the progress bar


@dataclass(frozen=True)
class Card:
    """A post as a feed card or a grid tile shows it."""

    post: PostOut
    caption: list[CaptionPart]
    chapters: list[Chapter]
    follow: str  # "self" | "active" | "pending" | "none" | "anonymous"
    thumb_url: str | None

    @property
    def media(self) -> Media | None:
        return self.post.media[0] if self.post.media else None

    @property
    def playable(self) -> bool:
        return bool(self.media and self.media.playable and self.media.playback_url)

    @property
    def duration(self) -> float:
        return float(self.media.duration_s or 0) if self.media else 0.0

    @property
    def chapters_data(self) -> list[dict[str, object]]:
        """The chapters for feed.js: [{at, title, label}]."""
        return [{"at": c.at, "title": c.title, "label": c.label} for c in self.chapters]


def caption_parts(post: PostOut) -> list[CaptionPart]:
    """The caption as text runs and links: #tags to their page, @mentions to the profile."""
    tags = set(post.hashtags)
    handles = set(post.mentions)
    parts: list[CaptionPart] = []
    last = 0
    for match in _CAPTION_TOKEN.finditer(post.caption):
        tag, handle = match.group(1), match.group(2)
        if tag is not None:
            if tag.lower() not in tags:
                continue
            word, href = "#" + tag, f"/tags/{quote(tag.lower())}"
        else:
            handle = handle.rstrip(".")
            if handle.lower() not in handles:
                continue
            word, href = "@" + handle, f"/@{quote(handle.lower())}"
        start = match.start()
        if start > last:
            parts.append(CaptionPart(post.caption[last:start]))
        parts.append(CaptionPart(word, href))
        last = start + len(word)
    if last < len(post.caption):
        parts.append(CaptionPart(post.caption[last:]))
    return parts


def _chapters(post: PostOut, duration: float) -> list[Chapter]:
    return [
        Chapter(
            at=c.at,
            title=c.title,
            label=format_timestamp(c.at),
            percent=round(min(100.0, c.at / duration * 100), 3) if duration else None,
        )
        for c in post.chapters
    ]


def thumb_url(post: PostOut) -> str | None:
    """A small picture for a grid tile: the video's poster or the first photo's small size."""
    if not post.media:
        return None
    first = post.media[0]
    if first.variants:
        fitting = sorted(first.variants, key=lambda v: v.width)
        small = [v for v in fitting if v.width >= 320]
        return (small[0] if small else fitting[-1]).url
    return first.poster_url


async def cards(
    uow: Uow, viewer: User | None, posts: list[PostOut], following_all: bool = False
) -> list[Card]:
    """Cards for these posts, with whether the viewer follows each author (one query)."""
    statuses: dict[UUID, str] = {}
    if viewer is not None and not following_all:
        statuses = await accounts.follow_statuses(uow, viewer, {p.author.id for p in posts})
    out = []
    for post in posts:
        if viewer is None:
            follow = "anonymous"
        elif post.author.id == viewer.id:
            follow = "self"
        elif following_all:
            follow = "active"
        else:
            follow = statuses.get(post.author.id, "none")
        media = post.media[0] if post.media else None
        duration = float(media.duration_s or 0) if media else 0.0
        out.append(
            Card(post, caption_parts(post), _chapters(post, duration), follow, thumb_url(post))
        )
    return out


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def clean_query(q: str) -> str:
    """What a person typed, as the search services take it: no control characters, short."""
    return " ".join(_CONTROL.sub(" ", q).split())[:MAX_QUERY]


def _user(viewer: WebOptionalIdentity) -> User | None:
    return viewer.user if viewer else None


# --- the feed -------------------------------------------------------------------------


async def _feed_page(
    ctx: Ctx, uow: Uow, viewer: User | None, tab: FeedTab, cursor: str | None
) -> tuple[list[Card], str | None]:
    if tab == "following":
        if viewer is None:
            raise NotAuthenticated()
        posts, next_cursor = await feed_service.following(
            ctx, uow, viewer, cursor, FEED_PAGE, feed_models
        )
        return await cards(uow, viewer, posts, following_all=True), next_cursor
    posts, next_cursor = await feed_service.discover(
        ctx, uow, viewer, cursor, FEED_PAGE, feed_models
    )
    return await cards(uow, viewer, posts), next_cursor


def _more_url(path: str, **params: str | None) -> str:
    return f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"


@router.get("/")
@router.get("/feed")
async def feed(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    tab: FeedTab | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    """The feed: full-screen posts, Following (signed in) or Discover."""
    user = _user(viewer)
    chosen: FeedTab = tab or ("following" if user else "discover")
    items, next_cursor = await _feed_page(ctx, uow, user, chosen, cursor)
    more = _more_url("/feed/more", tab=chosen, cursor=next_cursor) if next_cursor else None
    return render(
        request,
        "feed/feed.html",
        {"tab": chosen, "cards": items, "more_url": more, "active_tab": "feed"},
    )


@router.get("/feed/more")
async def feed_more(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    tab: FeedTab,
    cursor: str,
) -> HTMLResponse:
    """The next page of feed cards, as a fragment feed.js appends."""
    user = _user(viewer)
    items, next_cursor = await _feed_page(ctx, uow, user, tab, cursor)
    more = _more_url("/feed/more", tab=tab, cursor=next_cursor) if next_cursor else None
    return render(request, "feed/_feed_page.html", {"tab": tab, "cards": items, "more_url": more})


# --- grids: a hashtag, Discover's browse page, search, a maker's posts -------------------


@router.get("/tags/{tag}")
async def hashtag(
    tag: str,
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    """A hashtag's posts, newest first, with how many there are."""
    try:
        name = feed_service.normalize_tag(tag)
    except InvalidInput:
        # Not a tag ("/tags/a b", "/tags/%00"): look for the words instead.
        return RedirectResponse(f"/search?{urlencode({'q': clean_query(tag)})}", status_code=303)
    if name != tag:
        return RedirectResponse(f"/tags/{quote(name)}", status_code=308)
    user = _user(viewer)
    posts, next_cursor = await feed_service.hashtag(
        ctx, uow, user, name, cursor, GRID_PAGE, feed_models
    )
    more = _more_url(f"/tags/{quote(name)}", cursor=next_cursor) if next_cursor else None
    context: dict[str, object] = {
        "tag": name,
        "cards": await cards(uow, user, posts),
        "more_url": more,
    }
    if _is_htmx(request) and cursor:
        return render(request, "feed/_grid.html", context)
    context["count"] = await feed_service.hashtag_count(uow, user, name)
    context["active_tab"] = "discover"
    return render(request, "feed/tag.html", context)


async def _search(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    q: str,
    tab: SearchTab,
    cursor: str | None,
    path: str,
) -> Response:
    user = _user(viewer)
    query = clean_query(q)
    context: dict[str, object] = {
        "q": query,
        "search_tab": tab,
        "path": path,
        "active_tab": "discover",
        "cards": [],
        "people": [],
        "follows": {},
        "more_url": None,
    }
    if not query:
        # Discover's browse page: the ranked posts, to look through before searching.
        posts, next_cursor = await feed_service.discover(
            ctx, uow, user, cursor, GRID_PAGE, feed_models
        )
        context["cards"] = await cards(uow, user, posts)
        if next_cursor:
            context["more_url"] = _more_url(path, cursor=next_cursor)
    else:
        try:
            await _search_results(ctx, uow, user, query, tab, cursor, path, context)
        except InvalidInput as exc:
            if exc.details.get("field") != "q":
                raise  # a bad cursor is the page's fault, not the person's
            context["query_error"] = exc.detail_message
    if _is_htmx(request) and cursor:
        fragment = "feed/_people_rows.html" if query and tab == "people" else "feed/_grid.html"
        return render(request, fragment, context)
    return render(request, "feed/search.html", context)


async def _search_results(
    ctx: Ctx,
    uow: Uow,
    user: User | None,
    query: str,
    tab: SearchTab,
    cursor: str | None,
    path: str,
    context: dict[str, object],
) -> None:
    if tab == "people":
        found, next_cursor = await feed_search.search_people(
            ctx, uow, user, query, cursor, PEOPLE_PAGE
        )
        context["people"] = found
        context["follows"] = await _people_follows(uow, user, found)
    else:
        posts, next_cursor = await feed_search.search_posts(
            ctx, uow, user, query, cursor, GRID_PAGE
        )
        context["cards"] = await cards(uow, user, posts)
    if next_cursor:
        context["more_url"] = _more_url(path, q=query, tab=tab, cursor=next_cursor)


async def _people_follows(
    uow: Uow, viewer: User | None, people: list[PersonSummary]
) -> dict[UUID, str]:
    if viewer is None:
        return {p.id: "anonymous" for p in people}
    statuses = await accounts.follow_statuses(uow, viewer, {p.id for p in people})
    return {p.id: "self" if p.id == viewer.id else statuses.get(p.id, "none") for p in people}


@router.get("/search")
async def search(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    q: str = "",
    tab: SearchTab = "posts",
    cursor: str | None = None,
) -> Response:
    """Search posts (words and #tags) or people (handle and name)."""
    return await _search(request, viewer, ctx, uow, q, tab, cursor, "/search")


@router.get("/discover")
async def discover(
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    """The Discover tab: a search box over the ranked posts."""
    return await _search(request, viewer, ctx, uow, "", "posts", cursor, "/discover")


@router.get("/@{handle}/posts")
async def profile_posts(
    handle: str,
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    """A maker's posts as a 3-column grid: a fragment for the profile page (htmx), or a page."""
    user = _user(viewer)
    person = await accounts.profile(ctx, uow, user, handle)
    is_self = user is not None and user.id == person.id
    rel = person.relationship
    private = person.is_private and not is_self and not (rel and rel.following == "active")
    context: dict[str, object] = {
        "handle": person.handle,
        "is_self": is_self,
        "private": private,
        "cards": [],
        "more_url": None,
    }
    if not private:
        posts, next_cursor = await feed_service.profile_posts(
            ctx, uow, user, person.handle, cursor, GRID_PAGE, feed_models
        )
        context["cards"] = await cards(uow, user, posts)
        if next_cursor:
            context["more_url"] = _more_url(f"/@{quote(person.handle)}/posts", cursor=next_cursor)
    if _is_htmx(request):
        context["embedded"] = True
        template = "feed/_grid.html" if cursor else "feed/_profile_grid.html"
        return render(request, template, context)
    context["person"] = person
    context["active_tab"] = "profile" if is_self else "discover"
    return render(request, "feed/profile_posts.html", context)
