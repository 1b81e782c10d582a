"""Shop pages: a shop, a listing, the cart, checkout and payment, orders and the seller's
dashboard.

Handlers are thin: they read the form, call the same service functions the JSON API calls,
then render or redirect (303, with a toast). A form the service turns down is rendered again
with its errors while the request's transaction rolls back (``FormRejected``, as on the
accounts pages), so nothing half-written is kept.

Paying asks the payment provider, which must not happen while a transaction is held (on
SQLite every transaction holds the write lock). Those handlers authenticate in a short
transaction of their own (``ApiOrWebUser``, which also checks CSRF) and the payment services
open their own, exactly as the JSON payment endpoints do.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from craftreel.accounts.api import read_upload
from craftreel.accounts.deps import ApiOrWebUser, WebIdentity, WebOptionalIdentity
from craftreel.accounts.models import User
from craftreel.accounts.service import Identity
from craftreel.accounts.views import (
    FormInvalid,
    FormRejected,
    PageRoute,
    Toast,
    field_errors,
    page,
    redirect,
    safe_next,
)
from craftreel.context import AppContext
from craftreel.core import idempotency
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, DomainError, InvalidInput
from craftreel.core.web import verify_csrf
from craftreel.deps import Ctx, Uow
from craftreel.media.models import MediaObject
from craftreel.shop import downloads, gallery, orders, payments, schemas, service, shipping
from craftreel.shop import photos as shop_photos
from craftreel.shop.models import Category, ListingKind, ListingStatus, OrderStatus
from craftreel.shop.prices import format_price, parse_price, plain_amount
from craftreel.shop.schemas import MAX_PHOTOS

router = APIRouter(
    include_in_schema=False, dependencies=[Depends(verify_csrf)], route_class=PageRoute
)

PAGE_SIZE = 24
Text = Annotated[str, Form()]
TextList = Annotated[list[str] | None, Form()]
Uploads = Annotated[list[UploadFile] | None, File()]
NextPath = Annotated[str, Form(alias="next")]
M = TypeVar("M", bound=BaseModel)

COUNTRIES: dict[str, str] = {
    "GB": "United Kingdom",
    "IE": "Ireland",
    "FR": "France",
    "DE": "Germany",
    "NL": "Netherlands",
    "BE": "Belgium",
    "ES": "Spain",
    "IT": "Italy",
    "PT": "Portugal",
    "AT": "Austria",
    "CH": "Switzerland",
    "DK": "Denmark",
    "SE": "Sweden",
    "NO": "Norway",
    "FI": "Finland",
    "PL": "Poland",
    "US": "United States",
    "CA": "Canada",
    "AU": "Australia",
    "NZ": "New Zealand",
    "JP": "Japan",
}
CURRENCIES = {
    "GBP": "£ GBP",
    "EUR": "€ EUR",
    "USD": "$ USD",
    "CAD": "CA$ CAD",
    "AUD": "A$ AUD",
}
KINDS = {
    ListingKind.PHYSICAL: "Made and in stock",
    ListingKind.MADE_TO_ORDER: "Made to order",
    ListingKind.DIGITAL: "Digital download (PDF)",
}
STATUS_LABELS = {
    OrderStatus.PLACED: "Awaiting payment",
    OrderStatus.PAID: "Paid",
    OrderStatus.SHIPPED: "Shipped",
    OrderStatus.DELIVERED: "Delivered",
    OrderStatus.COMPLETED: "Completed",
    OrderStatus.CANCELLED: "Cancelled",
    ListingStatus.DRAFT: "Draft",
    ListingStatus.ACTIVE: "Active",
    ListingStatus.SOLD_OUT: "Sold out",
    ListingStatus.ARCHIVED: "Archived",
}
TIMELINE = [
    (OrderStatus.PLACED, "Placed"),
    (OrderStatus.PAID, "Paid"),
    (OrderStatus.SHIPPED, "Shipped"),
    (OrderStatus.DELIVERED, "Delivered"),
    (OrderStatus.COMPLETED, "Completed"),
]
DOWNLOAD_TIMELINE = [
    (OrderStatus.PLACED, "Placed"),
    (OrderStatus.PAID, "Paid"),
    (OrderStatus.DELIVERED, "Ready to download"),
    (OrderStatus.COMPLETED, "Completed"),
]
#: What to tell a buyer whose card the provider refused (by the provider's failure code).
PAYMENT_FAILURES = {
    "card_declined": "Your card was declined. Nothing was charged — try another card.",
    "insufficient_funds": (
        "Your card has insufficient funds. Nothing was charged — try another card."
    ),
}
PAYMENT_FAILED = "The payment did not go through. Nothing was charged — try again."
#: The built-in test provider's cards, as the checkout page explains them.
TEST_CARDS = [
    ("4242 4242 4242 4242", "Pays successfully"),
    ("4000 0000 0000 0002", "Is declined"),
    ("4000 0000 0000 9995", "Fails: insufficient funds"),
    ("4000 0000 0000 3220", "Asks you to confirm the payment first"),
]

# What to say when a field fails its schema; pydantic's own words are for developers.
FIELD_PROBLEMS = {
    "title": "Give it a title of up to 140 characters.",
    "description": "Keep the description to 10,000 characters.",
    "category": "Choose a category.",
    "kind": "Choose what kind of listing this is.",
    "lead_time_days": "Enter how many days it takes to make, 1 to 365.",
    "variants": "Add at least one option with a price.",
    "price_minor": "Enter a price like 12.50.",
    "stock": "Enter how many you have, 0 or more.",
    "quantity": "Choose a quantity from 1 to 99.",
    "variant_id": "Choose an option.",
    "shipping_profile_id": "Choose how it is sent.",
    "handle": "Use 3 to 40 letters, numbers, dots, dashes or underscores, starting with a "
    "letter or number.",
    "currency": "Choose a currency.",
    "origin_country": "Choose the country you ship from.",
    "shipping_policy": "Keep it to 4,000 characters.",
    "returns_policy": "Keep it to 4,000 characters.",
    "shipping_rates": "Enter shipping prices like 3.95.",
    "free_shipping_over": "Enter an amount like 50.00, or leave it empty.",
    "line1": "Enter the first line of the address.",
    "city": "Enter the town or city.",
    "postcode": "Enter the postcode.",
    "country": "Choose a country.",
    "stars": "Choose 1 to 5 stars.",
    "text": "Keep it to 4,000 characters.",
    "carrier": "Enter the carrier, like Royal Mail.",
    "tracking_number": "Enter the tracking number.",
}
#: Field names that mean different things in different forms.
NAME_PROBLEMS = {
    "address": "Enter the name to deliver to.",
    "shop": "Enter your shop’s name (up to 80 characters).",
    "variant": "Name this option, like Blue or Large.",
}


# --- rendering -------------------------------------------------------------------------


def _helpers() -> dict[str, Any]:
    """What every shop template may call."""
    return {
        "price": format_price,
        "amount": plain_amount,
        "countries": COUNTRIES,
        "currencies": CURRENCIES,
        "kinds": KINDS,
        "categories": [(c.value, c.value.replace("_", " ").capitalize()) for c in Category],
        "status_label": lambda status: STATUS_LABELS.get(status, str(status).capitalize()),
        "short_id": lambda value: str(value).replace("-", "")[-8:].upper(),
        "day": lambda moment: moment.strftime("%-d %b %Y") if moment else "",
        "stamp": lambda moment: moment.strftime("%-d %b %Y, %H:%M UTC") if moment else "",
        "rate_list": rate_list,
    }


def rate_list(rates: dict[str, int], currency: str) -> str:
    """``United Kingdom £3.95, everywhere else £12.00`` (countries first, by code)."""
    ordered = sorted(rates.items(), key=lambda item: (item[0] == "*", item[0]))
    parts = [
        f"{'everywhere else' if region == '*' else COUNTRIES.get(region, region)} "
        f"{'free' if amount == 0 else format_price(amount, currency)}"
        for region, amount in ordered
    ]
    text = ", ".join(parts)
    return text[:1].upper() + text[1:]


def shop_page(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a shop page (with the toast a redirect left for it)."""
    return page(request, template, {**_helpers(), **(context or {})}, status_code=status_code)


