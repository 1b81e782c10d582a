"""Paying, settling, refunding and cancelling: the rules that turn what a provider says
into paid orders, refunds and ledger rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import (
    case,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.core import idempotency
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import InvalidInput
from craftreel.core.ids import uuid7
from craftreel.shop import live
from craftreel.shop import repository as shop_repo
from craftreel.shop.mails import (
    queue_receipt,
    queue_refund_bounced_notice,
    queue_refund_bounced_seller_notice,
    queue_refund_notice,
)
from craftreel.shop.models import (
    Checkout,
    CheckoutStatus,
    Order,
    OrderLine,
    OrderStatus,
    Shop,
)
from craftreel.shop.payments import connect
from craftreel.shop.payments.alerts import alert_operator
from craftreel.shop.payments.config import (
    RECONCILE_PAYMENT,
    RECONCILE_REFUND,
    RECONCILE_ROUNDS,
    REFUND_RECONCILE_ROUNDS,
    PaymentSettings,
    refund_reconcile_wait,
)
from craftreel.shop.payments.errors import (
    AUTHENTICATION_FAILED,
    PERMISSION_DENIED,
    CheckoutNotFound,
    CheckoutNotPayable,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotRefundable,
    PaymentInProgress,
    PaymentNotAwaitingAction,
    PaymentNotFound,
    PaymentProviderError,
    RefundTooLarge,
)
from craftreel.shop.payments.ledger import (
    add_entry,
    bounced_not_refunded_again,
    failure_text,
    platform_fee,
    refund_failure_text,
    share,
)
from craftreel.shop.payments.models import (
    IN_FLIGHT,
    PAID,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentStatus,
    PaymentTransfer,
    PayoutAccount,
    Refund,
    RefundReason,
    RefundStatus,
    TransferKind,
    TransferStatus,
)
from craftreel.shop.payments.providers import (
    provider_named,
)
from craftreel.shop.payments.providers.base import (
    PaymentRequest,
    ProviderPayment,
    ProviderRefund,
)
from craftreel.shop.payments.providers.test import card_digits
from craftreel.shop.payments.repository import (
    changed,
    locked_order,
    move_payment,
    order_sum,
    paid_payment_of,
    payment_by_id,
    refund_claimed_for_order,
    retake_stock,
)
from craftreel.shop.payments.schemas import (
    OrderMoneyOut,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundOut,
)
from craftreel.shop.prices import format_price

if TYPE_CHECKING:
    from craftreel.accounts.models import User
    from craftreel.context import AppContext

log = logging.getLogger(__name__)

# --- shaping ----------------------------------------------------------------------------


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        id=payment.id,
        checkout_id=payment.checkout_id,
        provider=payment.provider,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        failure_code=payment.failure_code,
        next_action="confirm" if payment.status == PaymentStatus.REQUIRES_ACTION else None,
        created_at=payment.created_at,
    )


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        order_id=refund.order_id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        status=refund.status,
        failure_code=refund.failure_code,
        created_at=refund.created_at,
        reason=refund.reason,
        failure=refund_failure_text(refund.failure_code)
        if refund.status == RefundStatus.FAILED
        else None,
        bounced_at=refund.bounced_at,
    )


# --- paying -----------------------------------------------------------------------------


async def pay(
    ctx: AppContext,
    buyer: User,
    checkout_id: UUID,
    body: PaymentCreate,
    idempotency_key: str | None,
) -> PaymentOut:
    """Pay an open checkout of the buyer's. A repeat with the same ``Idempotency-Key`` is the
    same payment (shown as it stands now); the same key with another body is refused."""
    config = PaymentSettings.from_settings(ctx.settings)
    provider_name = body.provider or config.provider
    provider_named(ctx, provider_name)
    if provider_name == "test":
        if body.card_number is None:
            raise InvalidInput("Enter a card number.", field="card_number")
        method = card_digits(body.card_number)
    else:
        if body.card_number is not None:
            # Card numbers go to Stripe (through Stripe.js), never through our servers.
            raise InvalidInput(
                "Send a Stripe payment_method, not a card number.", field="card_number"
            )
        if body.payment_method is None:
            raise InvalidInput("Send a payment_method.", field="payment_method")
        method = body.payment_method
    payment_id = await begin_payment(
        ctx, buyer.id, checkout_id, provider_name, body, idempotency_key
    )
    return await submit_payment(ctx, payment_id, method)


async def begin_payment(
    ctx: AppContext,
    buyer_id: UUID,
    checkout_id: UUID,
    provider_name: str,
    body: PaymentCreate,
    idempotency_key: str | None,
) -> UUID:
    """Record the attempt (holding the checkout's one live-payment slot) before the provider
    hears of it; a repeat of the same key returns the same payment's id."""
    key = idempotency.check_key(idempotency_key)
    digest = idempotency.request_hash(
        {"checkout_id": str(checkout_id), **body.model_dump(mode="json")}
    )
    config = PaymentSettings.from_settings(ctx.settings)
    async with ctx.uow() as uow:
        earlier = await idempotency.replay(uow.session, buyer_id, "payment", key, digest)
        if earlier is not None:
            return UUID(str(earlier.response["id"]))
        checkout = await uow.session.get(Checkout, checkout_id)
        if checkout is None or checkout.buyer_id != buyer_id:
            raise CheckoutNotFound()
        if checkout.status != CheckoutStatus.OPEN or checkout.expires_at <= utcnow():
            raise CheckoutNotPayable(status=checkout.status)
        await connect.require_payouts_enabled(uow.session, provider_name, checkout.id)
        payment = Payment(
            id=uuid7(),
            checkout_id=checkout.id,
            provider=provider_name,
            amount=checkout.total,
            currency=checkout.currency,
            status=PaymentStatus.REQUIRES_PAYMENT,
            amount_refunded=0,
            amount_refund_claimed=0,
        )
        uow.session.add(payment)
        try:
            await uow.session.flush()
        except IntegrityError:
            raise PaymentInProgress() from None
        await idempotency.remember(
            uow.session,
            buyer_id,
            "payment",
            key,
            digest,
            201,
            payment_out(payment).model_dump(mode="json"),
        )
        _queue_reconcile_payment(ctx, uow, payment.id, 0, config)
        return payment.id


async def submit_payment(ctx: AppContext, payment_id: UUID, payment_method: str) -> PaymentOut:
    """Ask the provider to charge a recorded attempt (again, harmlessly, if it was asked
    before but its answer was lost) and record what it says."""
    async with ctx.uow() as uow:
        payment = await payment_by_id(uow.session, payment_id)
        if payment is None:
            raise PaymentNotFound()
        if payment.status != PaymentStatus.REQUIRES_PAYMENT or payment.provider_ref is not None:
            return payment_out(payment)
        request = await _payment_request(ctx, uow.session, payment, payment_method)
        provider_name = payment.provider
    state = await provider_named(ctx, provider_name).create_payment(request)
    async with ctx.uow() as uow:
        await apply_state(ctx, uow, payment_id, state, settle=False)
        payment = await payment_by_id(uow.session, payment_id)
        assert payment is not None
        return payment_out(payment)


async def _payment_request(
    ctx: AppContext, session: AsyncSession, payment: Payment, payment_method: str
) -> PaymentRequest:
    """The charge: to the seller's connected account when one shop sells everything in it."""
    orders = (
        await session.scalars(select(Order).where(Order.checkout_id == payment.checkout_id))
    ).all()
    destination: str | None = None
    fee: int | None = None
    group: str | None = None
    if len(orders) == 1:
        destination = await session.scalar(
            select(PayoutAccount.account_ref).where(
                PayoutAccount.shop_id == orders[0].shop_id,
                PayoutAccount.provider == payment.provider,
            )
        )
        if destination is not None:
            config = PaymentSettings.from_settings(ctx.settings)
            fee = platform_fee(orders[0].total, config.platform_fee_bps)
    else:
        group = connect.transfer_group(payment.checkout_id)
    if destination is not None:
        await session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(destination=destination)
            .execution_options(synchronize_session=False)
        )
    return PaymentRequest(
        payment_id=payment.id,
        checkout_id=payment.checkout_id,
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment_method,
        destination=destination,
        application_fee=fee,
        transfer_group=group,
    )


