"""Posts pages: the composer (/compose), my drafts (/drafts) and the post page (/p/{id}).

composer.js drives the composer through the JSON API (autosave, publish, schedule) with the
session cookie and the CSRF header. Without JavaScript the same form posts here, and each
handler calls the same service functions; a form the service turns down is rendered again
with its errors while the request's transaction rolls back (see ``accounts.views``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from pydantic import ValidationError

from craftreel.accounts.deps import WebIdentity, WebOptionalIdentity
from craftreel.accounts.service import Identity
from craftreel.accounts.views import (
    FormInvalid,
    PageRoute,
    Toast,
    page,
    redirect,
    reject,
    safe_next,
)
from craftreel.core.errors import DomainError
from craftreel.core.web import verify_csrf
from craftreel.deps import Ctx, Uow
from craftreel.media import service as media_service
from craftreel.media.schemas import Media
from craftreel.posts import schemas, service, text
from craftreel.posts.models import PostStatus, Visibility

PAGE_SIZE = 20
COMPOSER = "posts/composer.html"

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(verify_csrf)], route_class=PageRoute
)

Text = Annotated[str, Form()]
Texts = Annotated[list[str], Form()]


@dataclass(frozen=True)
class VisibilityChoice:
    value: str
    label: str
    explanation: str


VISIBILITY_CHOICES = [
    VisibilityChoice(
        Visibility.PUBLIC,
        "Public",
        "Anyone can watch it; it shows in feeds, hashtags, search and on your profile.",
    ),
    VisibilityChoice(Visibility.FOLLOWERS, "Followers", "Only people who follow you."),
    VisibilityChoice(
        Visibility.UNLISTED,
        "Unlisted",
        "Anyone with the link; never in feeds, search or on your profile.",
    ),
    VisibilityChoice(Visibility.PRIVATE, "Private", "Only you."),
]

STATUS_LABELS = {
    PostStatus.DRAFT: ("Draft", "accent"),
    PostStatus.WAITING: ("Publishes when ready", "info"),
    PostStatus.SCHEDULED: ("Scheduled", "primary"),
    PostStatus.PUBLISHED: ("Published", "success"),
}


# --- captions, times and links ----------------------------------------------------------

# The same tags and mentions posts.text reads from a caption, found in one pass so the
# caption can be written out with each one linked.
_CAPTION_LINKS = re.compile(r"(?<![\w#&])#(\w{1,60})|(?<![\w@])@([A-Za-z0-9_.]{2,30})", re.UNICODE)


def linked_caption(caption: str) -> Markup:
    """The caption as HTML: escaped, with #tags linked to /tags/<tag> and @mentions to
    profiles (line breaks are kept by CSS)."""
    parts: list[Markup | str] = []
    last = 0
    for match in _CAPTION_LINKS.finditer(caption):
        tag, handle = match.group(1), match.group(2)
        if tag is not None and tag.isdigit():
            continue
        parts.append(escape(caption[last : match.start()]))
        if tag is not None:
            parts.append(
                Markup('<a class="caption-tag" href="/tags/{}">#{}</a>').format(
                    quote(tag.lower()), tag
                )
            )
            last = match.end()
        else:
            assert handle is not None
            name = handle.rstrip(".")
            parts.append(
                Markup('<a class="caption-mention" href="/@{}">@{}</a>').format(name, name)
            )
            last = match.start() + 1 + len(name)
    parts.append(escape(caption[last:]))
    return Markup("").join(parts)


def _absolute(request: Request, url: str | None) -> str | None:
    """A URL as another site must see it: ours are made absolute with ``base_url``."""
    if not url:
        return None
    if url.startswith(("http://", "https://")):
        return url
    return str(request.app.state.settings.base_url).rstrip("/") + url


def _summary(caption: str, limit: int = 200) -> str:
    """The caption on one line, cut at a word near ``limit``."""
    line = " ".join(caption.split())
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def _title(post: schemas.PostOut) -> str:
    first = _summary(post.caption.split("\n", 1)[0] if post.caption else "", 70)
    return first or f"A {post.kind} by {post.author.display_name or '@' + post.author.handle}"


def _parse_schedule(at: str, tz_offset: str) -> datetime:
    """A ``datetime-local`` value and the browser's ``getTimezoneOffset()`` (minutes behind
    UTC; empty: the time is UTC) as an aware time."""
    try:
        local = datetime.fromisoformat(at.strip())
        offset = int(tz_offset) if tz_offset.strip() else 0
    except ValueError as exc:
        raise FormInvalid(fields={"schedule_at": "Pick a date and a time."}) from exc
    if local.tzinfo is not None:
        return local
    if not -16 * 60 <= offset <= 16 * 60:
        raise FormInvalid(fields={"schedule_at": "Pick a date and a time."})
    return (local + timedelta(minutes=offset)).replace(tzinfo=UTC)


# --- the composer's form ------------------------------------------------------------------


@dataclass
class ComposerForm:
    """The composer's fields as typed (kept as typed when the form comes back with errors)."""

    caption: str = ""
    chapters: list[tuple[str, str]] | None = None
    materials: list[str] | None = None
    visibility: str = Visibility.PUBLIC
    comments_enabled: bool = True
    schedule_at: str = ""

    @classmethod
    def of(cls, post: schemas.PostOut) -> ComposerForm:
        return cls(
            caption=post.caption,
            chapters=[(text.format_timestamp(c.at), c.title) for c in post.chapters],
            materials=list(post.materials),
            visibility=post.visibility,
            comments_enabled=post.comments_enabled,
        )

    def edit(self) -> schemas.PostEdit:
        """The fields as a ``PostEdit``, or ``FormInvalid`` naming what to fix."""
        problems: dict[str, str] = {}
        chapters: list[dict[str, Any]] = []
        for n, (time_text, title) in enumerate(self.chapters or [], start=1):
            if not time_text.strip() and not title.strip():
                continue  # the empty row a page without JavaScript offers for a new step
            try:
                at = text.parse_timestamp(time_text)
            except ValueError:
                problems.setdefault("chapters", f"Step {n}: write its time like 1:42 or 1:02:03.")
                continue
            if not title.strip():
                problems.setdefault("chapters", f"Step {n} at {time_text.strip()} needs a title.")
                continue
            chapters.append({"at": at, "title": title})
        if self.visibility not in {c.value for c in VISIBILITY_CHOICES}:
            problems["visibility"] = "Choose who can see this post."
        if len(self.caption) > schemas.MAX_CAPTION:
            problems["caption"] = f"Keep the caption to {schemas.MAX_CAPTION} characters."
        if problems:
            raise FormInvalid(fields=problems)
        try:
            return schemas.PostEdit.model_validate(
                {
                    "caption": self.caption,
                    "chapters": chapters,
                    "materials": self.materials or [],
                    "visibility": self.visibility,
                    "comments_enabled": self.comments_enabled,
                }
            )
        except ValidationError as exc:
            raise FormInvalid(fields=_edit_problems(exc)) from exc