def _reject(
    request: Request, template: str, exc: DomainError, context: dict[str, Any]
) -> FormRejected:
    """The form rendered again with the error next to its field; the transaction rolls back."""
    errors = field_errors(exc)
    response = shop_page(request, template, {**context, "errors": errors}, exc.status_code)
    return FormRejected(response, exc)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def toast_header(toast: Toast) -> dict[str, str]:
    """An HX-Trigger header that makes app.js show ``toast``."""
    text, kind = toast
    return {"HX-Trigger": json.dumps({"craftreel:toast": {"message": text, "kind": kind}})}


def parse(model: type[M], names: str = "", **values: Any) -> M:
    """The form as a schema, or ``FormInvalid`` naming each field that failed (nested fields
    as ``variants.0.price_minor``). ``names`` says what a top-level ``name`` field names."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            last = loc[-1] if loc else ""
            if last == "name":
                message = NAME_PROBLEMS.get(names if len(loc) == 1 else "variant", "Enter a name.")
            else:
                message = FIELD_PROBLEMS.get(last, str(error["msg"]))
            problems.setdefault(".".join(loc), message)
        raise FormInvalid(fields=problems) from exc


def new_key() -> str:
    """A fresh Idempotency-Key for one rendering of a form that charges or places an order."""
    return secrets.token_urlsafe(18)


CartGroup = tuple[str, str, list[schemas.CartLineOut]]


def _grouped(lines: Sequence[schemas.CartLineOut]) -> list[CartGroup]:
    """Cart lines by shop, in the order shops first appear: (handle, name, lines)."""
    groups: dict[str, CartGroup] = {}
    for line in lines:
        groups.setdefault(line.shop_handle, (line.shop_handle, line.shop_name, []))[2].append(line)
    return list(groups.values())


async def appbar_extras(request: Request, uow: UnitOfWork, user: User) -> None:
    """What the app bar shows on every page for a signed-in person: the number of items in
    their cart (one cheap query; ``base.html`` renders it through ``shop/_cart_link.html``)."""
    request.state.cart_count = await service.cart_count(uow, user.id)


async def _is_shop_owner(uow: UnitOfWork, viewer: Identity | None, shop_id: UUID) -> bool:
    if viewer is None:
        return False
    mine = await service.my_shop(uow, viewer.user)
    return mine is not None and mine.id == shop_id


# --- a shop and a listing ---------------------------------------------------------------


@router.get("/shop/{handle}")
async def shop(
    handle: str,
    request: Request,
    viewer: WebOptionalIdentity,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
) -> Response:
    """A shop: its name, policies, rating, and what it has for sale."""
    profile = await service.shop_profile(uow, handle)
    listings, next_cursor = await service.shop_listings(ctx, uow, handle, cursor, PAGE_SIZE)
    reviews = await orders.shop_reviews(ctx, uow, profile.id, limit=6)
    return shop_page(
        request,
        "shop/shop.html",
        {
            "shop": profile,
            "listings": listings,
            "next_cursor": next_cursor,
            "reviews": reviews,
            "is_owner": await _is_shop_owner(uow, viewer, profile.id),
        },
    )


def stock_note(listing: schemas.ListingOut, variant: schemas.VariantOut) -> str:
    """What a buyer needs to know about getting this variant."""
    if listing.kind == ListingKind.DIGITAL:
        return "Digital download"
    if listing.kind == ListingKind.MADE_TO_ORDER:
        days = listing.lead_time_days or 0
        return f"Made to order, ships in {days} day{'s' if days != 1 else ''}"
    if variant.stock is None:
        return "In stock"
    if variant.stock == 0:
        return "Sold out"
    return f"Only {variant.stock} left" if variant.stock <= 3 else f"{variant.stock} in stock"


@router.get("/listings/{listing_id}")
async def listing(
    listing_id: UUID, request: Request, viewer: WebOptionalIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """A listing: gallery, description, variants with price and stock, reviews."""
    found = await service.get_listing(ctx, uow, viewer.user if viewer else None, listing_id)
    profile = await service.shop_profile(uow, found.shop_handle)
    prices = sorted({v.price_minor for v in found.variants})
    currency = profile.currency
    price_label = (
        format_price(prices[0], currency)
        if len(prices) == 1
        else f"From {format_price(prices[0], currency)}"
    )
    return shop_page(
        request,
        "shop/listing.html",
        {
            "listing": found,
            "shop": profile,
            "price_label": price_label,
            "notes": {v.id: stock_note(found, v) for v in found.variants},
            "buyable": [v for v in found.variants if v.available],
            "reviews": await orders.listing_reviews(ctx, uow, listing_id),
            "delivery": await shipping.methods_of_profile(uow, found.shipping_profile_id),
            "is_owner": await _is_shop_owner(uow, viewer, profile.id),
            "signed_in": viewer is not None,
        },
    )


# --- the cart ---------------------------------------------------------------------------


@router.post("/cart/lines")
async def add_to_cart(
    request: Request,
    identity: WebIdentity,
    uow: Uow,
    variant_id: Text = "",
    quantity: Text = "1",
) -> Response:
    """Add a variant to the cart: htmx gets a toast (and the cart count); a form, the cart."""
    body = parse(schemas.CartLineIn, variant_id=variant_id, quantity=quantity or "1")
    cart = await service.add_to_cart(uow, identity.user, body)
    toast: Toast = ("Added to your cart.", "success")
    if is_htmx(request):
        count = sum(line.quantity for line in cart.lines)
        response = shop_page(request, "shop/_cart_link.html", {"count": count, "oob": True})
        response.headers.update(toast_header(toast))
        return response
    return redirect(request, "/cart", toast)


@router.get("/cart")
async def cart(request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    """The cart by shop, with today's prices and stock."""
    current = await service.cart(uow, identity.user, ctx)
    return shop_page(
        request,
        "shop/cart.html",
        {
            "cart": current,
            "groups": _grouped(current.lines),
            "blocked": any(line.availability != "ok" for line in current.lines),
        },
    )


@router.post("/cart/lines/{variant_id}")
async def set_quantity(
    variant_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    quantity: Text = "",
) -> Response:
    """Change a line's quantity; 0 (or the Remove button) takes it out."""
    if not quantity.strip().isdigit() or not 0 <= int(quantity) <= 99:
        raise InvalidInput(FIELD_PROBLEMS["quantity"], field="quantity")
    count = int(quantity)
    current = await service.set_cart_quantity(uow, identity.user, variant_id, count, ctx)
    toast: Toast = (
        ("Removed from your cart.", "info") if count == 0 else ("Cart updated.", "success")
    )
    if not is_htmx(request):
        return redirect(request, "/cart", toast)
    response = shop_page(
        request,
        "shop/cart.html",
        {
            "cart": current,
            "groups": _grouped(current.lines),
            "blocked": any(line.availability != "ok" for line in current.lines),
        },
    )
    response.headers.update(toast_header(toast))
    return response


# --- checkout and paying ----------------------------------------------------------------


def _method_ids(values: list[str] | None) -> list[UUID]:
    """The delivery methods a form chose (one per parcel); what is not an id is no choice."""
    return _ids(values)[:50]