async def confirm_payment(ctx: AppContext, buyer: User, payment_id: UUID) -> PaymentOut:
    """Complete the buyer's action step (the test card 4000000000003220, or 3-D Secure)."""
    async with ctx.uow() as uow:
        payment = await _buyers_payment(uow.session, buyer.id, payment_id)
        if payment.status != PaymentStatus.REQUIRES_ACTION:
            if payment.status in (PaymentStatus.PROCESSING, *PAID):
                return payment_out(payment)
            raise PaymentNotAwaitingAction(status=payment.status)
        assert payment.provider_ref is not None  # requires_action came from the provider
        ref, provider_name = payment.provider_ref, payment.provider
    state = await provider_named(ctx, provider_name).confirm(ref)
    async with ctx.uow() as uow:
        await apply_state(ctx, uow, payment_id, state, settle=False)
        confirmed = await payment_by_id(uow.session, payment_id)
        assert confirmed is not None
        return payment_out(confirmed)


async def _buyers_payment(session: AsyncSession, buyer_id: UUID, payment_id: UUID) -> Payment:
    row = (
        await session.execute(
            select(Payment, Checkout.buyer_id)
            .join(Checkout, Checkout.id == Payment.checkout_id)
            .where(Payment.id == payment_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None or row[1] != buyer_id:
        raise PaymentNotFound()
    return row[0]


async def get_payment(uow: UnitOfWork, buyer: User, payment_id: UUID) -> PaymentOut:
    """A payment of the buyer's own (another buyer's is as good as not there)."""
    return payment_out(await _buyers_payment(uow.session, buyer.id, payment_id))


async def latest_payment(uow: UnitOfWork, buyer: User, checkout_id: UUID) -> PaymentOut | None:
    """The newest payment attempt on one of the buyer's checkouts (None before any)."""
    checkout = await uow.session.get(Checkout, checkout_id)
    if checkout is None or checkout.buyer_id != buyer.id:
        raise CheckoutNotFound()
    payment = await uow.session.scalar(
        select(Payment)
        .where(Payment.checkout_id == checkout_id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(1)
    )
    return payment_out(payment) if payment is not None else None


async def apply_state(
    ctx: AppContext,
    uow: UnitOfWork,
    payment_id: UUID,
    state: ProviderPayment,
    *,
    settle: bool,
) -> None:
    """Bring our payment forward to what the provider says (never backward).

    Only a webhook or the reconcile job (``settle=True``) turns a success into paid orders;
    the synchronous answer to a charge records it as processing, so that there is one path
    for the money — the one that also runs after a crash.
    """
    session = uow.session
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.provider_ref.is_(None))
        .values(provider_ref=state.ref)
        .execution_options(synchronize_session=False)
    )
    payment = await payment_by_id(session, payment_id)
    if payment is None:
        return
    if payment.provider_ref != state.ref:
        log.error(
            "provider payment does not match ours",
            extra={"payment_id": str(payment_id), "ref": state.ref},
        )
        return
    status = state.status
    if status in (PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED):
        # Refunds are ours to record (from our refund rows); what matters here is that the
        # payment succeeded first.
        status = PaymentStatus.SUCCEEDED
    if status == PaymentStatus.SUCCEEDED and not settle:
        status = PaymentStatus.PROCESSING
    if status == PaymentStatus.SUCCEEDED:
        await _settle_success(ctx, uow, payment, state)
    elif status == PaymentStatus.FAILED:
        await move_payment(session, payment_id, PaymentStatus.FAILED, state.failure_code)
    elif status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING):
        await move_payment(session, payment_id, status)


async def _settle_success(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, state: ProviderPayment
) -> None:
    """Exactly once per payment: checkout paid, its orders paid, their ledger rows written —
    or, when the checkout cannot be filled any more, the whole payment refunded."""
    session = uow.session
    if not await move_payment(session, payment.id, PaymentStatus.SUCCEEDED):
        if payment.status == PaymentStatus.FAILED:
            log.error(
                "provider reports success for a payment we recorded as failed",
                extra={"payment_id": str(payment.id), "ref": state.ref},
            )
        return
    if (state.amount, state.currency.upper()) != (payment.amount, payment.currency):
        log.error("provider took a different amount", extra={"payment_id": str(payment.id)})
        await _refund_whole_payment(ctx, uow, payment, RefundReason.AMOUNT_MISMATCH)
        return
    paid = await session.execute(
        update(Checkout)
        .where(Checkout.id == payment.checkout_id, Checkout.status == CheckoutStatus.OPEN)
        .values(status=CheckoutStatus.PAID)
        .execution_options(synchronize_session=False)
    )
    if changed(paid):
        await _mark_orders_paid(ctx, uow, payment, OrderStatus.PLACED)
        return
    checkout = await session.get(Checkout, payment.checkout_id, populate_existing=True)
    assert checkout is not None
    # The hold lapsed while the buyer paid: take the stock again if it is all still there.
    if checkout.status == CheckoutStatus.EXPIRED and await retake_stock(session, checkout.id):
        revived = await session.execute(
            update(Checkout)
            .where(Checkout.id == checkout.id, Checkout.status == CheckoutStatus.EXPIRED)
            .values(status=CheckoutStatus.PAID)
            .execution_options(synchronize_session=False)
        )
        if changed(revived):
            await _mark_orders_paid(ctx, uow, payment, OrderStatus.CANCELLED)
            log.info(
                "lapsed checkout paid; stock taken again", extra={"payment_id": str(payment.id)}
            )
            return
    log.warning(
        "payment arrived for a checkout that cannot be filled; refunding it",
        extra={"payment_id": str(payment.id), "checkout_status": checkout.status},
    )
    await _refund_whole_payment(ctx, uow, payment, RefundReason.CHECKOUT_LAPSED)


async def _mark_orders_paid(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, from_status: OrderStatus
) -> None:
    session = uow.session
    await session.execute(
        update(Order)
        .where(Order.checkout_id == payment.checkout_id, Order.status == from_status)
        .values(status=OrderStatus.PAID)
        .execution_options(synchronize_session=False)
    )
    config = PaymentSettings.from_settings(ctx.settings)
    orders = (
        await session.scalars(
            select(Order).where(Order.checkout_id == payment.checkout_id).order_by(Order.id)
        )
    ).all()
    for order in orders:
        add_entry(session, order, LedgerKind.SALE, order.total, f"sale:{order.id}")
        fee = platform_fee(order.total, config.platform_fee_bps)
        add_entry(session, order, LedgerKind.PLATFORM_FEE, -fee, f"platform_fee:{order.id}")
    await session.flush()
    await connect.queue_transfers(ctx, uow, payment, list(orders))
    await queue_receipt(ctx, uow, payment.checkout_id)
    # Orders of nothing but downloads are delivered by their download (see shop.orders).
    from craftreel.shop.orders import deliver_downloads  # orders builds on payments

    await deliver_downloads(uow, payment.checkout_id)
    for order in orders:
        await live.order_updated(uow, order.id)


async def _refund_whole_payment(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, reason: RefundReason
) -> None:
    """Give all of a succeeded payment back (by the refund job, once this commits)."""
    claimed = await uow.session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.amount_refund_claimed == 0)
        .values(amount_refund_claimed=Payment.amount)
        .execution_options(synchronize_session=False)
    )
    if not changed(claimed) or payment.amount == 0:
        return
    refund = Refund(
        id=uuid7(),
        payment_id=payment.id,
        order_id=None,
        amount=payment.amount,
        currency=payment.currency,
        status=RefundStatus.PENDING,
        reason=reason,
    )
    uow.session.add(refund)
    await uow.session.flush()
    ctx.jobs.enqueue(
        uow,
        RECONCILE_REFUND,
        {"refund_id": str(refund.id), "round": 0},
        dedupe_key=f"{RECONCILE_REFUND}:{refund.id}:0",
    )


