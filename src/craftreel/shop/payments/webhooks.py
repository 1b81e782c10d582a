"""Providers' webhooks: checked, stored once, applied."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.core.errors import NotFound
from craftreel.shop.payments.config import (
    PaymentSettings,
)
from craftreel.shop.payments.connect import PAYOUT_RETURNED, apply_account, record_payout
from craftreel.shop.payments.models import (
    Payment,
    PaymentEvent,
    Refund,
)
from craftreel.shop.payments.providers import (
    connect_provider,
    providers,
)
from craftreel.shop.payments.providers.base import (
    WebhookEvent,
    sign_webhook,
)
from craftreel.shop.payments.schemas import (
    WebhookReceipt,
)
from craftreel.shop.payments.service import apply_state, record_refund

if TYPE_CHECKING:
    from craftreel.context import AppContext

log = logging.getLogger(__name__)


#: Events whose object is a refund that may have moved (Stripe sends ``refund.updated`` for
#: every refund, ``charge.refund.updated`` for those of charges; both are handled).
REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")


class _DuplicateEvent(Exception):
    """A webhook event was handled before (internal: rolls its transaction back)."""


# --- webhooks and reconciliation --------------------------------------------------------


async def handle_webhook(
    ctx: AppContext, provider_name: str, headers: Mapping[str, str], body: bytes
) -> WebhookReceipt:
    """Check a webhook's signature and apply its event — once, however often it arrives."""
    provider = providers(ctx).get(provider_name)
    if provider is None:
        raise NotFound("No such payment provider.")
    event = provider.verify_webhook(headers, body)
    account = None
    if event.account is not None and event.type.startswith("account."):
        # Apply the account as it stands now, not as this (perhaps overtaken) event saw it.
        connect_api = connect_provider(ctx)
        if connect_api is not None and not await _seen(ctx, provider_name, event.id):
            account = await connect_api.retrieve_account(event.account.ref)
    try:
        async with ctx.uow() as uow:
            payment = await _payment_of_event(uow.session, provider_name, event)
            refund = await _refund_of_event(uow.session, provider_name, event)
            uow.session.add(
                PaymentEvent(
                    provider=provider_name,
                    event_id=event.id[:255],
                    type=event.type[:80],
                    payment_id=payment.id if payment else refund.payment_id if refund else None,
                )
            )
            try:
                await uow.session.flush()
            except IntegrityError:
                raise _DuplicateEvent() from None
            if payment is not None and event.payment is not None:
                await apply_state(ctx, uow, payment.id, event.payment, settle=True)
            if refund is not None and event.refund is not None:
                await record_refund(ctx, uow, refund.id, event.refund)
            if account is not None:
                await apply_account(uow.session, provider_name, account)
            if event.payout is not None and event.type in ("payout.paid", *PAYOUT_RETURNED):
                await record_payout(
                    uow.session, provider_name, event.type, event.account_ref, event.payout
                )
    except _DuplicateEvent:
        return WebhookReceipt(received=True, duplicate=True)
    return WebhookReceipt(received=True, duplicate=False)


async def _seen(ctx: AppContext, provider_name: str, event_id: str) -> bool:
    async with ctx.uow() as uow:
        found = await uow.session.scalar(
            select(PaymentEvent.id).where(
                PaymentEvent.provider == provider_name, PaymentEvent.event_id == event_id[:255]
            )
        )
        return found is not None


async def _payment_of_event(
    session: AsyncSession, provider_name: str, event: WebhookEvent
) -> Payment | None:
    state = event.payment
    if state is None:
        return None
    payment = await session.scalar(select(Payment).where(Payment.provider_ref == state.ref))
    if payment is None and state.payment_id is not None:
        # The webhook can overtake our record of the provider's reference.
        payment = await session.get(Payment, state.payment_id)
    if payment is None or payment.provider != provider_name:
        log.warning(
            "webhook for a payment we do not know",
            extra={"provider": provider_name, "ref": state.ref, "event_type": event.type},
        )
        return None
    return payment


async def _refund_of_event(
    session: AsyncSession, provider_name: str, event: WebhookEvent
) -> Refund | None:
    """Our refund a ``refund.*`` or ``charge.refund.*`` event is about: by the provider's
    reference, or (when the event overtakes our record of it) by the id in its metadata."""
    state = event.refund
    if state is None or event.type not in REFUND_EVENTS or state.ref is None:
        return None
    refund = await session.scalar(
        select(Refund)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.provider_ref == state.ref, Payment.provider == provider_name)
    )
    if refund is None and state.refund_id is not None:
        refund = await session.scalar(
            select(Refund)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(
                Refund.id == state.refund_id,
                Payment.provider == provider_name,
                Refund.provider_ref.is_(None),
            )
        )
    if refund is None:
        log.warning(
            "webhook for a refund we do not know",
            extra={"provider": provider_name, "ref": state.ref, "event_type": event.type},
        )
    return refund


async def deliver_test_webhook(ctx: AppContext, event: dict[str, Any]) -> None:
    """Send one of the test provider's events to our webhook endpoint, signed now."""
    config = PaymentSettings.from_settings(ctx.settings)
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    response = await ctx.http.post(
        config.test_webhook_url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "Craftreel-Signature": sign_webhook(config.test_webhook_secret, body, int(time.time())),
        },
    )
    # A refusal raises, so the job is tried again with backoff.
    response.raise_for_status()
