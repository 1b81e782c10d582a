"""The saved page (/saved): my saved posts by collection, and the plain forms that make,
rename and delete collections — read as a person sees the page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from craftreel.context import AppContext
from tests.accounts.test_pages import Browser, BrowserFactory, browsers  # noqa: F401 - fixture
from tests.conftest import client_for
from tests.factories import Person, sign_up
from tests.posts.factories import make_post
from tests.posts.test_post_page_actions import Element, parse, signed_in_browser

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def maker(client: httpx.AsyncClient) -> Person:
    return await sign_up(client, "kiln_kit", display_name="Kit Kiln")


@pytest.fixture
async def fay(app: Any) -> Person:
    async with client_for(app, "198.51.100.80") as api:
        return await sign_up(api, "fan_fay", display_name="Fay Fan")


@pytest.fixture
async def fay_browser(browsers: BrowserFactory, fay: Person) -> Browser:  # noqa: F811
    return await signed_in_browser(browsers, fay, "198.51.100.81")


async def save(
    client: httpx.AsyncClient, person: Person, post_id: str, collection_id: str | None = None
) -> None:
    body = {"collection_id": collection_id} if collection_id else None
    response = await client.put(f"/api/v1/posts/{post_id}/save", json=body, headers=person.auth)
    assert response.status_code == 200, response.text


async def collection(client: httpx.AsyncClient, person: Person, name: str) -> str:
    response = await client.post("/api/v1/collections", json={"name": name}, headers=person.auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def my_collections(client: httpx.AsyncClient, person: Person) -> dict[str, int]:
    response = await client.get("/api/v1/collections", headers=person.auth)
    assert response.status_code == 200, response.text
    return {c["name"]: c["saves"] for c in response.json()["items"]}


async def saved_page(browser: Browser, query: str = "") -> Element:
    response = await browser.get(f"/saved{query}")
    assert response.status_code == 200, response.text
    return parse(response.text)


def chips(page: Element) -> dict[str, str]:
    """The chips above the grid, name → count, and (key "current") the one that is open."""
    found: dict[str, str] = {}
    for chip in page.all("class", "saved-chip"):
        name = chip.one("class", "saved-chip-name").text
        found[name] = chip.one("class", "saved-chip-count").text
        if chip.attrs.get("aria-current") == "page":
            found["current"] = name
    return found


def grid(page: Element) -> list[str]:
    """The posts in the grid, as the post ids their tiles link to."""
    return [a.attrs["href"].removeprefix("/p/") for a in page.all("class", "grid-link")]


def error_text(page: Element) -> str:
    return " ".join(e.text for e in page.all("class", "field-error"))


# --- the page -------------------------------------------------------------------------------


async def test_the_page_is_for_signed_in_people(client: httpx.AsyncClient) -> None:
    response = await client.get("/saved")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/saved"


async def test_empty_state_invites_saving(fay_browser: Browser) -> None:
    page = await saved_page(fay_browser)

    assert "Tap Save on a post to keep it here" in page.one("class", "empty-state saved-empty").text
    assert chips(page) == {"All saved": "0", "Unfiled": "0", "current": "All saved"}
    assert grid(page) == []


async def test_shows_my_saves_by_collection_and_only_posts_i_can_still_see(
    app: Any,
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    fay: Person,
    fay_browser: Browser,
) -> None:
    async with client_for(app, "198.51.100.82") as api:
        gus = await sign_up(api, "gus_glaze")
    bowl = await make_post(client, ctx, maker, caption="A bowl")
    mug = await make_post(client, ctx, maker, caption="A mug")
    vase = await make_post(client, ctx, gus, caption="A vase")
    jug = await make_post(client, ctx, gus, caption="A jug")
    glazes = await collection(client, fay, "Glazes")
    await save(client, fay, bowl["id"])
    await save(client, fay, mug["id"], glazes)
    await save(client, fay, vase["id"], glazes)
    # someone else's saves are theirs alone
    await save(client, gus, jug["id"])
    # Gus blocks Fay: his posts are no longer hers to see, saved or not
    blocked = await client.put("/api/v1/people/fan_fay/block", headers=gus.auth)
    assert blocked.status_code == 204, blocked.text

    page = await saved_page(fay_browser)
    assert grid(page) == [mug["id"], bowl["id"]]  # newest save first
    assert chips(page) == {"All saved": "2", "Glazes": "1", "Unfiled": "1", "current": "All saved"}

    in_glazes = await saved_page(fay_browser, f"?collection={glazes}")
    assert grid(in_glazes) == [mug["id"]]
    assert chips(in_glazes)["current"] == "Glazes"
    assert in_glazes.one("class", "saved-title").text == "Glazes"

    unfiled = await saved_page(fay_browser, "?collection=unfiled")
    assert grid(unfiled) == [bowl["id"]]
    assert chips(unfiled)["current"] == "Unfiled"


async def test_more_pages_through_the_grid(
    client: httpx.AsyncClient,
    ctx: AppContext,
    maker: Person,
    fay: Person,
    fay_browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("craftreel.posts.saved_views.GRID_PAGE", 2)
    made = [await make_post(client, ctx, maker, caption=f"Post {n}") for n in range(3)]
    for post in made:
        await save(client, fay, post["id"])

    first = await saved_page(fay_browser)
    assert grid(first) == [made[2]["id"], made[1]["id"]]
    more = first.one("class", "grid-more").one("href")
    assert more.attrs["href"].startswith("/saved?cursor=")

    rest = await fay_browser.get(more.attrs["href"], headers={"HX-Request": "true"})
    assert rest.status_code == 200, rest.text
    tiles = parse(rest.text)
    assert grid(tiles) == [made[0]["id"]]
    assert tiles.all("class", "grid-more") == []


async def test_someone_elses_or_a_missing_collection_is_not_found(
    client: httpx.AsyncClient, maker: Person, fay_browser: Browser
) -> None:
    theirs = await collection(client, maker, "Mine")

    for query in (f"?collection={theirs}", "?collection=not-an-id"):
        response = await fay_browser.get(f"/saved{query}")
        assert response.status_code == 404, query
        assert "That collection does not exist." in response.text


# --- the forms -------------------------------------------------------------------------------


async def test_create_rename_and_delete_a_collection_through_the_forms(
    client: httpx.AsyncClient, ctx: AppContext, maker: Person, fay: Person, fay_browser: Browser
) -> None:
    bowl = await make_post(client, ctx, maker, caption="A bowl")
    await save(client, fay, bowl["id"])

    # create: the page opens on the new (empty) collection, with a toast
    made = await fay_browser.post("/saved/collections", {"name": "  Kiln   ideas "})
    assert made.status_code == 303, made.text
    assert made.headers["location"].startswith("/saved?collection=")
    collection_url = made.headers["location"]
    page = parse((await fay_browser.get(collection_url)).text)
    assert page.one("class", "saved-title").text == "Kiln ideas"
    assert "“Kiln ideas” created." in page.one("id", "toasts").text
    assert "This collection is empty" in page.one("class", "empty-state saved-empty").text
    collection_id = collection_url.split("=", 1)[1]
    await save(client, fay, bowl["id"], collection_id)

    # rename
    renamed = await fay_browser.post(
        f"/saved/collections/{collection_id}/rename", {"name": "Glaze ideas"}
    )
    assert renamed.status_code == 303, renamed.text
    assert await my_collections(client, fay) == {"Glaze ideas": 1}
    page = parse((await fay_browser.get(renamed.headers["location"])).text)
    assert page.one("class", "saved-title").text == "Glaze ideas"
    assert grid(page) == [bowl["id"]]

    # delete: the confirm sheet's form; the post stays saved, unfiled
    sheet = page.one("id", "saved-delete-sheet")
    form = sheet.one("method", "post")
    assert form.attrs["action"] == f"/saved/collections/{collection_id}/delete"
    deleted = await fay_browser.post(form.attrs["action"])
    assert deleted.status_code == 303, deleted.text
    assert deleted.headers["location"] == "/saved?collection=unfiled"
    assert await my_collections(client, fay) == {}
    unfiled = parse((await fay_browser.get(deleted.headers["location"])).text)
    assert grid(unfiled) == [bowl["id"]]
    assert "Its posts are still saved" in unfiled.one("id", "toasts").text


async def test_bad_names_are_turned_down_and_change_nothing(
    client: httpx.AsyncClient, fay: Person, fay_browser: Browser
) -> None:
    glazes = await collection(client, fay, "Glazes")
    await collection(client, fay, "Clay")

    empty = await fay_browser.post("/saved/collections", {"name": "   "})
    assert empty.status_code == 400
    page = parse(empty.text)
    assert error_text(page) == "Give the collection a name."
    assert page.all("class", "saved-disclosure")[0].attrs.get("open") == ""

    taken = await fay_browser.post("/saved/collections", {"name": " Glazes "})
    assert taken.status_code == 409
    page = parse(taken.text)
    assert error_text(page) == "You already have a collection with that name."
    # what was typed stays in the field, to fix
    assert page.one("id", "saved-new-name").attrs["value"] == " Glazes "

    too_long = await fay_browser.post("/saved/collections", {"name": "x" * 61})
    assert too_long.status_code == 400
    assert "at most 60 characters" in error_text(parse(too_long.text))

    clash = await fay_browser.post(f"/saved/collections/{glazes}/rename", {"name": "Clay"})
    assert clash.status_code == 409
    page = parse(clash.text)
    assert error_text(page) == "You already have a collection with that name."
    assert page.one("id", "saved-rename-name").attrs["value"] == "Clay"

    blank = await fay_browser.post(f"/saved/collections/{glazes}/rename", {"name": ""})
    assert blank.status_code == 400
    assert error_text(parse(blank.text)) == "Give the collection a name."

    assert await my_collections(client, fay) == {"Clay": 0, "Glazes": 0}


async def test_forms_need_the_csrf_token_and_my_own_collection(
    client: httpx.AsyncClient, maker: Person, fay: Person, fay_browser: Browser
) -> None:
    theirs = await collection(client, maker, "Theirs")

    forged = await fay_browser.client.post("/saved/collections", data={"name": "Sneaky"})
    assert forged.status_code == 403
    for action in ("rename", "delete"):
        response = await fay_browser.post(f"/saved/collections/{theirs}/{action}", {"name": "Mine"})
        assert response.status_code == 404, action

    assert await my_collections(client, fay) == {}
    assert await my_collections(client, maker) == {"Theirs": 0}


async def test_my_profile_and_settings_link_to_saved(
    client: httpx.AsyncClient, maker: Person, fay_browser: Browser
) -> None:
    mine = parse((await fay_browser.get("/@fan_fay")).text)
    assert [a.text for a in mine.all("href", "/saved")] == ["Saved"]
    theirs = parse((await fay_browser.get("/@kiln_kit")).text)
    assert theirs.all("href", "/saved") == []
    settings = parse((await fay_browser.get("/settings")).text)
    assert len(settings.all("href", "/saved")) == 1