def _queue_reconcile_payment(
    ctx: AppContext, uow: UnitOfWork, payment_id: UUID, round_: int, config: PaymentSettings
) -> None:
    ctx.jobs.enqueue(
        uow,
        RECONCILE_PAYMENT,
        {"payment_id": str(payment_id), "round": round_},
        run_at=utcnow() + config.reconcile_after,
        dedupe_key=f"{RECONCILE_PAYMENT}:{payment_id}:{round_}",
    )


async def reconcile_payment(ctx: AppContext, payment_id: UUID, round_: int = 0) -> None:
    """Ask the provider how a payment stands and apply it — for webhooks that never came."""
    async with ctx.uow() as uow:
        payment = await payment_by_id(uow.session, payment_id)
        if payment is None or payment.status not in IN_FLIGHT:
            return
        ref, provider_name = payment.provider_ref, payment.provider
    provider = provider_named(ctx, provider_name)
    state = await provider.retrieve(ref) if ref is not None else await provider.find(payment_id)
    config = PaymentSettings.from_settings(ctx.settings)
    async with ctx.uow() as uow:
        if state is None:
            # The provider never heard of it (we died before asking): free the checkout.
            await uow.session.execute(
                update(Payment)
                .where(
                    Payment.id == payment_id,
                    Payment.provider_ref.is_(None),
                    Payment.status == PaymentStatus.REQUIRES_PAYMENT,
                )
                .values(status=PaymentStatus.FAILED, failure_code="not_submitted")
                .execution_options(synchronize_session=False)
            )
            return
        await apply_state(ctx, uow, payment_id, state, settle=True)
        payment = await payment_by_id(uow.session, payment_id)
        if payment is not None and payment.status in IN_FLIGHT and round_ + 1 < RECONCILE_ROUNDS:
            _queue_reconcile_payment(ctx, uow, payment_id, round_ + 1, config)


