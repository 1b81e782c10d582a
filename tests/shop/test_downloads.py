"""Digital listings after payment: where the file is kept (a recorded key, so a new secret key
loses nothing), what a replaced file leaves (nothing), and the order's journey (delivered by
its download at once: nothing to ship, nothing to cancel)."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from craftreel.app import create_app
from craftreel.config import Settings
from craftreel.context import AppContext, build_context
from craftreel.shop.models import Listing, OrderLine
from tests.conftest import Outbox, client_for
from tests.factories import Person, sign_in, sign_up
from tests.shop.test_checkout import checkout, seller_with_listing
from tests.shop.test_payments import SUCCESS, order_statuses, pay, run_jobs
from tests.shop.test_views import (
    BrowserFactory,
    api,
    browsers,
    checkout_form,
    order_id_from,
    shop_app,
    text_of,
    web_person,
)

PDF_1 = b"%PDF-1.4\n% first edition\n%%EOF\n"
PDF_2 = b"%PDF-1.7\n% second edition, with the cuff chart fixed\n%%EOF\n"


async def digital_listing(
    client: httpx.AsyncClient, seller: Person, title: str = "Mitten pattern"
) -> dict[str, Any]:
    made = await client.post(
        "/api/v1/listings",
        headers=seller.auth,
        json={
            "title": title,
            "category": "knitting",
            "kind": "digital",
            "variants": [{"name": "PDF", "price_minor": 600}],
        },
    )
    assert made.status_code == 201, made.text
    published = await client.post(
        f"/api/v1/listings/{made.json()['id']}/publish", headers=seller.auth
    )
    assert published.status_code == 200
    return dict(published.json())


async def attach(
    client: httpx.AsyncClient, seller: Person, listing_id: str, pdf: bytes, name: str
) -> None:
    attached = await client.put(
        f"/api/v1/listings/{listing_id}/file",
        headers=seller.auth,
        files={"file": (name, pdf, "application/pdf")},
    )
    assert attached.status_code == 204, attached.text


async def buy(
    client: httpx.AsyncClient, ctx: AppContext, buyer: Person, variant_ids: list[str], key: str
) -> dict[str, Any]:
    """Put the variants in the cart, check out, pay with the success card; the checkout."""
    for variant_id in variant_ids:
        added = await client.post(
            "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id}
        )
        assert added.status_code == 200, added.text
    started = await checkout(client, buyer, key)
    assert started.status_code == 201, started.text
    paid = await pay(client, buyer, started.json()["id"], SUCCESS, f"pay-{key}")
    assert paid.status_code == 201, paid.text
    await run_jobs(ctx)
    return dict(started.json())


async def file_of(ctx: AppContext, listing_id: str) -> tuple[str | None, str | None]:
    async with ctx.sessions() as session:
        listing = await session.get(Listing, UUID(listing_id))
        assert listing is not None
        return listing.digital_file_key, listing.digital_file_name


async def line_of(ctx: AppContext, order_id: str) -> str:
    async with ctx.sessions() as session:
        return str(
            (
                await session.scalars(
                    select(OrderLine.id).where(OrderLine.order_id == UUID(order_id))
                )
            ).one()
        )


async def downloaded(
    client: httpx.AsyncClient, buyer: Person, order_id: str, line_id: str
) -> bytes:
    link = await client.get(
        f"/api/v1/orders/{order_id}/lines/{line_id}/download", headers=buyer.auth
    )
    assert link.status_code == 200, link.text
    assert link.json()["url"].startswith("/media/_s/")
    pdf = await client.get(link.json()["url"])
    assert pdf.status_code == 200, pdf.text
    return pdf.content


async def test_a_new_secret_key_keeps_every_download_and_a_replaced_file_is_deleted(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    seller = await sign_up(api, "patternist")
    await api.post(
        "/api/v1/shops", headers=seller.auth, json={"name": "Patterns", "handle": "patternist"}
    )
    pattern = await digital_listing(api, seller)
    assert pattern["has_file"] is False
    await attach(api, seller, pattern["id"], PDF_1, "mittens-v1.pdf")
    first_key, name = await file_of(ctx, pattern["id"])
    assert first_key and re.fullmatch(rf"media/{pattern['id']}/[0-9a-f]{{32}}\.pdf", first_key)
    assert name == "mittens-v1.pdf"
    assert (await api.get(f"/api/v1/listings/{pattern['id']}")).json()["has_file"] is True
    # Private: the public media route never serves it.
    assert (await api.get(f"/media/{first_key}")).status_code == 404

    buyer = await sign_up(api, "mittenfan")
    bought = await buy(api, ctx, buyer, [pattern["variants"][0]["id"]], "mittens")
    order_id = bought["orders"][0]["id"]
    line_id = await line_of(ctx, order_id)
    assert await downloaded(api, buyer, order_id, line_id) == PDF_1

    # The seller replaces the file: a new key; the old file is gone once that is committed.
    await attach(api, seller, pattern["id"], PDF_2, "mittens-v2.pdf")
    second_key, name = await file_of(ctx, pattern["id"])
    assert second_key and second_key != first_key and name == "mittens-v2.pdf"
    assert await ctx.storage.stat(first_key) is None
    assert await ctx.storage.stat(second_key) is not None
    assert await downloaded(api, buyer, order_id, line_id) == PDF_2
    old_link = (
        await api.get(f"/api/v1/orders/{order_id}/lines/{line_id}/download", headers=buyer.auth)
    ).json()["url"]

    # The same database and storage under another secret key: the download still works.
    rotated = settings.model_copy(update={"secret_key": SecretStr("rotated-" + "k" * 40)})
    assert rotated.signing_key != settings.signing_key
    other = build_context(rotated)
    try:
        application = create_app(rotated, other)
        application.state.ctx = other
        async with client_for(application) as later:
            again = await sign_in(later, buyer.email, buyer.handle)
            assert await downloaded(later, again, order_id, line_id) == PDF_2
            # (a link signed under the old key does not open under the new one)
            assert (await later.get(old_link)).status_code == 404
    finally:
        await other.close()


async def test_a_digital_only_order_is_delivered_by_its_download_and_never_waits_to_ship(
    api: httpx.AsyncClient, ctx: AppContext, outbox: Outbox
) -> None:
    seller, mug = await seller_with_listing(api, "mixedshop")
    pattern = await digital_listing(api, seller, "Mug cosy pattern")
    await attach(api, seller, pattern["id"], PDF_1, "cosy.pdf")
    buyer = await sign_up(api, "cosyfan")

    # Only the pattern: paid, and at once delivered (by its download).
    alone = await buy(api, ctx, buyer, [pattern["variants"][0]["id"]], "alone")
    order_id = alone["orders"][0]["id"]
    assert await order_statuses(ctx, alone["id"]) == ["delivered"]
    assert "Mug cosy pattern" in str(outbox.last_to(buyer.email).get_payload(decode=True))
    dashboard = (await api.get("/api/v1/shops/mine/dashboard", headers=seller.auth)).json()
    assert dashboard["to_ship"] == 0 and dashboard["revenue"] == {"GBP": alone["total"]}
    to_ship = (await api.get("/api/v1/shops/mine/orders?status=paid", headers=seller.auth)).json()
    assert to_ship["items"] == []
    ship = await api.post(
        f"/api/v1/orders/{order_id}/ship",
        headers=seller.auth,
        json={"carrier": "Royal Mail", "tracking_number": "X1"},
    )
    assert ship.status_code == 409 and ship.json()["error"]["code"] == "wrong_order_state"
    cancel = await api.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer.auth)
    assert cancel.status_code == 409
    detail = (await api.get(f"/api/v1/orders/{order_id}", headers=buyer.auth)).json()
    assert detail["digital_only"] is True and detail["cancellable"] is False
    assert detail["delivered_at"] == detail["paid_at"] and detail["paid_at"] is not None
    # …so the buyer can review it now, and complete it.
    line_id = await line_of(ctx, order_id)
    reviewed = await api.post(
        f"/api/v1/order-lines/{line_id}/review", headers=buyer.auth, json={"stars": 5}
    )
    assert reviewed.status_code == 201, reviewed.text
    done = await api.post(f"/api/v1/orders/{order_id}/complete", headers=buyer.auth)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert await downloaded(api, buyer, order_id, line_id) == PDF_1

    # The pattern with a mug: there is a parcel to send, so the order waits to ship.
    both = await buy(
        api, ctx, buyer, [pattern["variants"][0]["id"], mug["variants"][0]["id"]], "both"
    )
    assert await order_statuses(ctx, both["id"]) == ["paid"]
    to_ship = (await api.get("/api/v1/shops/mine/orders?status=paid", headers=seller.auth)).json()
    assert [o["id"] for o in to_ship["items"]] == [both["orders"][0]["id"]]


async def test_the_buyer_cancels_a_paid_order_from_its_page_and_sees_the_refund(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller_browser, _ = await web_person(api, browsers, "cancelshop", "198.51.100.51")
    await seller_browser.post("/sell/shop", {"name": "Cancel shop", "handle": "cancel-shop"})
    made = await seller_browser.post(
        "/sell/listings",
        {
            "title": "Woven coaster",
            "category": "weaving",
            "kind": "physical",
            "variant_name": "Set of 4",
            "variant_price": "16",
            "variant_stock": "2",
            "action": "publish",
        },
    )
    assert made.status_code == 303
    async with ctx.sessions() as session:
        listing = (await session.scalars(select(Listing))).one()
    page = await api.get(f"/listings/{listing.id}")
    variant_id = re.search(r'name="variant_id" value="([^"]+)"', page.text)
    assert variant_id

    buyer, _ = await web_person(api, browsers, "changedmind", "198.51.100.52")
    await buyer.post("/cart/lines", {"variant_id": variant_id.group(1), "quantity": "1"})
    placed = await buyer.post("/checkout", await checkout_form(buyer))
    order_id = order_id_from(placed)
    await run_jobs(ctx)
    order_page = await buyer.get(f"/orders/{order_id}")
    assert "Cancel this order" in text_of(order_page)
    assert 'id="cancel-sheet"' in order_page.text
    # The seller and strangers get no such button, and cannot cancel it through the page.
    assert "Cancel this order" not in text_of(await seller_browser.get(f"/orders/{order_id}"))
    stranger, _ = await web_person(api, browsers, "notmine", "198.51.100.53")
    assert (await stranger.post(f"/orders/{order_id}/cancel")).status_code == 404

    cancelled = await buyer.post(f"/orders/{order_id}/cancel")
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/orders/{order_id}"
    after = await buyer.get(f"/orders/{order_id}")
    shown = text_of(after)
    assert "Order cancelled. £" in shown and "is refunded to your card." in shown
    assert "£" in shown.split("Cancelled.")[1].split("card")[0]
    assert "Cancelled." in shown and "Cancel this order" not in shown
    # The coaster is back in stock.
    assert "Only 2 left" in text_of(await api.get(f"/listings/{listing.id}"))
    # Cancelling again is refused, with the page's own words.
    again = await buyer.post(f"/orders/{order_id}/cancel")
    assert again.status_code == 409


__all__ = ["api", "browsers", "shop_app"]  # fixtures, imported for these tests
