"""Mail the shop sends buyers: the receipt once a checkout is paid, and a notice for each
refund once the provider has made it (and again should it fail after all, to the seller too)."""

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


#: Why money came back, as the buyer reads it (values: ``payments.RefundReason``); a reason
#: missing here ("other") is not given.
REFUND_REASONS = {
    "requested": "you asked for a refund",
    "damaged": "the item arrived damaged",
    "not_as_described": "the item was not as described",
    "not_received": "the parcel never arrived",
    "order_cancelled": "the order was cancelled before it shipped",
    "checkout_lapsed": "your checkout had expired and the items were no longer available",
    "amount_mismatch": "the amount taken did not match your order",
}
#: When a card refund shows up: banks, not we, decide; this is what card networks promise.
REFUND_ARRIVAL = (
    "Refunds to a card usually show on your statement within 5 to 10 working days, "
    "depending on your bank."
)


async def _refund_parties(
    uow: UnitOfWork, checkout_id: UUID, order_id: UUID | None
) -> tuple[Checkout, User, tuple[Order, Shop] | None] | None:
    """Whom a refund mail is to and about: the checkout, its buyer, and the order with its
    shop when the refund was of an order (None when any of them is gone: no mail then)."""
    session = uow.session
    checkout = await session.get(Checkout, checkout_id)
    buyer = await session.get(User, checkout.buyer_id) if checkout else None
    if checkout is None or buyer is None:
        return None
    if order_id is None:
        return checkout, buyer, None
    row = (
        await session.execute(
            select(Order, Shop).join(Shop, Shop.id == Order.shop_id).where(Order.id == order_id)
        )
    ).first()
    return None if row is None else (checkout, buyer, (row[0], row[1]))


async def queue_refund_notice(
    ctx: AppContext,
    uow: UnitOfWork,
    *,
    checkout_id: UUID,
    order_id: UUID | None,
    amount: int,
    currency: str,
    reason: str,
    refunded_total: int,
) -> None:
    """Tell the buyer a refund was made: how much, of what, why, and when to expect it.

    Called in the transaction that records the provider's success (which happens once per
    refund, whoever gets there first: the request, the refund job or a webhook), so the mail
    goes once that commits, once — and never for a refund that was refused.
    ``refunded_total`` is all that is refunded of the order (or payment) with this one.
    """
    found = await _refund_parties(uow, checkout_id, order_id)
    if found is None:
        return
    checkout, buyer, order_and_shop = found

    def price(minor: int) -> str:
        return format_price(minor, currency)

    parts = [f"Hi {buyer.display_name},", ""]
    if order_and_shop is not None:
        order, shop = order_and_shop
        whole = refunded_total >= order.total
        subject = f"Your refund from {shop.name}"
        if reason == "order_cancelled":
            parts.append(
                f"Your order from {shop.name} was cancelled, and {price(amount)} "
                "is refunded to the card you paid with."
            )
        else:
            parts.append(
                f"{shop.name} has refunded {price(amount)} of your order to the card you paid with."
            )
        lines = (
            await uow.session.scalars(
                select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
            )
        ).all()
        parts += ["", f"Your order — {order_url(ctx, order.id)}"]
        parts += [f"  {line.quantity} × {line.title}" for line in lines]
        parts.append(f"  Order total: {price(order.total)}")
        if whole:
            parts.append(f"  Refunded: {price(refunded_total)} — the whole order")
        else:
            left = price(order.total - refunded_total)
            parts.append(f"  Refunded so far: {price(refunded_total)} ({left} not refunded)")
    else:
        # A payment that could not be filled (it arrived after the checkout lapsed): all of it.
        subject = "Your Craftreel payment was refunded"
        parts.append(
            f"Your payment of {price(checkout.total)} could not be used for your order, "
            f"so all of it — {price(amount)} — is refunded to the card you paid with."
        )
    why = REFUND_REASONS.get(reason)
    if why is not None:
        parts += ["", f"Why: {why}."]
    parts += ["", REFUND_ARRIVAL]
    ctx.outbox.queue(uow, Mail(to=buyer.email, subject=subject, text="\n".join(parts) + "\n"))