# --- refunds ----------------------------------------------------------------------------


async def refund_order(
    ctx: AppContext,
    seller: User,
    order_id: UUID,
    body: RefundCreate,
    idempotency_key: str | None = None,
) -> RefundOut:
    """Refund all or part of one of the seller's orders."""
    digest = idempotency.request_hash({"order_id": str(order_id), **body.model_dump(mode="json")})
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    async with ctx.uow() as uow:
        if key is not None:
            earlier = await idempotency.replay(uow.session, seller.id, "refund", key, digest)
            if earlier is not None:
                refund_id = UUID(str(earlier.response["id"]))
                refund = await uow.session.get(Refund, refund_id)
                assert refund is not None
                return refund_out(refund)
        order = await _sellers_order(uow.session, seller.id, order_id)
        # A cancelled order qualifies too: its automatic refund may have been refused.
        # Whether it was ever paid, and how much is left, _claim_refund decides.
        if order.status == OrderStatus.PLACED:
            raise OrderNotRefundable(status=order.status)
        refund = await _claim_refund(ctx, uow, order, body.amount, RefundReason(body.reason))
        if key is not None:
            await idempotency.remember(
                uow.session,
                seller.id,
                "refund",
                key,
                digest,
                201,
                refund_out(refund).model_dump(mode="json"),
            )
    await execute_refund(ctx, refund.id)
    return await _refund_view(ctx, refund.id)


async def _sellers_order(session: AsyncSession, seller_id: UUID, order_id: UUID) -> Order:
    order = await locked_order(session, order_id)
    if order is None:
        raise OrderNotFound()
    owner = await session.scalar(select(Shop.owner_id).where(Shop.id == order.shop_id))
    if owner != seller_id:
        # Another shop's order: as good as not there.
        raise OrderNotFound()
    return order


