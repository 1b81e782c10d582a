"""Search JSON API: posts by words and #hashtags, people by handle and name."""

from __future__ import annotations

from fastapi import APIRouter, Query

from craftreel.accounts.deps import ApiOrWebOptionalUser
from craftreel.accounts.schemas import PersonSummary
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.feed import search
from craftreel.posts.schemas import PostOut

router = APIRouter(prefix="/api/v1/search", tags=["search"])

# Checked by the service (400 ``invalid_input``), like any other text a person types.
SearchText = Query(
    default="",
    description=f"1 to {search.MAX_QUERY_LENGTH} characters with at least one letter or digit.",
)
PageLimit = Query(default=20, ge=1, le=50)


@router.get("/posts")
async def search_posts(
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    q: str = SearchText,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[PostOut]:
    """Posts whose caption holds every word ("#knitting" is the word "knitting"), best match
    first; only posts the viewer may see in feeds (never unlisted, private or blocked)."""
    items, next_cursor = await search.search_posts(ctx, uow, viewer, q, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/people")
async def search_people(
    viewer: ApiOrWebOptionalUser,
    ctx: Ctx,
    uow: Uow,
    q: str = SearchText,
    cursor: str | None = None,
    limit: int = PageLimit,
) -> Page[PersonSummary]:
    """People whose handle or name starts with each word ("kni" finds @knitwit); an exact
    handle first. People hidden from search, deleted or blocked either way never appear."""
    items, next_cursor = await search.search_people(ctx, uow, viewer, q, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)
