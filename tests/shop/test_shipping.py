"""Shipping profiles: a seller's delivery methods with rates by country, the buyer's choice at
checkout, what an order keeps of it — and the flat rates of before, moved over unchanged."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from craftreel.accounts import schemas as account_schemas
from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.cli import alembic_config, migrate
from craftreel.config import Settings
from craftreel.context import build_context
from craftreel.core.clock import utcnow
from craftreel.core.ids import uuid7
from craftreel.core.money import apply_rate
from craftreel.shop import service as shop_service
from craftreel.shop.models import (
    Checkout,
    Listing,
    Order,
    ShippingMethod,
    ShippingProfile,
    Variant,
)
from craftreel.shop.repository import WITH_SHIPPING
from tests.conftest import PASSWORD, PG_URL, Outbox, _recreate_pg_database
from tests.factories import Person, sign_up
from tests.shop.test_checkout import ADDRESS, seller_with_listing
from tests.shop.test_payments import SUCCESS, api, pay, run_jobs

__all__ = ["api"]  # the payments app fixture, used by the receipt test

PROFILES = "/api/v1/shops/mine/shipping-profiles"
SMALL_PARCEL = {
    "name": "Small parcel",
    "methods": [
        {
            "name": "Standard",
            "min_days": 3,
            "max_days": 5,
            "rates": {"GB": 395, "*": 1200},
            "free_over": 5000,
        },
        {"name": "Express", "min_days": 1, "max_days": 2, "rates": {"GB": 850}},
    ],
}
FURNITURE = {
    "name": "Furniture",
    "methods": [{"name": "Courier", "min_days": 5, "max_days": 10, "rates": {"GB": 4500}}],
}


async def new_profile(client: httpx.AsyncClient, seller: Person, body: dict[str, Any]) -> Any:
    made = await client.post(PROFILES, headers=seller.auth, json=body)
    assert made.status_code == 201, made.text
    return made.json()


async def listing_in(
    client: httpx.AsyncClient,
    seller: Person,
    profile_id: str | None,
    title: str,
    price: int,
    kind: str = "physical",
) -> dict[str, Any]:
    """A published listing of ``seller``'s shop that travels under ``profile_id``."""
    body: dict[str, Any] = {
        "title": title,
        "category": "pottery",
        "kind": kind,
        "variants": [{"name": "One", "price_minor": price, "stock": 9}],
    }
    if profile_id is not None:
        body["shipping_profile_id"] = profile_id
    made = await client.post("/api/v1/listings", headers=seller.auth, json=body)
    assert made.status_code == 201, made.text
    published = await client.post(
        f"/api/v1/listings/{made.json()['id']}/publish", headers=seller.auth
    )
    assert published.status_code == 200, published.text
    return dict(published.json())


async def add(
    client: httpx.AsyncClient, buyer: Person, listing: dict[str, Any], n: int = 1
) -> None:
    added = await client.post(
        "/api/v1/cart/lines",
        headers=buyer.auth,
        json={"variant_id": listing["variants"][0]["id"], "quantity": n},
    )
    assert added.status_code == 200, added.text


async def checkout(
    client: httpx.AsyncClient,
    buyer: Person,
    key: str,
    methods: list[str] | None = None,
    country: str = "GB",
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"shipping_address": dict(ADDRESS, country=country), **extra}
    if methods is not None:
        body["shipping_methods"] = methods
    return await client.post(
        "/api/v1/checkouts", headers={**buyer.auth, "Idempotency-Key": key}, json=body
    )


def method_id(profile: dict[str, Any], name: str) -> str:
    return str(next(m["id"] for m in profile["methods"] if m["name"] == name))


async def counts(ctx: Any) -> tuple[int, int]:
    async with ctx.sessions() as session:
        checkouts = await session.scalar(select(func.count()).select_from(Checkout))
        orders = await session.scalar(select(func.count()).select_from(Order))
    return int(checkouts or 0), int(orders or 0)


# --- a seller's profiles ----------------------------------------------------------------