async def _claim_refund(
    ctx: AppContext, uow: UnitOfWork, order: Order, amount: int | None, reason: RefundReason
) -> Refund:
    """Set aside ``amount`` (default: all that is left) of the order's payment for a refund.

    The order row is locked, and the payment's claim is a conditional update, so two
    refunds at once can never give back more than was paid.
    """
    session = uow.session
    payment = await paid_payment_of(session, order.checkout_id)
    if payment is None:
        raise OrderNotRefundable(status=order.status)
    left = order.total - await refund_claimed_for_order(session, order.id)
    amount = left if amount is None else amount
    if left <= 0:
        raise OrderNotRefundable("This order is already fully refunded.", refundable=0)
    if amount > left:
        raise RefundTooLarge(refundable=left)
    claimed = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment.id,
            Payment.status.in_(PAID),
            Payment.amount_refund_claimed + amount <= Payment.amount,
        )
        .values(amount_refund_claimed=Payment.amount_refund_claimed + amount)
        .execution_options(synchronize_session=False)
    )
    if not changed(claimed):
        raise RefundTooLarge(refundable=0)
    refund = Refund(
        id=uuid7(),
        payment_id=payment.id,
        order_id=order.id,
        amount=amount,
        currency=order.currency,
        status=RefundStatus.PENDING,
        reason=reason,
    )
    session.add(refund)
    await session.flush()
    config = PaymentSettings.from_settings(ctx.settings)
    # A safety net: finishes the refund if this process dies before the provider answers.
    ctx.jobs.enqueue(
        uow,
        RECONCILE_REFUND,
        {"refund_id": str(refund.id), "round": 0},
        run_at=utcnow() + config.reconcile_after,
        dedupe_key=f"{RECONCILE_REFUND}:{refund.id}:0",
    )
    await live.order_updated(uow, order.id)
    return refund


async def execute_refund(ctx: AppContext, refund_id: UUID) -> RefundStatus:
    """Ask the provider for a claimed refund (idempotent by the refund's id) — or, once the
    provider has it, how it stands now — and record the answer. The refund's status after."""
    async with ctx.uow() as uow:
        row = (
            await uow.session.execute(
                select(Refund, Payment)
                .join(Payment, Payment.id == Refund.payment_id)
                .where(Refund.id == refund_id)
            )
        ).first()
        if row is None:
            return RefundStatus.FAILED
        refund, payment = row
        if refund.status != RefundStatus.PENDING:
            return RefundStatus(refund.status)
        if payment.provider_ref is None:
            raise PaymentProviderError("The payment has no provider reference.")
        ref, amount, refund_ref = payment.provider_ref, refund.amount, refund.provider_ref
        provider_name, reverse = payment.provider, payment.destination is not None
    provider = provider_named(ctx, provider_name)
    if refund_ref is not None:
        # The provider has it: asking to make it again would only replay its first answer
        # (the same key), so look at it as it stands now.
        result = await provider.retrieve_refund(refund_ref)
    else:
        result = await provider.refund(ref, amount, refund_id, reverse_transfer=reverse)
    async with ctx.uow() as uow:
        status = await record_refund(ctx, uow, refund_id, result)
    # The seller's share of a transferred order comes back now if the provider answers (the
    # reversal's job is the safety net).
    for reversal in await connect.reversals_of(ctx, refund_id):
        await connect.try_transfer(ctx, reversal)
    return status


