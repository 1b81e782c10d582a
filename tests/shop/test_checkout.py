"""Shops, listings, the cart and checkout: money exact, stock never oversold."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select, update

from craftreel.accounts import schemas as account_schemas
from craftreel.accounts import service as accounts
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.money import apply_rate
from craftreel.shop import service as shop_service
from craftreel.shop.models import Checkout, Order, Variant
from tests.conftest import PASSWORD
from tests.factories import Person, sign_up

ADDRESS = {
    "name": "Lea Martin",
    "line1": "1 Loom Lane",
    "city": "Leeds",
    "postcode": "LS1 1AA",
    "country": "GB",
}


async def seller_with_listing(
    client: httpx.AsyncClient, handle: str, stock: int = 5, price: int = 1250
) -> tuple[Person, dict[str, Any]]:
    seller = await sign_up(client, handle)
    shop = await client.post(
        "/api/v1/shops",
        headers=seller.auth,
        json={
            "name": f"{handle} studio",
            "handle": f"{handle}-studio",
            "currency": "GBP",
            "shipping_rates": {"GB": 395, "*": 1200},
            "free_shipping_over": 5000,
        },
    )
    assert shop.status_code == 201, shop.text
    listing = await client.post(
        "/api/v1/listings",
        headers=seller.auth,
        json={
            "title": "Speckled mug",
            "category": "pottery",
            "variants": [{"name": "Blue", "price_minor": price, "stock": stock}],
        },
    )
    assert listing.status_code == 201, listing.text
    published = await client.post(
        f"/api/v1/listings/{listing.json()['id']}/publish", headers=seller.auth
    )
    assert published.status_code == 200
    return seller, published.json()


async def checkout(
    client: httpx.AsyncClient, buyer: Person, key: str, address: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/api/v1/checkouts",
        headers={**buyer.auth, "Idempotency-Key": key},
        json={"shipping_address": address or ADDRESS},
    )


async def test_checkout_totals_and_one_order_per_shop(client: httpx.AsyncClient) -> None:
    _, mug = await seller_with_listing(client, "potter")
    _, scarf = await seller_with_listing(client, "knitter", price=3000)
    buyer = await sign_up(client, "shopper")
    for listing, quantity in ((mug, 2), (scarf, 1)):
        added = await client.post(
            "/api/v1/cart/lines",
            headers=buyer.auth,
            json={"variant_id": listing["variants"][0]["id"], "quantity": quantity},
        )
        assert added.status_code == 200, added.text
    cart = (await client.get("/api/v1/cart", headers=buyer.auth)).json()
    assert cart["items_total"] == {"GBP": 2 * 1250 + 3000}

    response = await checkout(client, buyer, "first-try")
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["orders"]) == 2
    mug_order = next(o for o in body["orders"] if o["shop_handle"] == "potter-studio")
    # 2 × £12.50 + £3.95 shipping, then 20% UK tax on both, rounded half up.
    assert mug_order["items_total"] == 2500
    assert mug_order["shipping_total"] == 395
    assert mug_order["tax_total"] == apply_rate(2895, 2000) == 579
    assert mug_order["total"] == 3474
    assert body["total"] == sum(o["total"] for o in body["orders"])
    # The cart is empty and the stock is held.
    assert (await client.get("/api/v1/cart", headers=buyer.auth)).json()["lines"] == []
    listing = (await client.get(f"/api/v1/listings/{mug['id']}")).json()
    assert listing["variants"][0]["stock"] == 3


async def test_free_shipping_over_an_amount_and_unknown_country_rate(
    client: httpx.AsyncClient,
) -> None:
    _, mug = await seller_with_listing(client, "bigpotter", price=2600)
    buyer = await sign_up(client, "bigbuyer")
    variant_id = mug["variants"][0]["id"]
    await client.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id, "quantity": 2}
    )
    body = (await checkout(client, buyer, "k1", dict(ADDRESS, country="US"))).json()
    # Over £50 of items: free shipping; the US has no tax rate configured (the * rate is 0).
    assert (body["shipping_total"], body["tax_total"], body["total"]) == (0, 0, 5200)


async def test_idempotency_key_replays_the_first_result(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(client, "careful", stock=3)
    buyer = await sign_up(client, "twice")
    variant_id = mug["variants"][0]["id"]
    await client.post("/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id})
    first = await checkout(client, buyer, "same-key")
    again = await checkout(client, buyer, "same-key")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other_body = await checkout(client, buyer, "same-key", dict(ADDRESS, city="York"))
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    no_key = await client.post(
        "/api/v1/checkouts", headers=buyer.auth, json={"shipping_address": ADDRESS}
    )
    assert no_key.status_code == 400
    async with ctx.sessions() as session:
        assert len((await session.scalars(select(Checkout))).all()) == 1
        variant = await session.get(Variant, UUID(variant_id))
        assert variant is not None and variant.stock == 2


async def test_client_cannot_set_status_or_shop_and_sellers_stay_apart(
    client: httpx.AsyncClient,
) -> None:
    seller, mug = await seller_with_listing(client, "honest")
    rival = await sign_up(client, "rival")
    sneaky = await client.post(
        "/api/v1/listings",
        headers=seller.auth,
        json={
            "title": "Free mug",
            "category": "pottery",
            "status": "active",
            "variants": [{"name": "x", "price_minor": 1}],
        },
    )
    assert sneaky.status_code == 422
    no_shop = await client.post(
        "/api/v1/listings",
        headers=rival.auth,
        json={"title": "x", "category": "paper", "variants": [{"name": "x", "price_minor": 1}]},
    )
    assert no_shop.status_code == 409 and no_shop.json()["error"]["code"] == "no_shop"
    archived = await client.post(f"/api/v1/listings/{mug['id']}/archive", headers=rival.auth)
    assert archived.status_code == 404
    assert (await client.get(f"/api/v1/listings/{mug['id']}")).json()["status"] == "active"


async def test_cart_rechecks_stock_when_shown(client: httpx.AsyncClient, ctx: AppContext) -> None:
    _, mug = await seller_with_listing(client, "scarce", stock=2)
    buyer = await sign_up(client, "hopeful")
    variant_id = mug["variants"][0]["id"]
    await client.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id, "quantity": 2}
    )
    too_many = await client.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id}
    )
    assert too_many.status_code == 409 and too_many.json()["error"]["code"] == "out_of_stock"
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Variant).where(Variant.id == UUID(variant_id)).values(stock=1)
        )
    cart = (await client.get("/api/v1/cart", headers=buyer.auth)).json()
    assert cart["lines"][0]["availability"] == "not_enough_stock"
    assert cart["items_total"] == {}
    refused = await checkout(client, buyer, "k")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "out_of_stock"
    async with ctx.sessions() as session:
        assert (await session.scalars(select(Order))).all() == []
        variant = await session.get(Variant, UUID(variant_id))
        assert variant is not None and variant.stock == 1


async def test_fifty_buyers_race_for_the_last_unit(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(client, "lastone", stock=1)
    variant_id = mug["variants"][0]["id"]
    buyers: list[Person] = []
    for n in range(50):
        # Through the service, each from an address of its own (the API's per-address
        # sign-up and sign-in limits would rightly stop fifty from one address).
        client_info = accounts.Client(ip=f"race-{n}", device="test")
        async with ctx.uow() as uow:
            await accounts.sign_up(
                ctx,
                uow,
                account_schemas.SignUp(
                    email=f"racer{n}@example.org", handle=f"racer{n}", password=PASSWORD
                ),
                client_info,
            )
        async with ctx.uow() as uow:
            tokens = await accounts.api_sign_in(
                ctx,
                uow,
                account_schemas.SignIn(email=f"racer{n}@example.org", password=PASSWORD),
                client_info,
            )
        buyer = Person(
            f"racer{n}",
            f"racer{n}@example.org",
            tokens.access_token,
            tokens.refresh_token,
            str(tokens.session_id),
        )
        added = await client.post(
            "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id}
        )
        assert added.status_code == 200
        buyers.append(buyer)

    responses = await asyncio.gather(*(checkout(client, b, f"race-{b.handle}") for b in buyers))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 49
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "out_of_stock"
    }
    async with ctx.sessions() as session:
        orders = (await session.scalars(select(Order))).all()
        variant = await session.get(Variant, UUID(variant_id))
    assert len(orders) == 1
    assert variant is not None and variant.stock == 0


async def test_lapsed_checkout_gives_its_stock_back_once(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(client, "patient", stock=4)
    buyer = await sign_up(client, "dawdler")
    variant_id = mug["variants"][0]["id"]
    await client.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id, "quantity": 3}
    )
    checkout_id = UUID((await checkout(client, buyer, "slow")).json()["id"])

    async with ctx.uow() as uow:
        assert await shop_service.expire_checkout(uow, checkout_id) is False  # not yet
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Checkout)
            .where(Checkout.id == checkout_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    results = []
    for _ in range(2):
        async with ctx.uow() as uow:
            results.append(await shop_service.expire_checkout(uow, checkout_id))
    assert results == [True, False]
    async with ctx.sessions() as session:
        variant = await session.get(Variant, UUID(variant_id))
        order = await session.scalar(select(Order))
    assert variant is not None and variant.stock == 4
    assert order is not None and order.status == "cancelled"
    seen = (await client.get(f"/api/v1/checkouts/{checkout_id}", headers=buyer.auth)).json()
    assert seen["status"] == "expired"


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [(2895, 2000, 579), (1, 2000, 0), (3, 2000, 1), (25, 2000, 5), (1005, 750, 75), (0, 2000, 0)],
)
def test_rates_round_half_up_in_integers(amount: int, rate: int, expected: int) -> None:
    assert apply_rate(amount, rate) == expected