async def queue_refund_bounced_notice(
    ctx: AppContext,
    uow: UnitOfWork,
    *,
    checkout_id: UUID,
    order_id: UUID | None,
    amount: int,
    currency: str,
    why: str,
    refunded_total: int,
) -> None:
    """Tell the buyer a refund they were told of did not reach them after all (the provider
    failed it later, e.g. their card was closed): the money was not returned, and whom to
    ask. Called in the transaction that records the failure, which happens once per refund.
    ``why`` is the provider's reason in words; ``refunded_total`` is all that is refunded of
    the order (or payment) now.
    """
    found = await _refund_parties(uow, checkout_id, order_id)
    if found is None:
        return
    _, buyer, order_and_shop = found

    def price(minor: int) -> str:
        return format_price(minor, currency)

    parts = [f"Hi {buyer.display_name},", ""]
    if order_and_shop is not None:
        order, shop = order_and_shop
        subject = f"Your refund from {shop.name} did not go through"
        base = str(ctx.settings.base_url).rstrip("/")
        parts += [
            f"The refund of {price(amount)} that {shop.name} made on your order did not reach "
            f"your card after all: {why}. Your bank sent the money back, so it was not "
            "returned to you.",
            "",
            f"Please contact {shop.name} to get it back another way, for instance to another "
            f"card: {base}/shop/{shop.handle}",
            "",
            f"Your order — {order_url(ctx, order.id)}",
            f"  Order total: {price(order.total)}",
            f"  Refunded: {price(refunded_total)}",
        ]
    else:
        subject = "Your Craftreel refund did not go through"
        parts += [
            f"The refund of {price(amount)} for your payment did not reach your card after "
            f"all: {why}. Your bank sent the money back, so it was not returned to you.",
            "",
            "We have been told and will contact you to return it another way.",
        ]
    ctx.outbox.queue(uow, Mail(to=buyer.email, subject=subject, text="\n".join(parts) + "\n"))


async def queue_refund_bounced_seller_notice(
    ctx: AppContext,
    uow: UnitOfWork,
    *,
    order_id: UUID,
    amount: int,
    currency: str,
    why: str,
    back_in_balance: int,
    sent_back: int,
    topped_up: int = 0,
) -> None:
    """Tell the seller a refund they made did not reach the buyer after all: what happened,
    that the order's money is theirs again, and what they can do. Called in the transaction
    that records the failure, which happens once per refund. ``back_in_balance`` is what the
    refund had taken from their balance (the refund less the fee given back with it);
    ``sent_back`` what is being sent back to their Stripe account, where a reversal took it;
    ``topped_up`` what is being sent there because no reversal took it (the order's transfer
    was sent after the refund, for what the order owed then).
    """
    session = uow.session
    row = (
        await session.execute(
            select(Order, User)
            .join(Shop, Shop.id == Order.shop_id)
            .join(User, User.id == Shop.owner_id)
            .where(Order.id == order_id)
        )
    ).first()
    if row is None:
        return
    order, owner = row
    buyer = await session.get(User, order.buyer_id)
    buyer_name = buyer.display_name if buyer is not None else "the buyer"

    def price(minor: int) -> str:
        return format_price(minor, currency)

    yours = f"The order's money is yours again: {price(back_in_balance)} is back in your balance"
    if sent_back:
        yours += (
            f", and the {price(sent_back)} taken back from your Stripe account for it is being "
            "sent back there"
        )
    if topped_up:
        more = " more" if sent_back else ""
        yours += f", and {price(topped_up)}{more} is being sent to your Stripe account"
    base = str(ctx.settings.base_url).rstrip("/")
    parts = [
        f"Hi {owner.display_name},",
        "",
        f"The refund of {price(amount)} you made to {buyer_name} did not reach their card "
        f"after all: {why}. Their bank sent the money back, so they did not get it. We have "
        "told them, and asked them to contact you.",
        "",
        f"{yours}.",
        "",
        "You can refund it again from the order's page — to the same card, which may refuse "
        "it again — or settle with the buyer another way:",
        f"  {base}/sell/orders/{order.id}",
        "",
        f"Order total: {price(order.total)}",
    ]
    ctx.outbox.queue(
        uow,
        Mail(
            to=owner.email,
            subject=f"A refund of {price(amount)} to {buyer_name} did not go through",
            text="\n".join(parts) + "\n",
        ),
    )
