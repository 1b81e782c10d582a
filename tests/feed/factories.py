"""Feed test data: people who follow, block, like and save through the API, and paging.

``backdate`` moves a post's publishing time into the past (with the score it would have been
published with): no API can, and ranking tests need posts of different ages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import update

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.posts import ranking
from craftreel.posts.models import Post, PostHashtag
from craftreel.posts.repository import refresh_feed_span
from tests.factories import Person


async def follow(client: httpx.AsyncClient, follower: Person, followee: Person) -> str:
    """``follower`` follows ``followee``; returns "active" or "pending" (a private account)."""
    response = await client.put(f"/api/v1/people/{followee.handle}/follow", headers=follower.auth)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def approve(client: httpx.AsyncClient, person: Person, requester: Person) -> None:
    response = await client.post(
        f"/api/v1/me/follow-requests/{requester.handle}/approve", headers=person.auth
    )
    assert response.status_code == 204, response.text


async def block(client: httpx.AsyncClient, blocker: Person, blocked: Person) -> None:
    response = await client.put(f"/api/v1/people/{blocked.handle}/block", headers=blocker.auth)
    assert response.status_code == 204, response.text


async def make_private(client: httpx.AsyncClient, person: Person) -> None:
    response = await client.patch(
        "/api/v1/me/privacy", json={"is_private": True}, headers=person.auth
    )
    assert response.status_code == 200, response.text


async def engage(
    client: httpx.AsyncClient,
    post: dict[str, Any],
    likers: Sequence[Person] = (),
    savers: Sequence[Person] = (),
) -> None:
    """These people like, and those save, a post (through the API)."""
    for person in likers:
        response = await client.put(f"/api/v1/posts/{post['id']}/like", headers=person.auth)
        assert response.status_code == 200, response.text
    for person in savers:
        response = await client.put(f"/api/v1/posts/{post['id']}/save", headers=person.auth)
        assert response.status_code == 200, response.text


async def backdate(ctx: AppContext, post: dict[str, Any], hours: float) -> None:
    """Make a published post look published ``hours`` ago (score and hashtag rows too)."""
    pid = UUID(post["id"])
    at = utcnow() - timedelta(hours=hours)
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Post)
            .where(Post.id == pid)
            .values(published_at=at, rank_score=ranking.score(at, 0, 0, 0, 0, 0))
        )
        await uow.session.execute(
            update(PostHashtag).where(PostHashtag.post_id == pid).values(published_at=at)
        )
        await refresh_feed_span(uow.session, UUID(post["author"]["id"]))


async def page_through(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    limit: int = 20,
    between: Any = None,
) -> list[dict[str, Any]]:
    """Every item of a paged list, following ``next_cursor`` to the end; ``between`` (an
    async callable) runs after each page, e.g. to publish new posts meanwhile."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(path, params=params, headers=headers or {})
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert body["items"], "a page with a next cursor must not be empty"
        if between is not None:
            await between()
    raise AssertionError("the list never ended")