def _edit_problems(exc: ValidationError) -> dict[str, str]:
    words = {
        "chapters": "Each step needs its own start time, and at most "
        f"{schemas.MAX_CHAPTERS} steps.",
        "materials": f"List up to {schemas.MAX_MATERIALS} materials, each up to 200 characters.",
    }
    fields = [str(e["loc"][0]) for e in exc.errors() if e["loc"]]
    return {field: words.get(field, "Check this field.") for field in fields} or {
        "": "Some fields need another look."
    }


def _form_from(
    caption: str,
    chapter_time: list[str],
    chapter_title: list[str],
    material: list[str],
    visibility: str,
    comments_enabled: str,
    schedule_at: str,
) -> ComposerForm:
    rows = list(zip(chapter_time, chapter_title, strict=False))
    return ComposerForm(
        caption=caption,
        chapters=rows,
        materials=[m for m in material if m.strip()],
        visibility=visibility,
        comments_enabled=bool(comments_enabled),
        schedule_at=schedule_at,
    )


def _composer_context(
    post: schemas.PostOut | None,
    media: list[Media],
    form: ComposerForm,
    **extra: Any,
) -> dict[str, Any]:
    first = media[0] if media else None
    return {
        "post": post,
        "media": media,
        "kind": post.kind if post else (first.kind if first else "video"),
        "duration": first.duration_s if first else None,
        "values": form,
        "errors": {},
        "visibility_choices": VISIBILITY_CHOICES,
        "status_labels": STATUS_LABELS,
        "form_action": f"/compose/{post.id}" if post else "/compose",
        "offer_when_ready": False,
        "active_tab": "create",
        "max_caption": schemas.MAX_CAPTION,
        "media_json": [m.model_dump(mode="json") for m in media],
        **extra,
    }


