"""Saves and collections, shares, and views (counted after 3 s, once per viewer per day;
completions once)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from craftreel.accounts.models import User
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.posts import interactions
from craftreel.posts.interactions_schemas import ViewOut
from craftreel.posts.models import Post, PostSave, PostShare, PostView
from tests.conftest import client_for
from tests.factories import Person, sign_up
from tests.feed.factories import block, follow, page_through
from tests.posts.factories import make_post, user_id

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DAY = date(2025, 3, 14)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit_share_ip": "3/600", "rate_limit_anonymous_views": "3/86400"}
    )


async def counters(ctx: AppContext, post_id: str) -> dict[str, int]:
    async with ctx.sessions() as session:
        post = await session.get(Post, UUID(post_id))
        assert post is not None
        return {
            "saves": post.save_count,
            "shares": post.share_count,
            "views": post.view_count,
            "completions": post.completion_count,
        }


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def new_collection(client: httpx.AsyncClient, person: Person, name: str) -> dict[str, Any]:
    response = await client.post("/api/v1/collections", json={"name": name}, headers=person.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --- saves and collections -----------------------------------------------------------


async def test_saving_is_idempotent_and_moving_keeps_the_count(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "knitter")
    fan = await sign_up(client, "fan")
    post = await make_post(client, ctx, maker)
    socks = await new_collection(client, fan, "  Socks   to knit ")
    gifts = await new_collection(client, fan, "Gifts")
    url = f"/api/v1/posts/{post['id']}/save"
    assert socks["name"] == "Socks to knit"

    first = await client.put(url, headers=fan.auth)
    again = await client.put(url, json={}, headers=fan.auth)
    assert first.json() == {"saved": True, "saves": 1, "collection_id": None}
    assert again.json() == {"saved": True, "saves": 1, "collection_id": None}

    # moving it between collections keeps one save; omitting the collection keeps it there
    moved = await client.put(url, json={"collection_id": socks["id"]}, headers=fan.auth)
    assert moved.json() == {"saved": True, "saves": 1, "collection_id": socks["id"]}
    kept = await client.put(url, headers=fan.auth)
    assert kept.json()["collection_id"] == socks["id"]
    moved = await client.put(url, json={"collection_id": gifts["id"]}, headers=fan.auth)
    assert moved.json() == {"saved": True, "saves": 1, "collection_id": gifts["id"]}
    unfiled = await client.put(url, json={"collection_id": None}, headers=fan.auth)
    assert unfiled.json() == {"saved": True, "saves": 1, "collection_id": None}
    seen = (await client.get(f"/api/v1/posts/{post['id']}", headers=fan.auth)).json()
    assert seen["viewer"]["saved"] is True
    assert seen["counts"]["saves"] == 1

    gone = await client.delete(url, headers=fan.auth)
    gone_again = await client.delete(url, headers=fan.auth)
    assert gone.json() == {"saved": False, "saves": 0, "collection_id": None}
    assert gone_again.json() == {"saved": False, "saves": 0, "collection_id": None}
    assert (await counters(ctx, post["id"]))["saves"] == 0


async def test_saving_into_someone_elses_collection_is_refused(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "potter")
    fan = await sign_up(client, "fan")
    theirs = await new_collection(client, maker, "Mine")
    post = await make_post(client, ctx, maker)

    refused = await client.put(
        f"/api/v1/posts/{post['id']}/save", json={"collection_id": theirs["id"]}, headers=fan.auth
    )

    assert refused.status_code == 404
    assert code_of(refused) == "collection_not_found"
    assert (await counters(ctx, post["id"]))["saves"] == 0


async def test_collections_are_named_uniquely_renamed_and_deleted(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "weaver")
    fan = await sign_up(client, "fan")
    other = await sign_up(client, "other")
    post = await make_post(client, ctx, maker)
    blankets = await new_collection(client, fan, "Blankets")
    await new_collection(client, fan, "Autumn")
    await new_collection(client, other, "Blankets")  # names are per owner

    duplicate = await client.post(
        "/api/v1/collections", json={"name": " Blankets "}, headers=fan.auth
    )
    assert duplicate.status_code == 409
    assert code_of(duplicate) == "collection_exists"
    empty = await client.post("/api/v1/collections", json={"name": "   "}, headers=fan.auth)
    assert empty.status_code == 422

    saved = await client.put(
        f"/api/v1/posts/{post['id']}/save",
        json={"collection_id": blankets["id"]},
        headers=fan.auth,
    )
    assert saved.status_code == 200
    mine = await page_through(client, "/api/v1/collections", headers=fan.auth, limit=1)
    assert [(c["name"], c["saves"]) for c in mine] == [("Autumn", 0), ("Blankets", 1)]

    clash = await client.patch(
        f"/api/v1/collections/{blankets['id']}", json={"name": "Autumn"}, headers=fan.auth
    )
    assert clash.status_code == 409
    assert code_of(clash) == "collection_exists"
    renamed = await client.patch(
        f"/api/v1/collections/{blankets['id']}", json={"name": "Throws"}, headers=fan.auth
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Throws" and renamed.json()["saves"] == 1
    not_mine = await client.patch(
        f"/api/v1/collections/{blankets['id']}", json={"name": "Stolen"}, headers=other.auth
    )
    assert not_mine.status_code == 404
    assert code_of(not_mine) == "collection_not_found"
    deleted_by_other = await client.delete(
        f"/api/v1/collections/{blankets['id']}", headers=other.auth
    )
    assert deleted_by_other.status_code == 404

    # deleting the collection keeps the save, unfiled
    deleted = await client.delete(f"/api/v1/collections/{blankets['id']}", headers=fan.auth)
    assert deleted.status_code == 204
    everything = (await client.get("/api/v1/saved", headers=fan.auth)).json()
    assert [p["id"] for p in everything["items"]] == [post["id"]]
    async with ctx.sessions() as session:
        row = await session.get(PostSave, (await user_id(ctx, "fan"), UUID(post["id"])))
    assert row is not None and row.collection_id is None
    assert (await counters(ctx, post["id"]))["saves"] == 1
    gone = await client.get(
        "/api/v1/saved", params={"collection_id": blankets["id"]}, headers=fan.auth
    )
    assert gone.status_code == 404


async def test_saved_posts_newest_first_only_those_still_visible(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "quilter")
    other_maker = await sign_up(client, "dyer")
    fan = await sign_up(client, "fan")
    await follow(client, fan, maker)
    posts = [await make_post(client, ctx, maker, caption=f"quilt {n}") for n in range(4)]
    for_followers = await make_post(client, ctx, maker, visibility="followers")
    dyed = await make_post(client, ctx, other_maker, caption="indigo")
    favourites = await new_collection(client, fan, "Favourites")
    for post in [*posts, for_followers, dyed]:
        saved = await client.put(f"/api/v1/posts/{post['id']}/save", headers=fan.auth)
        assert saved.status_code == 200
    filed = await client.put(
        f"/api/v1/posts/{posts[1]['id']}/save",
        json={"collection_id": favourites["id"]},
        headers=fan.auth,
    )
    assert filed.status_code == 200

    listed = await page_through(client, "/api/v1/saved", headers=fan.auth, limit=2)
    expected = [dyed, for_followers, *reversed(posts)]
    assert [p["id"] for p in listed] == [p["id"] for p in expected]
    assert all(p["viewer"]["saved"] for p in listed)
    in_favourites = (
        await client.get(
            "/api/v1/saved", params={"collection_id": favourites["id"]}, headers=fan.auth
        )
    ).json()
    assert [p["id"] for p in in_favourites["items"]] == [posts[1]["id"]]

    # the fan stops following one maker and blocks the other: those saves no longer show
    unfollowed = await client.delete(f"/api/v1/people/{maker.handle}/follow", headers=fan.auth)
    assert unfollowed.status_code == 200
    await block(client, fan, other_maker)
    listed = await page_through(client, "/api/v1/saved", headers=fan.auth)
    assert [p["id"] for p in listed] == [p["id"] for p in reversed(posts)]
    assert (await client.get("/api/v1/saved")).status_code == 401


async def test_drafts_and_hidden_posts_cannot_be_saved(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "carver")
    stranger = await sign_up(client, "stranger")
    draft = await make_post(client, ctx, maker, publish=False)
    for_followers = await make_post(client, ctx, maker, visibility="followers")

    for person, post in ((maker, draft), (stranger, draft), (stranger, for_followers)):
        refused = await client.put(f"/api/v1/posts/{post['id']}/save", headers=person.auth)
        assert refused.status_code == 404
        assert code_of(refused) == "post_not_found"


# --- shares --------------------------------------------------------------------------


async def test_anyone_who_sees_a_post_may_share_it(
    client: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    maker = await sign_up(client, "glassblower")
    fan = await sign_up(client, "fan")
    post = await make_post(client, ctx, maker)
    url = f"/api/v1/posts/{post['id']}/shares"

    anonymous = await client.post(url, json={"channel": "web_share"})
    signed_in = await client.post(url, json={"channel": "link"}, headers=fan.auth)

    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json() == {
        "url": f"{str(settings.base_url).rstrip('/')}/p/{post['id']}",
        "shares": 1,
        "counted": True,
    }
    assert signed_in.json()["shares"] == 2
    async with ctx.sessions() as session:
        rows = (await session.scalars(select(PostShare).order_by(PostShare.created_at))).all()
    assert [(r.channel, r.user_id) for r in rows] == [
        ("web_share", None),
        ("link", await user_id(ctx, "fan")),
    ]
    bad = await client.post(url, json={"channel": "carrier_pigeon"})
    assert bad.status_code == 422


async def test_shares_from_one_address_stop_counting_past_the_limit(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    maker = await sign_up(client, "smith")
    post = await make_post(client, ctx, maker)
    url = f"/api/v1/posts/{post['id']}/shares"
    limit = int(settings.rate_limit_share_ip.split("/")[0])
    for n in range(limit):
        shared = await client.post(url, json={"channel": "link"})
        assert shared.json()["counted"] is True and shared.json()["shares"] == n + 1

    # one more from the same address still gets the link, but the count stays
    extra = await client.post(url, json={"channel": "link"})
    assert extra.status_code == 200
    assert extra.json()["counted"] is False
    assert extra.json()["shares"] == limit
    assert extra.json()["url"].endswith(f"/p/{post['id']}")
    # another address counts
    async with client_for(app, "198.51.100.77") as elsewhere:
        other = await elsewhere.post(url, json={"channel": "other"})
    assert other.json()["counted"] is True
    assert other.json()["shares"] == limit + 1
    assert (await counters(ctx, post["id"]))["shares"] == limit + 1
    async with ctx.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(PostShare))
    assert rows == limit + 1


async def test_hidden_posts_and_drafts_cannot_be_shared(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "baker")
    blocked = await sign_up(client, "blocked")
    draft = await make_post(client, ctx, maker, publish=False)
    private = await make_post(client, ctx, maker, visibility="private")
    public = await make_post(client, ctx, maker)
    await block(client, maker, blocked)

    for headers, post in (
        (maker.auth, draft),
        ({}, private),
        (blocked.auth, public),
    ):
        refused = await client.post(
            f"/api/v1/posts/{post['id']}/shares", json={"channel": "link"}, headers=headers
        )
        assert refused.status_code == 404
        assert code_of(refused) == "post_not_found"


# --- views ---------------------------------------------------------------------------


async def beacon(
    ctx: AppContext,
    post_id: str,
    key: str,
    watched_ms: int,
    *,
    completed: bool = False,
    day: date = DAY,
) -> ViewOut:
    """A player's beacon through the service, on a given day (no sleeping, no clock)."""
    async with ctx.uow() as uow:
        return await interactions.record_view(
            ctx, uow, key, UUID(post_id), watched_ms, completed, today=day, viewer=None
        )


