"""After checkout: shipping, delivery, completion, history, the seller dashboard, reviews."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx

from craftreel.context import AppContext
from tests.conftest import Outbox
from tests.factories import Person, sign_up
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_payments import api, paid_purchase


async def paid_order(
    client: httpx.AsyncClient, ctx: AppContext, seller_handle: str, buyer_handle: str
) -> tuple[Person, Person, dict[str, Any]]:
    """A checkout paid with the test card, its webhook handled: the order is paid."""
    bought = await paid_purchase(client, ctx, seller_handle, buyer_handle, quantity=2)
    return bought.seller, bought.buyer, bought.checkout["orders"][0]


async def test_seller_ships_buyer_receives_and_reviews(
    api: httpx.AsyncClient, ctx: AppContext, outbox: Outbox
) -> None:
    client = api
    seller, buyer, order = await paid_order(client, ctx, "shipper", "receiver")
    dash = (await client.get("/api/v1/shops/mine/dashboard", headers=seller.auth)).json()
    assert (dash["to_ship"], dash["revenue"]) == (1, {"GBP": order["total"]})
    to_ship = (
        await client.get("/api/v1/shops/mine/orders?status=paid", headers=seller.auth)
    ).json()
    assert [o["id"] for o in to_ship["items"]] == [order["id"]]

    shipped = await client.post(
        f"/api/v1/orders/{order['id']}/ship",
        headers=seller.auth,
        json={"carrier": "Royal Mail", "tracking_number": "RM123456789GB"},
    )
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "shipped"
    notice = outbox.last_to(buyer.email)
    assert "RM123456789GB" in notice.get_payload()  # type: ignore[operator]
    again = await client.post(
        f"/api/v1/orders/{order['id']}/ship",
        headers=seller.auth,
        json={"carrier": "DHL", "tracking_number": "X"},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "wrong_order_state"

    line_id = await client.get(f"/api/v1/checkouts/{order['id']}", headers=buyer.auth)
    assert line_id.status_code == 404  # an order id is not a checkout id
    early = await client.post(
        f"/api/v1/order-lines/{await _line_id(ctx, order['id'])}/review",
        headers=buyer.auth,
        json={"stars": 5, "text": "Lovely"},
    )
    assert early.status_code == 409  # not arrived yet

    assert (
        await client.post(f"/api/v1/orders/{order['id']}/delivered", headers=buyer.auth)
    ).json()["status"] == "delivered"
    line = await _line_id(ctx, order["id"])
    reviewed = await client.post(
        f"/api/v1/order-lines/{line}/review", headers=buyer.auth, json={"stars": 4, "text": "Nice"}
    )
    assert reviewed.status_code == 201
    twice = await client.post(
        f"/api/v1/order-lines/{line}/review", headers=buyer.auth, json={"stars": 1}
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_reviewed"
    review_id = reviewed.json()["id"]
    reply = await client.post(
        f"/api/v1/reviews/{review_id}/reply", headers=seller.auth, json={"text": "Thank you!"}
    )
    assert reply.json()["reply"] == "Thank you!"
    reply_again = await client.post(
        f"/api/v1/reviews/{review_id}/reply", headers=seller.auth, json={"text": "Again"}
    )
    assert reply_again.status_code == 409
    completed = await client.post(f"/api/v1/orders/{order['id']}/complete", headers=buyer.auth)
    assert completed.json()["status"] == "completed"
    dash = (await client.get("/api/v1/shops/mine/dashboard", headers=seller.auth)).json()
    assert (dash["to_ship"], dash["rating"], dash["reviews"]) == (0, 4.0, 1)


async def _line_id(ctx: AppContext, order_id: str) -> str:
    from sqlalchemy import select

    from craftreel.shop.models import OrderLine

    async with ctx.sessions() as session:
        line = await session.scalar(select(OrderLine).where(OrderLine.order_id == UUID(order_id)))
    assert line is not None
    return str(line.id)


async def test_people_only_see_and_touch_their_own_orders(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    client = api
    seller, buyer, order = await paid_order(client, ctx, "privateshop", "privatebuyer")
    other_seller, _ = await seller_with_listing(client, "othershop")
    stranger = await sign_up(client, "nosy")
    assert (await client.get("/api/v1/orders", headers=stranger.auth)).json()["items"] == []
    mine = (await client.get("/api/v1/orders", headers=buyer.auth)).json()["items"]
    assert [o["id"] for o in mine] == [order["id"]]
    for who in (other_seller, buyer, stranger):
        refused = await client.post(
            f"/api/v1/orders/{order['id']}/ship",
            headers=who.auth,
            json={"carrier": "x", "tracking_number": "y"},
        )
        assert refused.status_code == 404
    assert (await client.get("/api/v1/shops/mine/orders", headers=other_seller.auth)).json()[
        "items"
    ] == []
    nosy_review = await client.post(
        f"/api/v1/order-lines/{await _line_id(ctx, order['id'])}/review",
        headers=stranger.auth,
        json={"stars": 1},
    )
    assert nosy_review.status_code == 404
    _ = seller


__all__ = ["api"]  # the fixture, imported for these tests