async def _own_post(ctx: Ctx, uow: Uow, identity: Identity, post_id: UUID) -> schemas.PostOut:
    """My post, any status; someone else's is "not found" (as the API says it)."""
    post = await service.get_post(ctx, uow, identity.user, post_id)
    if post.author.id != identity.user.id:
        raise service.PostNotFound()
    return post


async def _act(
    request: Request,
    ctx: Ctx,
    uow: Uow,
    identity: Identity,
    post: schemas.PostOut,
    form: ComposerForm,
    action: str,
    tz_offset: str,
) -> Response:
    """Save the form onto ``post``, then do what the pressed button said."""
    user = identity.user
    updated = await service.update_post(ctx, uow, user, post.id, form.edit())
    if action == "publish" or action == "publish_when_ready":
        when_ready = action == "publish_when_ready"
        done = await service.publish(
            ctx, uow, user, post.id, schemas.Publish(when_ready=when_ready)
        )
        if done.status == PostStatus.PUBLISHED:
            return redirect(request, f"/p/{post.id}", ("Your post is published.", "success"))
        return redirect(
            request,
            f"/compose/{post.id}",
            ("It goes public by itself the moment your video is ready.", "success"),
        )
    if action == "schedule":
        at = _parse_schedule(form.schedule_at, tz_offset)
        await service.schedule(ctx, uow, user, post.id, schemas.Schedule(at=at))
        return redirect(request, "/drafts", ("Your post is scheduled.", "success"))
    if action == "unschedule":
        await service.unschedule(ctx, uow, user, post.id)
        return redirect(request, f"/compose/{post.id}", ("Back to a draft.", "info"))
    toast: Toast = (
        ("Your changes are saved.", "success")
        if updated.status == PostStatus.PUBLISHED
        else ("Draft saved.", "success")
    )
    return redirect(request, f"/compose/{post.id}", toast)


def _rejected(
    request: Request,
    exc: DomainError,
    post: schemas.PostOut | None,
    media: list[Media],
    form: ComposerForm,
) -> Exception:
    offer = exc.code == service.MediaNotReady.code
    context = _composer_context(post, media, form, offer_when_ready=offer)
    if exc.code == "invalid_input" and exc.details.get("field") == "at":
        return reject(request, COMPOSER, exc, context, errors={"schedule_at": exc.detail_message})
    return reject(request, COMPOSER, exc, context)


# --- the composer ---------------------------------------------------------------------------