async def view_rows(ctx: AppContext, post_id: str) -> list[tuple[str, date, int, bool, bool]]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(PostView)
            .where(PostView.post_id == UUID(post_id))
            .order_by(PostView.day, PostView.viewer_key)
        )
        return [(r.viewer_key, r.day, r.watched_ms, r.counted, r.completed) for r in rows.all()]


async def test_a_view_counts_after_three_seconds_once_a_day(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "turner")
    post = await make_post(client, ctx, maker)
    key = interactions.viewer_key(None, "some-browser-cookie-value")

    # under three seconds: recorded, not counted
    early = await beacon(ctx, post["id"], key, 2999)
    assert early == ViewOut(counted=False, completed=False, views=0)
    assert (await counters(ctx, post["id"]))["views"] == 0

    # three seconds in: counted; later beacons that day change nothing, a shorter one
    # does not shrink what was watched
    counted = await beacon(ctx, post["id"], key, 3000)
    assert counted == ViewOut(counted=True, completed=False, views=1)
    again = await beacon(ctx, post["id"], key, 20_000)
    shorter = await beacon(ctx, post["id"], key, 4_000)
    assert again.views == shorter.views == 1
    assert await view_rows(ctx, post["id"]) == [(key, DAY, 20_000, True, False)]

    # another viewer counts on their own; the next day counts again
    assert (await beacon(ctx, post["id"], "u:someone-else", 5000)).views == 2
    next_day = await beacon(ctx, post["id"], key, 3500, day=DAY + timedelta(days=1))
    assert next_day == ViewOut(counted=True, completed=False, views=3)
    assert (await counters(ctx, post["id"]))["views"] == 3


