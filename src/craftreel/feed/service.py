"""Timelines: Following, Discover, a hashtag's posts and a maker's profile grid.

Every list pages by keyset, so a page never repeats or skips a post because new ones were
published meanwhile, and is presented (models for pages, rendered JSON for the API) in a
fixed number of queries.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import InvalidInput
from craftreel.core.pagination import decode_state, decode_time_cursor, encode_state, page_of
from craftreel.feed import repository as repo
from craftreel.feed.repository import Candidate, PassedOver, ScoreKey, TimeKey
from craftreel.posts.repository import FeedPost

T = TypeVar("T")

#: How a page's posts are presented: ``posts.service.to_out`` (models, for pages) or
#: ``posts.service.feed_items`` (rendered JSON, for the API).
Present = Callable[[AppContext, UnitOfWork, User | None, Sequence[FeedPost]], Awaitable[list[T]]]

#: Discover shows at most this many posts in a row by one maker (unless no one else is left).
MAX_RUN = 2

_TAG = re.compile(r"\w{1,60}", re.UNICODE)


def _published_key(item: FeedPost) -> TimeKey:
    return item.published_at, item.id


# --- Following ----------------------------------------------------------------------


async def following(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User,
    cursor: str | None,
    limit: int,
    present: Present[T],
) -> tuple[list[T], str | None]:
    """Posts of the people I follow (approved), newest first; my own are not among them."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.following(uow.session, viewer.id, after, limit)
    items, next_cursor = page_of(rows, limit, _published_key)
    return await present(ctx, uow, viewer, items), next_cursor


# --- Discover -----------------------------------------------------------------------


@dataclass
class DiscoverPosition:
    """Where a reader of Discover is, carried in the cursor.

    ``after`` ends the prefix of the ranked list that has been read through; ``shown`` names
    the posts past it already shown early (to keep one maker from three in a row); ``last``
    and ``run`` are the maker of the last post shown and how many of theirs came in a row,
    so the rule holds across pages.
    """

    after: ScoreKey | None = None
    shown: PassedOver | None = None
    last: UUID | None = None
    run: int = 0

    def encode(self) -> str:
        state: dict[str, Any] = {"run": self.run}
        if self.after is not None:
            state["a"] = [self.after[0], str(self.after[1])]
        if self.shown is not None:
            state["s"] = [str(self.shown.author), self.shown.until[0], str(self.shown.until[1])]
        if self.last is not None:
            state["l"] = str(self.last)
        return encode_state(state)

    @classmethod
    def decode(cls, cursor: str) -> DiscoverPosition:
        state = decode_state(cursor)
        try:
            after = state.get("a")
            shown = state.get("s")
            last = state.get("l")
            run = int(state.get("run", 0))
            return cls(
                after=(float(after[0]), UUID(after[1])) if after is not None else None,
                shown=(
                    PassedOver(UUID(shown[0]), (float(shown[1]), UUID(shown[2])))
                    if shown is not None
                    else None
                ),
                last=UUID(last) if last is not None else None,
                run=max(0, min(run, MAX_RUN)),
            )
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise InvalidInput("That page cursor is not valid.", field="cursor") from exc


def _window(limit: int) -> int:
    """How many ranked candidates to read for a page: enough to find other makers' posts to
    move forward in all but the most lopsided feeds (then one more query finds them)."""
    return limit * 3 + 10


async def discover(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    cursor: str | None,
    limit: int,
    present: Present[T],
) -> tuple[list[T], str | None]:
    """Everyone's listed posts I may see, by rank (recency and engagement), never mine and
    never three in a row by one maker while anyone else's are left.

    The ranked list is read in order; when the next post would be a maker's third in a row,
    the next post by someone else is moved forward. The cursor keeps where the read-through
    prefix ends and which posts past it were already shown, so paging neither repeats nor
    skips a post while new ones are published (they rank above the prefix). A rank refresh
    between two pages may move posts across it: that reorder is the accepted tradeoff.
    """
    position = DiscoverPosition.decode(cursor) if cursor else DiscoverPosition()
    viewer_id = viewer.id if viewer is not None else None
    session = uow.session
    size = _window(limit)
    queue = await repo.discover_candidates(session, viewer_id, position.after, position.shown, size)
    window_end = queue[-1].key if queue else None
    more_beyond = len(queue) == size
    others: list[Candidate] | None = None  # someone else's posts past the window, read if needed
    page: list[Candidate] = []
    while len(page) < limit and queue:
        head = queue[0]
        shown = position.shown
        if shown is not None and head.key < shown.until:
            # Everything up to the last post shown early has been read through.
            position.after, position.shown = shown.until, None
        if head.author_id == position.last and position.run >= MAX_RUN:
            pick = next((c for c in queue if c.author_id != head.author_id), None)
            if pick is None and more_beyond:
                if others is None:
                    assert window_end is not None
                    others = await repo.discover_candidates(
                        session, viewer_id, window_end, position.shown, limit, head.author_id
                    )
                pick = others.pop(0) if others else None
            if pick is not None:
                if pick in queue:
                    queue.remove(pick)
                position.shown = PassedOver(head.author_id, pick.key)
                _place(position, page, pick)
                continue
            # Only this maker's posts are left: let the run go on rather than end the feed.
        queue.pop(0)
        position.after = head.key
        _place(position, page, head)
    has_more = bool(queue) or more_beyond
    next_cursor = position.encode() if page and has_more else None
    posts = await repo.posts_by_ids(session, viewer_id, [c.id for c in page])
    return await present(ctx, uow, viewer, posts), next_cursor


def _place(position: DiscoverPosition, page: list[Candidate], post: Candidate) -> None:
    position.run = position.run + 1 if post.author_id == position.last else 1
    position.last = post.author_id
    page.append(post)


# --- hashtags -----------------------------------------------------------------------


def normalize_tag(tag: str) -> str:
    """``"#Knitting"`` → ``"knitting"``, as captions store tags; anything else is a 400."""
    cleaned = tag.strip().removeprefix("#").lower()
    if not _TAG.fullmatch(cleaned):
        raise InvalidInput("That is not a hashtag.", field="tag")
    return cleaned


async def hashtag(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    tag: str,
    cursor: str | None,
    limit: int,
    present: Present[T],
) -> tuple[list[T], str | None]:
    """Listed posts with ``#tag`` I may see, newest first."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.tagged(
        uow.session, viewer.id if viewer else None, normalize_tag(tag), after, limit
    )
    items, next_cursor = page_of(rows, limit, _published_key)
    return await present(ctx, uow, viewer, items), next_cursor


async def hashtag_count(uow: UnitOfWork, viewer: User | None, tag: str) -> int:
    """How many posts with ``#tag`` I may see in its feed."""
    return await repo.tagged_count(uow.session, viewer.id if viewer else None, normalize_tag(tag))


# --- profile grid -------------------------------------------------------------------


async def profile_posts(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    handle: str,
    cursor: str | None,
    limit: int,
    present: Present[T],
) -> tuple[list[T], str | None]:
    """A maker's published posts, newest first: all of them for the maker; for others, those
    their visibility allows. A missing, deleted or blocked (either way) person is not found."""
    person = await accounts.person_visible_to(uow, viewer, handle)
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.by_author(uow.session, viewer.id if viewer else None, person.id, after, limit)
    items, next_cursor = page_of(rows, limit, _published_key)
    return await present(ctx, uow, viewer, items), next_cursor