async def record_refund(
    ctx: AppContext, uow: UnitOfWork, refund_id: UUID, result: ProviderRefund
) -> RefundStatus:
    """Bring a refund forward to what the provider says (from its answer, a later look, or a
    webhook; in any order, any number of times) and return its status.

    Pending stays pending (the provider's reference is kept, to look again). The one
    transaction whose conditional update settles it does the rest, once: a failed (or
    cancelled) refund gives its claim on the payment back and writes nothing else, as no
    money moved; a succeeded one writes the ledger rows, queues the seller's reversal and
    mails the buyer. A settled refund moves once more only from succeeded to failed (Stripe
    fails a refund it had made when the card turns out closed): see ``_record_bounce``.
    """
    session = uow.session
    refund = await session.get(Refund, refund_id, populate_existing=True)
    if refund is None:
        return RefundStatus.FAILED
    if refund.status != RefundStatus.PENDING:
        if refund.status == RefundStatus.SUCCEEDED and result.status == RefundStatus.FAILED:
            return await _record_bounce(ctx, uow, refund, result)
        if result.status not in (RefundStatus.PENDING, refund.status):
            # A bounced refund's older "succeeded" events may still arrive: they are stale.
            level = logging.WARNING if refund.bounced_at is not None else logging.ERROR
            log.log(
                level,
                "provider reports another outcome for a settled refund; keeping ours",
                extra={
                    "refund_id": str(refund_id),
                    "ours": refund.status,
                    "theirs": result.status,
                    "ref": result.ref,
                },
            )
        return RefundStatus(refund.status)
    order = await locked_order(session, refund.order_id) if refund.order_id else None
    if result.status == RefundStatus.PENDING:
        if result.ref is not None:
            await session.execute(
                update(Refund)
                .where(Refund.id == refund_id, Refund.provider_ref.is_(None))
                .values(provider_ref=result.ref)
                .execution_options(synchronize_session=False)
            )
        return RefundStatus.PENDING
    settled = await session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING)
        .values(
            status=result.status,
            provider_ref=func.coalesce(Refund.provider_ref, result.ref),
            failure_code=result.failure_code,
        )
        .execution_options(synchronize_session=False)
    )
    if not changed(settled):
        stored = await session.get(Refund, refund_id, populate_existing=True)
        return RefundStatus(stored.status) if stored else RefundStatus.FAILED
    if refund.order_id is not None:
        await live.order_updated(uow, refund.order_id)
    if result.status == RefundStatus.FAILED:
        await session.execute(
            update(Payment)
            .where(Payment.id == refund.payment_id)
            .values(amount_refund_claimed=Payment.amount_refund_claimed - refund.amount)
            .execution_options(synchronize_session=False)
        )
        if result.failure_code in (AUTHENTICATION_FAILED, PERMISSION_DENIED):
            _alert_refund(
                ctx,
                uow,
                refund,
                "a refund was refused: the provider did not accept our API key",
                f"Craftreel: a refund of {format_price(refund.amount, refund.currency)} "
                "was refused (API key)",
                f"Why: {failure_text(result.failure_code)} ({result.failure_code}). Check "
                "CRAFTREEL_STRIPE_SECRET_KEY. Nothing was refunded: the seller can refund the "
                "order again once the key is fixed.",
            )
        else:
            log.warning(
                "refund refused by the provider",
                extra={"refund_id": str(refund_id), "code": result.failure_code},
            )
        return RefundStatus.FAILED
    refunded_after = Payment.amount_refunded + refund.amount
    await session.execute(
        update(Payment)
        .where(Payment.id == refund.payment_id)
        .values(
            amount_refunded=refunded_after,
            status=case(
                (refunded_after >= Payment.amount, PaymentStatus.REFUNDED),
                else_=PaymentStatus.PARTIALLY_REFUNDED,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if order is not None:
        # The fee comes back in proportion, computed on the running total so that refunds in
        # pieces give back exactly the whole fee once the whole order is refunded.
        fee = -await order_sum(session, order.id, LedgerKind.PLATFORM_FEE)
        refunded = -await order_sum(session, order.id, LedgerKind.REFUND) + refund.amount
        fee_back = share(fee, refunded, order.total) - await order_sum(
            session, order.id, LedgerKind.FEE_REFUND
        )
        add_entry(
            session, order, LedgerKind.REFUND, -refund.amount, f"refund:{refund.id}", refund.id
        )
        if fee_back:
            add_entry(
                session,
                order,
                LedgerKind.FEE_REFUND,
                fee_back,
                f"fee_refund:{refund.id}",
                refund.id,
            )
        await session.flush()
        # A seller paid by transfer gives back their part of the refund: what was refunded
        # less the fee we give back, so the ledger and their account move together.
        await connect.queue_reversal(ctx, uow, order, refund, refund.amount - fee_back)
    payment = await session.get(Payment, refund.payment_id, populate_existing=True)
    assert payment is not None
    # Once per refund: only the transaction whose update settled it gets here.
    await queue_refund_notice(
        ctx,
        uow,
        checkout_id=payment.checkout_id,
        order_id=refund.order_id,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        refunded_total=refunded if order is not None else payment.amount_refunded,
    )
    return RefundStatus.SUCCEEDED


async def _record_bounce(
    ctx: AppContext, uow: UnitOfWork, refund: Refund, result: ProviderRefund
) -> RefundStatus:
    """A refund the provider had made failed after all (the buyer's card was closed, say):
    the money came back to the platform instead of reaching the buyer.

    The one transaction whose conditional update moves it succeeded → failed undoes what its
    success did, once, however often and in whatever order the events come: the payment's
    refunded total and claim go back down (the seller can refund again), the ledger gets
    rows that cancel the refund's own (same kinds, opposite signs, so every sum — the
    balance, what the order owes the seller, the next refund's share of the fee — reads as if
    it had not happened), the seller's Stripe account is brought back up to what the order
    owes them (``connect.give_back_refund_part``: restores of what reversals took, a top-up
    of what no reversal took), the buyer and the seller are mailed and the operator alerted.
    """
    session = uow.session
    order = await locked_order(session, refund.order_id) if refund.order_id else None
    bounced = await session.execute(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status == RefundStatus.SUCCEEDED)
        .values(status=RefundStatus.FAILED, failure_code=result.failure_code, bounced_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not changed(bounced):
        stored = await session.get(Refund, refund.id, populate_existing=True)
        return RefundStatus(stored.status) if stored else RefundStatus.FAILED
    refunded_after = Payment.amount_refunded - refund.amount
    await session.execute(
        update(Payment)
        .where(Payment.id == refund.payment_id)
        .values(
            amount_refunded=refunded_after,
            amount_refund_claimed=Payment.amount_refund_claimed - refund.amount,
            status=case(
                (refunded_after >= Payment.amount, PaymentStatus.REFUNDED),
                (refunded_after > 0, PaymentStatus.PARTIALLY_REFUNDED),
                else_=PaymentStatus.SUCCEEDED,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    payment = await session.get(Payment, refund.payment_id, populate_existing=True)
    assert payment is not None
    refunded_total, given, back_in_balance = payment.amount_refunded, connect.PartGivenBack(), 0
    if order is not None:
        entries = (
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.refund_id == refund.id)
                .order_by(LedgerEntry.created_at, LedgerEntry.id)
            )
        ).all()
        for entry in entries:
            add_entry(
                session,
                order,
                LedgerKind(entry.kind),
                -entry.amount,
                f"{entry.kind}_failed:{refund.id}",
                refund.id,
            )
            back_in_balance -= entry.amount
        await session.flush()
        refunded_total = -await order_sum(session, order.id, LedgerKind.REFUND)
        given = await connect.give_back_refund_part(ctx, uow, order, refund)
        await live.order_updated(uow, order.id)
    await queue_refund_bounced_notice(
        ctx,
        uow,
        checkout_id=payment.checkout_id,
        order_id=refund.order_id,
        amount=refund.amount,
        currency=refund.currency,
        why=refund_failure_text(result.failure_code),
        refunded_total=refunded_total,
    )
    if order is not None:
        await queue_refund_bounced_seller_notice(
            ctx,
            uow,
            order_id=order.id,
            amount=refund.amount,
            currency=refund.currency,
            why=refund_failure_text(result.failure_code),
            back_in_balance=back_in_balance,
            sent_back=given.restored,
            topped_up=given.topped_up,
        )
    amount = format_price(refund.amount, refund.currency)
    _alert_refund(
        ctx,
        uow,
        refund,
        "a refund failed after it had succeeded",
        f"Craftreel: a refund of {amount} failed after it was made",
        "\n\n".join(
            [
                f"Stripe moved refund {refund.provider_ref} from succeeded to failed: "
                f"{refund_failure_text(result.failure_code)} ({result.failure_code}). The "
                "money came back to the platform's Stripe balance; the buyer did not get it, "
                "and was mailed that it did not go through and to contact the seller.",
                _bounce_undone(payment, order is not None, given),
            ]
        ),
    )
    return RefundStatus.FAILED


def _bounce_undone(payment: Payment, for_order: bool, given: connect.PartGivenBack) -> str:
    """What a bounced refund's alert says was undone, and what is left to a person."""
    if not for_order:
        return (
            "It refunded a payment whose checkout could not be filled: the buyer paid for "
            "nothing and has not got it back. Return it to them another way."
        )
    undone = (
        "Undone here: the refund's ledger rows (the seller's balance has that money again) "
        "and the payment's refunded total. The seller can refund the order again — to the "
        "same card, which may refuse again — or settle with the buyer another way."
    )
    parts = []
    if given.restored:
        parts.append(
            f"The {format_price(given.restored, payment.currency)} taken back from the "
            "seller's Stripe account for it is being given back (a restore transfer; a failure "
            "mails you like any transfer)."
        )
    if given.stopped:
        parts.append(
            f"Taking {format_price(given.stopped, payment.currency)} back from the seller's "
            "Stripe account for it had not been done: it is stopped, and given back as well "
            "should Stripe have made it after all."
        )
    if given.topped_up:
        short = format_price(given.topped_up, payment.currency)
        parts.append(
            "The order's transfer was sent after the refund, for what the order owed then, so "
            f"the seller's Stripe account holds {short} less for it than the order now owes "
            f"them: {short} is being sent to them (a top-up transfer; a failure mails you "
            "like any transfer)."
        )
    if given.transfer_status == TransferStatus.FAILED:
        parts.append(
            "The order's transfer has not reached the seller's Stripe account: sent again "
            f"with craftreel payments retry-transfer {given.transfer_id}, it sends what the "
            "order still owes them."
        )
    elif given.transfer_status == TransferStatus.PENDING:
        parts.append(
            "The order's transfer is still on its way to the seller's Stripe account (Stripe "
            "has not answered yet; its job keeps asking)."
        )
    if parts:
        seller = " ".join(parts)
    elif payment.destination is not None:
        seller = (
            "It refunded a destination charge with reverse_transfer: Stripe took the seller's "
            f"part back from {payment.destination} with the refund. Check in the Stripe "
            "dashboard that it went back to them with the failed refund; if not, send it."
        )
    elif given.transfer_id is None:
        seller = (
            "No transfer to a Stripe account was made or is owed for this order: its money is "
            "the seller's balance here, so nothing is to be sent."
        )
    else:
        seller = (
            "Nothing had been taken back from the seller's Stripe account for it, and it "
            "holds what the order owes them."
        )
    return f"{undone}\n\n{seller}"


def _alert_refund(
    ctx: AppContext, uow: UnitOfWork, refund: Refund, event: str, subject: str, why: str
) -> None:
    what = (
        f"Refund {refund.id} of {format_price(refund.amount, refund.currency)} "
        + (f"on order {refund.order_id}" if refund.order_id else f"of payment {refund.payment_id}")
        + "."
    )
    alert_operator(
        ctx,
        uow,
        event,
        {"refund_id": str(refund.id), "order_id": str(refund.order_id)},
        subject,
        f"{what}\n\n{why}\n",
    )


async def reconcile_refund(ctx: AppContext, refund_id: UUID, round_: int = 0) -> None:
    """Finish a refund left pending (a crash, a provider outage, or a provider still busy):
    soon at first, then less and less often; a refund still pending after the last round is
    left to the provider's webhook, and a person is told."""
    status = await execute_refund(ctx, refund_id)
    if status != RefundStatus.PENDING:
        return
    config = PaymentSettings.from_settings(ctx.settings)
    async with ctx.uow() as uow:
        next_round = round_ + 1
        if next_round < REFUND_RECONCILE_ROUNDS:
            ctx.jobs.enqueue(
                uow,
                RECONCILE_REFUND,
                {"refund_id": str(refund_id), "round": next_round},
                run_at=utcnow() + refund_reconcile_wait(next_round, config.reconcile_after),
                dedupe_key=f"{RECONCILE_REFUND}:{refund_id}:{next_round}",
            )
            return
        refund = await uow.session.get(Refund, refund_id)
        assert refund is not None
        _alert_refund(
            ctx,
            uow,
            refund,
            "a refund is still pending at the provider",
            f"Craftreel: a refund of {format_price(refund.amount, refund.currency)} is still "
            "pending at Stripe",
            (
                f"Stripe still shows refund {refund.provider_ref} as pending"
                if refund.provider_ref
                else "Stripe has not answered for it"
            )
            + f", {round_ + 1} looks later. Its amount stays set aside on the order until "
            "Stripe's refund.updated webhook settles it. Look at it in the Stripe dashboard.",
        )


async def _refund_view(ctx: AppContext, refund_id: UUID) -> RefundOut:
    async with ctx.uow() as uow:
        refund = await uow.session.get(Refund, refund_id)
        assert refund is not None
        return refund_out(refund)


async def cancel_order(ctx: AppContext, actor: User, order_id: UUID) -> RefundOut | None:
    """Cancel a paid order before it ships (its buyer or its seller): the stock goes back and
    the payment for it is refunded. Returns the refund (None for a free order)."""
    async with ctx.uow() as uow:
        session = uow.session
        order = await locked_order(session, order_id)
        if order is None:
            raise OrderNotFound()
        owner = await session.scalar(select(Shop.owner_id).where(Shop.id == order.shop_id))
        if actor.id not in (owner, order.buyer_id):
            raise OrderNotFound()
        cancelled = await session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.PAID)
            .values(status=OrderStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        )
        if not changed(cancelled):
            raise OrderNotCancellable(status=order.status)
        await live.order_updated(uow, order_id)
        lines = (
            await session.scalars(
                select(OrderLine)
                .where(OrderLine.order_id == order_id)
                .order_by(OrderLine.variant_id, OrderLine.id)
            )
        ).all()
        for line in lines:
            await shop_repo.give_back_stock(session, line.variant_id, line.quantity)
        left = order.total - await refund_claimed_for_order(session, order.id)
        refund = (
            await _claim_refund(ctx, uow, order, left, RefundReason.ORDER_CANCELLED)
            if left > 0
            else None
        )
    if refund is None:
        return None
    try:
        await execute_refund(ctx, refund.id)
    except PaymentProviderError:
        # The cancellation stands; the refund job tries the provider again.
        log.warning("refund for a cancelled order is pending", extra={"refund_id": str(refund.id)})
    return await _refund_view(ctx, refund.id)


# --- the seller's view of an order's money ----------------------------------------------


async def order_money(uow: UnitOfWork, seller: User, order_id: UUID) -> OrderMoneyOut:
    """One of the seller's orders as money: what was paid, refunded and is left to refund
    (another shop's order is as good as not there)."""
    session = uow.session
    order = await session.get(Order, order_id)
    if order is None:
        raise OrderNotFound()
    owner = await session.scalar(select(Shop.owner_id).where(Shop.id == order.shop_id))
    if owner != seller.id:
        raise OrderNotFound()
    payment = await paid_payment_of(session, order.checkout_id)
    refunds = (
        await session.scalars(
            select(Refund)
            .where(Refund.order_id == order.id)
            .order_by(Refund.created_at.desc(), Refund.id.desc())
        )
    ).all()
    transfer = await session.scalar(
        select(PaymentTransfer).where(
            PaymentTransfer.order_id == order.id, PaymentTransfer.kind == TransferKind.TRANSFER
        )
    )
    claimed = sum(r.amount for r in refunds if r.status != RefundStatus.FAILED)
    paid = payment is not None and order.status != OrderStatus.PLACED
    return OrderMoneyOut(
        order_id=order.id,
        status=order.status,
        currency=order.currency,
        total=order.total,
        created_at=order.created_at,
        paid=paid,
        refunded=sum(r.amount for r in refunds if r.status == RefundStatus.SUCCEEDED),
        refund_pending=sum(r.amount for r in refunds if r.status == RefundStatus.PENDING),
        refund_bounced=sum(r.amount for r in refunds if r.bounced_at is not None),
        refund_bounced_open=bounced_not_refunded_again(refunds),
        refundable=max(order.total - claimed, 0) if paid else 0,
        cancellable=order.status == OrderStatus.PAID,
        refunds=[refund_out(r) for r in refunds],
        transfer_status=transfer.status if transfer else None,
        transfer_amount=transfer.amount if transfer else None,
        transfer_failure=failure_text(transfer.failure_code)
        if transfer and transfer.status == TransferStatus.FAILED
        else None,
    )