async def test_a_completion_counts_once_per_counted_view(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "smith")
    post = await make_post(client, ctx, maker)  # a 90 s video

    # the player says it ended, but under three seconds were watched: neither counts
    skipped = await beacon(ctx, post["id"], "a:skipper", 1000, completed=True)
    assert skipped == ViewOut(counted=False, completed=False, views=0)

    # the player says it ended: one completion, however often it says so
    ended = await beacon(ctx, post["id"], "a:watcher", 30_000, completed=True)
    repeated = await beacon(ctx, post["id"], "a:watcher", 31_000, completed=True)
    assert ended == ViewOut(counted=True, completed=True, views=1)
    assert repeated == ViewOut(counted=True, completed=True, views=1)

    # 90% of the duration watched counts as completed too (80 s of 90 is not yet)
    partway = await beacon(ctx, post["id"], "a:looper", 80_000)
    assert partway == ViewOut(counted=True, completed=False, views=2)
    assert (await beacon(ctx, post["id"], "a:looper", 81_000)).completed is True
    assert (await beacon(ctx, post["id"], "a:looper", 200_000)).completed is True

    assert await counters(ctx, post["id"]) == {
        "saves": 0,
        "shares": 0,
        "views": 2,
        "completions": 2,
    }
    # and another day's watch completes again
    tomorrow = await beacon(
        ctx, post["id"], "a:watcher", 5000, completed=True, day=DAY + timedelta(days=1)
    )
    assert tomorrow == ViewOut(counted=True, completed=True, views=3)
    assert (await counters(ctx, post["id"]))["completions"] == 3


