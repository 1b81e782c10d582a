"""Shoppable video: product tags at time ranges and chapters, and "get the kit"."""

from __future__ import annotations

import httpx
import pytest

from craftreel.context import AppContext
from tests.factories import sign_up
from tests.posts.factories import make_post
from tests.shop.test_checkout import seller_with_listing

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_tags_show_in_the_post_for_their_range(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker, yarn = await seller_with_listing(client, "yarnmaker", price=1800)
    _, needles = await seller_with_listing(client, "needlemaker", price=900)
    post = await make_post(
        client,
        ctx,
        maker,
        caption="Socks",
        chapters=[{"at": 0, "title": "Cast on"}, {"at": 42, "title": "Cuff"}],
    )
    by_time = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": yarn["id"], "start_s": 5, "end_s": 30},
        headers=maker.auth,
    )
    assert by_time.status_code == 201, by_time.text
    by_chapter = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": needles["id"], "chapter_index": 1},
        headers=maker.auth,
    )
    assert by_chapter.status_code == 201, by_chapter.text
    assert (by_chapter.json()["start_s"], by_chapter.json()["end_s"]) == (42.0, None)
    viewer = await sign_up(client, "watcher")
    shown = (await client.get(f"/api/v1/posts/{post['id']}", headers=viewer.auth)).json()
    assert [
        (p["title"], p["start_s"], p["end_s"], p["price_minor"]) for p in shown["products"]
    ] == [
        (yarn["title"], 5.0, 30.0, 1800),
        (needles["title"], 42.0, None, 900),
    ]
    assert shown["products"][0]["url"] == f"/listings/{yarn['id']}"
    # An archived listing stops showing; removing a tag removes it.
    await client.post(f"/api/v1/listings/{yarn['id']}/archive", headers=maker.auth)
    listed = (await client.get(f"/api/v1/posts/{post['id']}/products")).json()
    assert [p["listing_id"] for p in listed] == [needles["id"]]
    removed = await client.delete(
        f"/api/v1/posts/{post['id']}/products/{by_chapter.json()['id']}", headers=maker.auth
    )
    assert removed.status_code == 204
    assert (await client.get(f"/api/v1/posts/{post['id']}/products")).json() == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"start_s": 95}, 400),  # after the 90 s video ends
        ({"chapter_index": 5}, 400),
        ({"start_s": 10, "end_s": 5}, 422),
        ({}, 422),
    ],
)
async def test_bad_tags_are_refused(
    client: httpx.AsyncClient, ctx: AppContext, body: dict[str, object], status: int
) -> None:
    maker, mug = await seller_with_listing(client, "mugmaker")
    post = await make_post(client, ctx, maker)
    response = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": mug["id"], **body},
        headers=maker.auth,
    )
    assert response.status_code == status, response.text
    assert (await client.get(f"/api/v1/posts/{post['id']}/products")).json() == []


async def test_only_the_author_tags_and_only_listings_on_sale(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker, mug = await seller_with_listing(client, "author")
    other = await sign_up(client, "intruder")
    post = await make_post(client, ctx, maker)
    intrusion = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": mug["id"], "start_s": 0},
        headers=other.auth,
    )
    assert intrusion.status_code == 404
    draft = await client.post(
        "/api/v1/listings",
        headers=maker.auth,
        json={
            "title": "Not yet",
            "category": "pottery",
            "variants": [{"name": "One", "price_minor": 100, "stock": 1}],
        },
    )
    assert draft.status_code == 201, draft.text
    unlisted = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": draft.json()["id"], "start_s": 0},
        headers=maker.auth,
    )
    assert unlisted.status_code == 404
    assert unlisted.json()["error"]["code"] == "listing_not_found"


async def test_get_the_kit_adds_everything_available_at_once(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    maker, yarn = await seller_with_listing(client, "kitmaker", stock=5, price=1200)
    _, needles = await seller_with_listing(client, "kitneedles", stock=0, price=700)
    _, pattern = await seller_with_listing(client, "kitpattern", stock=3, price=400)
    post = await make_post(
        client, ctx, maker, materials=["Merino yarn", "3 mm needles", "Pattern", "Love"]
    )
    kit = await client.put(
        f"/api/v1/posts/{post['id']}/kit",
        json={
            "items": [
                {"material_index": 0, "listing_id": yarn["id"], "quantity": 2},
                {"material_index": 1, "listing_id": needles["id"]},
                {"material_index": 2, "listing_id": pattern["id"]},
            ]
        },
        headers=maker.auth,
    )
    assert kit.status_code == 200, kit.text
    items = kit.json()["items"]
    assert [(i["material"], i["available"]) for i in items] == [
        ("Merino yarn", True),
        ("3 mm needles", False),
        ("Pattern", True),
    ]
    bad = await client.put(
        f"/api/v1/posts/{post['id']}/kit",
        json={"items": [{"material_index": 9, "listing_id": yarn["id"]}]},
        headers=maker.auth,
    )
    assert bad.status_code == 400
    assert len((await client.get(f"/api/v1/posts/{post['id']}/kit")).json()["items"]) == 3
    buyer = await sign_up(client, "kitbuyer")
    added = await client.post(f"/api/v1/posts/{post['id']}/kit/cart", headers=buyer.auth)
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["added"] == [yarn["id"], pattern["id"]]
    assert body["skipped"] == [needles["id"]]
    assert sorted((line["title"], line["quantity"]) for line in body["cart"]["lines"]) == sorted(
        [
            (f"{yarn['title']} — {yarn['variants'][0]['name']}", 2),
            (f"{pattern['title']} — {pattern['variants'][0]['name']}", 1),
        ]
    )
    assert body["cart"]["items_total"] == {"GBP": 2 * 1200 + 400}


async def test_add_to_cart_from_a_chip(client: httpx.AsyncClient, ctx: AppContext) -> None:
    maker, mug = await seller_with_listing(client, "chipmaker", stock=1)
    post = await make_post(client, ctx, maker)
    tag = await client.post(
        f"/api/v1/posts/{post['id']}/products",
        json={"listing_id": mug["id"], "start_s": 0},
        headers=maker.auth,
    )
    chip = tag.json()
    assert chip["variant_id"] == mug["variants"][0]["id"] and chip["available"] is True
    buyer = await sign_up(client, "chipbuyer")
    added = await client.post(
        f"/api/v1/posts/{post['id']}/products/{chip['id']}/cart", json={}, headers=buyer.auth
    )
    assert added.status_code == 200, added.text
    assert added.json() == {
        "listing_id": mug["id"],
        "variant_id": chip["variant_id"],
        "cart_count": 1,
    }
    # Only one unit exists: a second add is refused and the cart keeps one.
    again = await client.post(
        f"/api/v1/posts/{post['id']}/products/{chip['id']}/cart", json={}, headers=buyer.auth
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "out_of_stock"
    cart = (await client.get("/api/v1/cart", headers=buyer.auth)).json()
    assert [line["quantity"] for line in cart["lines"]] == [1]
    # A tag of another post, or no sign-in, adds nothing.
    other = await make_post(client, ctx, maker)
    wrong = await client.post(
        f"/api/v1/posts/{other['id']}/products/{chip['id']}/cart", json={}, headers=buyer.auth
    )
    assert wrong.status_code == 404
    anonymous = await client.post(f"/api/v1/posts/{post['id']}/products/{chip['id']}/cart", json={})
    assert anonymous.status_code == 401