async def test_a_new_shop_has_a_default_profile_from_its_flat_rates(
    client: httpx.AsyncClient,
) -> None:
    seller, mug = await seller_with_listing(client, "flat")
    profiles = (await client.get(PROFILES, headers=seller.auth)).json()
    assert [(p["name"], p["is_default"], p["listings"]) for p in profiles] == [("Default", True, 1)]
    (standard,) = profiles[0]["methods"]
    assert (standard["name"], standard["rates"], standard["free_over"]) == (
        "Standard",
        {"GB": 395, "*": 1200},
        5000,
    )
    assert mug["shipping_profile_id"] == profiles[0]["id"]
    # A download has nothing to send, so no profile.
    pattern = await listing_in(client, seller, None, "Glaze notes (PDF)", 700, kind="digital")
    assert pattern["shipping_profile_id"] is None


async def test_a_seller_creates_edits_defaults_and_deletes_profiles(
    client: httpx.AsyncClient,
) -> None:
    seller, _ = await seller_with_listing(client, "editor")
    small = await new_profile(client, seller, SMALL_PARCEL)
    assert (small["is_default"], small["currency"]) == (False, "GBP")
    assert [(m["name"], m["estimate"]) for m in small["methods"]] == [
        ("Standard", "3–5 days"),
        ("Express", "1–2 days"),
    ]
    taken = await client.post(PROFILES, headers=seller.auth, json=dict(SMALL_PARCEL))
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "shipping_profile_name_taken"

    # An edit changes the methods sent with an id, adds those without, removes the rest.
    standard_id = method_id(small, "Standard")
    edited = await client.put(
        f"{PROFILES}/{small['id']}",
        headers=seller.auth,
        json={
            "name": "Small parcels",
            "methods": [
                {"id": standard_id, "name": "Standard", "rates": {"GB": 450}},
                {"name": "Next day", "min_days": 1, "max_days": 1, "rates": {"GB": 1500}},
            ],
        },
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["name"] == "Small parcels"
    assert [
        (m["id"] == standard_id, m["name"], m["rates"], m["estimate"]) for m in body["methods"]
    ] == [
        (True, "Standard", {"GB": 450}, None),
        (False, "Next day", {"GB": 1500}, "1 day"),
    ]
    stranger = await client.put(
        f"{PROFILES}/{small['id']}",
        headers=seller.auth,
        json={"name": "X", "methods": [{"id": str(uuid7()), "name": "A", "rates": {"*": 1}}]},
    )
    assert stranger.status_code == 400
    assert stranger.json()["error"]["code"] == "unknown_shipping_method"

    # The default changes; new listings get it; the old default cannot be deleted while a
    # listing uses it, the new default not at all.
    made_default = await client.post(f"{PROFILES}/{small['id']}/default", headers=seller.auth)
    assert made_default.status_code == 200 and made_default.json()["is_default"] is True
    profiles = (await client.get(PROFILES, headers=seller.auth)).json()
    assert [(p["name"], p["is_default"]) for p in profiles] == [
        ("Small parcels", True),
        ("Default", False),
    ]
    cup = await listing_in(client, seller, None, "Cup", 900)
    assert cup["shipping_profile_id"] == small["id"]
    in_use = await client.delete(f"{PROFILES}/{profiles[1]['id']}", headers=seller.auth)
    assert in_use.status_code == 409
    assert in_use.json()["error"]["code"] == "shipping_profile_in_use"
    default = await client.delete(f"{PROFILES}/{small['id']}", headers=seller.auth)
    assert default.status_code == 409
    assert default.json()["error"]["code"] == "default_shipping_profile"
    spare = await new_profile(client, seller, FURNITURE)
    assert (
        await client.delete(f"{PROFILES}/{spare['id']}", headers=seller.auth)
    ).status_code == 204
    assert len((await client.get(PROFILES, headers=seller.auth)).json()) == 2


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"rates": {"gb": 395}}, ["methods", "0", "rates", "gb", "[key]"]),
        ({"rates": {"GBR": 395}}, ["methods", "0", "rates", "GBR", "[key]"]),
        ({"rates": {"G1": 395}}, ["methods", "0", "rates", "G1", "[key]"]),
        ({"rates": {"GB": -1}}, ["methods", "0", "rates", "GB"]),
        ({"rates": {}}, ["methods", "0", "rates"]),
        ({"free_over": -5}, ["methods", "0", "free_over"]),
        ({"name": "   "}, ["methods", "0", "name"]),
        ({"min_days": 5, "max_days": 2}, ["methods", "0"]),
        ({"price": 0}, ["methods", "0", "price"]),
    ],
)
async def test_a_bad_profile_is_refused_with_the_field_named(
    client: httpx.AsyncClient, change: dict[str, Any], where: list[str]
) -> None:
    seller, _ = await seller_with_listing(client, "sloppy")
    method = {"name": "Standard", "rates": {"GB": 395}, **change}
    refused = await client.post(
        PROFILES, headers=seller.auth, json={"name": "Parcels", "methods": [method]}
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert ["body", *where] in [field["loc"] for field in error["details"]["fields"]]
    assert len((await client.get(PROFILES, headers=seller.auth)).json()) == 1


async def test_a_profile_needs_a_name_methods_and_different_method_names(
    client: httpx.AsyncClient,
) -> None:
    seller, _ = await seller_with_listing(client, "unnamed")
    standard = {"name": "Standard", "rates": {"GB": 395}}
    for body in (
        {"name": "", "methods": [standard]},
        {"name": "Parcels", "methods": []},
        {"name": "Parcels", "methods": [standard, dict(standard, name="standard")]},
    ):
        refused = await client.post(PROFILES, headers=seller.auth, json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "validation_error"


async def test_a_seller_cannot_see_edit_use_or_delete_another_shops_profiles(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    seller, _ = await seller_with_listing(client, "owner")
    rival, _ = await seller_with_listing(client, "rival")
    small = await new_profile(client, seller, SMALL_PARCEL)
    path = f"{PROFILES}/{small['id']}"
    for response in (
        await client.get(path, headers=rival.auth),
        await client.put(path, headers=rival.auth, json=FURNITURE),
        await client.post(f"{path}/default", headers=rival.auth),
        await client.delete(path, headers=rival.auth),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "shipping_profile_not_found"
    stolen = await client.post(
        "/api/v1/listings",
        headers=rival.auth,
        json={
            "title": "Copycat mug",
            "category": "pottery",
            "shipping_profile_id": small["id"],
            "variants": [{"name": "x", "price_minor": 100, "stock": 1}],
        },
    )
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "shipping_profile_not_found"
    assert [p["name"] for p in (await client.get(PROFILES, headers=rival.auth)).json()] == [
        "Default"
    ]
    assert (await client.get(path, headers=seller.auth)).json() == small
    async with ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Listing)) == 2


# --- the buyer's choice -----------------------------------------------------------------


async def test_the_chosen_method_sets_the_shipping_and_the_tax(
    client: httpx.AsyncClient,
) -> None:
    seller, _ = await seller_with_listing(client, "chooser")
    small = await new_profile(client, seller, SMALL_PARCEL)
    mug = await listing_in(client, seller, small["id"], "Mug", 1250)
    buyer = await sign_up(client, "picky")
    await add(client, buyer, mug, 2)

    quote = (await client.get("/api/v1/cart/quote?country=GB", headers=buyer.auth)).json()
    (group,) = quote["shops"][0]["delivery"]
    assert group["profile_name"] == "Small parcel"
    # Cheapest first, and the cheapest is chosen until the buyer says otherwise.
    assert [(o["name"], o["amount"], o["estimate"], o["chosen"]) for o in group["options"]] == [
        ("Standard", 395, "3–5 days", True),
        ("Express", 850, "1–2 days", False),
    ]
    assert quote["shipping_total"] == 395
    express = method_id(small, "Express")
    priced = await client.get(f"/api/v1/cart/quote?country=GB&method={express}", headers=buyer.auth)
    assert priced.json()["shipping_total"] == 850

    placed = await checkout(client, buyer, "express", [express])
    assert placed.status_code == 201, placed.text
    (order,) = placed.json()["orders"]
    assert order["shipping_total"] == 850
    assert order["tax_total"] == apply_rate(2500 + 850, 2000)
    assert order["total"] == 2500 + 850 + apply_rate(3350, 2000)
    assert order["shipping"] == [
        {
            "profile": "Small parcel",
            "method": "Express",
            "method_id": express,
            "min_days": 1,
            "max_days": 2,
            "estimate": "1–2 days",
            "amount": 850,
        }
    ]
    # Prices are the server's: a client cannot send its own.
    other = await sign_up(client, "cheeky")
    await add(client, other, mug)
    sneaky = await checkout(client, other, "cheap", [express], shipping_total=0)
    assert sneaky.status_code == 422
    default = await checkout(client, other, "default")
    assert default.json()["orders"][0]["shipping"][0]["method"] == "Standard"
    assert default.json()["shipping_total"] == 395

    # The seller edits the profile afterwards: the placed order keeps what it was charged.
    await client.put(
        f"{PROFILES}/{small['id']}",
        headers=seller.auth,
        json={"name": "Small parcel", "methods": [{"name": "Standard", "rates": {"*": 99}}]},
    )
    seen = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.auth)).json()
    assert (seen["shipping_total"], seen["shipping"][0]["method"]) == (850, "Express")