async def test_anonymous_browsers_are_told_apart_by_a_cookie(
    app: Any, client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "baker")
    post = await make_post(client, ctx, maker)
    url = f"/api/v1/posts/{post['id']}/views"
    async with client_for(app, "198.51.100.30") as browser:
        first = await browser.post(url, json={"watched_ms": 4000, "position_s": 4.0})
        assert first.status_code == 200, first.text
        assert first.json() == {"counted": True, "completed": False, "views": 1}
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("cr_vid=")
        for attribute in ("HttpOnly", "SameSite=lax", "Max-Age=31536000", "Path=/"):
            assert attribute.lower() in cookie.lower()
        vid = browser.cookies["cr_vid"]

        # the same browser again today: the same view, and the cookie is not set again
        second = await browser.post(url, json={"watched_ms": 9000, "completed": False})
        assert second.json() == {"counted": True, "completed": False, "views": 1}
        assert "set-cookie" not in second.headers

    # another browser (no cookie) is another viewer
    async with client_for(app, "198.51.100.31") as other:
        third = await other.post(url, json={"watched_ms": 3000})
    assert third.json()["views"] == 2
    keys = [row[0] for row in await view_rows(ctx, post["id"])]
    assert "a:" + hashlib.sha256(vid.encode()).hexdigest()[:32] in keys
    assert all(k.startswith("a:") and len(k) == 34 and vid not in k for k in keys)

    bad = await client.post(url, json={"watched_ms": -1})
    assert bad.status_code == 422


