"""The seller's money pages, driven as a browser would: the dashboard's balance and payouts,
an order's refund form (all or part, with a reason) and cancelling before shipping — and that
no seller can touch another shop's orders."""

from __future__ import annotations

import re
from uuid import UUID

import httpx
from sqlalchemy import select

from craftreel.context import AppContext
from craftreel.shop.models import Variant
from craftreel.shop.payments import LedgerEntry, Refund
from tests.accounts.test_pages import Browser
from tests.shop import test_payments, test_views
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_payments import StripeWorld, run_jobs
from tests.shop.test_views import (
    BrowserFactory,
    add_to_cart,
    checkout_form,
    count,
    field_error,
    hidden,
    order_id_from,
    order_status,
    text_of,
    web_person,
)

# The fixtures these tests share with the other shop pages' and the Stripe tests.
shop_app = test_views.shop_app
api = test_views.api
browsers = test_views.browsers
stand_in = test_payments.stand_in
stripe = test_payments.stripe


async def _paid_order(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext, prefix: str
) -> tuple[Browser, Browser, str, str]:
    """A seller signed in on one browser, a buyer on another, and a paid order of 2 mugs
    (£12.50 each, £3.95 delivery, 20 % tax: £34.74): (seller, buyer, order id, variant id)."""
    seller_person, mug = await seller_with_listing(api, f"{prefix}maker", stock=5)
    seller = browsers(f"203.0.113.{len(prefix)}")
    assert (await seller.sign_in(seller_person.email)).status_code == 303
    buyer, _ = await web_person(api, browsers, f"{prefix}buyer", f"203.0.113.{len(prefix) + 50}")
    variant_id = mug["variants"][0]["id"]
    await add_to_cart(buyer, variant_id, 2)
    order_id = order_id_from(await buyer.post("/checkout", await checkout_form(buyer)))
    await run_jobs(ctx)
    assert await order_status(ctx, order_id) == "paid"
    return seller, buyer, order_id, variant_id


async def stock_of(ctx: AppContext, variant_id: str) -> int | None:
    async with ctx.sessions() as session:
        variant = await session.get(Variant, UUID(variant_id))
        assert variant is not None
        return variant.stock


