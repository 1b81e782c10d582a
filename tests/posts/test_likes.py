"""Likes: idempotent like and unlike, exact counts under concurrency, who liked, and who may
like at all (visibility, drafts, blocks)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.posts.models import Post, PostLike
from tests.accounts.test_pages import Browser
from tests.conftest import client_for
from tests.factories import sign_up
from tests.feed.factories import block, follow, page_through
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Forty-odd people sign up from the test client's one address.
    return settings.model_copy(
        update={"rate_limit_signup": "100/3600", "rate_limit_signin_ip": "100/300"}
    )


async def like_rows_and_count(ctx: AppContext, post_id: str) -> tuple[int, int]:
    """(rows in post_likes, the post's like_count) as the database holds them."""
    async with ctx.sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(PostLike).where(PostLike.post_id == UUID(post_id))
        )
        count = await session.scalar(select(Post.like_count).where(Post.id == UUID(post_id)))
    return int(rows or 0), int(count or 0)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_like_and_unlike_are_idempotent(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "knitter")
    fan = await sign_up(client, "fan")
    post = await make_post(client, ctx, maker, caption="Socks")
    url = f"/api/v1/posts/{post['id']}/like"

    first = await client.put(url, headers=fan.auth)
    again = await client.put(url, headers=fan.auth)

    assert first.status_code == 200, first.text
    assert first.json() == {"liked": True, "likes": 1}
    assert again.json() == {"liked": True, "likes": 1}
    seen = (await client.get(f"/api/v1/posts/{post['id']}", headers=fan.auth)).json()
    assert seen["counts"]["likes"] == 1
    assert seen["viewer"] == {"liked": True, "saved": False}

    gone = await client.delete(url, headers=fan.auth)
    gone_again = await client.delete(url, headers=fan.auth)

    assert gone.json() == {"liked": False, "likes": 0}
    assert gone_again.json() == {"liked": False, "likes": 0}
    assert await like_rows_and_count(ctx, post["id"]) == (0, 0)


async def test_a_maker_may_like_their_own_post(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "potter")
    post = await make_post(client, ctx, maker)

    liked = await client.put(f"/api/v1/posts/{post['id']}/like", headers=maker.auth)

    assert liked.json() == {"liked": True, "likes": 1}