async def test_anonymous_views_from_one_address_stop_counting_past_the_limit(
    app: Any, client: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    """A script that drops the viewer cookie is a new anonymous viewer each time: one
    address's views of a post stop counting past the limit (the beacon still answers, and
    beacons short of 3 s use none of it); other addresses, other posts and signed-in
    people from the same address still count."""
    maker = await sign_up(client, "weaver")
    fan = await sign_up(client, "regular")
    post = await make_post(client, ctx, maker)
    other_post = await make_post(client, ctx, maker)
    url = f"/api/v1/posts/{post['id']}/views"
    limit = int(settings.rate_limit_anonymous_views.split("/")[0])

    async def cookieless(address: str, post_url: str, watched_ms: int) -> dict[str, Any]:
        async with client_for(app, address) as browser:  # a fresh client: no cookie
            answer = await browser.post(post_url, json={"watched_ms": watched_ms})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    for _ in range(limit + 2):
        assert (await cookieless("203.0.113.9", url, 1000))["counted"] is False
    for n in range(limit):
        assert await cookieless("203.0.113.9", url, 4000) == {
            "counted": True,
            "completed": False,
            "views": n + 1,
        }
    assert await cookieless("203.0.113.9", url, 4000) == {
        "counted": False,
        "completed": False,
        "views": limit,
    }
    assert (await cookieless("203.0.113.10", url, 4000))["views"] == limit + 1
    assert (await cookieless("203.0.113.9", f"/api/v1/posts/{other_post['id']}/views", 4000))[
        "counted"
    ] is True
    async with client_for(app, "203.0.113.9") as signed_in:
        mine = await signed_in.post(url, json={"watched_ms": 4000}, headers=fan.auth)
    assert mine.json() == {"counted": True, "completed": False, "views": limit + 2}
    assert (await counters(ctx, post["id"]))["views"] == limit + 2


async def test_signed_in_views_count_per_person_and_not_for_the_maker(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "quilter")
    fan = await sign_up(client, "fan")
    post = await make_post(client, ctx, maker)
    url = f"/api/v1/posts/{post['id']}/views"

    watched = await client.post(url, json={"watched_ms": 5000, "completed": True}, headers=fan.auth)
    own = await client.post(url, json={"watched_ms": 90_000, "completed": True}, headers=maker.auth)

    assert watched.json() == {"counted": True, "completed": True, "views": 1}
    assert "set-cookie" not in watched.headers
    assert own.json() == {"counted": False, "completed": False, "views": 1}
    fan_id = await user_id(ctx, "fan")
    assert [row[0] for row in await view_rows(ctx, post["id"])] == [f"u:{fan_id}"]
    shown = (await client.get(f"/api/v1/posts/{post['id']}")).json()
    assert shown["counts"]["views"] == 1


async def test_views_of_hidden_posts_and_drafts_are_refused(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "dyer")
    stranger = await sign_up(client, "stranger")
    draft = await make_post(client, ctx, maker, publish=False)
    for_followers = await make_post(client, ctx, maker, visibility="followers")

    for headers, post in (
        (maker.auth, draft),
        ({}, for_followers),
        (stranger.auth, for_followers),
    ):
        refused = await client.post(
            f"/api/v1/posts/{post['id']}/views", json={"watched_ms": 5000}, headers=headers
        )
        assert refused.status_code == 404
        assert code_of(refused) == "post_not_found"
    async with ctx.uow() as uow:
        user = await uow.session.get(User, await user_id(ctx, "stranger"))
        with pytest.raises(interactions.posts.PostNotFound):
            await interactions.record_view(
                ctx,
                uow,
                interactions.viewer_key(user, None),
                UUID(for_followers["id"]),
                5000,
                False,
                viewer=user,
            )
    assert await view_rows(ctx, for_followers["id"]) == []


async def test_concurrent_saves_and_beacons_keep_exact_counts(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    # given a post, a few fans and a collection each
    maker = await sign_up(client, "popular")
    fans = [await sign_up(client, f"saver{n}") for n in range(4)]
    post = await make_post(client, ctx, maker)
    shelves = [await new_collection(client, fan, "Shelf") for fan in fans]
    url = f"/api/v1/posts/{post['id']}/save"

    # when each saves, files and saves again at once, and one browser's beacons race too
    calls = []
    for fan, shelf in zip(fans, shelves, strict=True):
        calls += [
            client.put(url, headers=fan.auth),
            client.put(url, json={"collection_id": shelf["id"]}, headers=fan.auth),
            client.put(url, headers=fan.auth),
        ]
    responses = await asyncio.gather(*calls)
    beacons = await asyncio.gather(
        *(beacon(ctx, post["id"], "a:racer", 3000 + n, completed=True) for n in range(6))
    )

    # then one save per fan, one view and one completion
    assert {r.status_code for r in responses} == {200}
    async with ctx.sessions() as session:
        saves = await session.scalar(select(func.count()).select_from(PostSave))
    assert saves == len(fans)
    assert all(b.counted and b.completed for b in beacons)
    assert await counters(ctx, post["id"]) == {
        "saves": len(fans),
        "shares": 0,
        "views": 1,
        "completions": 1,
    }