async def test_free_over_is_per_method(client: httpx.AsyncClient) -> None:
    seller, _ = await seller_with_listing(client, "generous")
    small = await new_profile(client, seller, SMALL_PARCEL)
    vase = await listing_in(client, seller, small["id"], "Vase", 2600)
    buyer = await sign_up(client, "bigspender")
    await add(client, buyer, vase, 2)  # £52 of items: Standard is free over £50, Express never

    quote = (await client.get("/api/v1/cart/quote?country=GB", headers=buyer.auth)).json()
    options = quote["shops"][0]["delivery"][0]["options"]
    assert [(o["name"], o["amount"], o["free_over"]) for o in options] == [
        ("Standard", 0, 5000),
        ("Express", 850, None),
    ]
    express = await checkout(client, buyer, "fast", [method_id(small, "Express")])
    assert express.json()["shipping_total"] == 850


async def test_a_method_or_profile_that_does_not_go_to_the_country_is_refused(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    seller, _ = await seller_with_listing(client, "homebody")
    small = await new_profile(client, seller, SMALL_PARCEL)
    furniture = await new_profile(client, seller, FURNITURE)
    mug = await listing_in(client, seller, small["id"], "Mug", 1250)
    stool = await listing_in(client, seller, furniture["id"], "Stool", 9000)
    buyer = await sign_up(client, "abroad")
    await add(client, buyer, mug)

    # Express goes to GB only; Standard goes everywhere.
    quote = (await client.get("/api/v1/cart/quote?country=US", headers=buyer.auth)).json()
    assert [o["name"] for o in quote["shops"][0]["delivery"][0]["options"]] == ["Standard"]
    refused = await checkout(client, buyer, "us-express", [method_id(small, "Express")], "US")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "no_shipping_to_country"
    assert await counts(ctx) == (0, 0)
    assert (await checkout(client, buyer, "us-standard", country="US")).json()[
        "shipping_total"
    ] == 1200

    # Furniture goes nowhere but GB: the quote says so, checkout refuses, nothing is held.
    other = await sign_up(client, "farfrom")
    await add(client, other, stool)
    quote = (await client.get("/api/v1/cart/quote?country=FR", headers=other.auth)).json()
    assert quote["shops"][0]["ships_to_country"] is False
    assert quote["shops"][0]["delivery"][0]["options"] == []
    assert quote["problems"] == ["homebody studio does not ship to FR."]
    refused = await checkout(client, other, "fr", country="FR")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "no_shipping_to_country"
    assert await counts(ctx) == (1, 1)
    async with ctx.sessions() as session:
        variant = await session.get(Variant, UUID(stool["variants"][0]["id"]))
        assert variant is not None and variant.stock == 9


async def test_a_buyer_cannot_pick_another_shops_or_an_unused_profiles_method(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    seller, _ = await seller_with_listing(client, "ours")
    other_seller, _ = await seller_with_listing(client, "theirs")
    ours = await new_profile(client, seller, SMALL_PARCEL)
    unused = await new_profile(client, seller, FURNITURE)
    theirs = await new_profile(client, other_seller, {**SMALL_PARCEL, "name": "Cheap"})
    mug = await listing_in(client, seller, ours["id"], "Mug", 1250)
    buyer = await sign_up(client, "trickster")
    await add(client, buyer, mug)
    for method in (
        method_id(theirs, "Standard"),
        method_id(unused, "Courier"),
        str(uuid7()),
    ):
        refused = await checkout(client, buyer, f"k-{method}", [method])
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "shipping_method_not_offered"
    twice = await checkout(
        client, buyer, "twice", [method_id(ours, "Standard"), method_id(ours, "Express")]
    )
    assert twice.status_code == 400
    assert twice.json()["error"]["code"] == "one_shipping_method_per_parcel"
    assert await counts(ctx) == (0, 0)
    # The quote shows only this cart's methods, whatever is asked.
    quote = await client.get(
        f"/api/v1/cart/quote?country=GB&method={method_id(theirs, 'Standard')}",
        headers=buyer.auth,
    )
    assert quote.json()["shipping_total"] == 395


async def test_one_shops_listings_under_several_profiles_add_up_per_profile(
    client: httpx.AsyncClient,
) -> None:
    seller, _ = await seller_with_listing(client, "mixed")
    small = await new_profile(client, seller, SMALL_PARCEL)
    furniture = await new_profile(client, seller, FURNITURE)
    mug = await listing_in(client, seller, small["id"], "Mug", 1250)
    cup = await listing_in(client, seller, small["id"], "Cup", 900)
    stool = await listing_in(client, seller, furniture["id"], "Stool", 9000)
    pattern = await listing_in(client, seller, None, "Notes (PDF)", 500, kind="digital")
    buyer = await sign_up(client, "furnisher")
    await add(client, buyer, mug, 2)
    await add(client, buyer, cup)
    await add(client, buyer, pattern)

    # Small parcel alone: one rate for the whole parcel, however many lines and units.
    quote = (await client.get("/api/v1/cart/quote?country=GB", headers=buyer.auth)).json()
    assert [g["profile_name"] for g in quote["shops"][0]["delivery"]] == ["Small parcel"]
    assert quote["shipping_total"] == 395

    # With a stool: each profile's method once, summed. Free-over looks at the whole shop
    # order (£124 of items), so the Small parcel's Standard is free now.
    await add(client, buyer, stool)
    quote = (await client.get("/api/v1/cart/quote?country=GB", headers=buyer.auth)).json()
    groups = quote["shops"][0]["delivery"]
    assert [(g["profile_name"], len(g["titles"])) for g in groups] == [
        ("Small parcel", 2),
        ("Furniture", 1),
    ]
    assert quote["shipping_total"] == 0 + 4500
    placed = await checkout(client, buyer, "both", [method_id(small, "Express")])
    assert placed.status_code == 201, placed.text
    (order,) = placed.json()["orders"]
    assert order["shipping_total"] == 850 + 4500
    assert [(c["profile"], c["method"], c["amount"]) for c in order["shipping"]] == [
        ("Small parcel", "Express", 850),
        ("Furniture", "Courier", 4500),
    ]
    assert order["items_total"] == 2 * 1250 + 900 + 500 + 9000


async def test_a_repeated_checkout_replays_and_another_method_with_the_key_is_refused(
    client: httpx.AsyncClient, ctx: Any
) -> None:
    seller, _ = await seller_with_listing(client, "steady")
    small = await new_profile(client, seller, SMALL_PARCEL)
    mug = await listing_in(client, seller, small["id"], "Mug", 1250)
    buyer = await sign_up(client, "repeater")
    await add(client, buyer, mug)
    express = [method_id(small, "Express")]
    first = await checkout(client, buyer, "one-key", express)
    again = await checkout(client, buyer, "one-key", express)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await checkout(client, buyer, "one-key", [method_id(small, "Standard")])
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await counts(ctx) == (1, 1)


async def test_receipt_order_pages_and_shipping_mail_name_the_method(
    api: httpx.AsyncClient, ctx: Any, outbox: Outbox
) -> None:
    client = api
    seller, _ = await seller_with_listing(client, "teller")
    small = await new_profile(client, seller, SMALL_PARCEL)
    mug = await listing_in(client, seller, small["id"], "Mug", 1250)
    buyer = await sign_up(client, "reader")
    await add(client, buyer, mug)
    placed = (await checkout(client, buyer, "mail", [method_id(small, "Express")])).json()
    paid = await pay(client, buyer, placed["id"], SUCCESS, "pay")
    assert paid.status_code == 201, paid.text
    await run_jobs(ctx)
    receipt = outbox.last_to(buyer.email).get_payload(decode=True)
    assert isinstance(receipt, bytes)
    assert "Shipping, Express (1–2 days): £8.50" in receipt.decode()

    order_id = placed["orders"][0]["id"]
    to_ship = (
        await client.get("/api/v1/shops/mine/orders?status=paid", headers=seller.auth)
    ).json()
    assert to_ship["items"][0]["shipping_method"] == "Express (1–2 days)"
    as_seller = (await client.get(f"/api/v1/orders/{order_id}", headers=seller.auth)).json()
    assert as_seller["shipping"][0]["method"] == "Express"
    shipped = await client.post(
        f"/api/v1/orders/{order_id}/ship",
        headers=seller.auth,
        json={"carrier": "Royal Mail", "tracking_number": "RM1GB"},
    )
    assert shipped.status_code == 200, shipped.text
    notice = outbox.last_to(buyer.email).get_payload(decode=True)
    assert isinstance(notice, bytes)
    assert "Delivery: Express (1–2 days)" in notice.decode()


# --- the migration ----------------------------------------------------------------------


def _fresh_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    assert PG_URL
    return asyncio.run(_recreate_pg_database(PG_URL, f"craftreel_mig_{os.getpid()}"))


OLD_SHOPS = sa.table(
    "shops",
    *(sa.column(n, sa.Uuid()) for n in ("id", "owner_id")),
    *(sa.column(n) for n in ("handle", "name", "currency", "origin_country")),
    *(sa.column(n) for n in ("shipping_policy", "returns_policy")),
    sa.column("shipping_rates", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
OLD_LISTINGS = sa.table(
    "listings",
    *(sa.column(n, sa.Uuid()) for n in ("id", "shop_id")),
    *(sa.column(n) for n in ("title", "description", "category", "kind", "status")),
    sa.column("photo_media_ids", sa.JSON()),
    *(sa.column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
)
OLD_VARIANTS = sa.table(
    "variants",
    *(sa.column(n, sa.Uuid()) for n in ("id", "listing_id")),
    *(sa.column(n) for n in ("name", "price_minor", "stock", "position")),
)
OLD_CART = sa.table(
    "cart_lines",
    *(sa.column(n, sa.Uuid()) for n in ("buyer_id", "variant_id")),
    sa.column("quantity"),
    sa.column("added_at", sa.DateTime(timezone=True)),
)
OLD_CHECKOUTS = sa.table(
    "checkouts",
    *(sa.column(n, sa.Uuid()) for n in ("id", "buyer_id")),
    *(sa.column(n) for n in ("status", "currency", "items_total", "shipping_total")),
    *(sa.column(n) for n in ("tax_total", "total")),
    sa.column("shipping_address", sa.JSON()),
    *(sa.column(n, sa.DateTime(timezone=True)) for n in ("expires_at", "created_at")),
)
OLD_ORDERS = sa.table(
    "orders",
    *(sa.column(n, sa.Uuid()) for n in ("id", "checkout_id", "shop_id", "buyer_id")),
    *(sa.column(n) for n in ("status", "currency", "items_total", "shipping_total")),
    *(sa.column(n) for n in ("tax_total", "total")),
    *(sa.column(n, sa.DateTime(timezone=True)) for n in ("created_at", "updated_at")),
)

#: (handle, flat rates as stored before 0012, [(kind, price)])
OLD = [
    ("flat", {"rates": {"GB": 395, "*": 1200}, "free_over": 5000}, [("physical", 1250)]),
    ("homeonly", {"rates": {"GB": 500}}, [("made_to_order", 3000)]),
    ("included", {}, [("physical", 2000), ("digital", 700)]),
]


def test_the_migration_turns_flat_rates_into_a_default_profile_with_the_same_totals(
    backend: str, tmp_path: Path
) -> None:
    url = _fresh_url(backend, tmp_path)
    settings = Settings(
        environment="test",  # type: ignore[arg-type]
        database_url=url,  # type: ignore[arg-type]
        var_dir=tmp_path / "var",
        log_json=False,
        log_level="WARNING",
    )
    try:
        # People made by today's app, then the schema of 0011 with shops stored its way.
        migrate(settings, "head")
        people = asyncio.run(_people(settings))
        command.downgrade(alembic_config(settings), "0011")
        buyer_id, variant_ids = asyncio.run(_old_shops(settings, people))
        migrate(settings, "head")
        asyncio.run(_same_totals(settings, buyer_id, variant_ids))
        # Going back gives each shop its flat table again (from its default profile).
        command.downgrade(alembic_config(settings), "0011")
        assert asyncio.run(_flat_rates(settings)) == {
            "flat": {"rates": {"GB": 395, "*": 1200}, "free_over": 5000},
            "homeonly": {"rates": {"GB": 500}},
            "included": {"rates": {"*": 0}},
        }
    finally:
        if backend == "postgresql":
            asyncio.run(_drop_pg_database(url))


async def _flat_rates(settings: Settings) -> dict[str, Any]:
    ctx = build_context(settings)
    try:
        async with ctx.engine.connect() as conn:
            rows = await conn.execute(sa.select(OLD_SHOPS.c.handle, OLD_SHOPS.c.shipping_rates))
            return {handle: rates for handle, rates in rows.all()}
    finally:
        await ctx.close()


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


async def _people(settings: Settings) -> dict[str, UUID]:
    """The buyer and the shops' owners, signed up by today's app (on a database at head)."""
    ctx = build_context(settings)
    people = {}
    try:
        for handle in ["buyer", *(h for h, _, _ in OLD)]:
            client = accounts.Client(ip=f"mig-{handle}", device="test")
            async with ctx.uow() as uow:
                made = await accounts.sign_up(
                    ctx,
                    uow,
                    account_schemas.SignUp(
                        email=f"{handle}@example.org", handle=f"m{handle}", password=PASSWORD
                    ),
                    client,
                )
                people[handle] = made.id
    finally:
        await ctx.close()
    return people


async def _old_shops(
    settings: Settings, people: dict[str, UUID]
) -> tuple[UUID, dict[str, list[UUID]]]:
    """Shops, listings, a cart and an order as they were stored at revision 0011."""
    ctx = build_context(settings)
    now = utcnow()
    variant_ids: dict[str, list[UUID]] = {}
    try:
        async with ctx.engine.begin() as conn:
            for handle, rates, listings in OLD:
                shop_id = uuid7()
                await conn.execute(
                    OLD_SHOPS.insert().values(
                        id=shop_id,
                        owner_id=people[handle],
                        handle=handle,
                        name=handle,
                        currency="GBP",
                        origin_country="GB",
                        shipping_policy="",
                        returns_policy="",
                        shipping_rates=rates,
                        created_at=now,
                    )
                )
                for kind, price in listings:
                    listing_id, variant_id = uuid7(), uuid7()
                    await conn.execute(
                        OLD_LISTINGS.insert().values(
                            id=listing_id,
                            shop_id=shop_id,
                            title=f"{handle} {kind}",
                            description="",
                            category="pottery",
                            kind=kind,
                            status="active",
                            photo_media_ids=[],
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    await conn.execute(
                        OLD_VARIANTS.insert().values(
                            id=variant_id,
                            listing_id=listing_id,
                            name="One",
                            price_minor=price,
                            stock=None if kind != "physical" else 50,
                            position=0,
                        )
                    )
                    variant_ids.setdefault(handle, []).append(variant_id)
                if handle == "flat":
                    checkout_id = uuid7()
                    await conn.execute(
                        OLD_CHECKOUTS.insert().values(
                            id=checkout_id,
                            buyer_id=people["buyer"],
                            status="paid",
                            currency="GBP",
                            items_total=1250,
                            shipping_total=395,
                            tax_total=329,
                            total=1974,
                            shipping_address=ADDRESS,
                            expires_at=now + timedelta(minutes=15),
                            created_at=now,
                        )
                    )
                    await conn.execute(
                        OLD_ORDERS.insert().values(
                            id=uuid7(),
                            checkout_id=checkout_id,
                            shop_id=shop_id,
                            buyer_id=people["buyer"],
                            status="paid",
                            currency="GBP",
                            items_total=1250,
                            shipping_total=395,
                            tax_total=329,
                            total=1974,
                            created_at=now,
                            updated_at=now,
                        )
                    )
        return people["buyer"], variant_ids
    finally:
        await ctx.close()


async def _same_totals(
    settings: Settings, buyer_id: UUID, variant_ids: dict[str, list[UUID]]
) -> None:
    """After 0012: each shop has a default profile of its old rates, its listings use it
    (downloads none), and the cart costs to each country exactly what the old rule said."""
    ctx = build_context(settings)
    try:
        async with ctx.sessions() as session:
            profiles = (await session.scalars(select(ShippingProfile))).all()
            assert [(p.name, p.is_default) for p in profiles] == [("Default", True)] * 3
            methods = (await session.scalars(select(ShippingMethod))).all()
            assert sorted(
                (m.name, tuple(sorted(m.rates.items())), m.free_over) for m in methods
            ) == [
                ("Standard", (("*", 0),), None),
                ("Standard", (("*", 1200), ("GB", 395)), 5000),
                ("Standard", (("GB", 500),), None),
            ]
            listings = (await session.scalars(select(Listing).options(WITH_SHIPPING))).all()
            assert all(
                (listing.shipping_profile_id is None) == (listing.kind == "digital")
                for listing in listings
            )
            (order,) = (await session.scalars(select(Order))).all()
            assert (order.shipping_choices, order.total) == ([], 1974)

        async def quote(handle: str, quantity: int, country: str) -> tuple[int, bool]:
            async with ctx.uow() as uow:
                await uow.session.execute(sa.delete(OLD_CART))
                for variant_id in variant_ids[handle]:
                    await uow.session.execute(
                        OLD_CART.insert().values(
                            buyer_id=buyer_id,
                            variant_id=variant_id,
                            quantity=quantity,
                            added_at=utcnow(),
                        )
                    )
            async with ctx.uow() as uow:
                buyer = await uow.session.get(User, buyer_id)
                assert buyer is not None
                priced = await shop_service.quote(ctx, uow, buyer, country)
            (shop,) = priced.shops
            return shop.shipping_total, shop.ships_to_country

        # What the flat rules charged before: the country's rate, else "*", free over the
        # amount; no table at all meant shipping included; no rate and no "*": not served.
        assert await quote("flat", 1, "GB") == (395, True)
        assert await quote("flat", 1, "US") == (1200, True)
        assert await quote("flat", 4, "FR") == (0, True)  # £50 of items: free
        assert await quote("homeonly", 1, "GB") == (500, True)
        assert await quote("homeonly", 1, "FR") == (0, False)
        assert await quote("included", 1, "JP") == (0, True)
    finally:
        await ctx.close()
