"""Payments JSON API: pay a checkout, confirm, webhooks, refunds, the seller's balance and
payouts (Stripe Connect onboarding).

Handlers that call the payment provider authenticate in a short transaction of their own
(``ApiOrWebUser``) and let the service open its own, so no database transaction — on SQLite,
the write lock — is held while the provider is asked.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Header, Query, Request

from craftreel.accounts.deps import ApiOrWebUser, ApiUser
from craftreel.core.errors import PayloadTooLarge
from craftreel.deps import Ctx, Uow
from craftreel.shop import payments

router = APIRouter(prefix="/api/v1", tags=["payments"])

#: Providers' events are a few kilobytes; anyone may post here, so cap what we read.
WEBHOOK_MAX_BYTES = 256 * 1024


# Declared before /payments/{payment_id}/... so a provider name is never read as an id.
@router.post("/payments/webhooks/{provider}")
async def receive_webhook(provider: str, request: Request, ctx: Ctx) -> payments.WebhookReceipt:
    """A provider's signed event: 400 on a bad or stale signature, 200 for a repeat."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > WEBHOOK_MAX_BYTES:
        raise PayloadTooLarge()
    body = await request.body()
    if len(body) > WEBHOOK_MAX_BYTES:
        raise PayloadTooLarge()
    return await payments.handle_webhook(ctx, provider, request.headers, body)


@router.post("/checkouts/{checkout_id}/payments", status_code=201)
async def pay_checkout(
    checkout_id: UUID,
    body: payments.PaymentCreate,
    user: ApiOrWebUser,
    ctx: Ctx,
    idempotency_key: str | None = Header(default=None),
) -> payments.PaymentOut:
    """Pay my open checkout. Needs Idempotency-Key; the amount is the checkout's total."""
    return await payments.pay(ctx, user, checkout_id, body, idempotency_key)


@router.post("/payments/{payment_id}/confirm")
async def confirm_payment(payment_id: UUID, user: ApiOrWebUser, ctx: Ctx) -> payments.PaymentOut:
    """Complete the step a payment asked for (status requires_action)."""
    return await payments.confirm_payment(ctx, user, payment_id)


@router.get("/payments/{payment_id}")
async def get_payment(payment_id: UUID, user: ApiUser, uow: Uow) -> payments.PaymentOut:
    return await payments.get_payment(uow, user, payment_id)


@router.post("/orders/{order_id}/refunds", status_code=201)
async def refund_order(
    order_id: UUID,
    body: payments.RefundCreate,
    user: ApiOrWebUser,
    ctx: Ctx,
    idempotency_key: str | None = Header(default=None),
) -> payments.RefundOut:
    """Refund all (no amount) or part of an order of my shop's."""
    return await payments.refund_order(ctx, user, order_id, body, idempotency_key)


@router.get("/shops/mine/balance")
async def my_balance(
    user: ApiUser,
    uow: Uow,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> payments.BalanceOut:
    """My shop's balance and the ledger entries behind it, newest first."""
    return await payments.balance(uow, user, cursor, limit)


@router.get("/shops/mine/payouts")
async def my_payouts(user: ApiUser, ctx: Ctx, uow: Uow) -> payments.PayoutAccountOut:
    """How far my shop is with payouts (409 payouts_not_available with the test provider)."""
    account = await payments.payout_account(ctx, uow, user)
    if account is None:
        raise payments.PayoutsNotAvailable()
    return account


@router.post("/shops/mine/payouts/onboarding", status_code=201)
async def start_onboarding(user: ApiOrWebUser, ctx: Ctx) -> payments.OnboardingLinkOut:
    """A single-use link where I finish setting up payouts at the provider."""
    return await payments.start_onboarding(ctx, user)


@router.get("/shops/mine/orders/{order_id}/money")
async def order_money(order_id: UUID, user: ApiUser, uow: Uow) -> payments.OrderMoneyOut:
    """One of my shop's orders as money: paid, refunded, refundable, and its transfer."""
    return await payments.order_money(uow, user, order_id)