@router.get("/compose")
async def new_post(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    media: Annotated[list[UUID], Query()] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    """A new post from my uploaded media. composer.js makes the draft at once (a page
    without JavaScript makes it when the form is saved). Without media: pick some first."""
    if not media:
        return redirect(request, "/create")
    found = [await media_service.get_for_owner(ctx, uow, identity.user, m) for m in media[:10]]
    return page(request, COMPOSER, _composer_context(None, found, ComposerForm()))


@router.post("/compose")
async def create_post(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    media: Annotated[list[UUID], Form()],
    caption: Text = "",
    chapter_time: Texts = [],  # noqa: B006 - FastAPI copies defaults
    chapter_title: Texts = [],  # noqa: B006
    material: Texts = [],  # noqa: B006
    visibility: Text = Visibility.PUBLIC,
    comments_enabled: Text = "",
    schedule_at: Text = "",
    tz_offset: Text = "",
    action: Text = "save",
) -> Response:
    """The composer's form for a post not made yet (a page without JavaScript)."""
    form = _form_from(
        caption, chapter_time, chapter_title, material, visibility, comments_enabled, schedule_at
    )
    found = [await media_service.get_for_owner(ctx, uow, identity.user, m) for m in media[:10]]
    post = None
    try:
        post = await service.create_draft(
            ctx, uow, identity.user, schemas.PostCreate(media_ids=media[:10])
        )
        return await _act(request, ctx, uow, identity, post, form, action, tz_offset)
    except DomainError as exc:
        # Nothing was kept (the transaction rolls back): the form stays a new post.
        raise _rejected(request, exc, None, found, form) from exc


@router.get("/compose/{post_id}")
async def edit_post(
    post_id: UUID, request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """The composer for one of my posts: a draft, a waiting or scheduled one, or a published
    one (its caption, steps, materials and visibility)."""
    post = await _own_post(ctx, uow, identity, post_id)
    return page(request, COMPOSER, _composer_context(post, post.media, ComposerForm.of(post)))


@router.post("/compose/{post_id}")
async def save_post(
    post_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    caption: Text = "",
    chapter_time: Texts = [],  # noqa: B006 - FastAPI copies defaults
    chapter_title: Texts = [],  # noqa: B006
    material: Texts = [],  # noqa: B006
    visibility: Text = Visibility.PUBLIC,
    comments_enabled: Text = "",
    schedule_at: Text = "",
    tz_offset: Text = "",
    action: Text = "save",
) -> Response:
    """The composer's form: save, publish (now or when ready), schedule or unschedule."""
    post = await _own_post(ctx, uow, identity, post_id)
    form = _form_from(
        caption, chapter_time, chapter_title, material, visibility, comments_enabled, schedule_at
    )
    try:
        return await _act(request, ctx, uow, identity, post, form, action, tz_offset)
    except DomainError as exc:
        raise _rejected(request, exc, post, post.media, form) from exc


@router.post("/compose/{post_id}/delete")
async def delete_post(
    post_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    next_path: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Delete one of my posts (asked to confirm first, on the page that offers it)."""
    post = await _own_post(ctx, uow, identity, post_id)
    await service.delete_post(ctx, uow, identity.user, post_id)
    noun = "post" if post.status == PostStatus.PUBLISHED else "draft"
    return redirect(request, safe_next(next_path, "/drafts"), (f"The {noun} is deleted.", "info"))


# --- my drafts ----------------------------------------------------------------------------


@router.get("/drafts")
async def drafts(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    """My drafts, posts waiting for their video, and scheduled posts; last edited first."""
    items, next_cursor = await service.drafts(ctx, uow, identity.user, cursor, PAGE_SIZE)
    more_url = f"/drafts?cursor={quote(next_cursor)}" if next_cursor else None
    context = {
        "drafts": items,
        "more_url": more_url,
        "status_labels": STATUS_LABELS,
        "summary": _summary,
        "active_tab": "create",
    }
    return page(request, "posts/drafts.html", context)


# --- the post page ------------------------------------------------------------------------


def _open_graph(request: Request, post: schemas.PostOut) -> dict[str, Any]:
    """What a link preview shows: title, caption, poster, and the video for public posts."""
    media = post.media[0] if post.media else None
    image = None
    if media is not None:
        image = media.poster_url or (media.variants[-1].url if media.variants else None)
    og: dict[str, Any] = {
        "title": _title(post),
        "description": _summary(post.caption)
        or f"Watch {post.author.display_name} (@{post.author.handle}) on Craftreel.",
        "url": post.share_url,
        "image": _absolute(request, image),
        "type": "video.other" if post.kind == "video" else "article",
        "video": None,
    }
    if (
        post.visibility == Visibility.PUBLIC
        and media is not None
        and post.kind == "video"
        and media.playback_url
    ):
        og["video"] = {
            "url": _absolute(request, media.playback_url),
            "type": "application/vnd.apple.mpegurl",
            "width": media.width,
            "height": media.height,
        }
    return og


@router.get("/p/{post_id}")
async def post_page(
    post_id: UUID, request: Request, viewer: WebOptionalIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """A post by its link, for anyone allowed to see it (anyone else: not found)."""
    user = viewer.user if viewer else None
    post = await service.get_post(ctx, uow, user, post_id)
    is_owner = user is not None and post.author.id == user.id
    og = None
    if post.status == PostStatus.PUBLISHED and post.visibility in service.PUBLIC_MEDIA:
        # Link previews are fetched signed out: only a post anyone may open gets one.
        try:
            await service.viewable_post(uow, None, post_id)
            og = _open_graph(request, post)
        except service.PostNotFound:
            og = None
    from craftreel.shop import tags as shop_tags  # the shop builds on posts, not the reverse

    context = {
        "post": post,
        "kit": await shop_tags.get_kit(uow, user, post_id),
        "is_owner": is_owner,
        "og": og,
        "caption_html": linked_caption(post.caption),
        "format_time": text.format_timestamp,
        "status_labels": STATUS_LABELS,
        "title": _title(post),
        "active_tab": "profile" if is_owner else "feed",
    }
    return page(request, "posts/post.html", context)