async def test_concurrent_likes_and_unlikes_leave_an_exact_count(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    # given a post, forty fans, and one person who cannot make up their mind
    maker = await sign_up(client, "popular")
    post = await make_post(client, ctx, maker)
    fans = [await sign_up(client, f"fan{n:02}") for n in range(40)]
    waverer = await sign_up(client, "waverer")
    url = f"/api/v1/posts/{post['id']}/like"

    # when all forty like at once, some twice, while the waverer likes and unlikes in between
    calls = [client.put(url, headers=fan.auth) for fan in fans]
    calls += [client.put(url, headers=fan.auth) for fan in fans[:10]]
    calls += [
        (client.put if n % 3 != 1 else client.delete)(url, headers=waverer.auth) for n in range(12)
    ]
    random.Random(4).shuffle(calls)
    responses = await asyncio.gather(*calls)

    # then every call succeeded and the count is exactly the number of likes stored
    assert {r.status_code for r in responses} == {200}
    rows, count = await like_rows_and_count(ctx, post["id"])
    assert count == rows
    assert rows in (40, 41)  # every fan, and the waverer depending on their last word
    assert all(1 <= r.json()["likes"] <= 41 for r in responses if r.json()["liked"])
    shown = (await client.get(f"/api/v1/posts/{post['id']}")).json()
    assert shown["counts"]["likes"] == rows

    # and once the waverer settles, the count follows
    final = await client.delete(url, headers=waverer.auth)
    assert final.json() == {"liked": False, "likes": 40}
    assert await like_rows_and_count(ctx, post["id"]) == (40, 40)


async def test_who_liked_pages_newest_first_without_blocked_people(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "weaver")
    post = await make_post(client, ctx, maker)
    fans = [await sign_up(client, f"liker{n}") for n in range(5)]
    for fan in fans:
        liked = await client.put(f"/api/v1/posts/{post['id']}/like", headers=fan.auth)
        assert liked.status_code == 200

    listed = await page_through(client, f"/api/v1/posts/{post['id']}/likes", limit=2)

    assert [p["handle"] for p in listed] == [f"liker{n}" for n in reversed(range(5))]
    assert set(listed[0]) >= {"id", "handle", "display_name", "avatar_url"}

    # someone liker2 blocked does not see liker2 among the likers; others still do
    await block(client, fans[2], fans[0])
    seen_by_0 = await page_through(
        client, f"/api/v1/posts/{post['id']}/likes", headers=fans[0].auth
    )
    assert "liker2" not in [p["handle"] for p in seen_by_0]
    assert len(await page_through(client, f"/api/v1/posts/{post['id']}/likes")) == 5


async def expect_not_found(response: Awaitable[httpx.Response]) -> None:
    result = await response
    assert result.status_code == 404, result.text
    assert error_code(result) == "post_not_found"


async def test_only_people_who_may_see_a_published_post_may_like_it(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "quilter")
    follower = await sign_up(client, "follower")
    stranger = await sign_up(client, "stranger")
    assert await follow(client, follower, maker) == "active"
    for_followers = await make_post(client, ctx, maker, visibility="followers")
    draft = await make_post(client, ctx, maker, publish=False)
    private = await make_post(client, ctx, maker, visibility="private")

    # a stranger cannot like (or list the likes of) a followers-only post; a follower can
    await expect_not_found(
        client.put(f"/api/v1/posts/{for_followers['id']}/like", headers=stranger.auth)
    )
    await expect_not_found(client.get(f"/api/v1/posts/{for_followers['id']}/likes"))
    ok = await client.put(f"/api/v1/posts/{for_followers['id']}/like", headers=follower.auth)
    assert ok.json() == {"liked": True, "likes": 1}

    # nobody likes a draft, its author neither; nobody but the author sees a private post
    for person in (maker, follower, stranger):
        await expect_not_found(client.put(f"/api/v1/posts/{draft['id']}/like", headers=person.auth))
    await expect_not_found(client.put(f"/api/v1/posts/{private['id']}/like", headers=follower.auth))

    # signing in is needed to like
    anonymous = await client.put(f"/api/v1/posts/{for_followers['id']}/like")
    assert anonymous.status_code == 401


async def test_blocks_either_way_hide_the_post_from_likes(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "glassblower")
    blocked_by_maker = await sign_up(client, "troll")
    blocker = await sign_up(client, "grump")
    post = await make_post(client, ctx, maker)
    for person in (blocked_by_maker, blocker):
        liked = await client.put(f"/api/v1/posts/{post['id']}/like", headers=person.auth)
        assert liked.status_code == 200
    await block(client, maker, blocked_by_maker)
    await block(client, blocker, maker)

    for person in (blocked_by_maker, blocker):
        await expect_not_found(client.put(f"/api/v1/posts/{post['id']}/like", headers=person.auth))
        await expect_not_found(
            client.delete(f"/api/v1/posts/{post['id']}/like", headers=person.auth)
        )


async def test_the_web_app_likes_with_its_session_cookie_and_csrf_token(
    app: Any, client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "carver")
    await sign_up(client, "browser_bea")
    post = await make_post(client, ctx, maker)
    async with client_for(app, "198.51.100.20") as web:
        browser = Browser(web)
        signed_in = await browser.sign_in("browser_bea@example.org")
        assert signed_in.status_code == 303, signed_in.text
        token = await browser.csrf()
        url = f"/api/v1/posts/{post['id']}/like"

        # a script on the page sends the CSRF token with the cookie: accepted
        liked = await web.put(url, headers={"X-CSRF-Token": token})
        assert liked.status_code == 200, liked.text
        assert liked.json() == {"liked": True, "likes": 1}

        # another site posting with the cookie alone is refused
        forged = await web.delete(url)
        assert forged.status_code == 403
        assert error_code(forged) == "csrf_failed"
    assert await like_rows_and_count(ctx, post["id"]) == (1, 1)
