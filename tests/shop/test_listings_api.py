"""The JSON API's side of what the shop pages use: a shop's public profile and listings,
listing edits that never overwrite a sale, quotes, digital files and review photos."""

from __future__ import annotations

import io
from uuid import UUID

import httpx
from PIL import Image
from sqlalchemy import select

from craftreel.context import AppContext
from craftreel.shop.models import OrderLine
from tests.factories import sign_up
from tests.shop.test_checkout import checkout, seller_with_listing
from tests.shop.test_orders import paid_order
from tests.shop.test_payments import api

PDF = b"%PDF-1.7\n%%EOF\n"


async def test_shop_profile_and_listings_are_public(api: httpx.AsyncClient) -> None:
    _, mug = await seller_with_listing(api, "public")
    shop = await api.get("/api/v1/shops/public-studio")
    assert shop.status_code == 200
    assert (shop.json()["rating"], shop.json()["review_count"]) == (None, 0)
    listings = (await api.get("/api/v1/shops/public-studio/listings")).json()
    assert [item["id"] for item in listings["items"]] == [mug["id"]]
    assert (await api.get("/api/v1/shops/nope-nope/listings")).status_code == 404


async def test_a_listing_edit_never_overwrites_a_sale(api: httpx.AsyncClient) -> None:
    seller, mug = await seller_with_listing(api, "editor", stock=5)
    variant = mug["variants"][0]
    buyer = await sign_up(api, "between")
    await api.post("/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant["id"]})
    assert (await checkout(api, buyer, "sale-meanwhile")).status_code == 201  # 5 → 4

    body = {
        "title": "Speckled mug, large",
        "category": "pottery",
        "variants": [
            {"id": variant["id"], "name": "Blue", "price_minor": 1400, "stock": 9, "stock_was": 5}
        ],
    }
    stale = await api.patch(f"/api/v1/listings/{mug['id']}", headers=seller.auth, json=body)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stock_changed"
    unchanged = (await api.get(f"/api/v1/listings/{mug['id']}")).json()
    assert (unchanged["title"], unchanged["variants"][0]["price_minor"]) == ("Speckled mug", 1250)
    assert unchanged["variants"][0]["stock"] == 4

    body["variants"][0]["stock_was"] = 4
    body["variants"].append({"name": "Green", "price_minor": 1300, "stock": 2})
    saved = await api.patch(f"/api/v1/listings/{mug['id']}", headers=seller.auth, json=body)
    assert saved.status_code == 200, saved.text
    assert [(v["name"], v["price_minor"], v["stock"]) for v in saved.json()["variants"]] == [
        ("Blue", 1400, 9),
        ("Green", 1300, 2),
    ]
    # status and shop are not the seller's to send, and another seller cannot edit it
    forged = await api.patch(
        f"/api/v1/listings/{mug['id']}", headers=seller.auth, json={**body, "status": "active"}
    )
    assert forged.status_code == 422
    rival, _ = await seller_with_listing(api, "rivaleditor")
    stolen = await api.patch(f"/api/v1/listings/{mug['id']}", headers=rival.auth, json=body)
    assert stolen.status_code == 404


async def test_a_quote_prices_the_cart_without_holding_stock(api: httpx.AsyncClient) -> None:
    _, mug = await seller_with_listing(api, "quoter", stock=2)
    buyer = await sign_up(api, "asker")
    variant_id = mug["variants"][0]["id"]
    await api.post(
        "/api/v1/cart/lines", headers=buyer.auth, json={"variant_id": variant_id, "quantity": 2}
    )
    quote = (await api.get("/api/v1/cart/quote?country=GB", headers=buyer.auth)).json()
    assert (quote["items_total"], quote["shipping_total"], quote["tax_total"]) == (2500, 395, 579)
    assert quote["total"] == 3474 and quote["problems"] == []
    assert (await api.get(f"/api/v1/listings/{mug['id']}")).json()["variants"][0]["stock"] == 2


async def test_digital_files_are_pdfs_on_digital_listings_of_your_own(
    api: httpx.AsyncClient,
) -> None:
    seller, mug = await seller_with_listing(api, "filer")
    pattern = await api.post(
        "/api/v1/listings",
        headers=seller.auth,
        json={
            "title": "Mitten pattern",
            "category": "knitting",
            "kind": "digital",
            "variants": [{"name": "PDF", "price_minor": 500}],
        },
    )
    pattern_id = pattern.json()["id"]
    files = {"file": ("m.pdf", PDF, "application/pdf")}
    attached = await api.put(
        f"/api/v1/listings/{pattern_id}/file", headers=seller.auth, files=files
    )
    assert attached.status_code == 204
    physical = await api.put(f"/api/v1/listings/{mug['id']}/file", headers=seller.auth, files=files)
    assert physical.status_code == 400
    assert physical.json()["error"]["code"] == "not_a_digital_listing"
    not_pdf = await api.put(
        f"/api/v1/listings/{pattern_id}/file",
        headers=seller.auth,
        files={"file": ("m.pdf", b"<html>", "application/pdf")},
    )
    assert not_pdf.json()["error"]["code"] == "digital_file_invalid"
    rival, _ = await seller_with_listing(api, "filethief")
    stolen = await api.put(f"/api/v1/listings/{pattern_id}/file", headers=rival.auth, files=files)
    assert stolen.status_code == 404


async def test_a_review_takes_one_photo_from_its_author(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    seller, buyer, order = await paid_order(api, ctx, "photoshop", "photobuyer")
    await api.post(
        f"/api/v1/orders/{order['id']}/ship",
        headers=seller.auth,
        json={"carrier": "DPD", "tracking_number": "1"},
    )
    await api.post(f"/api/v1/orders/{order['id']}/delivered", headers=buyer.auth)
    async with ctx.sessions() as session:
        line_id = (
            await session.scalars(
                select(OrderLine.id).where(OrderLine.order_id == UUID(order["id"]))
            )
        ).one()
    review = await api.post(
        f"/api/v1/order-lines/{line_id}/review", headers=buyer.auth, json={"stars": 5}
    )
    review_id = review.json()["id"]
    picture = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 120, 40)).save(picture, format="PNG")
    files = {"photo": ("p.png", picture.getvalue(), "image/png")}

    by_seller = await api.put(
        f"/api/v1/reviews/{review_id}/photo", headers=seller.auth, files=files
    )
    assert by_seller.status_code == 404
    added = await api.put(f"/api/v1/reviews/{review_id}/photo", headers=buyer.auth, files=files)
    assert added.status_code == 200, added.text
    assert added.json()["photo_url"].endswith(".webp")
    again = await api.put(f"/api/v1/reviews/{review_id}/photo", headers=buyer.auth, files=files)
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_has_photo"
    detail = (await api.get(f"/api/v1/orders/{order['id']}", headers=buyer.auth)).json()
    assert detail["lines"][0]["review"]["photo_url"] == added.json()["photo_url"]
    assert (await api.get(f"/api/v1/orders/{order['id']}", headers=seller.auth)).json()[
        "viewer"
    ] == "seller"


__all__ = ["api"]  # the fixture, imported for these tests
