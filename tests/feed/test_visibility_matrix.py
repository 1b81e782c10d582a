"""Who sees which post where: each visibility x each kind of viewer, through Following,
Discover, the hashtag feed, the profile grid and the post's own API (its page's data)."""

from __future__ import annotations

import httpx
import pytest

from craftreel.context import AppContext
from tests.conftest import PASSWORD
from tests.factories import Person, sign_up
from tests.feed.factories import approve, block, follow, make_private, page_through
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

SURFACES = ("following", "discover", "hashtag", "grid", "post")
# following: True/False, or 401 for an anonymous viewer; grid: True/False, or 404 when the
# maker's profile itself is hidden (blocked either way, deleted); post: GET /posts/{id} is 200.
Row = tuple[bool | int, bool, bool, bool | int, bool]

# (visibility, viewer) -> what each surface shows, in SURFACES order.
PUBLIC_MAKER: dict[tuple[str, str], Row] = {
    ("public", "anonymous"): (401, True, True, True, True),
    ("public", "follower"): (True, True, True, True, True),
    ("public", "stranger"): (False, True, True, True, True),
    ("public", "blocked by maker"): (False, False, False, 404, False),
    ("public", "blocked the maker"): (False, False, False, 404, False),
    ("public", "maker"): (False, False, True, True, True),
    ("followers", "anonymous"): (401, False, False, False, False),
    ("followers", "follower"): (True, True, True, True, True),
    ("followers", "stranger"): (False, False, False, False, False),
    ("followers", "blocked by maker"): (False, False, False, 404, False),
    ("followers", "blocked the maker"): (False, False, False, 404, False),
    ("followers", "maker"): (False, False, True, True, True),
    ("unlisted", "anonymous"): (401, False, False, False, True),
    ("unlisted", "follower"): (False, False, False, False, True),
    ("unlisted", "stranger"): (False, False, False, False, True),
    ("unlisted", "blocked by maker"): (False, False, False, 404, False),
    ("unlisted", "blocked the maker"): (False, False, False, 404, False),
    ("unlisted", "maker"): (False, False, True, True, True),
    ("private", "anonymous"): (401, False, False, False, False),
    ("private", "follower"): (False, False, False, False, False),
    ("private", "stranger"): (False, False, False, False, False),
    ("private", "blocked by maker"): (False, False, False, 404, False),
    ("private", "blocked the maker"): (False, False, False, 404, False),
    ("private", "maker"): (False, False, True, True, True),
}

# A private account's public post: for approved followers only.
PRIVATE_ACCOUNT: dict[str, Row] = {
    "anonymous": (401, False, False, False, False),
    "approved follower": (True, True, True, True, True),
    "pending request": (False, False, False, False, False),
    "stranger": (False, False, False, False, False),
    "maker": (False, False, True, True, True),
}

# A deleted account's public post, for someone who followed it.
DELETED_ACCOUNT: dict[str, Row] = {
    "anonymous": (401, False, False, 404, False),
    "former follower": (False, False, False, 404, False),
}


async def _seen(
    client: httpx.AsyncClient, viewer: Person | None, maker_handle: str, post_ids: list[str]
) -> dict[str, Row]:
    """What ``viewer`` sees of each of ``post_ids`` on every surface."""
    headers = viewer.auth if viewer else {}
    following: set[str] | int
    if viewer is None:
        response = await client.get("/api/v1/feed/following")
        following = response.status_code
    else:
        following = {p["id"] for p in await page_through(client, "/api/v1/feed/following", headers)}
    discover = {p["id"] for p in await page_through(client, "/api/v1/feed/discover", headers)}
    tagged = {p["id"] for p in await page_through(client, "/api/v1/hashtags/Matrix/posts", headers)}
    grid_response = await client.get(f"/api/v1/people/{maker_handle}/posts", headers=headers)
    grid: set[str] | int
    if grid_response.status_code == 200:
        grid = {
            p["id"]
            for p in await page_through(client, f"/api/v1/people/{maker_handle}/posts", headers)
        }
    else:
        grid = grid_response.status_code
    out: dict[str, Row] = {}
    for post_id in post_ids:
        opened = await client.get(f"/api/v1/posts/{post_id}", headers=headers)
        assert opened.status_code in (200, 404), opened.text
        out[post_id] = (
            following if isinstance(following, int) else post_id in following,
            post_id in discover,
            post_id in tagged,
            grid if isinstance(grid, int) else post_id in grid,
            opened.status_code == 200,
        )
    return out