async def _checkout_context(
    ctx: AppContext,
    uow: UnitOfWork,
    user: User,
    values: dict[str, str],
    methods: Sequence[UUID] = (),
) -> dict[str, Any]:
    country = values.get("country") or "GB"
    if country not in COUNTRIES:
        country = "GB"
    current = await service.cart(uow, user, ctx)
    return {
        "values": {**values, "country": country},
        "errors": {},
        "cart": current,
        "groups": _grouped(current.lines),
        "quote": await service.quote(ctx, uow, user, country, methods),
        "idempotency_key": new_key(),
        "test_cards": TEST_CARDS,
    }


@router.get("/checkout")
async def checkout(
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    country: str = "",
    shipping_method: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """Where to send it, how, and how to pay: per shop, the delivery methods that go to the
    chosen country (the cheapest picked unless ``shipping_method`` says otherwise) and the
    totals (items, shipping, tax), the test card, and a fresh Idempotency-Key for this form."""
    methods = _method_ids(shipping_method)
    context = await _checkout_context(ctx, uow, identity.user, {"country": country}, methods)
    if not context["cart"].lines:
        return redirect(request, "/cart", ("Your cart is empty.", "info"))
    return shop_page(request, "shop/checkout.html", context)


async def _checkout_again(
    request: Request,
    ctx: AppContext,
    user: User,
    values: dict[str, str],
    methods: Sequence[UUID],
    exc: DomainError,
) -> Response:
    """The checkout form again with what went wrong (in a transaction of its own)."""
    async with ctx.uow() as uow:
        context = await _checkout_context(ctx, uow, user, values, methods)
    return shop_page(
        request, "shop/checkout.html", {**context, "errors": field_errors(exc)}, exc.status_code
    )


class TotalChanged(Conflict):
    """The order comes to another total than the checkout form showed; nothing is placed."""

    code = "checkout_total_changed"
    message = "The total changed with the delivery you chose: check it, then press Pay again."


def _card(card_number: str) -> str:
    if not card_number.strip():
        raise InvalidInput("Enter a card number.", field="card_number")
    return payments.card_digits(card_number)


def _form_key(value: str) -> str:
    try:
        return idempotency.check_key(value)
    except InvalidInput as exc:
        raise InvalidInput("This form has expired. Reload the page and try again.") from exc


@router.post("/checkout")
async def place_order(
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    name: Text = "",
    line1: Text = "",
    line2: Text = "",
    city: Text = "",
    postcode: Text = "",
    country: Text = "",
    shipping_method: TextList = None,
    expected_total: Text = "",
    card_number: Text = "",
    idempotency_key: Text = "",
) -> Response:
    """Place the order (one per shop, stock held, sent by the delivery methods chosen) and
    pay it with the test card.

    The form carries the total it showed: if the order comes to anything else (a delivery
    method picked without JavaScript to redraw the totals, a price changed meanwhile),
    nothing is placed and the form is shown again with the new total.

    The form carries a key made when it was rendered: the checkout is made with it and the
    payment with it plus the card, so a repeated submit finds the same checkout and the same
    payment and nothing is charged twice; another card after a refusal is a new attempt.
    """
    values = {
        "name": name,
        "line1": line1,
        "line2": line2,
        "city": city,
        "postcode": postcode,
        "country": country,
    }
    methods = _method_ids(shipping_method)
    try:
        address = parse(
            schemas.Address,
            names="address",
            name=name,
            line1=line1,
            line2=line2.strip(),
            city=city,
            postcode=postcode,
            country=country,
        )
        digits = _card(card_number)
        key = _form_key(idempotency_key)
        body = schemas.CheckoutCreate(shipping_address=address, shipping_methods=methods)
        async with ctx.uow() as uow:
            _, placed = await service.start_checkout(ctx, uow, user, body, key)
            total = placed["total"]
            if expected_total.isdigit() and isinstance(total, int) and total != int(expected_total):
                raise TotalChanged(total=total)
    except DomainError as exc:
        return await _checkout_again(request, ctx, user, values, methods, exc)
    orders_placed = placed["orders"]
    assert isinstance(orders_placed, list) and orders_placed
    landing = UUID(str(orders_placed[0]["id"]))
    return await _pay(request, ctx, user, UUID(str(placed["id"])), landing, digits, key)


async def _pay(
    request: Request,
    ctx: AppContext,
    user: User,
    checkout_id: UUID,
    landing: UUID,
    digits: str,
    key: str,
) -> Response:
    """Charge the card; then to the order (paid or being confirmed) or back to the payment
    page (refused, or a step to complete)."""
    card_hash = hashlib.sha256(digits.encode()).hexdigest()[:16]
    try:
        payment = await payments.pay(
            ctx,
            user,
            checkout_id,
            payments.PaymentCreate(card_number=digits),
            f"{key}:{card_hash}",
        )
    except Conflict:
        # A twin of this submit is paying right now: its page tells how it went.
        return redirect(request, f"/checkout/{checkout_id}")
    except DomainError as exc:
        return redirect(request, f"/checkout/{checkout_id}", (exc.detail_message, "error"))
    if payment.status in (payments.PaymentStatus.PROCESSING, payments.PaymentStatus.SUCCEEDED):
        return redirect(
            request, f"/orders/{landing}", ("Thank you! Your order is placed.", "success")
        )
    return redirect(request, f"/checkout/{checkout_id}")


def _failure_message(payment: payments.PaymentOut | None) -> str | None:
    if payment is None or payment.status != payments.PaymentStatus.FAILED:
        return None
    return PAYMENT_FAILURES.get(payment.failure_code or "", PAYMENT_FAILED)


async def _payment_context(uow: UnitOfWork, user: User, checkout_id: UUID) -> dict[str, Any]:
    placed = await service.get_checkout(uow, user, checkout_id)
    payment = await payments.latest_payment(uow, user, checkout_id)
    return {
        "checkout": placed,
        "payment": payment,
        "failure": _failure_message(payment),
        "payable": placed.status == "open" and placed.expires_at > utcnow(),
        "idempotency_key": new_key(),
        "test_cards": TEST_CARDS,
        "errors": {},
    }


@router.get("/checkout/{checkout_id}")
async def payment_page(
    checkout_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    """A placed checkout's payment: try a card (again), or complete the bank's step."""
    context = await _payment_context(uow, identity.user, checkout_id)
    payment = context["payment"]
    done = payments.PaymentStatus.PROCESSING, payments.PaymentStatus.SUCCEEDED
    if context["checkout"].status == "paid" or (payment and payment.status in done):
        return redirect(request, f"/orders/{context['checkout'].orders[0].id}")
    return shop_page(request, "shop/pay.html", context)


@router.post("/checkout/{checkout_id}/pay")
async def pay_again(
    checkout_id: UUID,
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    card_number: Text = "",
    idempotency_key: Text = "",
) -> Response:
    """Pay a placed checkout with a card (after a refusal, or from the orders page)."""
    try:
        digits = _card(card_number)
        key = _form_key(idempotency_key)
    except DomainError as exc:
        async with ctx.uow() as uow:
            context = await _payment_context(uow, user, checkout_id)
        context["errors"] = field_errors(exc)
        return shop_page(request, "shop/pay.html", context, exc.status_code)
    async with ctx.uow() as uow:
        placed = await service.get_checkout(uow, user, checkout_id)
    return await _pay(request, ctx, user, checkout_id, placed.orders[0].id, digits, key)


@router.post("/payments/{payment_id}/confirm")
async def confirm_payment(
    payment_id: UUID, request: Request, user: ApiOrWebUser, ctx: Ctx
) -> Response:
    """Complete the step the bank asked for (the test card 4000 0000 0000 3220)."""
    payment = await payments.confirm_payment(ctx, user, payment_id)
    if payment.status not in (payments.PaymentStatus.PROCESSING, payments.PaymentStatus.SUCCEEDED):
        return redirect(request, f"/checkout/{payment.checkout_id}")
    async with ctx.uow() as uow:
        placed = await service.get_checkout(uow, user, payment.checkout_id)
    return redirect(
        request,
        f"/orders/{placed.orders[0].id}",
        ("Payment confirmed. Thank you! Your order is placed.", "success"),
    )


# --- orders -----------------------------------------------------------------------------


@router.get("/orders")
async def order_history(
    request: Request, identity: WebIdentity, uow: Uow, cursor: str | None = None
) -> Response:
    """My orders, newest first."""
    items, next_cursor = await orders.buyer_orders(uow, identity.user, cursor, PAGE_SIZE)
    template = "shop/_order_rows.html" if is_htmx(request) and cursor else "shop/orders.html"
    return shop_page(request, template, {"orders": items, "next_cursor": next_cursor})


def timeline(order: orders.OrderDetail) -> list[dict[str, Any]]:
    """The steps from placed to completed: which are done, which is now, and when. Downloads
    are not shipped: they are delivered as soon as they are paid."""
    stages = DOWNLOAD_TIMELINE if order.digital_only else TIMELINE
    steps = [status for status, _ in stages]
    reached = steps.index(OrderStatus(order.status)) if order.status in steps else -1
    when: dict[str, datetime | None] = {
        OrderStatus.PLACED: order.created_at,
        OrderStatus.PAID: order.paid_at,
        OrderStatus.SHIPPED: order.shipped_at,
        OrderStatus.DELIVERED: order.delivered_at,
        OrderStatus.COMPLETED: None,
    }
    return [
        {
            "status": status,
            "label": label,
            "done": n <= reached,
            "current": n == reached,
            "at": when[status] if n <= reached else None,
        }
        for n, (status, label) in enumerate(stages)
    ]


def awaiting_payment(order: orders.OrderDetail) -> bool:
    """A payment is on its way (the provider said yes; its confirmation has not landed)."""
    in_flight = (
        payments.PaymentStatus.REQUIRES_PAYMENT,
        payments.PaymentStatus.PROCESSING,
        payments.PaymentStatus.SUCCEEDED,
    )
    return order.status == OrderStatus.PLACED and order.payment_status in in_flight


def _order_context(order: orders.OrderDetail) -> dict[str, Any]:
    return {
        "order": order,
        "timeline": timeline(order),
        "waiting": awaiting_payment(order),
        "errors": {},
        "values": {},
    }


@router.get("/orders/{order_id}")
async def order_page(
    order_id: UUID, request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """One order, for its buyer (or the seller it was bought from)."""
    detail = await orders.order_detail(ctx, uow, identity.user, order_id)
    return shop_page(request, "shop/order.html", _order_context(detail))


@router.get("/orders/{order_id}/status")
async def order_status(order_id: UUID, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    """Polled while a payment is being confirmed: the page reloads once it has been."""
    detail = await orders.order_detail(ctx, uow, identity.user, order_id)
    if awaiting_payment(detail):
        return Response(status_code=204)
    return Response(status_code=200, headers={"HX-Refresh": "true"})


@router.post("/orders/{order_id}/delivered")
async def mark_delivered(
    order_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    """The buyer says the parcel arrived."""
    await orders.mark_delivered(uow, identity.user, order_id)
    return redirect(request, f"/orders/{order_id}", ("Marked as delivered. Enjoy it!", "success"))


@router.post("/orders/{order_id}/complete")
async def complete(order_id: UUID, request: Request, identity: WebIdentity, uow: Uow) -> Response:
    """The buyer is happy with a delivered order: it is completed."""
    await orders.complete(uow, identity.user, order_id)
    return redirect(request, f"/orders/{order_id}", ("Order completed. Thank you!", "success"))


@router.post("/orders/{order_id}/cancel")
async def cancel(order_id: UUID, request: Request, user: ApiOrWebUser, ctx: Ctx) -> Response:
    """The buyer cancels a paid order before it ships: the stock goes back and the payment
    for it is refunded (the toast says how the refund went)."""
    refund = await payments.cancel_order(ctx, user, order_id)
    if refund is None:
        toast: Toast = ("Order cancelled. Nothing was charged for it.", "success")
    elif refund.status == payments.RefundStatus.SUCCEEDED:
        amount = format_price(refund.amount, refund.currency)
        toast = (f"Order cancelled. {amount} is refunded to your card.", "success")
    elif refund.status == payments.RefundStatus.FAILED:
        amount = format_price(refund.amount, refund.currency)
        toast = (
            f"Order cancelled, but the card provider refused the refund of {amount}. "
            "The maker can send it again from their shop.",
            "error",
        )
    else:
        amount = format_price(refund.amount, refund.currency)
        toast = (f"Order cancelled. Your refund of {amount} is on its way to your card.", "info")
    return redirect(request, f"/orders/{order_id}", toast)


@router.post("/orders/{order_id}/ship")
async def ship(
    order_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    carrier: Text = "",
    tracking_number: Text = "",
) -> Response:
    """The seller sends a paid order: carrier and tracking number (the buyer is emailed)."""
    detail = await orders.order_detail(ctx, uow, identity.user, order_id)
    values = {"carrier": carrier, "tracking_number": tracking_number}
    try:
        body = parse(orders.ShipmentIn, carrier=carrier, tracking_number=tracking_number)
        await orders.ship(ctx, uow, identity.user, order_id, body)
    except DomainError as exc:
        context = {**_order_context(detail), "values": values}
        raise _reject(request, "shop/order.html", exc, context) from exc
    return redirect(
        request,
        f"/orders/{order_id}",
        ("Marked as shipped. The buyer has been emailed the tracking number.", "success"),
    )


@router.get("/orders/{order_id}/lines/{line_id}/download")
async def download(
    order_id: UUID, line_id: UUID, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """A digital item's file, through a short-lived signed link (paid orders, buyer only)."""
    url = await downloads.download_url(ctx, uow, identity.user, order_id, line_id)
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


@router.post("/orders/{order_id}/lines/{line_id}/review")
async def review(
    order_id: UUID,
    line_id: UUID,
    request: Request,
    identity: WebIdentity,
    ctx: Ctx,
    uow: Uow,
    stars: Text = "",
    text: Text = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Review a line that arrived: stars, words and one photo, once."""
    user = identity.user
    detail = await orders.order_detail(ctx, uow, user, order_id)
    if detail.viewer != "buyer" or line_id not in {line.id for line in detail.lines}:
        raise orders.OrderNotFound()
    values = {"line_id": str(line_id), "stars": stars, "text": text}
    try:
        body = parse(orders.ReviewIn, stars=stars or None, text=text)
        written = await orders.review(uow, user, line_id, body)
        if photo is not None and photo.filename:
            data = await read_upload(photo, ctx.settings.upload_max_image_bytes)
            await orders.attach_review_photo(ctx, uow, user, written.id, data)
    except DomainError as exc:
        context = {**_order_context(detail), "values": values}
        raise _reject(request, "shop/order.html", exc, context) from exc
    return redirect(request, f"/orders/{order_id}", ("Thank you for your review!", "success"))


# --- selling ----------------------------------------------------------------------------


def _shop_values() -> dict[str, str]:
    return {"currency": "GBP", "origin_country": "GB"}


@router.get("/sell")
async def sell(request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow) -> Response:
    """The seller's dashboard: orders to ship and shipped, revenue, listings, reviews — or,
    before any of that, the form that opens a shop."""
    user = identity.user
    mine = await service.my_shop(uow, user)
    if mine is None:
        return shop_page(request, "shop/open_shop.html", {"values": _shop_values(), "errors": {}})
    listings, _ = await service.my_listings(ctx, uow, user, None, 100)
    to_ship, _ = await orders.seller_orders(uow, user, OrderStatus.PAID, None, 20)
    shipped, _ = await orders.seller_orders(uow, user, OrderStatus.SHIPPED, None, 20)
    no_file = {
        item.id for item in listings if item.kind == ListingKind.DIGITAL and not item.has_file
    }
    return shop_page(
        request,
        "shop/sell.html",
        {
            "shop": service.shop_out(mine),
            "dashboard": await orders.dashboard(uow, user),
            "listings": listings,
            "to_ship": to_ship,
            "shipped": shipped,
            "reviews": await orders.my_shop_reviews(ctx, uow, user, 10),
            "profiles": await shipping.my_profiles(uow, user),
            "no_file": no_file,
            "payouts": await payments.payout_account(ctx, uow, user),
            "money": await payments.balance(uow, user, None, 10, PAYOUT_KINDS),
            "payout_states": PAYOUT_STATES,
            "errors": {},
            "values": {},
        },
    )


# --- the seller's money: payouts, refunds, cancelling ---------------------------------


#: Ledger rows shown as the payouts list.
PAYOUT_KINDS = (payments.LedgerKind.PAYOUT, payments.LedgerKind.PAYOUT_REVERSAL)
#: Why a seller refunds, as the refund form offers it (values: RefundCreate.reason).
REFUND_REASONS = {
    "requested": "The buyer asked for it",
    "damaged": "It arrived damaged",
    "not_as_described": "Not as described",
    "not_received": "It never arrived",
    "other": "Something else",
}
#: The payout account's state, as the dashboard says it.
PAYOUT_STATES = {
    "not_started": ("Not set up", "Set up payouts to take card payments and be paid."),
    "incomplete": ("Setup not finished", "Finish setting up payouts to take card payments."),
    "in_review": ("Being checked", "Stripe is checking your details. This can take a day."),
    "payouts_paused": (
        "Payouts paused",
        "You can take payments, but Stripe needs more details before paying you out.",
    ),
    "enabled": ("Payouts on", "Card payments go to your Stripe account and are paid out to you."),
}


@router.post("/sell/payouts/onboarding")
async def start_payouts(user: ApiOrWebUser, ctx: Ctx) -> Response:
    """Off to the provider's onboarding (a single-use link made now)."""
    link = await payments.start_onboarding(ctx, user)
    return RedirectResponse(link.url, status_code=303)


@router.get("/sell/payouts/refresh")
async def refresh_payouts_link(user: ApiOrWebUser, ctx: Ctx) -> Response:
    """The provider sends the seller here when a link lapsed: a fresh one."""
    link = await payments.start_onboarding(ctx, user)
    return RedirectResponse(link.url, status_code=303)


@router.get("/sell/payouts/return")
async def payouts_return(request: Request, user: ApiOrWebUser, ctx: Ctx) -> Response:
    """Back from onboarding: how the account stands now (its webhook may come later)."""
    account = await payments.refresh_account(ctx, user)
    label, text = PAYOUT_STATES.get(account.status, PAYOUT_STATES["incomplete"])
    toast: Toast = (f"{label}. {text}", "success" if account.status == "enabled" else "info")
    return redirect(request, "/sell#payouts", toast)


async def _money_page(
    request: Request,
    ctx: AppContext,
    user: User,
    order_id: UUID,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with ctx.uow() as uow:
        money = await payments.order_money(uow, user, order_id)
    return shop_page(
        request,
        "shop/sell_order.html",
        {
            "money": money,
            "reasons": REFUND_REASONS,
            "errors": errors or {},
            "values": {"refund": "all", "reason": "requested", **(values or {})},
            # A fresh Idempotency-Key per rendering: a double-tapped refund happens once.
            "key": new_key(),
        },
        status_code,
    )


@router.get("/sell/orders/{order_id}")
async def seller_order_money(
    order_id: UUID, request: Request, user: ApiOrWebUser, ctx: Ctx
) -> Response:
    """One of my shop's orders as money: refunds so far, a refund form, cancelling."""
    return await _money_page(request, ctx, user, order_id)


@router.post("/sell/orders/{order_id}/refund")
async def refund_from_dashboard(
    order_id: UUID,
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    refund: Text = "all",
    amount: Text = "",
    reason: Text = "requested",
    key: Text = "",
) -> Response:
    """Refund all that is left of an order, or part of it, with a reason."""
    values = {"refund": refund, "amount": amount, "reason": reason}
    try:
        async with ctx.uow() as uow:
            money = await payments.order_money(uow, user, order_id)
        minor: int | None = None
        if refund == "part":
            minor = _minor(amount, money.currency, "amount")
            if minor is None:
                raise FormInvalid(fields={"amount": "Enter how much to refund, like 5.00."})
        if reason not in REFUND_REASONS:
            raise FormInvalid(fields={"reason": "Choose a reason."})
        body = parse(payments.RefundCreate, amount=minor, reason=reason)
        done = await payments.refund_order(ctx, user, order_id, body, _form_key(key))
    except payments.OrderNotFound:
        raise
    except DomainError as exc:
        errors = field_errors(exc, "amount" if isinstance(exc, payments.RefundTooLarge) else "")
        return await _money_page(request, ctx, user, order_id, errors, values, exc.status_code)
    given = format_price(done.amount, done.currency)
    if done.status == payments.RefundStatus.SUCCEEDED:
        toast: Toast = (f"Refunded {given} to the buyer’s card.", "success")
    elif done.status == payments.RefundStatus.FAILED:
        toast = (f"The card provider refused the refund of {given}. Try again later.", "error")
    else:
        toast = (f"A refund of {given} is on its way to the buyer’s card.", "info")
    return redirect(request, f"/sell/orders/{order_id}", toast)


@router.post("/sell/orders/{order_id}/cancel")
async def cancel_from_dashboard(
    order_id: UUID, request: Request, user: ApiOrWebUser, ctx: Ctx
) -> Response:
    """The seller cancels a paid order before shipping it: stock back, payment refunded."""
    try:
        done = await payments.cancel_order(ctx, user, order_id)
    except payments.OrderNotFound:
        raise
    except DomainError as exc:
        return await _money_page(
            request, ctx, user, order_id, field_errors(exc), status_code=exc.status_code
        )
    if done is None:
        toast: Toast = ("Order cancelled. Nothing had been charged for it.", "success")
    elif done.status == payments.RefundStatus.SUCCEEDED:
        amount = format_price(done.amount, done.currency)
        toast = (f"Order cancelled and {amount} refunded. Its stock is back on sale.", "success")
    else:
        amount = format_price(done.amount, done.currency)
        toast = (
            f"Order cancelled; the refund of {amount} is still on its way. "
            "Its stock is back on sale.",
            "info",
        )
    return redirect(request, f"/sell/orders/{order_id}", toast)


def _minor(text: str, currency: str, field: str) -> int | None:
    """A typed price as minor units (None when left empty)."""
    if not text.strip():
        return None
    try:
        return parse_price(text, currency)
    except ValueError:
        raise FormInvalid(fields={field: FIELD_PROBLEMS["price_minor"]}) from None


@router.post("/sell/shop")
async def open_shop(
    request: Request,
    identity: WebIdentity,
    uow: Uow,
    name: Text = "",
    handle: Text = "",
    currency: Text = "GBP",
    origin_country: Text = "GB",
    home_rate: Text = "",
    world_rate: Text = "",
    free_over: Text = "",
    shipping_policy: Text = "",
    returns_policy: Text = "",
) -> Response:
    """Open my shop, with shipping prices for home and for everywhere else."""
    values = {
        "name": name,
        "handle": handle,
        "currency": currency,
        "origin_country": origin_country,
        "home_rate": home_rate,
        "world_rate": world_rate,
        "free_over": free_over,
        "shipping_policy": shipping_policy,
        "returns_policy": returns_policy,
    }
    try:
        money = currency if currency in CURRENCIES else "GBP"
        rates: dict[str, int] = {}
        home = _minor(home_rate, money, "home_rate")
        world = _minor(world_rate, money, "world_rate")
        if home is not None:
            rates[origin_country] = home
        if world is not None:
            rates["*"] = world
        body = parse(
            schemas.ShopCreate,
            names="shop",
            name=name,
            handle=handle.strip().lstrip("@"),
            currency=currency,
            origin_country=origin_country,
            shipping_policy=shipping_policy.strip(),
            returns_policy=returns_policy.strip(),
            shipping_rates=rates,
            free_shipping_over=_minor(free_over, money, "free_shipping_over"),
        )
        await service.open_shop(uow, identity.user, body)
    except DomainError as exc:
        raise _reject(request, "shop/open_shop.html", exc, {"values": values}) from exc
    return redirect(request, "/sell", ("Your shop is open. Add your first listing.", "success"))


# --- shipping profiles ------------------------------------------------------------------

#: How many delivery methods a profile may have, and blank rate rows offered per method.
MAX_METHODS = 10
BLANK_RATE_ROWS = 2
SHIPPING_PROBLEMS = {
    "name": "Name the delivery method, like Standard or Express.",
    "rates": "Add at least one country and its price.",
    "min_days": "Enter a number of days from 0 to 365.",
    "max_days": "Enter a number of days from 0 to 365.",
    "free_over": "Enter an amount like 50.00, or leave it empty.",
}


def _method_blocks(form: Any) -> list[dict[str, Any]]:
    """The delivery method blocks as typed (``m<n>_…`` fields), empty ones dropped: shown
    again, block i is ``m<i>`` and its problems are keyed ``methods.<i>.…``."""
    blocks: list[dict[str, Any]] = []
    for n in range(MAX_METHODS):
        regions = [str(v) for v in form.getlist(f"m{n}_region")]
        prices = [str(v).strip() for v in form.getlist(f"m{n}_rate")]
        # A row without a price says nothing (the new form suggests destinations).
        rows = [
            {"region": region, "price": price}
            for region, price in zip(regions, prices, strict=False)
            if price
        ]
        if form.get(f"m{n}_remove"):
            continue
        block: dict[str, Any] = {
            "id": str(form.get(f"m{n}_id") or "").strip(),
            "name": str(form.get(f"m{n}_name") or ""),
            "min_days": str(form.get(f"m{n}_min") or "").strip(),
            "max_days": str(form.get(f"m{n}_max") or "").strip(),
            "free_over": str(form.get(f"m{n}_free") or "").strip(),
            "rows": rows,
        }
        if block["id"] or block["name"].strip() or rows:
            blocks.append(block)
    return blocks


def _profile_payload(name: str, blocks: list[dict[str, Any]], currency: str) -> dict[str, Any]:
    """The typed blocks as ``ShippingProfileIn``'s fields; each bad price or day count
    named by its block (``methods.<i>.…``, i = its place among the kept blocks)."""
    problems: dict[str, str] = {}
    methods: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        method: dict[str, Any] = {"name": block["name"], "rates": {}}
        if block["id"]:
            method["id"] = block["id"]
        for key in ("min_days", "max_days"):
            if block[key]:
                if block[key].isdigit():
                    method[key] = int(block[key])
                else:
                    problems[f"methods.{i}.{key}"] = SHIPPING_PROBLEMS[key]
        if block["free_over"]:
            try:
                method["free_over"] = parse_price(block["free_over"], currency)
            except ValueError:
                problems[f"methods.{i}.free_over"] = SHIPPING_PROBLEMS["free_over"]
        for r, row in enumerate(block["rows"]):
            if not row["region"]:
                problems[f"methods.{i}.rate.{r}"] = "Choose where this price is for."
                continue
            try:
                method["rates"][row["region"]] = parse_price(row["price"], currency)
            except ValueError:
                problems[f"methods.{i}.rate.{r}"] = "Enter a price like 3.95 (0 for free)."
        methods.append(method)
    if problems:
        raise FormInvalid(fields={"": FormInvalid.message, **problems})
    return {"name": name, "methods": methods}


def _parse_profile(
    name: str, blocks: list[dict[str, Any]], currency: str
) -> schemas.ShippingProfileIn:
    payload = _profile_payload(name, blocks, currency)
    try:
        return schemas.ShippingProfileIn.model_validate(payload)
    except ValidationError as exc:
        problems: dict[str, str] = {"": FormInvalid.message}
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            if loc == ["name"]:
                problems["name"] = "Name the profile, like Small parcel or Furniture."
            elif loc == ["methods"]:
                problems[""] = "Add at least one delivery method, with a name and a price."
            elif len(loc) >= 3 and loc[0] == "methods":
                key = f"methods.{loc[1]}.{loc[2]}"
                problems.setdefault(key, SHIPPING_PROBLEMS.get(loc[2], "Check this."))
            elif len(loc) == 2 and loc[0] == "methods":
                problems.setdefault(
                    f"methods.{loc[1]}.max_days", "The slowest can't be faster than the fastest."
                )
            else:
                problems[""] = "Give each delivery method a name of its own."
        raise FormInvalid(fields=problems) from exc


def _profile_values(profile: schemas.ShippingProfileOut | None) -> dict[str, Any]:
    """A profile as its form shows it (a new one: Standard, home and everywhere else)."""
    if profile is None:
        return {"name": "", "blocks": []}
    return {
        "name": profile.name,
        "blocks": [
            {
                "id": str(method.id),
                "name": method.name,
                "min_days": "" if method.min_days is None else str(method.min_days),
                "max_days": "" if method.max_days is None else str(method.max_days),
                "free_over": ""
                if method.free_over is None
                else plain_amount(method.free_over, profile.currency),
                "rows": [
                    {"region": region, "price": plain_amount(amount, profile.currency)}
                    for region, amount in sorted(
                        method.rates.items(), key=lambda item: (item[0] == "*", item[0])
                    )
                ],
            }
            for method in profile.methods
        ],
    }


def _profile_form(
    shop: Any,
    values: dict[str, Any],
    profile: schemas.ShippingProfileOut | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    regions = [("", "Choose…"), ("*", "Everywhere else"), *COUNTRIES.items()]
    return {
        "values": values,
        "errors": errors or {},
        "profile": profile,
        "currency": shop.currency,
        "origin_country": shop.origin_country,
        "regions": regions,
        "blank_rows": BLANK_RATE_ROWS,
        "max_methods": MAX_METHODS,
    }


async def _seller_shop(uow: UnitOfWork, user: User) -> Any:
    mine = await service.my_shop(uow, user)
    if mine is None:
        raise service.NoShop()
    return mine


@router.get("/sell/shipping/new")
async def new_shipping_profile(request: Request, identity: WebIdentity, uow: Uow) -> Response:
    """A form for a new shipping profile: its name and delivery methods."""
    mine = await service.my_shop(uow, identity.user)
    if mine is None:
        return redirect(request, "/sell", ("Open your shop first.", "info"))
    return shop_page(request, "shop/shipping_form.html", _profile_form(mine, _profile_values(None)))


@router.post("/sell/shipping")
async def create_shipping_profile(
    request: Request, identity: WebIdentity, uow: Uow, name: Text = ""
) -> Response:
    """Save a new shipping profile."""
    mine = await _seller_shop(uow, identity.user)
    blocks = _method_blocks(await request.form())
    values = {"name": name, "blocks": blocks}
    try:
        body = _parse_profile(name, blocks, mine.currency)
        made = await shipping.create_profile(uow, identity.user, body)
    except DomainError as exc:
        raise _reject(request, "shop/shipping_form.html", exc, _profile_form(mine, values)) from exc
    return redirect(
        request,
        "/sell#shipping",
        (f"“{made.name}” is saved. Choose it on the listings it fits.", "success"),
    )


@router.get("/sell/shipping/{profile_id}/edit")
async def edit_shipping_profile(
    profile_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    mine = await _seller_shop(uow, identity.user)
    profile = await shipping.my_profile(uow, identity.user, profile_id)
    context = _profile_form(mine, _profile_values(profile), profile)
    return shop_page(request, "shop/shipping_form.html", context)


@router.post("/sell/shipping/{profile_id}")
async def save_shipping_profile(
    profile_id: UUID, request: Request, identity: WebIdentity, uow: Uow, name: Text = ""
) -> Response:
    """Save a shipping profile's name and methods (orders placed already keep theirs)."""
    mine = await _seller_shop(uow, identity.user)
    profile = await shipping.my_profile(uow, identity.user, profile_id)
    blocks = _method_blocks(await request.form())
    values = {"name": name, "blocks": blocks}
    try:
        body = _parse_profile(name, blocks, mine.currency)
        saved = await shipping.update_profile(uow, identity.user, profile_id, body)
    except DomainError as exc:
        context = _profile_form(mine, values, profile)
        raise _reject(request, "shop/shipping_form.html", exc, context) from exc
    return redirect(request, "/sell#shipping", (f"“{saved.name}” is saved.", "success"))


@router.post("/sell/shipping/{profile_id}/default")
async def default_shipping_profile(
    profile_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    made = await shipping.make_default(uow, identity.user, profile_id)
    toast: Toast = (f"New listings now ship with “{made.name}”.", "success")
    return redirect(request, "/sell#shipping", toast)


@router.post("/sell/shipping/{profile_id}/delete")
async def delete_shipping_profile(
    profile_id: UUID, request: Request, user: ApiOrWebUser, ctx: Ctx
) -> Response:
    """Delete a profile no listing uses; one in use (or the default) stays, with a reason."""
    try:
        async with ctx.uow() as uow:
            await shipping.delete_profile(uow, user, profile_id)
    except (shipping.ShippingProfileInUse, shipping.DefaultProfileKept) as exc:
        return redirect(request, f"/sell/shipping/{profile_id}/edit", (exc.detail_message, "error"))
    return redirect(request, "/sell#shipping", ("The shipping profile is deleted.", "success"))


def _variant_rows(
    ids: list[str] | None,
    names: list[str] | None,
    prices: list[str] | None,
    stocks: list[str] | None,
    stocks_was: list[str] | None,
) -> list[dict[str, str]]:
    """The variant rows as typed; empty extra rows are dropped."""
    ids, names, prices = ids or [], names or [], prices or []
    stocks, stocks_was = stocks or [], stocks_was or []
    count = max(len(names), len(prices), len(stocks), len(ids))

    def at(values: list[str], n: int) -> str:
        return values[n].strip() if n < len(values) else ""

    rows = []
    for n in range(count):
        row = {
            "id": at(ids, n),
            "name": at(names, n),
            "price": at(prices, n),
            "stock": at(stocks, n),
            "stock_was": at(stocks_was, n),
        }
        if row["id"] or row["name"] or row["price"] or row["stock"]:
            rows.append(row)
    return rows


def _variants_payload(rows: list[dict[str, str]], currency: str, kind: str) -> list[dict[str, Any]]:
    """The typed rows as the schema's variants; each bad price or stock named by its row."""
    problems: dict[str, str] = {}
    payload: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        item: dict[str, Any] = {"name": row["name"]}
        if row["id"]:
            item["id"] = row["id"]
        try:
            item["price_minor"] = parse_price(row["price"], currency)
        except ValueError:
            problems[f"variants.{n}.price_minor"] = FIELD_PROBLEMS["price_minor"]
        if kind == ListingKind.PHYSICAL:
            if not row["stock"].isdigit():
                problems[f"variants.{n}.stock"] = FIELD_PROBLEMS["stock"]
            else:
                item["stock"] = int(row["stock"])
            if row["stock_was"].isdigit():
                item["stock_was"] = int(row["stock_was"])
        payload.append(item)
    if problems:
        raise FormInvalid(fields=problems)
    return payload


def _listing_values(found: schemas.ListingOut) -> dict[str, Any]:
    currency = found.variants[0].currency if found.variants else "GBP"
    return {
        "title": found.title,
        "description": found.description,
        "category": found.category,
        "kind": found.kind,
        "lead_time_days": str(found.lead_time_days or ""),
        "shipping_profile_id": str(found.shipping_profile_id or ""),
        "rows": [
            {
                "id": str(v.id),
                "name": v.name,
                "price": plain_amount(v.price_minor, currency),
                "stock": "" if v.stock is None else str(v.stock),
                "stock_was": "" if v.stock is None else str(v.stock),
            }
            for v in found.variants
        ],
        "photo_order": [str(photo.id) for photo in found.photos],
        "photo_remove": [],
    }


def _listing_form(
    shop_currency: str,
    values: dict[str, Any],
    profiles: Sequence[schemas.ShippingProfileOut],
    listing: schemas.ListingOut | None = None,
    file_name: str | None = None,
) -> dict[str, Any]:
    photos = {str(photo.id): photo for photo in listing.photos} if listing else {}
    order = [i for i in values.get("photo_order") or [] if i in photos]
    shown = [photos[i] for i in order] + [p for i, p in photos.items() if i not in order]
    return {
        "values": values,
        "errors": {},
        "listing": listing,
        "photos": shown,
        "removing": set(values.get("photo_remove") or []),
        "max_photos": MAX_PHOTOS,
        "currency": shop_currency,
        "max_file_mb": downloads.MAX_BYTES // (1024 * 1024),
        "profiles": [(str(profile.id), _profile_label(profile)) for profile in profiles],
        "has_file": file_name is not None,
        "file_name": file_name,
    }


def _profile_label(profile: schemas.ShippingProfileOut) -> str:
    methods = ", ".join(method.name for method in profile.methods)
    return f"{profile.name} ({methods})" if methods else profile.name


def _photo_readers(
    ctx: AppContext, uploads: list[UploadFile] | None, room: int
) -> list[Callable[[], Awaitable[bytes]]]:
    """The chosen photos, each read only when its turn to be processed comes (an empty file
    field sends a nameless part: no photo). More than there is room for is refused first."""
    chosen = [upload for upload in uploads or [] if upload.filename]
    if len(chosen) > room:
        raise gallery.TooManyPhotos(field="photos", max_photos=MAX_PHOTOS)
    limit = ctx.settings.upload_max_image_bytes
    return [partial(read_upload, upload, limit) for upload in chosen]


def _ids(values: list[str] | None) -> list[UUID]:
    out = []
    for value in values or []:
        try:
            out.append(UUID(value))
        except ValueError:
            continue
    return out


@router.get("/sell/listings/new")
async def new_listing(request: Request, identity: WebIdentity, uow: Uow) -> Response:
    mine = await service.my_shop(uow, identity.user)
    if mine is None:
        return redirect(request, "/sell", ("Open your shop first.", "info"))
    profiles = await shipping.my_profiles(uow, identity.user)
    default = next((str(profile.id) for profile in profiles if profile.is_default), "")
    values = {
        "kind": ListingKind.PHYSICAL,
        "category": "",
        "rows": [],
        "shipping_profile_id": default,
    }
    context = _listing_form(mine.currency, values, profiles)
    return shop_page(request, "shop/listing_form.html", context)


@router.post("/sell/listings")
async def create_listing(
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    title: Text = "",
    description: Text = "",
    category: Text = "",
    kind: Text = ListingKind.PHYSICAL,
    lead_time_days: Text = "",
    shipping_profile_id: Text = "",
    variant_id: TextList = None,
    variant_name: TextList = None,
    variant_price: TextList = None,
    variant_stock: TextList = None,
    variant_stock_was: TextList = None,
    action: Text = "draft",
    photos: Uploads = None,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """A new listing (a draft, or published at once), with its photos and, when it is
    digital, its file — all of it, or nothing.

    The photos are cleaned and stored before the listing's transaction opens (so nothing is
    held in the database while they are encoded) and deleted again if anything fails.
    """
    async with ctx.uow() as uow:
        mine = await service.my_shop(uow, user)
        profiles = await shipping.my_profiles(uow, user) if mine else []
    if mine is None:
        return redirect(request, "/sell", ("Open your shop first.", "info"))
    rows = _variant_rows(variant_id, variant_name, variant_price, variant_stock, variant_stock_was)
    values = {
        "title": title,
        "description": description,
        "category": category,
        "kind": kind,
        "lead_time_days": lead_time_days,
        "shipping_profile_id": shipping_profile_id,
        "rows": rows,
    }
    prepared: list[MediaObject] = []
    try:
        body = parse(
            schemas.ListingCreate,
            title=title,
            description=description.strip(),
            category=category or None,
            kind=kind,
            lead_time_days=lead_time_days.strip() or None,
            shipping_profile_id=shipping_profile_id or None,
            variants=_variants_payload(rows, mine.currency, kind),
        )
        prepared = await gallery.prepare(ctx, user, _photo_readers(ctx, photos, MAX_PHOTOS))
        async with ctx.uow() as uow:
            made = await service.create_listing(uow, user, body)
            await gallery.arrange(ctx, uow, user, made.id, add=prepared)
            if file is not None and file.filename:
                await downloads.attach_file(ctx, uow, user, made.id, file.file, file.filename)
            if action == "publish":
                await service.set_listing_status(uow, user, made.id, ListingStatus.ACTIVE)
    except BaseException as exc:
        await shop_photos.discard(ctx, prepared)
        if not isinstance(exc, DomainError):
            raise
        context = {**_listing_form(mine.currency, values, profiles), "errors": field_errors(exc)}
        return shop_page(request, "shop/listing_form.html", context, exc.status_code)
    toast: Toast = (
        (f"“{made.title}” is live in your shop.", "success")
        if action == "publish"
        else (f"“{made.title}” is saved as a draft.", "success")
    )
    return redirect(request, "/sell#listings", toast)


@router.get("/sell/listings/{listing_id}/edit")
async def edit_listing(
    listing_id: UUID, request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> Response:
    listing_row, shop_row, _ = await service.own_listing(uow, identity.user, listing_id)
    found = await service.listing_view(ctx, uow, listing_id)
    profiles = await shipping.my_profiles(uow, identity.user)
    context = _listing_form(
        shop_row.currency, _listing_values(found), profiles, found, listing_row.digital_file_name
    )
    return shop_page(request, "shop/listing_form.html", context)


@router.post("/sell/listings/{listing_id}")
async def save_listing(
    listing_id: UUID,
    request: Request,
    user: ApiOrWebUser,
    ctx: Ctx,
    title: Text = "",
    description: Text = "",
    category: Text = "",
    lead_time_days: Text = "",
    shipping_profile_id: Text = "",
    variant_id: TextList = None,
    variant_name: TextList = None,
    variant_price: TextList = None,
    variant_stock: TextList = None,
    variant_stock_was: TextList = None,
    photo_id: TextList = None,
    photo_remove: TextList = None,
    photos: Uploads = None,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Save changes to my listing: text, options, photos (order, removals, new ones) and its
    file — all of it, or nothing."""
    async with ctx.uow() as uow:
        listing_row, shop_row, _ = await service.own_listing(uow, user, listing_id)
        before = await service.listing_view(ctx, uow, listing_id)
        file_name = listing_row.digital_file_name
        profiles = await shipping.my_profiles(uow, user)
    rows = _variant_rows(variant_id, variant_name, variant_price, variant_stock, variant_stock_was)
    order, removing = _ids(photo_id), set(_ids(photo_remove))
    values = {
        "title": title,
        "description": description,
        "category": category,
        "kind": before.kind,
        "lead_time_days": lead_time_days,
        "shipping_profile_id": shipping_profile_id,
        "rows": rows,
        "photo_order": [str(i) for i in order],
        "photo_remove": [str(i) for i in removing],
    }
    staying = len([photo for photo in before.photos if photo.id not in removing])
    prepared: list[MediaObject] = []
    try:
        body = parse(
            schemas.ListingUpdate,
            title=title,
            description=description.strip(),
            category=category or None,
            lead_time_days=lead_time_days.strip() or None,
            shipping_profile_id=shipping_profile_id or None,
            variants=_variants_payload(rows, shop_row.currency, before.kind),
        )
        readers = _photo_readers(ctx, photos, MAX_PHOTOS - staying)
        prepared = await gallery.prepare(ctx, user, readers)
        async with ctx.uow() as uow:
            saved = await service.update_listing(ctx, uow, user, listing_id, body)
            await gallery.arrange(
                ctx,
                uow,
                user,
                listing_id,
                order=order,
                strict=False,
                remove=removing,
                add=prepared,
            )
            if file is not None and file.filename:
                await downloads.attach_file(ctx, uow, user, listing_id, file.file, file.filename)
    except BaseException as exc:
        await shop_photos.discard(ctx, prepared)
        if not isinstance(exc, DomainError):
            raise
        context = {
            **_listing_form(shop_row.currency, values, profiles, before, file_name),
            "errors": field_errors(exc),
        }
        return shop_page(request, "shop/listing_form.html", context, exc.status_code)
    return redirect(request, "/sell#listings", (f"“{saved.title}” is saved.", "success"))


async def _set_status(
    request: Request, uow: Uow, user: User, listing_id: UUID, status: ListingStatus
) -> Response:
    changed = await service.set_listing_status(uow, user, listing_id, status)
    toast: Toast = (
        (f"“{changed.title}” is live in your shop.", "success")
        if status == ListingStatus.ACTIVE
        else (f"“{changed.title}” is archived: buyers no longer see it.", "info")
    )
    return redirect(request, "/sell#listings", toast)


@router.post("/sell/listings/{listing_id}/publish")
async def publish_listing(
    listing_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    return await _set_status(request, uow, identity.user, listing_id, ListingStatus.ACTIVE)


@router.post("/sell/listings/{listing_id}/archive")
async def archive_listing(
    listing_id: UUID, request: Request, identity: WebIdentity, uow: Uow
) -> Response:
    return await _set_status(request, uow, identity.user, listing_id, ListingStatus.ARCHIVED)


@router.post("/sell/reviews/{review_id}/reply")
async def reply(
    review_id: UUID,
    request: Request,
    identity: WebIdentity,
    uow: Uow,
    text: Text = "",
    next_path: NextPath = "",
) -> Response:
    """The seller's one reply to a review of their shop."""
    target = safe_next(next_path, "/sell#reviews")
    try:
        body = parse(orders.ReplyIn, text=text)
    except DomainError as exc:
        return redirect(request, target, (exc.detail_message, "error"))
    await orders.reply(uow, identity.user, review_id, body)
    return redirect(request, target, ("Your reply is posted.", "success"))
