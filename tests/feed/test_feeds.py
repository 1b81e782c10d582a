"""Timelines: Following, Discover (ranked, never three in a row by one maker), hashtag feeds,
profile grids, paging while new posts arrive, and the rank refresh."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.feed.tasks import refresh_rank_scores
from craftreel.posts.models import Post
from tests.factories import Person, sign_up
from tests.feed.factories import backdate, engage, follow, page_through
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Several makers and viewers sign up from the test client's one address.
    return settings.model_copy(update={"rate_limit_signup": "100/3600"})


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [p["id"] for p in items]


def assert_no_third_in_a_row(authors: list[str]) -> None:
    """No maker three times in a row, unless only that maker's posts are left from there on."""
    for i in range(2, len(authors)):
        if authors[i] == authors[i - 1] == authors[i - 2]:
            rest = set(authors[i:])
            assert rest == {authors[i]}, (
                f"{authors[i]} three in a row at {i} while others were left: {authors}"
            )


async def test_following_shows_the_people_i_follow_newest_first(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    me = await sign_up(client, "reader")
    knitter = await sign_up(client, "knitter")
    potter = await sign_up(client, "potter")
    unfollowed = await sign_up(client, "carver")
    await follow(client, me, knitter)
    await follow(client, me, potter)
    made = []
    for n in range(3):
        for person in (knitter, potter, unfollowed, me):
            made.append((person.handle, (await make_post(client, ctx, person, caption=f"#{n}"))))
    expected = [p["id"] for handle, p in reversed(made) if handle in ("knitter", "potter")]

    items = await page_through(client, "/api/v1/feed/following", me.auth, limit=4)

    assert _ids(items) == expected
    assert all(p["viewer"] == {"liked": False, "saved": False} for p in items)
    unauthenticated = await client.get("/api/v1/feed/following")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "not_authenticated"


async def test_following_pages_through_more_people_than_a_page_holds(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """PostgreSQL reads in full only the followees whose newest posts are newest (as many as
    a page holds): with six people followed, pages of two, and posts in bursts — one maker
    filling whole pages, then everyone in turn — every page must still be exact."""
    me = await sign_up(client, "busyreader")
    makers = [await sign_up(client, f"maker{n}") for n in range(6)]
    for maker in makers:
        await follow(client, me, maker)
    plan = [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 2, 0, 3, 3, 1, 4]
    made = [await make_post(client, ctx, makers[n], caption=f"#{i}") for i, n in enumerate(plan)]
    expected = [p["id"] for p in reversed(made)]

    for limit in (2, 3):
        items = await page_through(client, "/api/v1/feed/following", me.auth, limit=limit)
        assert _ids(items) == expected


async def test_following_lists_nothing_until_i_follow_someone(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    me = await sign_up(client, "newcomer")
    maker = await sign_up(client, "glassblower")
    await make_post(client, ctx, maker)
    empty = await client.get("/api/v1/feed/following", headers=me.auth)
    assert empty.json() == {"items": [], "next_cursor": None}


async def test_discover_never_shows_a_maker_three_times_in_a_row_across_pages(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    me = await sign_up(client, "browser")
    makers = {name: await sign_up(client, name) for name in ("prolific", "steady", "rare", "once")}
    # Uneven volume, published in bursts so that the plain ranking has long runs.
    plan = ["prolific"] * 7 + ["steady"] * 3 + ["prolific"] * 6 + ["rare"] * 2
    plan += ["steady"] * 3 + ["once"] + ["prolific"] * 3 + ["rare"]
    author_of: dict[str, str] = {}
    for name in plan:
        post = await make_post(client, ctx, makers[name])
        author_of[post["id"]] = name
    mine = await make_post(client, ctx, me)  # never in my own Discover; in others'
    anyone = {**author_of, mine["id"]: "browser"}

    for viewer, limit, expected in (
        (me.auth, 3, author_of),
        (me.auth, 5, author_of),
        ({}, 4, anyone),
        ({}, 50, anyone),
    ):
        items = await page_through(client, "/api/v1/feed/discover", viewer, limit=limit)
        ids = _ids(items)
        assert Counter(ids) == Counter(expected.keys()), f"limit {limit}: each post exactly once"
        authors = [expected[i] for i in ids]
        assert_no_third_in_a_row(authors)
        # The burst of "prolific" posts at the end of the ranking still shows: only they are
        # left there, so the feed does not end early.
        assert authors[-3:] == ["prolific"] * 3


async def test_discover_reaches_past_its_window_when_one_maker_floods_it(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "scroller")
    flood = await sign_up(client, "flood")
    trickle = await sign_up(client, "trickle")
    author_of: dict[str, str] = {}
    for _ in range(3):
        author_of[(await make_post(client, ctx, trickle))["id"]] = "trickle"
    for _ in range(22):
        author_of[(await make_post(client, ctx, flood))["id"]] = "flood"

    for limit in (2, 3):
        # A page reads limit * 3 + 10 ranked posts: all by "flood" here.
        items = await page_through(client, "/api/v1/feed/discover", viewer.auth, limit=limit)
        authors = [author_of[i] for i in _ids(items)]
        assert Counter(_ids(items)) == Counter(author_of.keys())
        assert authors[:9] == ["flood", "flood", "trickle"] * 3
        assert_no_third_in_a_row(authors)


async def test_discover_hides_my_own_posts_and_blocked_makers(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    me = await sign_up(client, "judge")
    maker = await sign_up(client, "turner")
    other = await sign_up(client, "smith")
    quiet = await make_post(client, ctx, maker, caption="quiet")
    mine = await make_post(client, ctx, me, caption="mine")
    theirs = await make_post(client, ctx, other, caption="blocked")
    await client.put(f"/api/v1/people/{other.handle}/block", headers=me.auth)
    items = await page_through(client, "/api/v1/feed/discover", me.auth)
    assert _ids(items) == [quiet["id"]]
    anonymous = await page_through(client, "/api/v1/feed/discover")
    assert _ids(anonymous) == [theirs["id"], mine["id"], quiet["id"]]


async def test_pages_neither_repeat_nor_skip_while_new_posts_are_published(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    me = await sign_up(client, "steadyreader")
    makers = [await sign_up(client, name) for name in ("anaya", "bodil", "cyrus")]
    for maker in makers:
        await follow(client, me, maker)
    existing: set[str] = set()
    for n in range(12):
        existing.add((await make_post(client, ctx, makers[n % 2 if n < 8 else 2]))["id"])
    published_meanwhile: set[str] = set()

    async def publish_more() -> None:
        for maker in makers[:2]:
            published_meanwhile.add((await make_post(client, ctx, maker))["id"])

    for path in ("/api/v1/feed/following", "/api/v1/feed/discover"):
        items = await page_through(client, path, me.auth, limit=3, between=publish_more)
        ids = _ids(items)
        assert len(ids) == len(set(ids)), f"{path} repeated a post"
        assert existing <= set(ids), f"{path} skipped {existing - set(ids)}"
        assert set(ids) <= existing | published_meanwhile
        assert published_meanwhile  # posts really were published between the pages


async def test_the_rank_refresh_lifts_an_engaging_post(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    viewer = await sign_up(client, "ranker")
    fans = [await sign_up(client, f"fan{n}") for n in range(3)]
    maker = await sign_up(client, "bookbinder")
    other = await sign_up(client, "jeweller")
    older = await make_post(client, ctx, maker, caption="older")
    newer = await make_post(client, ctx, other, caption="newer")
    await backdate(ctx, older, hours=2)
    await backdate(ctx, newer, hours=1)
    stale = await make_post(client, ctx, other, caption="from last month")
    await backdate(ctx, stale, hours=24 * 20)

    before = await page_through(client, "/api/v1/feed/discover", viewer.auth)
    assert _ids(before) == [newer["id"], older["id"], stale["id"]]

    await engage(client, older, likers=fans, savers=fans[:2])
    await engage(client, stale, likers=fans, savers=fans)
    async with ctx.sessions() as session:
        stale_score = await session.scalar(
            select(Post.rank_score).where(Post.id == UUID(stale["id"]))
        )
    assert await refresh_rank_scores(ctx) >= 1

    after = await page_through(client, "/api/v1/feed/discover", viewer.auth)
    assert _ids(after) == [older["id"], newer["id"], stale["id"]]
    async with ctx.sessions() as session:
        # Older than the refresh window: left as it was.
        assert (
            await session.scalar(select(Post.rank_score).where(Post.id == UUID(stale["id"])))
            == stale_score
        )
    assert await refresh_rank_scores(ctx) == 0  # nothing changed since


async def test_the_rank_refresh_goes_through_every_batch(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "batcher")
    fan = await sign_up(client, "counter")
    posts = [await make_post(client, ctx, maker) for _ in range(5)]
    for post in posts:
        await engage(client, post, likers=[fan])
    assert await refresh_rank_scores(ctx, batch_size=2) == 5


async def test_a_hashtag_feed_and_its_count(client: httpx.AsyncClient, ctx: AppContext) -> None:
    viewer = await sign_up(client, "tagreader")
    maker = await sign_up(client, "dyer")
    tagged = [
        await make_post(client, ctx, maker, caption=f"Batch {n} #NaturalDye #wool")
        for n in range(5)
    ]
    await make_post(client, ctx, maker, caption="#wool only")
    await make_post(client, ctx, maker, caption="#naturaldye hidden", visibility="private")
    await make_post(client, ctx, maker, caption="#naturaldye draft", publish=False)

    items = await page_through(client, "/api/v1/hashtags/%23naturaldye/posts", viewer.auth, 2)
    assert _ids(items) == [p["id"] for p in reversed(tagged)]
    info = await client.get("/api/v1/hashtags/NaturalDye", headers=viewer.auth)
    assert info.json() == {"tag": "naturaldye", "post_count": 5}
    own = await client.get("/api/v1/hashtags/naturaldye", headers=maker.auth)
    assert own.json()["post_count"] == 6  # the maker sees their private post too
    bad = await client.get("/api/v1/hashtags/not-a-tag/posts")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


async def test_a_profile_grid_pages_a_makers_posts(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "quilter")
    someone = await sign_up(client, "visitor")
    other = await sign_up(client, "bystander")
    mine = [await make_post(client, ctx, maker, caption=f"quilt {n}") for n in range(5)]
    await make_post(client, ctx, other)
    await make_post(client, ctx, maker, publish=False)
    items = await page_through(client, f"/api/v1/people/{maker.handle}/posts", someone.auth, 2)
    assert _ids(items) == [p["id"] for p in reversed(mine)]
    assert {p["author"]["handle"] for p in items} == {"quilter"}
    missing = await client.get("/api/v1/people/nobody_here/posts")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/feed/following",
        "/api/v1/feed/discover",
        "/api/v1/hashtags/wool/posts",
        "/api/v1/people/cursorist/posts",
    ],
)
async def test_a_forged_cursor_is_refused(client: httpx.AsyncClient, path: str) -> None:
    person: Person = await sign_up(client, "cursorist")
    naive_time = (
        "WyIyMDIwLTAxLTAxVDAwOjAwOjAwIiwiOGI4YjY0OTYtZjNmYy00OTVkLWI3ZGItY2UxOGQ0YTYxYTFhIl0"
    )
    for cursor in ("not-a-cursor", "W10", "eyJhIjpbMV19", naive_time):
        response = await client.get(path, params={"cursor": cursor}, headers=person.auth)
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["error"]["code"] == "invalid_input"


async def test_the_rank_refresh_runs_wherever_jobs_run(app: Any) -> None:
    names = {task.get_name() for task in app.state.background.tasks}
    assert "feed.refresh_rank_scores" in names
