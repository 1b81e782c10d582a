"""The saved page (/saved): my saved posts as a grid, by collection, and plain forms to make,
rename and delete collections.

Handlers are thin: they call the interactions service the JSON API calls, then redirect
(303, with a toast) or, when the service turns a form down, render the page again with the
error next to the field while the request's transaction rolls back (``FormRejected``, as on
the accounts pages). The page's data is read before the change is tried, so a rejected form
renders what is still true after the rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from craftreel.accounts.deps import WebIdentity
from craftreel.accounts.models import User
from craftreel.accounts.views import FormRejected, PageRoute, Toast, field_errors, page, redirect
from craftreel.core.errors import DomainError, NotFound
from craftreel.core.web import render, verify_csrf
from craftreel.deps import Ctx, Uow
from craftreel.feed.views import GRID_PAGE, cards
from craftreel.posts import interactions
from craftreel.posts.interactions_schemas import MAX_COLLECTION_NAME, CollectionOut

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(verify_csrf)], route_class=PageRoute
)

Text = Annotated[str, Form()]
# How many collections the page lists: the service pages them by 50 at most.
COLLECTIONS_PAGE = 50
UNFILED = "unfiled"

Shelf = Literal["all", "unfiled", "collection"]


@dataclass(frozen=True)
class Chip:
    """One of the chips above the grid: All saved, a collection, Unfiled."""

    label: str
    href: str
    count: int
    current: bool


class SavedPageNotFound(NotFound):
    """``?collection=`` names no collection of mine."""

    code = "collection_not_found"
    message = "That collection does not exist."


def _shelf_of(collection: str | None) -> tuple[Shelf, UUID | None]:
    """Which shelf ``?collection=`` names: all, unfiled, or one collection (by id)."""
    if not collection:
        return "all", None
    if collection == UNFILED:
        return "unfiled", None
    try:
        return "collection", UUID(collection)
    except ValueError as exc:
        raise SavedPageNotFound() from exc


def _saved_url(collection: str | None = None, cursor: str | None = None) -> str:
    params = {k: v for k, v in (("collection", collection), ("cursor", cursor)) if v}
    return "/saved" + (f"?{urlencode(params)}" if params else "")


async def _all_collections(ctx: Ctx, uow: Uow, user: User) -> list[CollectionOut]:
    found: list[CollectionOut] = []
    cursor: str | None = None
    while True:
        items, cursor = await interactions.collections(ctx, uow, user, cursor, COLLECTIONS_PAGE)
        found.extend(items)
        if cursor is None:
            return found


async def _page_context(
    ctx: Ctx, uow: Uow, user: User, collection: str | None, cursor: str | None
) -> dict[str, Any]:
    """Everything the saved page shows: the chips with counts, the grid, the "More" link."""
    shelf, collection_id = _shelf_of(collection)
    mine = await _all_collections(ctx, uow, user)
    current = next((c for c in mine if c.id == collection_id), None)
    if shelf == "collection" and current is None:
        raise SavedPageNotFound()
    counts = await interactions.saved_counts(ctx, uow, user)
    chips = [Chip("All saved", "/saved", sum(counts.values()), shelf == "all")]
    chips += [
        Chip(c.name, _saved_url(str(c.id)), counts.get(c.id, 0), c.id == collection_id)
        for c in mine
    ]
    chips.append(Chip("Unfiled", _saved_url(UNFILED), counts.get(None, 0), shelf == "unfiled"))
    posts, next_cursor = await interactions.saved(
        ctx, uow, user, collection_id, cursor, GRID_PAGE, unfiled=shelf == "unfiled"
    )
    key = str(collection_id) if collection_id else (UNFILED if shelf == "unfiled" else None)
    return {
        "shelf": shelf,
        "collection": current,
        "chips": chips,
        "cards": await cards(uow, user, posts),
        "more_url": _saved_url(key, next_cursor) if next_cursor else None,
        "max_name": MAX_COLLECTION_NAME,
        "errors": {},
        "form": None,
        "active_tab": "profile",
    }


def _rejected(
    request: Request, exc: DomainError, context: dict[str, Any], form: str, name: str
) -> FormRejected:
    """The saved page again, its ``form`` open with the error and what was typed."""
    response = page(
        request,
        "posts/saved.html",
        {**context, "errors": field_errors(exc, "name"), "form": form, "typed": name},
        status_code=exc.status_code,
    )
    return FormRejected(response, exc)


@router.get("/saved")
async def saved_page(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    collection: str | None = None,
    cursor: str | None = None,
) -> Response:
    """My saved posts: all, one collection's, or unfiled; "More" pages come as grid tiles."""
    context = await _page_context(ctx, uow, identity.user, collection, cursor)
    if request.headers.get("hx-request") == "true" and cursor:
        return render(request, "feed/_grid.html", context)
    return page(request, "posts/saved.html", context)


@router.post("/saved/collections")
async def create_collection(
    request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow, name: Text = ""
) -> RedirectResponse:
    """Make a collection and open it (a name I already use is turned down, 409)."""
    context = await _page_context(ctx, uow, identity.user, None, None)
    try:
        made = await interactions.create_collection(ctx, uow, identity.user, name)
    except DomainError as exc:
        raise _rejected(request, exc, context, "new", name) from exc
    return redirect(request, _saved_url(str(made.id)), (f"“{made.name}” created.", "success"))


@router.post("/saved/collections/{collection_id}/rename")
async def rename_collection(
    collection_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    name: Text = "",
) -> RedirectResponse:
    """Rename one of my collections (to a name not taken by another of mine)."""
    context = await _page_context(ctx, uow, identity.user, str(collection_id), None)
    try:
        renamed = await interactions.rename_collection(ctx, uow, identity.user, collection_id, name)
    except DomainError as exc:
        raise _rejected(request, exc, context, "rename", name) from exc
    return redirect(
        request, _saved_url(str(renamed.id)), (f"Renamed to “{renamed.name}”.", "success")
    )


@router.post("/saved/collections/{collection_id}/delete")
async def delete_collection(
    collection_id: UUID, request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> RedirectResponse:
    """Delete a collection; its posts stay saved, unfiled (where the page goes next)."""
    await interactions.delete_collection(ctx, uow, identity.user, collection_id)
    toast: Toast = ("Collection deleted. Its posts are still saved, under Unfiled.", "success")
    return redirect(request, _saved_url(UNFILED), toast)
