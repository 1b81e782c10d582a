"""Each person's feed span (``users.feed_newest_*`` / ``feed_oldest_*``): the newest and the
oldest of their posts that followers' feeds list. Following on PostgreSQL trusts it to know
whose posts come next, so every way a post enters or leaves that set must keep it exact."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import select, update

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.media.models import MediaObject, MediaStatus
from craftreel.posts import service as posts
from craftreel.posts.models import Post, PostStatus, Visibility
from craftreel.posts.schemas import Publish
from tests.factories import Person, sign_up
from tests.feed.factories import backdate, follow, page_through
from tests.posts.factories import make_post, ready_media, user_id

Key = tuple[Any, UUID]


async def stored_span(ctx: AppContext, author: UUID) -> tuple[Key | None, Key | None]:
    """The span as kept on the person's row."""
    async with ctx.sessions() as session:
        row = (
            await session.execute(
                select(
                    User.feed_newest_at,
                    User.feed_newest_id,
                    User.feed_oldest_at,
                    User.feed_oldest_id,
                ).where(User.id == author)
            )
        ).one()
    newest = (row[0], row[1]) if row[1] is not None else None
    oldest = (row[2], row[3]) if row[3] is not None else None
    return newest, oldest


async def counted_span(ctx: AppContext, author: UUID) -> tuple[Key | None, Key | None]:
    """The span counted from the posts as they are now."""
    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                select(Post.published_at, Post.id).where(
                    Post.author_id == author,
                    Post.status == PostStatus.PUBLISHED,
                    Post.visibility.in_([Visibility.PUBLIC, Visibility.FOLLOWERS]),
                )
            )
        ).all()
    keys = sorted((r[0], r[1]) for r in rows)
    return (keys[-1], keys[0]) if keys else (None, None)


async def span_ids(ctx: AppContext, author: UUID) -> tuple[str | None, str | None]:
    """The (newest, oldest) post ids of the kept span, after checking it against a count."""
    kept = await stored_span(ctx, author)
    assert kept == await counted_span(ctx, author)
    newest, oldest = kept
    return (str(newest[1]) if newest else None, str(oldest[1]) if oldest else None)


async def edit(
    client: httpx.AsyncClient, person: Person, post: dict[str, Any], **body: Any
) -> None:
    response = await client.patch(f"/api/v1/posts/{post['id']}", json=body, headers=person.auth)
    assert response.status_code == 200, response.text


async def delete(client: httpx.AsyncClient, person: Person, post: dict[str, Any]) -> None:
    response = await client.delete(f"/api/v1/posts/{post['id']}", headers=person.auth)
    assert response.status_code == 204, response.text


