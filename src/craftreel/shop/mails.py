"""Mail the shop sends buyers: the receipt once a checkout is paid."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.mail import Mail
from craftreel.shop import shipping
from craftreel.shop.models import Checkout, Order, OrderLine, OrderStatus, Shop
from craftreel.shop.prices import format_price


def _by(order: Order) -> str:
    """``, Express (1–2 days)``: how the buyer chose to have it sent, if it is sent."""
    method = shipping.summary(order.shipping_choices or [])
    return f", {method}" if method else ""


def order_url(ctx: AppContext, order_id: UUID) -> str:
    return f"{str(ctx.settings.base_url).rstrip('/')}/orders/{order_id}"


async def queue_receipt(ctx: AppContext, uow: UnitOfWork, checkout_id: UUID) -> None:
    """The buyer's receipt for a paid checkout: each shop's order, its lines and totals.

    Called in the transaction that marks the checkout paid (once per checkout), so the mail
    is sent once that commits, and never for a payment that did not stick.
    """
    session = uow.session
    checkout = await session.get(Checkout, checkout_id)
    buyer = await session.get(User, checkout.buyer_id) if checkout else None
    if checkout is None or buyer is None:
        return
    orders = (
        await session.execute(
            select(Order, Shop)
            .join(Shop, Shop.id == Order.shop_id)
            .where(Order.checkout_id == checkout_id, Order.status == OrderStatus.PAID)
            .order_by(Order.id)
        )
    ).all()
    if not orders:
        return
    lines = (
        await session.scalars(
            select(OrderLine)
            .where(OrderLine.order_id.in_([order.id for order, _ in orders]))
            .order_by(OrderLine.id)
        )
    ).all()

    def price(minor: int) -> str:
        return format_price(minor, checkout.currency)

    parts = [
        f"Hi {buyer.display_name},",
        "",
        f"Thank you for your order. Your payment of {price(checkout.total)} went through.",
    ]
    for order, shop in orders:
        parts += ["", f"From {shop.name} — {order_url(ctx, order.id)}"]
        for line in (line for line in lines if line.order_id == order.id):
            amount = price(line.unit_price * line.quantity)
            parts.append(f"  {line.quantity} × {line.title}: {amount}")
        parts += [
            f"  Shipping{_by(order)}: {price(order.shipping_total)}",
            f"  Tax: {price(order.tax_total)}",
            f"  Total: {price(order.total)}",
        ]
    address = checkout.shipping_address or {}
    parts += [
        "",
        "Delivering to:",
        *(
            f"  {address[part]}"
            for part in ("name", "line1", "line2", "city", "postcode", "country")
            if address.get(part)
        ),
        "",
        "Downloads for digital items are on each order's page as soon as you open it.",
    ]
    ctx.outbox.queue(
        uow,
        Mail(to=buyer.email, subject="Your Craftreel receipt", text="\n".join(parts) + "\n"),
    )
