"""Feed cards (posts/cards.py) are reused, but never show a post as it was before a change."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from craftreel.config import Settings
from craftreel.context import AppContext
from tests.factories import Person, sign_up
from tests.feed.factories import follow
from tests.posts.factories import make_post


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every page read afresh: these tests are about the cards a page is made of (kept pages
    have tests of their own, test_pages.py)."""
    return settings.model_copy(update={"feed_page_seconds": 0})


async def _following(client: httpx.AsyncClient, viewer: Person) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/feed/following", headers=viewer.auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _maker_and_follower(
    client: httpx.AsyncClient, ctx: AppContext, name: str, caption: str
) -> tuple[Person, Person, dict[str, Any]]:
    """A viewer who follows a maker with one post: the viewer, the maker and the post."""
    viewer = await sign_up(client, f"{name}viewer")
    maker = await sign_up(client, f"{name}maker")
    await follow(client, viewer, maker)
    return viewer, maker, await make_post(client, ctx, maker, caption=caption)


async def test_a_reused_card_shows_every_change_at_once(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer, maker, post = await _maker_and_follower(client, ctx, "card", "first words")

    [item] = await _following(client, viewer)
    assert item["caption"] == "first words"
    hits = ctx.cards.hits
    [again] = await _following(client, viewer)
    assert ctx.cards.hits == hits + 1, "the second page reuses the card"
    assert again == item

    # The post itself changes (its row's updated_at moves).
    edited = await client.patch(
        f"/api/v1/posts/{post['id']}", headers=maker.auth, json={"caption": "second words"}
    )
    assert edited.status_code == 200, edited.text
    [item] = await _following(client, viewer)
    assert item["caption"] == "second words"

    # Something the card shows from another table changes (the author's name).
    renamed = await client.patch(
        "/api/v1/me/profile", headers=maker.auth, json={"display_name": "Card Maker Renamed"}
    )
    assert renamed.status_code == 200, renamed.text
    [item] = await _following(client, viewer)
    assert item["author"]["display_name"] == "Card Maker Renamed"

    # Counts and the viewer's own state are never part of the card.
    liked = await client.put(f"/api/v1/posts/{post['id']}/like", headers=viewer.auth)
    assert liked.status_code in (200, 204), liked.text
    [item] = await _following(client, viewer)
    assert item["counts"]["likes"] == 1
    assert item["viewer"] == {"liked": True, "saved": False}


async def test_an_old_card_is_served_once_more_while_it_is_rendered_again(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, _, _ = await _maker_and_follower(client, ctx, "oldcard", "kept words")
    [item] = await _following(client, viewer)
    lifetime = ctx.cards.seconds
    now = time.monotonic()

    # Past its lifetime, but by less than a lifetime more: the page does not wait for a
    # render; it gets the old card and a refresh renders it again in the background.
    monkeypatch.setattr(ctx.cards, "clock", lambda: now + lifetime * 1.5)
    misses = ctx.cards.misses
    [again] = await _following(client, viewer)
    assert again == item
    assert ctx.cards.misses == misses, "the old card was served"
    assert ctx.cards.refresher is not None and ctx.cards.refresh_queued == 1
    # Pages served meanwhile queue it only once: one batch renders what they all found old.
    refresher = ctx.cards.refresher
    assert await _following(client, viewer) == [item]
    assert ctx.cards.refresher is refresher and ctx.cards.refresh_queued == 1
    await ctx.cards.refresher
    assert ctx.cards.refresher is None and not ctx.cards.refresh_queued
    # The refresh kept a new card: the next page reuses it, with nothing left to refresh.
    [after] = await _following(client, viewer)
    assert after == item and ctx.cards.misses == misses and ctx.cards.refresher is None

    # Lapsed by more than a lifetime: rendered inside the request, as a card never seen.
    monkeypatch.setattr(ctx.cards, "clock", lambda: now + lifetime * 4)
    [late] = await _following(client, viewer)
    assert late == item
    assert ctx.cards.misses == misses + 1 and ctx.cards.refresher is None


async def test_an_old_card_of_a_changed_post_is_never_served(
    client: httpx.AsyncClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, maker, post = await _maker_and_follower(client, ctx, "oldedit", "before")
    await _following(client, viewer)
    now = time.monotonic()
    monkeypatch.setattr(ctx.cards, "clock", lambda: now + ctx.cards.seconds * 1.5)
    edited = await client.patch(
        f"/api/v1/posts/{post['id']}", headers=maker.auth, json={"caption": "after"}
    )
    assert edited.status_code == 200, edited.text
    [item] = await _following(client, viewer)
    assert item["caption"] == "after"
    assert ctx.cards.refresher is None
