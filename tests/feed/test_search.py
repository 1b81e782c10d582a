"""Search: posts by words and #hashtags, people by handle and name, on both databases; what
is private, hidden or blocked never shows; whatever someone types never breaks it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from craftreel.cli import alembic_config, migrate
from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from tests.conftest import PASSWORD, PG_URL, _recreate_pg_database, client_for, running_app
from tests.factories import Person, sign_up
from tests.feed.factories import approve, block, follow, make_private
from tests.posts.factories import make_post

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Search needs a crowd: more sign-ups from one address than the default limit allows.
    return settings.model_copy(update={"rate_limit_signup": "100/3600"})


async def pages(
    client: httpx.AsyncClient,
    what: str,
    q: str,
    viewer: Person | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Every result of a search, following the cursor to the end."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"q": q, "limit": limit}
    for _ in range(100):
        response = await client.get(
            f"/api/v1/search/{what}", params=params, headers=viewer.auth if viewer else {}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if body["next_cursor"] is None:
            return items
        assert body["items"], "a page with a next cursor must not be empty"
        params["cursor"] = body["next_cursor"]
    raise AssertionError("the results never ended")


async def post_ids(client: httpx.AsyncClient, q: str, viewer: Person | None = None) -> list[str]:
    return [p["id"] for p in await pages(client, "posts", q, viewer)]


async def handles(client: httpx.AsyncClient, q: str, viewer: Person | None = None) -> list[str]:
    return [p["handle"] for p in await pages(client, "people", q, viewer)]


# --- posts ---------------------------------------------------------------------------


async def test_words_find_posts_whatever_their_case_and_accents(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "hatter")
    accented = await make_post(client, ctx, maker, caption="Crochê bucket hat, in Merino")
    plain = await make_post(client, ctx, maker, caption="Crochet a BUCKET HAT for winter")
    socks = await make_post(client, ctx, maker, caption="Socks on 2.5 mm needles")
    shawl = await make_post(client, ctx, maker, caption="Shawl in 3.5mm hand-dyed yarn")

    for q in ("croche", "CROCHÊ", "crochê"):
        assert await post_ids(client, q) == [accented["id"]], q
    assert await post_ids(client, "Crochet") == [plain["id"]]
    # Every word must be there.
    assert set(await post_ids(client, "bucket hat")) == {accented["id"], plain["id"]}
    assert await post_ids(client, "merino hat") == [accented["id"]]
    assert await post_ids(client, "bucket socks") == []
    assert await post_ids(client, "needles") == [socks["id"]]
    # Numbers, hyphens and other punctuation inside words read the same in captions and queries.
    for q in ("3.5mm", "hand-dyed", "hand dyed", "dyed", "shawl, yarn!"):
        assert await post_ids(client, q) == [shawl["id"]], q
    assert await post_ids(client, "crochet-hat") == [plain["id"]]
    # Whole words: no stemming or prefixes for posts.
    assert await post_ids(client, "buck") == []

    found = (await client.get("/api/v1/search/posts", params={"q": "merino"})).json()
    assert found["items"][0]["caption"] == "Crochê bucket hat, in Merino"
    assert found["items"][0]["author"]["handle"] == "hatter"
    assert found["next_cursor"] is None


async def test_hashtags_are_found_with_or_without_the_hash(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "tagger")
    tagged = await make_post(client, ctx, maker, caption="Cuffs today #knitting #SockLove")
    worded = await make_post(client, ctx, maker, caption="Knitting by the fire")
    other = await make_post(client, ctx, maker, caption="#crochet only")

    both = {tagged["id"], worded["id"]}
    assert set(await post_ids(client, "#knitting")) == both
    assert set(await post_ids(client, "knitting")) == both
    for q in ("#socklove", "#SockLove", "socklove", "SOCKLOVE"):
        assert await post_ids(client, q) == [tagged["id"]], q
    assert await post_ids(client, "#knitting #socklove") == [tagged["id"]]
    assert await post_ids(client, "#crochet") == [other["id"]]
    assert await post_ids(client, "#crochet #knitting") == []


async def test_an_edited_caption_is_found_by_its_new_words_only(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "feltmaker")
    post = await make_post(client, ctx, maker, caption="Felted wool slippers #slippers")
    assert await post_ids(client, "slippers") == [post["id"]]

    edited = await client.patch(
        f"/api/v1/posts/{post['id']}",
        json={"caption": "Needle felted mushroom #fungi"},
        headers=maker.auth,
    )
    assert edited.status_code == 200, edited.text
    assert await post_ids(client, "slippers") == []
    assert await post_ids(client, "#slippers") == []
    assert await post_ids(client, "mushroom") == [post["id"]]
    assert await post_ids(client, "#fungi felted") == [post["id"]]


async def test_a_deleted_post_is_no_longer_found(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "tidyup")
    kept = await make_post(client, ctx, maker, caption="Macrame plant hanger")
    gone = await make_post(client, ctx, maker, caption="Macrame wall hanging")
    assert set(await post_ids(client, "macrame")) == {kept["id"], gone["id"]}

    deleted = await client.delete(f"/api/v1/posts/{gone['id']}", headers=maker.auth)
    assert deleted.status_code == 204, deleted.text
    assert await post_ids(client, "macrame") == [kept["id"]]
    assert await post_ids(client, "wall") == []


async def test_drafts_and_scheduled_posts_are_never_found(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "drafter")
    draft = await make_post(client, ctx, maker, caption="Secret loom project", publish=False)
    assert draft["status"] == "draft"
    for viewer in (None, maker):
        assert await post_ids(client, "loom", viewer) == []


async def test_results_page_through_every_match_once_best_first(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "prolific")
    made = [
        (await make_post(client, ctx, maker, caption=f"Yarn haul number {n}"))["id"]
        for n in range(5)
    ]
    best = await make_post(client, ctx, maker, caption="Yarn")
    found = await pages(client, "posts", "yarn", limit=2)
    ids = [p["id"] for p in found]
    # The shortest caption is the best match; equal matches come newest first.
    assert ids == [best["id"], *reversed(made)]

    bad = await client.get("/api/v1/search/posts", params={"q": "yarn", "cursor": "nonsense"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


# --- who may see what ----------------------------------------------------------------

# (visibility, viewer) -> found by search. An author finds all of their published posts.
SEARCH_MATRIX: dict[tuple[str, str], bool] = {
    ("public", "anonymous"): True,
    ("public", "follower"): True,
    ("public", "stranger"): True,
    ("public", "blocked by maker"): False,
    ("public", "blocked the maker"): False,
    ("public", "maker"): True,
    ("followers", "anonymous"): False,
    ("followers", "follower"): True,
    ("followers", "stranger"): False,
    ("followers", "blocked by maker"): False,
    ("followers", "blocked the maker"): False,
    ("followers", "maker"): True,
    ("unlisted", "anonymous"): False,
    ("unlisted", "follower"): False,
    ("unlisted", "stranger"): False,
    ("unlisted", "blocked by maker"): False,
    ("unlisted", "blocked the maker"): False,
    ("unlisted", "maker"): True,
    ("private", "anonymous"): False,
    ("private", "follower"): False,
    ("private", "stranger"): False,
    ("private", "blocked by maker"): False,
    ("private", "blocked the maker"): False,
    ("private", "maker"): True,
}


async def test_search_shows_each_visibility_only_to_whom_it_may(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "maker")
    fan = await sign_up(client, "fan")
    stranger = await sign_up(client, "stranger")
    pest = await sign_up(client, "pest")
    grump = await sign_up(client, "grump")
    for person in (fan, pest, grump):
        assert await follow(client, person, maker) == "active"
    await block(client, maker, pest)
    await block(client, grump, maker)
    posts = {
        (
            await make_post(
                client, ctx, maker, caption=f"Quilting {visibility} #quilt", visibility=visibility
            )
        )["id"]: visibility
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
    problems = []
    for viewer_name, viewer in viewers.items():
        for q in ("quilting", "#quilt"):
            found = set(await post_ids(client, q, viewer))
            for post_id, visibility in posts.items():
                expected = SEARCH_MATRIX[(visibility, viewer_name)]
                if (post_id in found) != expected:
                    problems.append(f"{visibility} post, {viewer_name}, {q!r}: expected {expected}")
    assert problems == []


async def test_a_private_accounts_posts_are_found_by_approved_followers_only(
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
    post = await make_post(client, ctx, maker, caption="Bobbin lace for friends")

    assert await post_ids(client, "bobbin", insider) == [post["id"]]
    for viewer in (None, hopeful, stranger):
        assert await post_ids(client, "bobbin", viewer) == []


async def test_a_deleted_account_and_its_posts_are_never_found(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "leaving", display_name="Tatting Teresa")
    fan = await sign_up(client, "loyal")
    await follow(client, fan, maker)
    await make_post(client, ctx, maker, caption="Tatting a doily")
    assert await handles(client, "tatting") == ["leaving"]
    assert len(await post_ids(client, "doily", fan)) == 1

    deleted = await client.post(
        "/api/v1/me/delete",
        json={"password": PASSWORD, "confirm_handle": maker.handle},
        headers=maker.auth,
    )
    assert deleted.status_code == 204, deleted.text
    for viewer in (None, fan):
        assert await post_ids(client, "doily", viewer) == []
        for q in ("leaving", "tatting", "deleted", "account"):
            assert await handles(client, q, viewer) == [], q


# --- people --------------------------------------------------------------------------


async def test_people_by_handle_prefix_and_by_name(client: httpx.AsyncClient) -> None:
    await sign_up(client, "knitwit", display_name="Ana Costa")
    await sign_up(client, "knit.nana", display_name="Nana Oliveira")
    await sign_up(client, "woodturner", display_name="Björk Knits")
    await sign_up(client, "potter", display_name="Clay Person")

    assert set(await handles(client, "kni")) == {"knitwit", "knit.nana", "woodturner"}
    assert await handles(client, "KNITW") == ["knitwit"]
    assert await handles(client, "@knitwit") == ["knitwit"]
    assert await handles(client, "nana") == ["knit.nana"]
    assert await handles(client, "bjork") == ["woodturner"]
    assert await handles(client, "Björk") == ["woodturner"]
    assert await handles(client, "ana cos") == ["knitwit"]
    assert await handles(client, "ana clay") == []
    assert await handles(client, "zebra") == []

    found = (await client.get("/api/v1/search/people", params={"q": "clay"})).json()
    assert found["items"] == [
        {
            "id": found["items"][0]["id"],
            "handle": "potter",
            "display_name": "Clay Person",
            "avatar_url": None,
            "is_maker": False,
        }
    ]


async def test_an_exact_handle_comes_first(client: httpx.AsyncClient) -> None:
    # The fan matches "knitwit" twice (handle and name), the exact handle once.
    await sign_up(client, "knitwitty", display_name="Knitwit Fan")
    await sign_up(client, "knitwit", display_name="Zed")
    assert await handles(client, "knitwit") == ["knitwit", "knitwitty"]
    assert await handles(client, "@KnitWit") == ["knitwit", "knitwitty"]


async def test_a_changed_name_or_handle_is_found_by_the_new_one(
    client: httpx.AsyncClient,
) -> None:
    person = await sign_up(client, "mudlark", display_name="Paula Pots")
    assert await handles(client, "paula") == ["mudlark"]

    changed = await client.patch(
        "/api/v1/me/profile",
        json={"display_name": "Ceramic Queen", "handle": "clayhands"},
        headers=person.auth,
    )
    assert changed.status_code == 200, changed.text
    assert await handles(client, "paula") == []
    assert await handles(client, "mudlark") == []
    assert await handles(client, "ceramic") == ["clayhands"]
    assert await handles(client, "clayh") == ["clayhands"]


async def test_hidden_and_blocked_people_are_never_found(client: httpx.AsyncClient) -> None:
    shy = await sign_up(client, "weaver_shy", display_name="Shy Weaver")
    bold = await sign_up(client, "weaver_bold", display_name="Bold Weaver")
    quiet = await sign_up(client, "weaver_quiet", display_name="Quiet Weaver")
    viewer = await sign_up(client, "looker")
    hidden = await client.patch(
        "/api/v1/me/privacy", json={"hide_from_search": True}, headers=shy.auth
    )
    assert hidden.status_code == 200, hidden.text
    await make_private(client, quiet)  # a private account can be found; its posts cannot

    everyone = {"weaver_bold", "weaver_quiet"}
    assert set(await handles(client, "weaver")) == everyone
    assert set(await handles(client, "weaver", viewer)) == everyone
    assert await handles(client, "weaver_shy") == []
    assert await handles(client, "shy") == []

    await block(client, viewer, bold)
    assert await handles(client, "weaver", viewer) == ["weaver_quiet"]
    assert await handles(client, "looker", bold) == []
    unblocked = await client.delete("/api/v1/people/weaver_bold/block", headers=viewer.auth)
    assert unblocked.status_code == 204
    assert set(await handles(client, "weaver", viewer)) == everyone

    await block(client, quiet, viewer)
    assert await handles(client, "weaver", viewer) == ["weaver_bold"]
    assert await handles(client, "looker", quiet) == []


async def test_people_page_through_every_match_once(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await sign_up(client, f"potter{n}", display_name="Potter")
    found = await handles(client, "potter")
    paged = [p["handle"] for p in await pages(client, "people", "potter", limit=2)]
    assert paged == found
    assert sorted(paged) == [f"potter{n}" for n in range(5)]


# --- whatever someone types ----------------------------------------------------------

HOSTILE = [
    '"',
    '"wool',
    "wool*",
    "*",
    "wool OR silk",
    "wool AND",
    "NOT wool",
    "NEAR(wool silk)",
    "NEAR/2",
    "wool -silk",
    "-",
    "(wool",
    ")",
    "caption:wool",
    "^wool",
    "{wool silk}",
    "wool + silk",
    "'; DROP TABLE posts; --",
    "1' OR '1'='1",
    "wool' & 'silk':*",
    "!wool | silk <-> ",
    "\\",
    "%_%",
    "a" * 100,
    "w\x00ool",
    "wool\u200bsilk",
    "🧶 wool",
    "🧶🧵",
    "Ω≈ç√∫ 日本語 العربية",
    "@",
    "@@wool",
    "#",
    "##wool",
    "   ",
    "",
    "x" * 101,
]


async def test_hostile_input_never_breaks_search(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker = await sign_up(client, "woolly", display_name="Wool Silk")
    wool = await make_post(client, ctx, maker, caption="Wool only")
    blend = await make_post(client, ctx, maker, caption="A wool or silk blend yarn")
    for what in ("posts", "people"):
        for q in HOSTILE:
            response = await client.get(f"/api/v1/search/{what}", params={"q": q})
            assert response.status_code in (200, 400), (what, q, response.text)
            if response.status_code == 400:
                assert response.json()["error"]["code"] == "invalid_input", (what, q)
        for raw in ("%FF", "%C3%28", "%00", "q%00"):
            response = await client.get(f"/api/v1/search/{what}?q={raw}")
            assert response.status_code in (200, 400), (what, raw, response.text)

    # Operators are only words: "OR" must be in the caption, "-" excludes nothing.
    assert await post_ids(client, "wool OR silk") == [blend["id"]]
    assert await post_ids(client, "wool -silk") == [blend["id"]]
    assert await post_ids(client, "NEAR(wool silk)") == []
    assert set(await post_ids(client, '"wool*')) == {wool["id"], blend["id"]}
    assert set(await post_ids(client, "🧶 wool")) == {wool["id"], blend["id"]}
    assert await post_ids(client, "w\x00ool") == []
    assert await handles(client, "@@wool") == ["woolly"]
    # Nothing was dropped along the way.
    assert set(await post_ids(client, "wool")) == {wool["id"], blend["id"]}


@pytest.mark.parametrize("q", ["", "   ", "!!!", "🧶", "#", "@", "-- ;", "x" * 101])
async def test_nothing_searchable_is_a_clear_400(client: httpx.AsyncClient, q: str) -> None:
    for what in ("posts", "people"):
        response = await client.get(f"/api/v1/search/{what}", params={"q": q})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert error["details"]["field"] == "q"
        assert error["message"]
    missing = await client.get("/api/v1/search/posts")
    assert missing.status_code == 400


# --- the migration -------------------------------------------------------------------


async def _database_for_migrations(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    assert PG_URL is not None
    return await _recreate_pg_database(PG_URL, f"craftreel_search_{os.getpid()}")


async def _drop_pg_database(url: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database="postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def _search_objects(context: AppContext) -> set[str]:
    """The names of the full-text search objects the database holds."""
    async with context.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = await conn.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_%_search' "
                    "UNION ALL SELECT cfgname FROM pg_ts_config WHERE cfgname = 'craftreel_search'"
                )
            )
        else:
            rows = await conn.execute(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE name LIKE 'posts_fts%' OR name LIKE 'users_fts%'"
                )
            )
        return {str(name) for (name,) in rows.all()}


async def _found(settings: Settings) -> tuple[list[str], list[str]]:
    """What anonymous searches for the old rows find, through a freshly started app."""
    context = build_context(settings)
    try:
        async with running_app(settings, context) as app, client_for(app) as client:
            return await post_ids(client, "weaving loom"), await handles(client, "oldt")
    finally:
        await context.close()


async def _down_to_0007(settings: Settings) -> None:
    """Downgrade to just before search, which leaves no search object behind."""
    await asyncio.to_thread(command.downgrade, alembic_config(settings), "0007")
    context = build_context(settings)
    try:
        assert await _search_objects(context) == set()
    finally:
        await context.close()


async def test_the_migration_indexes_existing_rows_and_downgrades_cleanly(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    url = await _database_for_migrations(backend, tmp_path)
    mine = settings.model_copy(update={"database_url": url})
    try:
        # Given people and posts (made by today's app, so at head),
        await asyncio.to_thread(migrate, mine, "head")
        context = build_context(mine)
        try:
            async with running_app(mine, context) as app, client_for(app) as client:
                maker = await sign_up(client, "oldtimer", display_name="Old Timer")
                post = await make_post(client, context, maker, caption="Vintage loom weaving")
        finally:
            await context.close()
        # and a database from before search existed, which already holds them,
        await _down_to_0007(mine)

        # when the search migration runs, they are found;
        await asyncio.to_thread(migrate, mine, "head")
        assert await _found(mine) == ([post["id"]], ["oldtimer"])

        # going back removes every search object, and coming forward again rebuilds them.
        await _down_to_0007(mine)
        await asyncio.to_thread(migrate, mine, "head")
        context = build_context(mine)
        try:
            assert await _search_objects(context)
        finally:
            await context.close()
        assert await _found(mine) == ([post["id"]], ["oldtimer"])
    finally:
        if backend == "postgresql":
            await _drop_pg_database(url)
