"""The shop pages, driven as a browser would: forms with CSRF tokens, cookies, redirects,
htmx — on both databases, with the test payment provider's webhooks delivered in-process."""

from __future__ import annotations

import email.message
import html
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.media.models import MediaObject
from craftreel.shop.models import (
    Checkout,
    Listing,
    Order,
    OrderLine,
    Review,
    ShippingMethod,
    Shop,
    Variant,
)
from craftreel.shop.payments import LedgerEntry, Payment, TestProviderIntent
from tests.accounts.test_pages import Browser
from tests.conftest import Outbox, client_for
from tests.factories import Person, sign_up
from tests.shop.test_checkout import ADDRESS, seller_with_listing
from tests.shop.test_payments import payments_app, run_jobs

HTMX = {"HX-Request": "true"}
SUCCESS, DECLINE, NO_FUNDS, ACTION = (
    "4242 4242 4242 4242",
    "4000 0000 0000 0002",
    "4000 0000 0000 9995",
    "4000 0000 0000 3220",
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

BrowserFactory = Callable[[str], Browser]


@pytest.fixture
async def shop_app(settings: Settings, ctx: AppContext) -> AsyncIterator[FastAPI]:
    async with payments_app(settings, ctx) as application:
        yield application


@pytest.fixture
async def api(shop_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(shop_app) as client:
        yield client


@pytest.fixture
async def browsers(shop_app: FastAPI) -> AsyncIterator[BrowserFactory]:
    """Separate browsers, each with its own cookies and address."""
    clients: list[httpx.AsyncClient] = []

    def open_browser(ip: str) -> Browser:
        transport = httpx.ASGITransport(app=shop_app, client=(ip, 50000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        return Browser(client)

    yield open_browser
    for client in clients:
        await client.aclose()


# --- helpers ----------------------------------------------------------------------------


async def web_person(
    api: httpx.AsyncClient, browsers: BrowserFactory, handle: str, ip: str
) -> tuple[Browser, Person]:
    """Someone with an account (made through the API), signed in on a browser of their own."""
    person = await sign_up(api, handle)
    browser = browsers(ip)
    signed_in = await browser.sign_in(person.email)
    assert signed_in.status_code == 303, signed_in.text
    return browser, person


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden {name} field"
    return html.unescape(match.group(1))


def text_of(response: httpx.Response) -> str:
    """The page's text with tags dropped and spaces squeezed (what a person reads)."""
    without_tags = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(html.unescape(without_tags).split())


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">.*?<span>(.*?)</span>', page, flags=re.DOTALL)
    assert match, f"no error shown for {field_id}"
    return html.unescape(match.group(1))


async def count(ctx: AppContext, model: type[Any]) -> int:
    async with ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def order_status(ctx: AppContext, order_id: str | UUID) -> str:
    async with ctx.sessions() as session:
        order = await session.get(Order, UUID(str(order_id)))
        assert order is not None
        return order.status


async def checkout_form(browser: Browser, **overrides: str) -> dict[str, str]:
    """The checkout page's form, filled in with an address (and its own Idempotency-Key)."""
    page = await browser.get("/checkout")
    assert page.status_code == 200, page.text
    return {
        "idempotency_key": hidden(page.text, "idempotency_key"),
        **{k: v for k, v in ADDRESS.items()},
        "card_number": SUCCESS,
        **overrides,
    }


async def add_to_cart(browser: Browser, variant_id: str, quantity: int = 1) -> httpx.Response:
    return await browser.post(
        "/cart/lines", {"variant_id": variant_id, "quantity": str(quantity)}, headers=HTMX
    )


def order_id_from(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/orders/([0-9a-f-]{36})", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def mail_text(message: email.message.Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode()


def photo_with_gps() -> bytes:
    """A JPEG carrying EXIF with a GPS position (which must never be served)."""
    image = Image.new("RGB", (900, 600), (79, 111, 88))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (53.0, 48.0, 0.0), 3: "W", 4: (1.0, 32.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


# --- browsing and the cart --------------------------------------------------------------


async def test_listing_and_shop_pages_and_an_htmx_add_to_cart(
    api: httpx.AsyncClient, browsers: BrowserFactory
) -> None:
    # given a maker's active listing with five in stock
    _, mug = await seller_with_listing(api, "glazer", stock=5)
    visitor = browsers("198.51.100.1")

    # a visitor sees the listing, its price and stock, and is asked to sign in to buy
    page = await visitor.get(f"/listings/{mug['id']}")
    assert page.status_code == 200
    seen = text_of(page)
    assert "Speckled mug" in seen and "£12.50" in seen and "5 in stock" in seen
    assert "glazer studio" in seen and "No reviews yet" in seen
    assert f'href="/signin?next=/listings/{mug["id"]}"' in page.text
    shop = await visitor.get("/shop/glazer-studio")
    assert shop.status_code == 200
    assert f'href="/listings/{mug["id"]}"' in shop.text
    assert (await visitor.get("/shop/nobody-here")).status_code == 404

    # when a signed-in buyer adds two with htmx
    buyer, _ = await web_person(api, browsers, "mugfan", "198.51.100.2")
    added = await add_to_cart(buyer, mug["variants"][0]["id"], 2)

    # then a toast says so, and the app bar's cart comes back with the count
    assert added.status_code == 200
    trigger = json.loads(added.headers["HX-Trigger"])
    assert trigger["craftreel:toast"] == {"message": "Added to your cart.", "kind": "success"}
    assert 'id="appbar-cart"' in added.text and 'hx-swap-oob="true"' in added.text
    assert "Cart, 2 items" in added.text
    cart = await buyer.get("/cart")
    assert "glazer studio" in text_of(cart) and "£25.00" in text_of(cart)

    # and asking for more than there is answers with an error toast, changing nothing
    too_many = await add_to_cart(buyer, mug["variants"][0]["id"], 4)
    assert too_many.status_code == 409
    assert "Not enough of that is left." in too_many.headers["HX-Trigger"]
    assert "£25.00" in text_of(await buyer.get("/cart"))


async def test_the_cart_rechecks_stock_and_says_what_to_fix(
    api: httpx.AsyncClient, browsers: BrowserFactory
) -> None:
    _, mug = await seller_with_listing(api, "scarce", stock=3)
    buyer, _ = await web_person(api, browsers, "hopeful", "198.51.100.3")
    variant_id = mug["variants"][0]["id"]
    await add_to_cart(buyer, variant_id, 1)

    # raising the quantity past the stock keeps the line but marks it
    changed = await buyer.post(f"/cart/lines/{variant_id}", {"quantity": "7"}, headers=HTMX)
    assert changed.status_code == 200
    assert json.loads(changed.headers["HX-Trigger"])["craftreel:toast"]["kind"] == "success"
    assert "Only 3 left. Lower the quantity to check out." in text_of(changed)
    assert 'aria-disabled="true"' in changed.text  # the checkout button

    # a quantity that is not a number is refused, and the line stays as it was
    refused = await buyer.post(f"/cart/lines/{variant_id}", {"quantity": "lots"})
    assert refused.status_code == 400
    assert "Choose a quantity from 1 to 99." in text_of(refused)

    # removing it empties the cart
    removed = await buyer.post(f"/cart/lines/{variant_id}", {"quantity": "0"})
    assert removed.status_code == 303
    assert "Your cart is empty" in text_of(await buyer.get("/cart"))
    assert (await buyer.get("/checkout")).headers["location"] == "/cart"


# --- checkout and paying ----------------------------------------------------------------


async def test_checkout_with_the_success_card_pays_once_however_often_it_is_sent(
    api: httpx.AsyncClient,
    browsers: BrowserFactory,
    ctx: AppContext,
    outbox: Outbox,
) -> None:
    # given a buyer with a mug in the cart, on the checkout page
    _, mug = await seller_with_listing(api, "kiln", stock=4)
    buyer, person = await web_person(api, browsers, "quickbuyer", "198.51.100.4")
    await add_to_cart(buyer, mug["variants"][0]["id"], 2)
    page = await buyer.get("/checkout")
    seen = text_of(page)
    # totals per shop for the default country: 2 × £12.50, £3.95 delivery, 20 % tax
    assert "Delivery Standard Free over £50.00 £3.95" in seen
    assert "Tax £5.79" in seen and "Total £34.74" in seen and "Pay £34.74" in seen
    assert "4242 4242 4242 4242 Pays successfully" in seen
    assert "4000 0000 0000 3220 Asks you to confirm the payment first" in seen
    # another country is another price (htmx swaps the totals in)
    abroad = await buyer.get("/checkout?country=US", headers=HTMX)
    assert "Delivery Standard Free over £50.00 £12.00" in text_of(abroad)

    # when the form is sent twice (a double tap, a reload)
    form = await checkout_form(buyer)
    first = await buyer.post("/checkout", form)
    again = await buyer.post("/checkout", form)

    # then both land on the same order, and there is one checkout and one charge
    order_id = order_id_from(first)
    assert order_id_from(again) == order_id
    assert (await count(ctx, Checkout), await count(ctx, Payment)) == (1, 1)
    assert await count(ctx, TestProviderIntent) == 1

    # while the provider's confirmation is on its way the page says so, and polls
    waiting = await buyer.get(f"/orders/{order_id}")
    assert "Thank you! Your order is placed." in text_of(waiting)
    assert "Confirming your payment" in text_of(waiting)
    poll = await buyer.get(f"/orders/{order_id}/status", headers=HTMX)
    assert poll.status_code == 204

    # once the webhook lands the order is paid, the poll reloads the page, a receipt is mailed
    await run_jobs(ctx)
    poll = await buyer.get(f"/orders/{order_id}/status", headers=HTMX)
    assert poll.headers.get("HX-Refresh") == "true"
    paid = await buyer.get(f"/orders/{order_id}")
    seen = text_of(paid)
    assert "Paid" in seen and "Confirming your payment" not in seen
    assert re.search(r'timeline-step is-done is-current" aria-current="step"', paid.text)
    assert "Total £34.74" in seen
    assert await order_status(ctx, order_id) == "paid"
    assert await count(ctx, LedgerEntry) == 2  # one sale, one fee: paid once
    receipt = outbox.last_to(person.email)
    assert receipt["Subject"] == "Your Craftreel receipt"
    body = mail_text(receipt)
    assert f"/orders/{order_id}" in body and "Total: £34.74" in body
    assert "2 × Speckled mug — Blue: £25.00" in body

    # and the order is in the buyer's history
    history = await buyer.get("/orders")
    assert f'href="/orders/{order_id}"' in history.text and "kiln-studio" in history.text


async def test_a_refused_card_shows_why_and_leaves_the_order_unpaid(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "decliner", stock=2)
    buyer, _ = await web_person(api, browsers, "unlucky", "198.51.100.5")
    await add_to_cart(buyer, mug["variants"][0]["id"])

    # a declined card: back to the payment page with the reason; the order is placed, unpaid
    declined = await buyer.post("/checkout", await checkout_form(buyer, card_number=DECLINE))
    assert declined.status_code == 303
    pay_path = declined.headers["location"]
    assert re.fullmatch(r"/checkout/[0-9a-f-]{36}", pay_path)
    page = await buyer.get(pay_path)
    assert "Payment failed. Your card was declined. Nothing was charged" in text_of(page)
    async with ctx.sessions() as session:
        placed = (await session.scalars(select(Order))).one()
    assert placed.status == "placed"
    unpaid = await buyer.get(f"/orders/{placed.id}")
    assert "Not paid yet." in text_of(unpaid) and f'href="{pay_path}"' in unpaid.text

    # insufficient funds says so
    funds = await buyer.post(
        f"{pay_path}/pay",
        {"card_number": NO_FUNDS, "idempotency_key": hidden(page.text, "idempotency_key")},
    )
    assert funds.headers["location"] == pay_path
    page = await buyer.get(pay_path)
    assert "Your card has insufficient funds. Nothing was charged" in text_of(page)
    assert await order_status(ctx, placed.id) == "placed"

    # a number that is not a card number is refused before anything is tried
    bad = await buyer.post(
        f"{pay_path}/pay",
        {"card_number": "1234 5678", "idempotency_key": hidden(page.text, "idempotency_key")},
    )
    assert bad.status_code == 400
    assert field_error(bad.text, "field-card_number") == "That card number is not valid."
    assert await count(ctx, Payment) == 2

    # and a good card then pays the same order
    paid = await buyer.post(
        f"{pay_path}/pay",
        {"card_number": SUCCESS, "idempotency_key": hidden(page.text, "idempotency_key")},
    )
    assert order_id_from(paid) == str(placed.id)
    await run_jobs(ctx)
    assert await order_status(ctx, placed.id) == "paid"


async def test_a_card_that_asks_for_a_step_shows_it_and_completing_it_pays(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "secure", stock=2)
    buyer, _ = await web_person(api, browsers, "careful", "198.51.100.6")
    await add_to_cart(buyer, mug["variants"][0]["id"])

    sent = await buyer.post("/checkout", await checkout_form(buyer, card_number=ACTION))
    step = await buyer.get(sent.headers["location"])
    assert "Confirm this payment" in text_of(step) and "£19.74" in text_of(step)
    confirm_path = re.search(r'action="(/payments/[0-9a-f-]{36}/confirm)"', step.text)
    assert confirm_path

    confirmed = await buyer.post(confirm_path.group(1))
    order_id = order_id_from(confirmed)
    await run_jobs(ctx)
    assert await order_status(ctx, order_id) == "paid"
    assert await count(ctx, Payment) == 1


async def test_checkout_form_errors_are_clear_and_place_nothing(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "picky", stock=2)
    buyer, _ = await web_person(api, browsers, "hasty", "198.51.100.7")
    await add_to_cart(buyer, mug["variants"][0]["id"])

    missing_city = await buyer.post("/checkout", await checkout_form(buyer, city=""))
    assert missing_city.status_code == 400
    assert field_error(missing_city.text, "field-city") == "Enter the town or city."
    assert 'value="1 Loom Lane"' in missing_city.text  # what was typed stays

    bad_card = await buyer.post("/checkout", await checkout_form(buyer, card_number="4242"))
    assert field_error(bad_card.text, "field-card_number") == "That card number is not valid."

    stale = await buyer.post("/checkout", await checkout_form(buyer, idempotency_key=""))
    assert "This form has expired. Reload the page and try again." in text_of(stale)

    assert (await count(ctx, Checkout), await count(ctx, Payment)) == (0, 0)
    assert "Speckled mug" in text_of(await buyer.get("/cart"))


# --- who may see and do what ------------------------------------------------------------


async def test_a_buyer_never_sees_another_buyers_order(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "private", stock=3)
    owner, _ = await web_person(api, browsers, "ownbuyer", "198.51.100.8")
    await add_to_cart(owner, mug["variants"][0]["id"])
    order_id = order_id_from(await owner.post("/checkout", await checkout_form(owner)))
    await run_jobs(ctx)
    async with ctx.sessions() as session:
        line_id = (await session.scalars(select(OrderLine.id))).one()

    nosy, _ = await web_person(api, browsers, "nosybuyer", "198.51.100.9")
    for path in (
        f"/orders/{order_id}",
        f"/orders/{order_id}/status",
        f"/orders/{order_id}/lines/{line_id}/download",
    ):
        assert (await nosy.get(path)).status_code == 404, path
    refused = await nosy.post(f"/orders/{order_id}/delivered")
    assert refused.status_code == 404
    review = await nosy.post(f"/orders/{order_id}/lines/{line_id}/review", {"stars": "1"})
    assert review.status_code == 404
    assert f"/orders/{order_id}" not in (await nosy.get("/orders")).text
    assert await count(ctx, Review) == 0

    # and someone signed out is sent to sign in first
    anonymous = browsers("198.51.100.10")
    away = await anonymous.get(f"/orders/{order_id}")
    assert away.status_code == 303 and away.headers["location"].startswith("/signin?next=")


async def test_a_seller_cannot_touch_another_shops_listing_through_the_pages(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "rightful", stock=5)
    rival, _ = await web_person(api, browsers, "rival", "198.51.100.11")
    opened = await rival.post(
        "/sell/shop", {"name": "Rival goods", "handle": "rival-goods", "currency": "GBP"}
    )
    assert opened.status_code == 303

    listing_id = mug["id"]
    assert (await rival.get(f"/sell/listings/{listing_id}/edit")).status_code == 404
    hijack = await rival.post(
        f"/sell/listings/{listing_id}",
        {
            "title": "Hijacked",
            "category": "pottery",
            "variant_id": mug["variants"][0]["id"],
            "variant_name": "Blue",
            "variant_price": "0.01",
            "variant_stock": "999",
        },
    )
    assert hijack.status_code == 404
    assert (await rival.post(f"/sell/listings/{listing_id}/archive")).status_code == 404
    async with ctx.sessions() as session:
        listing = await session.get(Listing, UUID(listing_id))
        variant = await session.get(Variant, UUID(mug["variants"][0]["id"]))
    assert listing is not None and variant is not None
    assert (listing.title, listing.status) == ("Speckled mug", "active")
    assert (variant.price_minor, variant.stock) == (1250, 5)


async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "guarded", stock=5)
    buyer, _ = await web_person(api, browsers, "forged", "198.51.100.12")
    client = buyer.client
    variant_id = mug["variants"][0]["id"]

    no_token = await client.post("/cart/lines", data={"variant_id": variant_id})
    assert no_token.status_code == 403
    wrong = await client.post(
        "/cart/lines", data={"variant_id": variant_id}, headers={**HTMX, "X-CSRF-Token": "x"}
    )
    assert wrong.status_code == 403
    assert "Your cart is empty" in text_of(await buyer.get("/cart"))

    await add_to_cart(buyer, variant_id)
    form = await checkout_form(buyer)
    placed = await client.post("/checkout", data=form)  # no csrf_token field
    assert placed.status_code == 403
    opened = await client.post("/sell/shop", data={"name": "Sneaky", "handle": "sneaky"})
    assert opened.status_code == 403
    assert (await count(ctx, Checkout), await count(ctx, Shop)) == (0, 1)


# --- selling ----------------------------------------------------------------------------


async def test_a_seller_opens_a_shop_lists_edits_and_publishes(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller, _ = await web_person(api, browsers, "newmaker", "198.51.100.13")

    # before a shop, /sell is the form to open one; a bad handle is explained
    assert "Open your shop" in text_of(await seller.get("/sell"))
    bad = await seller.post("/sell/shop", {"name": "Loom room", "handle": "x", "home_rate": "3"})
    assert bad.status_code == 400
    assert field_error(bad.text, "field-handle").startswith("Use 3 to 40 letters")
    assert await count(ctx, Shop) == 0
    opened = await seller.post(
        "/sell/shop",
        {
            "name": "Loom room",
            "handle": "loom-room",
            "currency": "GBP",
            "origin_country": "GB",
            "home_rate": "3.50",
            "world_rate": "11",
            "free_over": "60",
        },
    )
    assert opened.headers["location"] == "/sell"
    async with ctx.sessions() as session:
        assert (await session.scalars(select(Shop))).one().name == "Loom room"
        standard = (await session.scalars(select(ShippingMethod))).one()
    # The rates become the new shop's default shipping profile's one method.
    assert (standard.name, standard.rates, standard.free_over) == (
        "Standard",
        {"GB": 350, "*": 1100},
        6000,
    )

    # a listing with a price that is not a price is refused whole
    form = {
        "title": "Chunky scarf",
        "category": "knitting",
        "kind": "physical",
        "variant_name": ["Moss", "Rust"],
        "variant_price": ["45", "forty"],
        "variant_stock": ["2", "1"],
        "action": "publish",
    }
    refused = await seller.post("/sell/listings", form)
    assert refused.status_code == 400
    assert field_error(refused.text, "variant-price-1") == "Enter a price like 12.50."
    assert 'value="Chunky scarf"' in refused.text
    assert await count(ctx, Listing) == 0

    # fixed, it is published with both options
    made = await seller.post("/sell/listings", {**form, "variant_price": ["45", "39.50"]})
    assert made.headers["location"] == "/sell#listings"
    dashboard = await seller.get("/sell")
    assert "“Chunky scarf” is live in your shop." in text_of(dashboard)
    async with ctx.sessions() as session:
        listing = (await session.scalars(select(Listing))).one()
    assert listing.status == "active"
    edit = await seller.get(f"/sell/listings/{listing.id}/edit")
    variant_ids = re.findall(r'name="variant_id" value="([0-9a-f-]{36})"', edit.text)
    assert len(variant_ids) == 2

    # an edit made while a sale happened (the stock it saw is stale) is refused
    edited = {
        "title": "Chunky scarf, hand-knitted",
        "category": "knitting",
        "variant_id": variant_ids,
        "variant_name": ["Moss", "Rust"],
        "variant_price": ["48", "39.50"],
        "variant_stock": ["5", "1"],
        "variant_stock_was": ["1", "1"],  # the seller's page showed 1; there are 2
    }
    stale = await seller.post(f"/sell/listings/{listing.id}", edited)
    assert stale.status_code == 409
    assert "Someone bought one while you were editing" in text_of(stale)
    async with ctx.sessions() as session:
        prices = await session.scalars(select(Variant.price_minor).order_by(Variant.position))
        assert list(prices) == [4500, 3950]

    # with the stock as it is, the edit is saved, all of it
    saved = await seller.post(
        f"/sell/listings/{listing.id}", {**edited, "variant_stock_was": ["2", "1"]}
    )
    assert saved.status_code == 303
    page = await seller.get(f"/listings/{listing.id}")
    seen = text_of(page)
    assert "Chunky scarf, hand-knitted" in seen and "From £39.50" in seen and "5 in stock" in seen

    # archived, buyers no longer find it
    archived = await seller.post(f"/sell/listings/{listing.id}/archive")
    assert archived.status_code == 303
    visitor = browsers("198.51.100.14")
    assert (await visitor.get(f"/listings/{listing.id}")).status_code == 404


async def test_the_seller_ships_the_buyer_reviews_with_a_photo_and_the_seller_replies(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext, outbox: Outbox
) -> None:
    # given a paid order
    seller_person, mug = await seller_with_listing(api, "shipwright", stock=3)
    buyer, buyer_person = await web_person(api, browsers, "reviewer", "198.51.100.15")
    await add_to_cart(buyer, mug["variants"][0]["id"])
    order_id = order_id_from(await buyer.post("/checkout", await checkout_form(buyer)))
    await run_jobs(ctx)
    seller = browsers("198.51.100.16")
    assert (await seller.sign_in(seller_person.email)).status_code == 303

    # the seller sees it to ship, and the buyer's address on the order
    dashboard = await seller.get("/sell")
    assert f'href="/orders/{order_id}"' in dashboard.text
    order_page = await seller.get(f"/orders/{order_id}")
    assert "Ship this order" in text_of(order_page) and "1 Loom Lane" in text_of(order_page)

    # shipping without a tracking number is refused; with one, the buyer is mailed
    missing = await seller.post(f"/orders/{order_id}/ship", {"carrier": "Royal Mail"})
    assert missing.status_code == 400
    assert field_error(missing.text, "field-tracking_number") == "Enter the tracking number."
    assert await order_status(ctx, order_id) == "paid"
    shipped = await seller.post(
        f"/orders/{order_id}/ship", {"carrier": "Royal Mail", "tracking_number": "RM123GB"}
    )
    assert shipped.status_code == 303
    notice = outbox.last_to(buyer_person.email)
    assert "on its way" in str(notice["Subject"]) and "RM123GB" in mail_text(notice)
    seen = text_of(await buyer.get(f"/orders/{order_id}"))
    assert "Royal Mail" in seen and "RM123GB" in seen

    # the buyer says it arrived; a review needs stars
    assert (await buyer.post(f"/orders/{order_id}/delivered")).status_code == 303
    async with ctx.sessions() as session:
        line_id = (await session.scalars(select(OrderLine.id))).one()
    review_path = f"/orders/{order_id}/lines/{line_id}/review"
    no_stars = await buyer.post(review_path, {"text": "Lovely"})
    assert no_stars.status_code == 400
    assert "Choose 1 to 5 stars." in text_of(no_stars)
    assert await count(ctx, Review) == 0

    # a photo that is not a picture is refused, and the review with it
    not_photo = await buyer.post(
        review_path,
        {"stars": "5", "text": "Lovely"},
        files={"photo": ("mug.jpg", b"not really a jpeg", "image/jpeg")},
    )
    assert not_photo.status_code == 400
    assert await count(ctx, Review) == 0

    # stars, words and a photo: on the listing page, the photo cleaned of its GPS position
    posted = await buyer.post(
        review_path,
        {"stars": "4", "text": "Holds a proper pint of tea."},
        files={"photo": ("mug.jpg", photo_with_gps(), "image/jpeg")},
    )
    assert posted.status_code == 303
    listing_page = await buyer.get(f"/listings/{mug['id']}")
    seen = text_of(listing_page)
    assert "Holds a proper pint of tea." in seen and "4 out of 5 stars" in listing_page.text
    photo_url = re.search(r'class="review-photo" src="([^"]+)"', listing_page.text)
    assert photo_url and photo_url.group(1).endswith(".webp")
    served = await buyer.get(photo_url.group(1))
    assert served.status_code == 200
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.format == "WEBP" and not image.getexif()
    assert b"PhoneMaker" not in served.content
    async with ctx.sessions() as session:
        media = (await session.scalars(select(MediaObject))).one()
    assert media.is_public and media.status == "ready"

    # a second review of the same line is refused
    twice = await buyer.post(review_path, {"stars": "1"})
    assert twice.status_code == 409

    # the seller replies from the dashboard, once
    async with ctx.sessions() as session:
        review_id = (await session.scalars(select(Review.id))).one()
    replied = await seller.post(
        f"/sell/reviews/{review_id}/reply", {"text": "Thank you! Enjoy the tea.", "next": "/sell"}
    )
    assert replied.headers["location"] == "/sell"
    seen = text_of(await buyer.get(f"/listings/{mug['id']}"))
    assert "Reply from the maker Thank you! Enjoy the tea." in seen
    assert (await seller.post(f"/sell/reviews/{review_id}/reply", {"text": "x"})).status_code == 409

    # and, happy with it, the buyer completes the order (the seller cannot do that for them)
    assert (await seller.post(f"/orders/{order_id}/complete")).status_code == 404
    assert (await buyer.post(f"/orders/{order_id}/complete")).status_code == 303
    assert await order_status(ctx, order_id) == "completed"


# --- digital downloads ------------------------------------------------------------------


async def test_a_digital_pattern_opens_only_for_the_buyer_once_paid(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext, settings: Settings
) -> None:
    seller, _ = await web_person(api, browsers, "patterner", "198.51.100.17")
    await seller.post("/sell/shop", {"name": "Pattern house", "handle": "pattern-house"})
    form = {
        "title": "Cable hat pattern",
        "category": "knitting",
        "kind": "digital",
        "variant_name": "PDF",
        "variant_price": "6",
        "action": "publish",
    }

    # a file that is not a PDF is refused, and the listing with it
    refused = await seller.post(
        "/sell/listings", form, files={"file": ("hat.pdf", b"GIF89a...", "application/pdf")}
    )
    assert refused.status_code == 400
    assert field_error(refused.text, "field-file").startswith("That file is not a PDF.")
    assert await count(ctx, Listing) == 0

    made = await seller.post(
        "/sell/listings", form, files={"file": ("hat.pdf", PDF, "application/pdf")}
    )
    assert made.status_code == 303
    async with ctx.sessions() as session:
        listing = (await session.scalars(select(Listing))).one()
        variant_id = (await session.scalars(select(Variant.id))).one()
    key = listing.digital_file_key
    assert key is not None and re.fullmatch(rf"media/{listing.id}/[0-9a-f]{{32}}\.pdf", key)
    assert listing.digital_file_name == "hat.pdf"
    # the file is private: its plain media URL does not serve it
    assert (await api.get(f"/media/{key}")).status_code == 404

    # bought and placed, but not paid (the card was declined): no download yet
    buyer, buyer_person = await web_person(api, browsers, "knitfan", "198.51.100.18")
    await add_to_cart(buyer, str(variant_id))
    declined = await buyer.post("/checkout", await checkout_form(buyer, card_number=DECLINE))
    async with ctx.sessions() as session:
        order = (await session.scalars(select(Order))).one()
        line_id = (await session.scalars(select(OrderLine.id))).one()
    # a digital-only order has nothing to deliver
    assert (order.shipping_total, order.items_total) == (0, 600)
    download_path = f"/orders/{order.id}/lines/{line_id}/download"
    locked = await buyer.get(download_path)
    assert locked.status_code == 403
    assert "This download opens once the order is paid." in text_of(locked)
    assert "The download opens once the order is paid." in text_of(
        await buyer.get(f"/orders/{order.id}")
    )

    # paid: the buyer gets a short-lived signed link, which serves the PDF
    pay_page = await buyer.get(declined.headers["location"])
    paid = await buyer.post(
        f"{declined.headers['location']}/pay",
        {"card_number": SUCCESS, "idempotency_key": hidden(pay_page.text, "idempotency_key")},
    )
    assert paid.status_code == 303
    await run_jobs(ctx)
    assert "Download the PDF" in text_of(await buyer.get(f"/orders/{order.id}"))
    link = await buyer.get(download_path)
    assert link.status_code == 303 and link.headers["location"].startswith("/media/_s/")
    pdf = await buyer.get(link.headers["location"])
    assert pdf.status_code == 200 and pdf.content == PDF
    api_link = await api.get(
        f"/api/v1/orders/{order.id}/lines/{line_id}/download", headers=buyer_person.auth
    )
    assert api_link.status_code == 200
    assert api_link.json()["expires_in"] == settings.private_url_seconds

    # nobody else gets one: not another buyer, not even the seller
    stranger, stranger_person = await web_person(api, browsers, "freeloader", "198.51.100.19")
    assert (await stranger.get(download_path)).status_code == 404
    assert (await seller.get(download_path)).status_code == 404
    refused_api = await api.get(
        f"/api/v1/orders/{order.id}/lines/{line_id}/download", headers=stranger_person.auth
    )
    assert refused_api.status_code == 404


async def test_a_made_to_order_listing_needs_its_lead_time_and_shows_it(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    seller, _ = await web_person(api, browsers, "commissions", "198.51.100.20")
    await seller.post("/sell/shop", {"name": "Bowl works", "handle": "bowl-works"})
    form = {
        "title": "Turned oak bowl",
        "category": "woodwork",
        "kind": "made_to_order",
        "variant_name": "Oak",
        "variant_price": "85",
        "action": "publish",
    }
    missing = await seller.post("/sell/listings", form)
    assert missing.status_code == 400
    assert field_error(missing.text, "field-lead_time_days") == (
        "Say how many days it takes to make (1 to 365)."
    )
    assert await count(ctx, Listing) == 0

    made = await seller.post("/sell/listings", {**form, "lead_time_days": "14"})
    assert made.status_code == 303
    async with ctx.sessions() as session:
        listing = (await session.scalars(select(Listing))).one()
        variant = (await session.scalars(select(Variant))).one()
    assert (listing.kind, listing.lead_time_days, variant.stock) == ("made_to_order", 14, None)
    seen = text_of(await browsers("198.51.100.21").get(f"/listings/{listing.id}"))
    assert "Made to order, ships in 14 days" in seen and "£85.00" in seen


async def test_one_checkout_for_two_shops_makes_two_orders_paid_once(
    api: httpx.AsyncClient, browsers: BrowserFactory, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "potteryone", stock=3)
    _, bowl = await seller_with_listing(api, "potterytwo", stock=3, price=3000)
    buyer, _ = await web_person(api, browsers, "twoshops", "198.51.100.22")
    await add_to_cart(buyer, mug["variants"][0]["id"])
    await add_to_cart(buyer, bowl["variants"][0]["id"])

    cart = text_of(await buyer.get("/cart"))
    assert "potteryone studio" in cart and "potterytwo studio" in cart
    page = text_of(await buyer.get("/checkout"))
    # £12.50 + £3.95 + 20 % = £19.74; £30.00 + £3.95 + 20 % = £40.74
    assert "Total £19.74" in page and "Total £40.74" in page
    assert "To pay for 2 shops £60.48" in page and "Pay £60.48" in page

    order_id = order_id_from(await buyer.post("/checkout", await checkout_form(buyer)))
    await run_jobs(ctx)
    assert await count(ctx, Payment) == 1
    async with ctx.sessions() as session:
        statuses = (await session.scalars(select(Order.status))).all()
    assert sorted(statuses) == ["paid", "paid"]
    first = await buyer.get(f"/orders/{order_id}")
    assert "Also in this checkout" in text_of(first)
    sibling = re.search(r'href="/orders/([0-9a-f-]{36})"', first.text.split("Also in this")[1])
    assert sibling and sibling.group(1) != order_id
    assert (await buyer.get(f"/orders/{sibling.group(1)}")).status_code == 200