def _mismatches(label: str, expected: Row, seen: Row) -> list[str]:
    return [
        f"{label} via {surface}: expected {want!r}, saw {got!r}"
        for surface, want, got in zip(SURFACES, expected, seen, strict=True)
        if want != got
    ]


async def test_each_visibility_for_each_viewer(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "maker")
    fan = await sign_up(client, "fan")
    stranger = await sign_up(client, "stranger")
    pest = await sign_up(client, "pest")
    grump = await sign_up(client, "grump")
    for person in (fan, pest, grump):
        assert await follow(client, person, maker) == "active"
    await block(client, maker, pest)  # blocking ends the follow
    await block(client, grump, maker)
    posts = {
        visibility: (
            await make_post(
                client, ctx, maker, caption=f"{visibility} #matrix", visibility=visibility
            )
        )["id"]
        for visibility in ("public", "followers", "unlisted", "private")
    }
    viewers: dict[str, Person | None] = {
        "anonymous": None,
        "follower": fan,
        "stranger": stranger,
        "blocked by maker": pest,
        "blocked the maker": grump,
        "maker": maker,
    }
    problems: list[str] = []
    for viewer_name, viewer in viewers.items():
        seen = await _seen(client, viewer, maker.handle, list(posts.values()))
        for visibility, post_id in posts.items():
            expected = PUBLIC_MAKER[(visibility, viewer_name)]
            problems += _mismatches(f"{visibility} post, {viewer_name}", expected, seen[post_id])
    assert problems == []


async def test_a_private_accounts_posts_are_for_approved_followers(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "secretive")
    insider = await sign_up(client, "insider")
    hopeful = await sign_up(client, "hopeful")
    stranger = await sign_up(client, "outsider")
    await make_private(client, maker)
    assert await follow(client, insider, maker) == "pending"
    await approve(client, maker, insider)
    assert await follow(client, hopeful, maker) == "pending"
    post_id = (await make_post(client, ctx, maker, caption="for friends #matrix"))["id"]
    viewers: dict[str, Person | None] = {
        "anonymous": None,
        "approved follower": insider,
        "pending request": hopeful,
        "stranger": stranger,
        "maker": maker,
    }
    problems: list[str] = []
    for viewer_name, viewer in viewers.items():
        seen = await _seen(client, viewer, maker.handle, [post_id])
        problems += _mismatches(viewer_name, PRIVATE_ACCOUNT[viewer_name], seen[post_id])
    assert problems == []


async def test_a_deleted_accounts_posts_vanish(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker = await sign_up(client, "leaving")
    fan = await sign_up(client, "loyal")
    await follow(client, fan, maker)
    post_id = (await make_post(client, ctx, maker, caption="goodbye #matrix"))["id"]
    before = await _seen(client, fan, maker.handle, [post_id])
    assert before[post_id] == (True, True, True, True, True)
    deleted = await client.post(
        "/api/v1/me/delete",
        json={"password": PASSWORD, "confirm_handle": maker.handle},
        headers=maker.auth,
    )
    assert deleted.status_code == 204, deleted.text
    problems: list[str] = []
    viewers: dict[str, Person | None] = {"anonymous": None, "former follower": fan}
    for viewer_name, viewer in viewers.items():
        seen = await _seen(client, viewer, maker.handle, [post_id])
        problems += _mismatches(viewer_name, DELETED_ACCOUNT[viewer_name], seen[post_id])
    assert problems == []
