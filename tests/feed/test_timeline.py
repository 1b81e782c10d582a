"""The Following timeline is kept by the database: every write to posts and follows, through
whichever path, leaves exactly the entries the visibility rule allows a follower."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest
from sqlalchemy import insert, select

from craftreel.accounts.models import Follow, User
from craftreel.context import AppContext
from craftreel.feed.models import TimelineEntry
from craftreel.posts.models import Post
from tests.factories import Person, sign_up
from tests.feed.factories import approve, backdate, block, follow, make_private
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def entries(ctx: AppContext, person: Person) -> set[str]:
    """The post ids in ``person``'s timeline."""
    async with ctx.uow() as uow:
        user_id = await uow.session.scalar(select(User.id).where(User.handle == person.handle))
        rows = await uow.session.scalars(
            select(TimelineEntry.post_id).where(TimelineEntry.user_id == user_id)
        )
        return {str(post_id) for post_id in rows}


async def test_follows_and_posts_keep_the_timeline(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "timelinemaker")
    fan = await sign_up(client, "timelinefan")
    public = (await make_post(client, ctx, maker))["id"]
    followers = (await make_post(client, ctx, maker, visibility="followers"))["id"]
    private = (await make_post(client, ctx, maker, visibility="private"))["id"]
    await make_post(client, ctx, maker, visibility="unlisted")
    await make_post(client, ctx, maker, publish=False)
    assert await entries(ctx, fan) == set()

    # Following brings in what was published before, listed to followers only.
    assert await follow(client, fan, maker) == "active"
    assert await entries(ctx, fan) == {public, followers}
    assert await entries(ctx, maker) == set()  # nobody's own posts

    # Publishing reaches the follower; a visibility edit takes away or brings back.
    fresh = (await make_post(client, ctx, maker))["id"]
    assert await entries(ctx, fan) == {public, followers, fresh}
    for post_id, visibility in ((public, "private"), (private, "followers")):
        response = await client.patch(
            f"/api/v1/posts/{post_id}", json={"visibility": visibility}, headers=maker.auth
        )
        assert response.status_code == 200, response.text
    assert await entries(ctx, fan) == {followers, fresh, private}

    # A new publishing time moves the entry with it (the key pages are read by).
    await backdate(ctx, {"id": fresh}, hours=30)
    async with ctx.uow() as uow:
        post = await uow.session.get(Post, UUID(fresh))
        entry = await uow.session.scalar(
            select(TimelineEntry).where(TimelineEntry.post_id == UUID(fresh))
        )
        assert post is not None and entry is not None
        assert entry.published_at == post.published_at

    # Deleting a post, then unfollowing, empties it.
    response = await client.delete(f"/api/v1/posts/{fresh}", headers=maker.auth)
    assert response.status_code == 204, response.text
    assert await entries(ctx, fan) == {followers, private}
    response = await client.delete(f"/api/v1/people/{maker.handle}/follow", headers=fan.auth)
    assert response.status_code == 200, response.text
    assert await entries(ctx, fan) == set()


async def test_a_request_fills_the_timeline_once_approved_and_a_block_empties_it(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "privatemaker")
    fan = await sign_up(client, "hopefulfan")
    await make_private(client, maker)
    post = (await make_post(client, ctx, maker))["id"]
    assert await follow(client, fan, maker) == "pending"
    assert await entries(ctx, fan) == set()
    await approve(client, maker, fan)
    assert await entries(ctx, fan) == {post}
    await block(client, maker, fan)
    assert await entries(ctx, fan) == set()


async def test_rows_written_without_the_services_are_kept_too(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """The demo and the bench data write rows directly: the triggers see those as well."""
    maker = await sign_up(client, "directmaker")
    fan = await sign_up(client, "directfan")
    post = (await make_post(client, ctx, maker))["id"]
    async with ctx.uow() as uow:
        ids = dict(
            (handle, user_id)
            for handle, user_id in await uow.session.execute(
                select(User.handle, User.id).where(User.handle.in_([maker.handle, fan.handle]))
            )
        )
        await uow.session.execute(
            insert(Follow).values(
                follower_id=ids[fan.handle], followee_id=ids[maker.handle], status="active"
            )
        )
    assert await entries(ctx, fan) == {post}
