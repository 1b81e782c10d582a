"""A feed page costs the same number of SQL statements whether it holds 5 posts or 50."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.feed import service
from craftreel.posts.repository import FeedPost
from craftreel.posts.service import feed_items, feed_models
from tests.factories import sign_up
from tests.feed.factories import engage, follow
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

Feed = Callable[[UnitOfWork, User, int], Awaitable[tuple[list[dict[str, Any]], str | None]]]
Present = Callable[[AppContext, UnitOfWork, User | None, Sequence[FeedPost]], Awaitable[list[Any]]]


def as_json(present: Present) -> Present:
    """A presenter whose items come out as JSON objects, whichever it is."""

    async def run(
        ctx: AppContext, uow: UnitOfWork, viewer: User | None, posts: Sequence[FeedPost]
    ) -> list[Any]:
        items = await present(ctx, uow, viewer, posts)
        return [
            json.loads(item) if isinstance(item, bytes) else item.model_dump(mode="json")
            for item in items
        ]

    return run


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_signup": "100/3600"})


async def _statements(ctx: AppContext, viewer_handle: str, feed: Feed, limit: int) -> int:
    """SQL statements one feed page runs in its unit of work (other connections, such as the
    background job runner's, are not counted). Read-only, as a GET's: on PostgreSQL the feed
    statements then run on the driver (``core.db.read_rows``), which the count must see too."""
    async with ctx.uow(read_only=True) as uow:
        viewer = await uow.session.scalar(select(User).where(User.handle == viewer_handle))
        assert viewer is not None
        ours = (await uow.session.connection()).sync_connection
        count = 0

        def counter(conn: Any, *_: Any) -> None:
            nonlocal count
            if conn is ours:
                count += 1

        event.listen(ctx.engine.sync_engine, "before_cursor_execute", counter)
        try:
            items, next_cursor = await feed(uow, viewer, limit)
        finally:
            event.remove(ctx.engine.sync_engine, "before_cursor_execute", counter)
    assert len(items) == limit, "the page must be full for the comparison to mean anything"
    assert next_cursor is not None
    assert any(p["viewer"] and p["viewer"]["liked"] for p in items)
    assert any(p["viewer"] and p["viewer"]["saved"] for p in items)
    return count


async def test_a_page_of_5_and_a_page_of_50_run_the_same_queries(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "counter")
    prolific = await sign_up(client, "prolific")
    others = [await sign_up(client, f"maker{n}") for n in range(3)]
    for maker in (prolific, *others):
        await follow(client, viewer, maker)
    for n in range(52):
        post = await make_post(client, ctx, prolific, caption=f"step {n} #counted")
        if n % 2 == 0:
            await engage(client, post, likers=[viewer], savers=[viewer] if n % 4 == 0 else [])
    for maker in others:
        for n in range(3):
            post = await make_post(client, ctx, maker, caption=f"#counted {n}")
            await engage(client, post, likers=[viewer], savers=[viewer])

    def feeds(present: Present) -> dict[str, Feed]:
        show = as_json(present)
        return {
            "following": lambda uow, user, limit: service.following(
                ctx, uow, user, None, limit, show
            ),
            "discover": lambda uow, user, limit: service.discover(
                ctx, uow, user, None, limit, show
            ),
            "hashtag": lambda uow, user, limit: service.hashtag(
                ctx, uow, user, "counted", None, limit, show
            ),
            "profile grid": lambda uow, user, limit: service.profile_posts(
                ctx, uow, user, "prolific", None, limit, show
            ),
        }

    async def cold(feed: Feed, limit: int) -> int:
        ctx.cards.clear()
        return await _statements(ctx, "counter", feed, limit)

    async def warm(feed: Feed, limit: int) -> int:
        await _statements(ctx, "counter", feed, limit)
        return await _statements(ctx, "counter", feed, limit)

    assert ctx.cards.enabled, "the test settings keep feed cards on, as production does"
    pages = {
        name: (await cold(feed, 5), await cold(feed, 50))
        for name, feed in feeds(feed_models).items()
    }
    # The feed's own read (with the viewer's likes and saves), then authors, media and the
    # shop's product tags: at least five.
    assert all(small >= 5 for small, _ in pages.values()), pages
    assert {name: small for name, (small, _) in pages.items()} == {
        name: large for name, (_, large) in pages.items()
    }
    api = feeds(feed_items)
    rendered = {name: (await cold(feed, 5), await cold(feed, 50)) for name, feed in api.items()}
    assert {name: small for name, (small, _) in rendered.items()} == {
        name: large for name, (_, large) in rendered.items()
    }
    reused = {name: (await warm(feed, 5), await warm(feed, 50)) for name, feed in api.items()}
    assert {name: small for name, (small, _) in reused.items()} == {
        name: large for name, (_, large) in reused.items()
    }
    # With every card reused, a page is just the feed's own read(s).
    assert all(reused[name][0] < rendered[name][0] for name in api), (reused, rendered)