async def test_the_span_follows_every_way_a_post_enters_or_leaves_followers_feeds(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "spanmaker")
    author = await user_id(ctx, maker.handle)
    assert await span_ids(ctx, author) == (None, None)

    first = await make_post(client, ctx, maker)
    assert await span_ids(ctx, author) == (first["id"], first["id"])
    second = await make_post(client, ctx, maker, visibility="followers")
    assert await span_ids(ctx, author) == (second["id"], first["id"])
    # Unlisted and private posts, and drafts, are in no one's feed.
    unlisted = await make_post(client, ctx, maker, visibility="unlisted")
    await make_post(client, ctx, maker, visibility="private")
    await make_post(client, ctx, maker, publish=False)
    assert await span_ids(ctx, author) == (second["id"], first["id"])

    # Visibility edits move posts in and out.
    await edit(client, maker, second, visibility="private")
    assert await span_ids(ctx, author) == (first["id"], first["id"])
    await edit(client, maker, unlisted, visibility="public")
    assert await span_ids(ctx, author) == (unlisted["id"], first["id"])
    await edit(client, maker, first, caption="no change to the span #still")
    assert await span_ids(ctx, author) == (unlisted["id"], first["id"])

    # A scheduled post, when its time comes.
    scheduled = await make_post(client, ctx, maker, publish=False)
    at = (utcnow() + timedelta(hours=1)).isoformat()
    response = await client.post(
        f"/api/v1/posts/{scheduled['id']}/schedule", json={"at": at}, headers=maker.auth
    )
    assert response.status_code == 200, response.text
    async with ctx.uow() as uow:
        post = await uow.session.get(Post, UUID(scheduled["id"]))
        assert post is not None and post.scheduled_at is not None
        assert await posts.publish_scheduled(uow, post.id, post.scheduled_at) == "published"
    assert await span_ids(ctx, author) == (scheduled["id"], first["id"])

    # A post published "when ready", the moment its media plays.
    media_id = await ready_media(
        ctx, maker, status=MediaStatus.PROCESSING, playable=False, duration_s=None
    )
    created = await client.post(
        "/api/v1/posts", json={"media_ids": [str(media_id)]}, headers=maker.auth
    )
    waiting = created.json()
    response = await client.post(
        f"/api/v1/posts/{waiting['id']}/publish", json={"when_ready": True}, headers=maker.auth
    )
    assert response.json()["status"] == "waiting"
    assert await span_ids(ctx, author) == (scheduled["id"], first["id"])
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(MediaObject)
            .where(MediaObject.id == media_id)
            .values(status=MediaStatus.READY, playable=True)
        )
        assert await posts.media_settled(uow, media_id) == 1
    assert await span_ids(ctx, author) == (waiting["id"], first["id"])

    # Deletes, oldest and newest, down to nothing.
    await delete(client, maker, first)
    assert await span_ids(ctx, author) == (waiting["id"], unlisted["id"])
    await delete(client, maker, waiting)
    assert await span_ids(ctx, author) == (scheduled["id"], unlisted["id"])
    await delete(client, maker, scheduled)
    await delete(client, maker, unlisted)
    assert await span_ids(ctx, author) == (None, None)


async def test_following_past_a_cursor_uses_spans_that_straddle_it_and_skips_the_rest(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """Makers whose posts all come before the cursor, all after it, or on both sides: paging
    in small steps must give every post once, in order (PostgreSQL probes only the third
    kind; the first two it answers from their spans)."""
    me = await sign_up(client, "spanreader")
    makers = [await sign_up(client, f"spanner{n}") for n in range(4)]
    for maker in makers:
        await follow(client, me, maker)
    # Hours ago: maker 0 posts only long ago, maker 1 only lately, maker 2 throughout,
    # maker 3 once in the middle.
    plan = [(0, 50), (0, 48), (2, 47), (0, 46), (3, 30), (2, 20), (1, 5), (2, 4), (1, 3), (1, 1)]
    made = []
    for n, hours in plan:
        post = await make_post(client, ctx, makers[n])
        await backdate(ctx, post, hours)
        made.append(post["id"])
    expected = list(reversed(made))

    for limit in (1, 2, 3):
        items = await page_through(client, "/api/v1/feed/following", me.auth, limit=limit)
        assert [p["id"] for p in items] == expected


async def test_a_publish_and_a_delete_at_once_leave_the_span_right(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """The delete of the maker's only listed post waits for the publish of the next one to
    commit, then counts with it: a count in the delete's own earlier snapshot would miss the
    new post, and the later commit would leave the span empty. (PostgreSQL: the person's row
    lock; SQLite: one writer at a time.)"""
    maker = await sign_up(client, "racer")
    author = await user_id(ctx, maker.handle)
    old = await make_post(client, ctx, maker)
    new = await make_post(client, ctx, maker, publish=False)

    async with ctx.uow() as publishing:
        person = await publishing.session.get(User, author)
        assert person is not None
        await posts.publish(ctx, publishing, person, UUID(new["id"]), Publish())

        async def delete_old() -> None:
            async with ctx.uow() as deleting:
                who = await deleting.session.get(User, author)
                assert who is not None
                await posts.delete_post(ctx, deleting, who, UUID(old["id"]))

        deleting = asyncio.create_task(delete_old())
        await asyncio.sleep(0.5)
        assert not deleting.done(), "the delete should wait for the publish to commit"
    await deleting

    assert await span_ids(ctx, author) == (new["id"], new["id"])
