"""An order that moves while the buyer watches, in Chromium at 390×844, against a real server.

A maker and a buyer have a paid order (set up through the API). The buyer has the order page
open; the maker, on another phone, marks it shipped → the buyer's page shows "Shipped" and
the tracking number, and a toast says so, without a reload. Then, with the list of orders
open, the parcel is marked delivered (through the API, as a carrier's app would) → the row's
badge turns "Delivered", again without a reload. Screenshots: tests/e2e/screenshots/live-*.png.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PHONE, Server
from tests.e2e.test_shop_journey import _api_token, _sign_up, _signed_in

pytestmark = pytest.mark.e2e

PAID_TIMEOUT_MS = 30_000
#: A form post, its redirect and the page after it, or a live update, with the whole suite
#: running on two cores: Playwright's default of 5 s was once not enough in CI (the order
#: had shipped; its page had not finished loading).
PAGE_TIMEOUT_MS = 20_000
ADDRESS = {
    "name": "Rosa Quill",
    "line1": "4 Bobbin Court",
    "city": "Bristol",
    "postcode": "BS1 5TR",
    "country": "GB",
}


def _snap(page: Page, folder: Path, step: str) -> None:
    page.screenshot(path=str(folder / f"live-{step}.png"), animations="disabled")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{step}: page is {width}px wide"


def _paid_order(server: Server, maker_email: str, buyer_email: str) -> str:
    """A shop, a listing, and the buyer's checkout paid with the test card: the order's id."""
    with httpx.Client(base_url=server.base_url, timeout=30) as api:
        maker = {"Authorization": f"Bearer {_api_token(server, maker_email)}"}
        buyer = {"Authorization": f"Bearer {_api_token(server, buyer_email)}"}
        shop = api.post(
            "/api/v1/shops",
            headers=maker,
            json={
                "name": "Quill & Loom",
                "handle": "quill-and-loom",
                "currency": "GBP",
                "shipping_rates": {"GB": 395, "*": 1200},
            },
        )
        assert shop.status_code == 201, shop.text
        listing = api.post(
            "/api/v1/listings",
            headers=maker,
            json={
                "title": "Hand-woven table runner",
                "category": "weaving",
                "variants": [{"name": "Indigo", "price_minor": 3800, "stock": 3}],
            },
        )
        assert listing.status_code == 201, listing.text
        published = api.post(f"/api/v1/listings/{listing.json()['id']}/publish", headers=maker)
        assert published.status_code == 200, published.text
        variant_id = published.json()["variants"][0]["id"]
        added = api.post(
            "/api/v1/cart/lines", headers=buyer, json={"variant_id": variant_id, "quantity": 1}
        )
        assert added.status_code == 200, added.text
        checkout = api.post(
            "/api/v1/checkouts",
            headers={**buyer, "Idempotency-Key": "live-journey"},
            json={"shipping_address": ADDRESS},
        )
        assert checkout.status_code == 201, checkout.text
        paid = api.post(
            f"/api/v1/checkouts/{checkout.json()['id']}/payments",
            headers={**buyer, "Idempotency-Key": "live-journey-pay"},
            json={"card_number": "4242424242424242", "provider": "test"},
        )
        assert paid.status_code == 201, paid.text
        return str(checkout.json()["orders"][0]["id"])


def _mark_page(page: Page) -> None:
    """Leave a mark in the page's JavaScript world: a reload would wipe it."""
    page.evaluate("window.__sameDocument = true")


def _same_page(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def test_the_buyer_sees_the_order_shipped_and_delivered_without_reloading(
    server: Server, browser: Browser, screenshots: Path
) -> None:
    maker_email = _sign_up(server, "quill_maker", "Rosa's Looms", "203.0.113.121")
    buyer_email = _sign_up(server, "rosa_buys", "Rosa Quill", "203.0.113.122")
    order_id = _paid_order(server, maker_email, buyer_email)

    # The buyer watches the order page; it is paid (the provider's webhook has landed).
    buyer_context, buyer = _signed_in(browser, server, buyer_email, f"/orders/{order_id}")
    expect(buyer.locator(".timeline-step.is-current")).to_contain_text(
        "Paid", timeout=PAID_TIMEOUT_MS
    )
    expect(buyer.locator("html[data-live=ready]")).to_have_count(1)
    _mark_page(buyer)
    _snap(buyer, screenshots, "01-buyer-order-paid")

    # The maker, on another phone, ships it.
    maker_context, maker = _signed_in(browser, server, maker_email, f"/orders/{order_id}")
    maker.get_by_label("Carrier").fill("Royal Mail")
    maker.get_by_label("Tracking number").fill("RM730055214GB")
    maker.get_by_role("button", name="Mark as shipped").click()
    expect(maker.get_by_text("Marked as shipped.")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    maker_context.close()

    # The buyer's page follows, by itself.
    expect(buyer.locator(".timeline-step.is-current")).to_contain_text(
        "Shipped", timeout=PAGE_TIMEOUT_MS
    )
    expect(buyer.locator("#order-status")).to_have_text("Shipped")
    expect(buyer.locator(".tracking-number")).to_have_text("RM730055214GB")
    expect(buyer.get_by_text("Order updated: Shipped.")).to_be_visible()
    expect(buyer.get_by_role("button", name="It has arrived")).to_be_visible()
    assert _same_page(buyer), "the order page reloaded"
    _snap(buyer, screenshots, "02-buyer-order-shipped-live")
    buyer.locator(".tracking").evaluate(
        "el => el.scrollIntoView({block: 'start', behavior: 'instant'})"
    )
    _snap(buyer, screenshots, "03-buyer-tracking-live")

    # The list of orders follows too: the parcel arrives, the row says so.
    buyer.goto("/orders")
    row = buyer.locator(f"[data-order-row='{order_id}']")
    expect(row.locator(".badge")).to_have_text("Shipped")
    expect(buyer.locator("html[data-live=ready]")).to_have_count(1)
    _mark_page(buyer)
    with httpx.Client(base_url=server.base_url) as api:
        token = _api_token(server, buyer_email)
        arrived = api.post(
            f"/api/v1/orders/{order_id}/delivered", headers={"Authorization": f"Bearer {token}"}
        )
        assert arrived.status_code == 200, arrived.text
    expect(row.locator(".badge")).to_have_text("Delivered")
    assert _same_page(buyer), "the list of orders reloaded"
    _snap(buyer, screenshots, "04-buyer-orders-delivered-live")
    buyer_context.close()


def test_a_signed_out_page_is_refused_a_socket(server: Server, browser: Browser) -> None:
    context = browser.new_context(**PHONE, base_url=server.base_url)
    page = context.new_page()
    page.goto("/")
    code = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
            ws.onclose = (event) => resolve(event.code);
        })"""
    )
    assert code == 4401
    context.close()
