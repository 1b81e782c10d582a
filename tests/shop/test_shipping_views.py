"""Shipping on the web pages: a seller writes profiles and picks one per listing; a buyer
picks a delivery method at checkout and sees it on the order."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select

from craftreel.context import AppContext
from craftreel.shop.models import Listing, Order, ShippingMethod, ShippingProfile
from craftreel.shop.repository import WITH_SHIPPING
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_views import (
    HTMX,
    BrowserFactory,
    add_to_cart,
    api,
    browsers,
    checkout_form,
    count,
    field_error,
    order_id_from,
    run_jobs,
    shop_app,
    text_of,
    web_person,
)

__all__ = ["api", "browsers", "shop_app"]  # fixtures


async def _profiles(ctx: AppContext) -> dict[str, list[tuple[str, dict[str, int], int | None]]]:
    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                select(ShippingProfile.name, ShippingMethod)
                .join(ShippingMethod, ShippingMethod.profile_id == ShippingProfile.id)
                .order_by(ShippingProfile.name, ShippingMethod.position)
            )
        ).all()
    out: dict[str, list[tuple[str, dict[str, int], int | None]]] = {}
    for name, method in rows:
        out.setdefault(name, []).append((method.name, method.rates, method.free_over))
    return out


def _method_id(page: str, name: str) -> str:
    """A delivery option's method id on the checkout page, by the method's name."""
    match = re.search(
        rf'name="shipping_method" value="([0-9a-f-]{{36}})"[^>]*>\s*'
        rf'<span class="delivery-option-text"><strong>{re.escape(name)}</strong>',
        page,
    )
    assert match, f"no {name} option"
    return match.group(1)


async def test_a_seller_writes_a_profile_and_puts_a_listing_under_it(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller_person, mug = await seller_with_listing(api, "webseller")
    seller = browsers("198.51.100.40")
    assert (await seller.sign_in(seller_person.email)).status_code == 303

    # The dashboard lists the default profile made from the shop's flat rates.
    dashboard = text_of(await seller.get("/sell"))
    assert "Default Default Standard United Kingdom £3.95, everywhere else £12.00" in dashboard
    assert "free over £50.00" in dashboard

    # A new profile: the form suggests home and everywhere else for the first method.
    form = await seller.get("/sell/shipping/new")
    assert form.status_code == 200
    assert (
        '<option value="GB" selected>' in form.text and '<option value="*" selected>' in form.text
    )

    # Bad prices, a method without a name and a profile without one are each explained.
    refused = await seller.post(
        "/sell/shipping",
        {
            "name": " ",
            "m0_name": "Standard",
            "m0_region": ["GB", "*", ""],
            "m0_rate": ["3,95", "twelve", ""],
            "m1_name": "",
            "m1_region": ["FR"],
            "m1_rate": ["8"],
        },
    )
    assert refused.status_code == 400
    assert field_error(refused.text, "m0-rate-1") == "Enter a price like 3.95 (0 for free)."
    refused = await seller.post(
        "/sell/shipping",
        {
            "name": " ",
            "m0_name": "Standard",
            "m0_min": "5",
            "m0_max": "2",
            "m0_region": ["GB", "*"],
            "m0_rate": ["3,95", "12"],
            "m1_name": "",
            "m1_region": ["FR"],
            "m1_rate": ["8"],
        },
    )
    assert refused.status_code == 400
    assert field_error(refused.text, "field-name").startswith("Name the profile")
    assert field_error(refused.text, "m0-max") == "The slowest can't be faster than the fastest."
    assert field_error(refused.text, "m1-name").startswith("Name the delivery method")
    assert await count(ctx, ShippingProfile) == 1

    made = await seller.post(
        "/sell/shipping",
        {
            "name": "Furniture",
            "m0_name": "Courier",
            "m0_min": "5",
            "m0_max": "10",
            "m0_region": ["GB", "*", ""],
            "m0_rate": ["45", "", ""],
            "m0_free": "",
            "m1_name": "",
        },
    )
    assert made.status_code == 303 and made.headers["location"] == "/sell#shipping"
    assert (await _profiles(ctx))["Furniture"] == [("Courier", {"GB": 4500}, None)]

    # Editing it: add a method.
    async with ctx.sessions() as session:
        furniture = (
            await session.scalars(
                select(ShippingProfile).where(ShippingProfile.name == "Furniture")
            )
        ).one()
        courier_id = str(
            (
                await session.scalars(
                    select(ShippingMethod.id).where(ShippingMethod.profile_id == furniture.id)
                )
            ).one()
        )
    edit = await seller.get(f"/sell/shipping/{furniture.id}/edit")
    assert "Used by 0 listings" in text_of(edit)
    assert f'name="m0_id" value="{courier_id}"' in edit.text
    saved = await seller.post(
        f"/sell/shipping/{furniture.id}",
        {
            "name": "Furniture",
            "m0_id": courier_id,
            "m0_name": "Courier",
            "m0_region": ["GB"],
            "m0_rate": ["45"],
            "m1_name": "White glove",
            "m1_region": ["GB"],
            "m1_rate": ["90"],
        },
    )
    assert saved.status_code == 303
    assert [m for m, _, _ in (await _profiles(ctx))["Furniture"]] == ["Courier", "White glove"]

    # The listing form offers the profiles; the mug moves to Furniture.
    listing_form = await seller.get(f"/sell/listings/{mug['id']}/edit")
    assert "Furniture (Courier, White glove)" in text_of(listing_form)
    moved = await seller.post(
        f"/sell/listings/{mug['id']}",
        {
            "title": "Speckled mug",
            "category": "pottery",
            "shipping_profile_id": str(furniture.id),
            "variant_id": [mug["variants"][0]["id"]],
            "variant_name": ["Blue"],
            "variant_price": ["12.50"],
            "variant_stock": ["5"],
            "variant_stock_was": ["5"],
        },
    )
    assert moved.status_code == 303, moved.text
    async with ctx.sessions() as session:
        listing = (await session.scalars(select(Listing).options(WITH_SHIPPING))).one()
    assert listing.shipping_profile_id == furniture.id

    # Buyers see how it travels on the listing.
    shown = text_of(await seller.get(f"/listings/{mug['id']}"))
    assert "Courier United Kingdom £45.00 White glove United Kingdom £90.00" in shown

    # In use now: deleting is refused with the reason; the other way round it works.
    kept = await seller.post(f"/sell/shipping/{furniture.id}/delete", {})
    assert kept.headers["location"] == f"/sell/shipping/{furniture.id}/edit"
    assert await count(ctx, ShippingProfile) == 2
    default = await seller.post(f"/sell/shipping/{furniture.id}/default", {})
    assert default.status_code == 303
    assert "New listings now ship with “Furniture”." in text_of(await seller.get("/sell"))


async def test_a_buyer_picks_express_at_checkout_and_the_order_says_so(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller_person, mug = await seller_with_listing(api, "fastseller")
    mine = "/api/v1/shops/mine/shipping-profiles"
    default_id = (await api.get(mine, headers=seller_person.auth)).json()[0]["id"]
    profile = await api.put(
        f"{mine}/{default_id}",
        headers=seller_person.auth,
        json={
            "name": "Default",
            "methods": [
                {"name": "Standard", "min_days": 3, "max_days": 5, "rates": {"GB": 395}},
                {"name": "Express", "min_days": 1, "max_days": 2, "rates": {"GB": 850}},
            ],
        },
    )
    assert profile.status_code == 200, profile.text
    buyer, _ = await web_person(api, browsers, "webbuyer", "198.51.100.41")
    await add_to_cart(buyer, mug["variants"][0]["id"], 2)

    page = await buyer.get("/checkout")
    seen = text_of(page)
    assert "Standard 3–5 days £3.95 Express 1–2 days £8.50" in seen
    assert "Pay £34.74" in seen
    express = _method_id(page.text, "Express")
    # Choosing Express asks for the totals again (htmx): shipping and tax follow.
    swapped = await buyer.get(f"/checkout?country=GB&shipping_method={express}", headers=HTMX)
    assert "Delivery £8.50" in text_of(swapped) and "Pay £40.20" in text_of(swapped)
    assert re.search(rf'value="{express}" checked', swapped.text)

    placed = await buyer.post("/checkout", await checkout_form(buyer, shipping_method=express))
    order_id = order_id_from(placed)
    async with ctx.sessions() as session:
        order = (await session.scalars(select(Order))).one()
    assert (order.shipping_total, order.total) == (850, 4020)
    await run_jobs(ctx)
    shown = text_of(await buyer.get(f"/orders/{order_id}"))
    assert "Express · 1–2 days £8.50" in shown

    # The seller sees it on the dashboard and in the ship form.
    seller = browsers("198.51.100.42")
    assert (await seller.sign_in(seller_person.email)).status_code == 303
    assert "Express (1–2 days)" in text_of(await seller.get("/sell"))
    as_seller = text_of(await seller.get(f"/orders/{order_id}"))
    assert "Send it to the address below by Express (1–2 days), as the buyer chose" in as_seller


async def test_a_method_that_does_not_go_there_sends_the_buyer_back_to_choose(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller_person, mug = await seller_with_listing(api, "localseller")
    profiles: list[dict[str, Any]] = (
        await api.get("/api/v1/shops/mine/shipping-profiles", headers=seller_person.auth)
    ).json()
    standard = profiles[0]["methods"][0]["id"]
    await api.put(
        f"/api/v1/shops/mine/shipping-profiles/{profiles[0]['id']}",
        headers=seller_person.auth,
        json={
            "name": "Default",
            "methods": [
                {"id": standard, "name": "Standard", "rates": {"GB": 395, "*": 1200}},
                {"name": "Express", "rates": {"GB": 850}},
            ],
        },
    )
    buyer, _ = await web_person(api, browsers, "farbuyer", "198.51.100.43")
    await add_to_cart(buyer, mug["variants"][0]["id"])
    express = _method_id((await buyer.get("/checkout")).text, "Express")
    # Express was picked for GB, then the country changed to the US without JavaScript.
    refused = await buyer.post(
        "/checkout", await checkout_form(buyer, country="US", shipping_method=express)
    )
    assert refused.status_code == 409
    assert "That delivery method does not go to this country. Choose another." in text_of(refused)
    # The form shows what does go there, cheapest chosen.
    assert re.search(rf'value="{standard}" checked', refused.text)
    assert "Express" not in text_of(refused).split("Your order")[1].split("Pay")[0]
    assert await count(ctx, Order) == 0


async def test_without_javascript_a_changed_total_is_shown_before_anything_is_charged(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller_person, mug = await seller_with_listing(api, "nojsseller")
    mine = "/api/v1/shops/mine/shipping-profiles"
    default_id = (await api.get(mine, headers=seller_person.auth)).json()[0]["id"]
    await api.put(
        f"{mine}/{default_id}",
        headers=seller_person.auth,
        json={
            "name": "Default",
            "methods": [
                {"name": "Standard", "rates": {"GB": 395}},
                {"name": "Express", "rates": {"GB": 850}},
            ],
        },
    )
    buyer, _ = await web_person(api, browsers, "nojsbuyer", "198.51.100.44")
    await add_to_cart(buyer, mug["variants"][0]["id"], 2)
    page = await buyer.get("/checkout")
    express = _method_id(page.text, "Express")
    # The page was drawn for Standard (£34.74); Express is ticked and sent without a redraw.
    shown = re.search(r'name="expected_total" value="(\d+)"', page.text)
    assert shown and shown.group(1) == "3474"
    stale = await checkout_form(buyer, shipping_method=express, expected_total="3474")
    refused = await buyer.post("/checkout", stale)
    assert refused.status_code == 409
    seen = text_of(refused)
    assert "The total changed with the delivery you chose" in seen
    assert "Pay £40.20" in seen and re.search(rf'value="{express}" checked', refused.text)
    assert await count(ctx, Order) == 0
    # Pressing Pay again on the redrawn form places it, at the total it shows.
    again = await checkout_form(buyer, shipping_method=express, expected_total="4020")
    placed = await buyer.post("/checkout", again)
    order_id_from(placed)
    assert await count(ctx, Order) == 1


async def test_a_seller_cannot_open_or_change_another_shops_profile_pages(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    owner, _ = await seller_with_listing(api, "pageowner")
    rival_person, _ = await seller_with_listing(api, "pagerival")
    (profile,) = (await api.get("/api/v1/shops/mine/shipping-profiles", headers=owner.auth)).json()
    rival = browsers("198.51.100.45")
    assert (await rival.sign_in(rival_person.email)).status_code == 303
    path = f"/sell/shipping/{profile['id']}"
    assert (await rival.get(f"{path}/edit")).status_code == 404
    changed = await rival.post(
        path, {"name": "Mine now", "m0_name": "Free", "m0_region": ["*"], "m0_rate": ["0"]}
    )
    assert changed.status_code == 404
    assert (await rival.post(f"{path}/default", {})).status_code == 404
    assert (await rival.post(f"{path}/delete", {})).status_code == 404
    (after,) = (await api.get("/api/v1/shops/mine/shipping-profiles", headers=owner.auth)).json()
    assert after == profile
