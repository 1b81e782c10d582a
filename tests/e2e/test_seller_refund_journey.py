"""A seller refunds part of an order from the dashboard, on a phone (Chromium, 390×844,
against a real server).

A maker's shop and a listing of a bowl are made through the JSON API; a buyer pays for two
bowls with the test card in the browser and waits for the order to be paid → the maker opens
the dashboard (balance, the built-in provider's note on payouts), taps "Refund or cancel" on
the order, asks for too much first (the form says how much is left), then refunds £8.00 as
"It arrived damaged" → the refund is listed → the buyer's order page shows the refund.
Each step is saved to tests/e2e/screenshots/refund-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import PHONE, Server
from tests.e2e.test_shop_journey import ORDER_URL, PAID_TIMEOUT_MS, _api_token, _sign_up, _signed_in

pytestmark = pytest.mark.e2e


def _snap(page: Page, folder: Path, step: str, *, at: Locator | None = None) -> None:
    """Save what the phone shows now (scrolled to ``at`` when given); nothing may stick out
    sideways at 390 px."""
    if at is not None:
        at.evaluate("el => el.scrollIntoView({block: 'start', behavior: 'instant'})")
    page.screenshot(path=str(folder / f"refund-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _shop_with_a_bowl(server: Server, email: str) -> None:
    """The maker's shop and an active listing (£19.50 a bowl), through the JSON API."""
    token = _api_token(server, email)
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        shop = api.post(
            "/api/v1/shops",
            json={
                "name": "Tidewater Ceramics",
                "handle": "tidewater",
                "currency": "GBP",
                "shipping_rates": {"GB": 450, "*": 1400},
            },
        )
        assert shop.status_code == 201, shop.text
        listing = api.post(
            "/api/v1/listings",
            json={
                "title": "Glazed serving bowl",
                "category": "pottery",
                "variants": [{"name": "Celadon", "price_minor": 1950, "stock": 6}],
            },
        )
        assert listing.status_code == 201, listing.text
        published = api.post(f"/api/v1/listings/{listing.json()['id']}/publish")
        assert published.status_code == 200, published.text


def test_a_seller_refunds_part_of_an_order_and_the_buyer_sees_it(
    server: Server, browser: Browser, screenshots: Path
) -> None:
    maker_email = _sign_up(server, "tide_potter", "Mara Tide", "203.0.113.121")
    buyer_email = _sign_up(server, "bowl_buyer", "Otis Reed", "203.0.113.122")
    _shop_with_a_bowl(server, maker_email)

    # The buyer pays for two bowls with the test card.
    buyer_context, buyer = _signed_in(browser, server, buyer_email, "/shop/tidewater")
    buyer.get_by_role("link", name=re.compile("Glazed serving bowl")).click()
    buyer.get_by_label("Quantity").fill("2")
    buyer.get_by_role("button", name="Add to cart").click()
    expect(buyer.get_by_text("Added to your cart.")).to_be_visible()
    buyer.goto("/checkout")
    buyer.get_by_label("Full name").fill("Otis Reed")
    buyer.get_by_label(re.compile(r"^Address")).fill("4 Harbour Lane")
    buyer.get_by_label("Town or city").fill("Whitby")
    buyer.get_by_label("Postcode").fill("YO21 3PU")
    buyer.get_by_label("Card number").fill("4242 4242 4242 4242")
    # 2 × £19.50 + £4.50 delivery + 20 % tax = £52.20
    buyer.get_by_role("button", name="Pay £52.20").click()
    expect(buyer).to_have_url(ORDER_URL)
    found = ORDER_URL.search(buyer.url)
    assert found
    order_id = found.group(1)
    expect(buyer.locator(".timeline-step.is-current")).to_contain_text(
        "Paid", timeout=PAID_TIMEOUT_MS
    )

    # The maker's dashboard: the balance, and (with the built-in provider) no payout setup.
    maker_context, maker = _signed_in(browser, server, maker_email, "/sell")
    money = maker.locator("#payouts")
    expect(money).to_contain_text("Balance")
    expect(money).to_contain_text("nothing to set up for payouts")
    _snap(maker, screenshots, "01-dashboard-money", at=money)
    row = maker.locator("#to-ship li", has_text=order_id.replace("-", "")[-8:].upper())
    _snap(maker, screenshots, "02-dashboard-order", at=maker.locator("#to-ship"))
    row.get_by_role("link", name=re.compile("Refund or cancel")).click()
    expect(maker.get_by_role("heading", name="Refunds and cancelling")).to_be_visible()
    expect(maker.locator(".stat-grid")).to_contain_text(re.compile(r"Left to refund\s*£52\.20"))
    _snap(maker, screenshots, "03-order-money")

    # Too much first: the form stays, with the amount left next to the field.
    maker.get_by_label("How much").select_option("part")
    maker.get_by_label(re.compile(r"^Amount to refund")).fill("60")
    maker.get_by_label("Reason").select_option("damaged")
    _snap(maker, screenshots, "04-refund-form", at=maker.locator("#refund-title"))
    maker.get_by_role("button", name="Refund", exact=True).click()
    expect(maker.get_by_text("That is more than is left to refund on this order.")).to_be_visible()
    expect(maker.get_by_label(re.compile(r"^Amount to refund"))).to_have_value("60")
    _snap(maker, screenshots, "05-refund-too-much", at=maker.locator("#refund-title"))

    # £8.00 back, because one bowl arrived chipped.
    maker.get_by_label(re.compile(r"^Amount to refund")).fill("8.00")
    maker.get_by_role("button", name="Refund", exact=True).click()
    expect(maker.get_by_text("Refunded £8.00 to the buyer’s card.")).to_be_visible()
    expect(maker.locator(".stat-grid")).to_contain_text(re.compile(r"Left to refund\s*£44\.20"))
    refunds = maker.locator("#refunds-title + .list")
    expect(refunds).to_contain_text("£8.00")
    expect(refunds).to_contain_text("It arrived damaged")
    _snap(maker, screenshots, "06-refunded")
    maker.reload()  # the toast has had its say
    _snap(maker, screenshots, "06b-refunds-list", at=maker.locator("#refunds-title"))

    # The buyer's order page shows the refund (shop/_refund_note.html, included by the page).
    buyer.goto(f"/orders/{order_id}")
    note = buyer.locator("#order-refund-note")
    expect(note).to_contain_text("£8.00 is refunded to your card.")
    _snap(buyer, screenshots, "07-buyer-sees-refund")
    maker_context.close()
    buyer_context.close()