async def test_the_dashboard_shows_the_balance_and_links_each_order_to_its_refunds(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller, _, order_id, _ = await _paid_order(api, browsers, ctx, "dash")
    page = await seller.get("/sell")
    seen = text_of(page)
    # £34.74 sold, less the 5 % fee (£1.74): the balance; the test provider needs no setup.
    assert "Money Balance £33.00" in seen
    assert "built-in test provider, so there is nothing to set up" in seen
    assert "Set up payouts" not in seen
    assert f'href="/sell/orders/{order_id}"' in page.text


async def test_a_partial_refund_from_the_dashboard_with_a_reason(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller, buyer, order_id, _ = await _paid_order(api, browsers, ctx, "part")
    page = await seller.get(f"/sell/orders/{order_id}")
    assert page.status_code == 200
    assert "Left to refund £34.74" in text_of(page)
    form = {"key": hidden(page.text, "key"), "refund": "part", "reason": "damaged"}

    # Too much, not a price, or nothing at all: the form again, with the error by the field.
    too_much = await seller.post(f"/sell/orders/{order_id}/refund", {**form, "amount": "40.00"})
    assert too_much.status_code == 409
    assert (
        field_error(too_much.text, "field-amount")
        == "That is more than is left to refund on this order."
    )
    assert 'value="40.00"' in too_much.text  # what the seller typed stays
    for typed, message in (("lots", "Enter a price like 12.50."), ("", "Enter how much")):
        refused = await seller.post(f"/sell/orders/{order_id}/refund", {**form, "amount": typed})
        assert refused.status_code == 400
        assert field_error(refused.text, "field-amount").startswith(message)
    assert await count(ctx, Refund) == 0

    # £5.00 back, sent twice (a double tap): one refund.
    done = await seller.post(f"/sell/orders/{order_id}/refund", {**form, "amount": "5"})
    again = await seller.post(f"/sell/orders/{order_id}/refund", {**form, "amount": "5"})
    assert done.status_code == again.status_code == 303
    assert done.headers["location"] == f"/sell/orders/{order_id}"
    shown = text_of(await seller.get(f"/sell/orders/{order_id}"))
    assert "Refunded £5.00 to the buyer’s card." in shown
    assert "Refunded £5.00 Left to refund £29.74" in shown
    assert "£5.00 It arrived damaged" in shown
    async with ctx.sessions() as session:
        [refund] = (await session.scalars(select(Refund))).all()
    assert (refund.amount, refund.reason, refund.status) == (500, "damaged", "succeeded")
    assert await order_status(ctx, order_id) == "paid"  # a partial refund keeps it going

    # The buyer cannot use the seller's page.
    assert (await buyer.get(f"/sell/orders/{order_id}")).status_code == 404


async def test_the_seller_cancels_before_shipping_stock_back_rest_refunded(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller, _, order_id, variant_id = await _paid_order(api, browsers, ctx, "stop")
    assert await stock_of(ctx, variant_id) == 3
    page = await seller.get(f"/sell/orders/{order_id}")
    await seller.post(
        f"/sell/orders/{order_id}/refund",
        {"key": hidden(page.text, "key"), "refund": "part", "amount": "4.74", "reason": "other"},
    )

    cancelled = await seller.post(f"/sell/orders/{order_id}/cancel")
    assert cancelled.status_code == 303
    shown = text_of(await seller.get(f"/sell/orders/{order_id}"))
    assert "Order cancelled and £30.00 refunded. Its stock is back on sale." in shown
    assert "Refunded £34.74 Left to refund £0.00" in shown
    assert "Cancel order" not in shown and "Everything left" not in shown
    assert await order_status(ctx, order_id) == "cancelled"
    assert await stock_of(ctx, variant_id) == 5
    async with ctx.sessions() as session:
        amounts = (await session.scalars(select(LedgerEntry.amount))).all()
    assert sum(amounts) == 0

    again = await seller.post(f"/sell/orders/{order_id}/cancel")
    assert again.status_code == 409
    assert "This order can no longer be cancelled." in text_of(again)
    assert await stock_of(ctx, variant_id) == 5


async def test_a_seller_cannot_touch_another_shops_order(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, _, order_id, variant_id = await _paid_order(api, browsers, ctx, "mine")
    rival_person, _ = await seller_with_listing(api, "rivalmaker")
    rival = browsers("203.0.113.200")
    assert (await rival.sign_in(rival_person.email)).status_code == 303
    rival_page = await rival.get("/sell")
    assert order_id not in rival_page.text

    assert (await rival.get(f"/sell/orders/{order_id}")).status_code == 404
    refund = await rival.post(
        f"/sell/orders/{order_id}/refund",
        {"key": "rival-key-123456", "refund": "part", "amount": "1.00", "reason": "other"},
    )
    assert refund.status_code == 404
    cancel = await rival.post(f"/sell/orders/{order_id}/cancel")
    assert cancel.status_code == 404
    assert await count(ctx, Refund) == 0
    assert await order_status(ctx, order_id) == "paid"
    assert await stock_of(ctx, variant_id) == 3
    # Signed out, nothing at all.
    anonymous = browsers("203.0.113.201")
    response = await anonymous.get(f"/sell/orders/{order_id}")
    assert response.status_code in (303, 401)
    assert re.search(r"/signin", response.headers.get("location", "/signin"))


async def test_set_up_payouts_from_the_dashboard_with_stripe(stripe: StripeWorld) -> None:
    seller_person, _ = await seller_with_listing(stripe.client, "stripemaker")
    transport = httpx.ASGITransport(app=stripe.app, client=("203.0.113.90", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        seller = Browser(client)
        assert (await seller.sign_in(seller_person.email)).status_code == 303
        before = text_of(await seller.get("/sell"))
        assert "Not set up Set up payouts to take card payments and be paid." in before

        # The button makes the Express account and sends the seller on to Stripe.
        started = await seller.post("/sell/payouts/onboarding")
        assert started.status_code == 303
        assert started.headers["location"].startswith(f"{stripe.stand_in.url}/express/onboarding/")
        [account] = stripe.stand_in.accounts
        assert "Setup not finished" in text_of(await seller.get("/sell"))

        # Back from Stripe before its webhook: the account is asked how it stands now.
        stripe.stand_in.update_account(
            account, details_submitted=True, charges_enabled=True, payouts_enabled=True
        )
        back = await seller.get("/sell/payouts/return")
        assert (back.status_code, back.headers["location"]) == (303, "/sell#payouts")
        page = text_of(await seller.get("/sell"))
        assert "Payouts on. Card payments go to your Stripe account" in page
        assert "Update payout details" in page and "No payouts yet." in page

        # A lapsed link: the refresh address makes a fresh one.
        fresh = await seller.get("/sell/payouts/refresh")
        assert fresh.status_code == 303 and account in fresh.headers["location"]

        # Stripe pays the seller out: the payout is listed and the balance goes down.
        assert (
            await stripe.deliver(stripe.stand_in.payout(account, 1500, "paid"))
        ).status_code == 200
        page = text_of(await seller.get("/sell"))
        assert "Balance -£15.00" in page
        assert "Paid out £15.00" in page
