"""The built-in test provider: test cards, a real state machine, signed webhooks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import (
    case,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.core.db import UnitOfWork
from craftreel.core.ids import uuid7
from craftreel.shop.payments.config import (
    DELIVER_TEST_WEBHOOK,
)
from craftreel.shop.payments.errors import (
    InvalidCardNumber,
    PaymentProviderError,
    WebhookPayloadInvalid,
)
from craftreel.shop.payments.models import (
    IN_FLIGHT,
    PaymentStatus,
    RefundStatus,
    TestProviderIntent,
    TestProviderRefund,
)
from craftreel.shop.payments.providers.base import (
    PaymentRequest,
    ProviderPayment,
    ProviderRefund,
    WebhookEvent,
    check_signature,
    json_object,
    lower_headers,
    refund_key,
    uuid_or_none,
)
from craftreel.shop.payments.repository import changed

if TYPE_CHECKING:
    from craftreel.core.jobs import JobQueue


def card_digits(card_number: str) -> str:
    """The digits of a card number (spaces and dashes allowed); InvalidCardNumber otherwise."""
    digits = card_number.replace(" ", "").replace("-", "")
    if not (digits.isdigit() and 12 <= len(digits) <= 19):
        raise InvalidCardNumber(field="card_number")
    total = 0
    for position, char in enumerate(reversed(digits)):
        n = int(char)
        if position % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    if total % 10:
        raise InvalidCardNumber(field="card_number")
    return digits


#: The test provider's cards: what happens when each is charged.
TEST_CARDS: dict[str, tuple[PaymentStatus, str | None]] = {
    "4242424242424242": (PaymentStatus.SUCCEEDED, None),
    "4000000000000002": (PaymentStatus.FAILED, "card_declined"),
    "4000000000009995": (PaymentStatus.FAILED, "insufficient_funds"),
    "4000000000003220": (PaymentStatus.REQUIRES_ACTION, None),
}


#: The test provider's state machine: which states each state may be reached from.
TEST_PROVIDER_MOVES_FROM: dict[PaymentStatus, tuple[PaymentStatus, ...]] = {
    PaymentStatus.REQUIRES_ACTION: (PaymentStatus.REQUIRES_PAYMENT,),
    PaymentStatus.PROCESSING: (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.REQUIRES_ACTION),
    PaymentStatus.SUCCEEDED: (PaymentStatus.PROCESSING,),
    PaymentStatus.FAILED: IN_FLIGHT,
}


class TestProvider:
    """The built-in provider: test cards, a forward-only state machine kept in its own tables,
    and signed webhooks delivered to our endpoint through the job queue — so the whole flow
    runs on a bare machine. It uses transactions of its own, as an outside service would."""

    __test__ = False
    name = "test"

    def __init__(
        self, new_uow: Callable[[], UnitOfWork], jobs: JobQueue, webhook_secret: str
    ) -> None:
        self._new_uow = new_uow
        self._jobs = jobs
        self._secret = webhook_secret

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        digits = card_digits(request.payment_method)
        async with self._new_uow() as uow:
            existing = await uow.session.scalar(
                select(TestProviderIntent).where(
                    TestProviderIntent.idempotency_key == request.idempotency_key
                )
            )
            if existing is not None:
                return self._state(existing)
            intent = TestProviderIntent(
                id=f"tp_{uuid7().hex}",
                idempotency_key=request.idempotency_key,
                payment_id=str(request.payment_id),
                amount=request.amount,
                currency=request.currency,
                status=PaymentStatus.REQUIRES_PAYMENT,
                card_last4=digits[-4:],
                destination=request.destination,
                application_fee=request.application_fee,
                details={
                    "checkout_id": str(request.checkout_id),
                    "transfer_group": request.transfer_group,
                },
            )
            uow.session.add(intent)
            try:
                await uow.session.flush()
            except IntegrityError as exc:
                raise PaymentProviderError("A twin request is being handled.") from exc
            outcome, failure_code = TEST_CARDS.get(digits, (PaymentStatus.FAILED, "card_declined"))
            if outcome == PaymentStatus.SUCCEEDED:
                await self._move(uow, intent.id, PaymentStatus.PROCESSING)
                intent = await self._move(uow, intent.id, PaymentStatus.SUCCEEDED)
            else:
                intent = await self._move(uow, intent.id, outcome, failure_code)
            return self._state(intent)

    async def confirm(self, ref: str) -> ProviderPayment:
        async with self._new_uow() as uow:
            intent = await self._get(uow.session, ref)
            if intent.status == PaymentStatus.REQUIRES_ACTION:
                await self._move(uow, ref, PaymentStatus.PROCESSING)
                intent = await self._move(uow, ref, PaymentStatus.SUCCEEDED)
            return self._state(intent)

    async def retrieve(self, ref: str) -> ProviderPayment:
        async with self._new_uow() as uow:
            return self._state(await self._get(uow.session, ref))

    async def find(self, payment_id: UUID) -> ProviderPayment | None:
        async with self._new_uow() as uow:
            intent = await uow.session.scalar(
                select(TestProviderIntent).where(TestProviderIntent.payment_id == str(payment_id))
            )
            return None if intent is None else self._state(intent)

    async def refund(
        self, ref: str, amount: int, refund_id: UUID, *, reverse_transfer: bool
    ) -> ProviderRefund:
        # The test provider settles a refund at once: it never answers pending.
        idempotency_key = refund_key(refund_id)
        async with self._new_uow() as uow:
            done = await uow.session.scalar(
                select(TestProviderRefund).where(
                    TestProviderRefund.idempotency_key == idempotency_key
                )
            )
            if done is not None:
                return ProviderRefund(done.id, RefundStatus.SUCCEEDED, done.amount)
            refunded_after = TestProviderIntent.amount_refunded + amount
            claimed = await uow.session.execute(
                update(TestProviderIntent)
                .where(
                    TestProviderIntent.id == ref,
                    TestProviderIntent.status.in_(
                        [PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED]
                    ),
                    refunded_after <= TestProviderIntent.amount,
                )
                .values(
                    amount_refunded=refunded_after,
                    status=case(
                        (refunded_after >= TestProviderIntent.amount, PaymentStatus.REFUNDED),
                        else_=PaymentStatus.PARTIALLY_REFUNDED,
                    ),
                )
                .execution_options(synchronize_session=False)
            )
            if not changed(claimed):
                return ProviderRefund(None, RefundStatus.FAILED, amount, "charge_not_refundable")
            refund = TestProviderRefund(
                id=f"tpre_{uuid7().hex}",
                intent_id=ref,
                idempotency_key=idempotency_key,
                amount=amount,
            )
            uow.session.add(refund)
            intent = await self._get(uow.session, ref)
            self._emit(uow, "payment.refunded", intent)
            try:
                await uow.session.flush()
            except IntegrityError as exc:
                raise PaymentProviderError("A twin refund is being handled.") from exc
            return ProviderRefund(refund.id, RefundStatus.SUCCEEDED, amount)

    async def retrieve_refund(self, ref: str) -> ProviderRefund:
        async with self._new_uow() as uow:
            refund = await uow.session.get(TestProviderRefund, ref)
            if refund is None:
                raise PaymentProviderError("The test provider has no such refund.", ref=ref)
            return ProviderRefund(refund.id, RefundStatus.SUCCEEDED, refund.amount)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        check_signature(
            lower_headers(headers).get("craftreel-signature"), self._secret, body, time.time()
        )
        event = json_object(body)
        try:
            data = event.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            payment = None
            if isinstance(obj, dict):
                metadata = obj.get("metadata") or {}
                payment = ProviderPayment(
                    ref=str(obj["id"]),
                    status=PaymentStatus(obj["status"]),
                    amount=int(obj["amount"]),
                    currency=str(obj["currency"]),
                    failure_code=obj.get("failure_code"),
                    payment_id=uuid_or_none(metadata.get("payment_id")),
                )
            return WebhookEvent(id=str(event["id"]), type=str(event["type"]), payment=payment)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookPayloadInvalid() from exc

    async def _move(
        self,
        uow: UnitOfWork,
        ref: str,
        to: PaymentStatus,
        failure_code: str | None = None,
    ) -> TestProviderIntent:
        moved = await uow.session.execute(
            update(TestProviderIntent)
            .where(
                TestProviderIntent.id == ref,
                TestProviderIntent.status.in_(TEST_PROVIDER_MOVES_FROM[to]),
            )
            .values(status=to, failure_code=failure_code)
            .execution_options(synchronize_session=False)
        )
        intent = await self._get(uow.session, ref)
        if changed(moved):
            self._emit(uow, f"payment.{to}", intent)
        return intent

    def _emit(self, uow: UnitOfWork, event_type: str, intent: TestProviderIntent) -> None:
        """Queue a webhook for delivery once this provider transaction commits (each move is
        a conditional update, so each event is sent once)."""
        event = {
            "id": f"evt_{uuid7().hex}",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": self._object(intent)},
        }
        self._jobs.enqueue(uow, DELIVER_TEST_WEBHOOK, {"event": event})

    @staticmethod
    def _object(intent: TestProviderIntent) -> dict[str, Any]:
        return {
            "id": intent.id,
            "status": intent.status,
            "amount": intent.amount,
            "currency": intent.currency,
            "amount_refunded": intent.amount_refunded,
            "failure_code": intent.failure_code,
            "metadata": {"payment_id": intent.payment_id},
        }

    @staticmethod
    async def _get(session: AsyncSession, ref: str) -> TestProviderIntent:
        intent = await session.get(TestProviderIntent, ref, populate_existing=True)
        if intent is None:
            raise PaymentProviderError("The test provider has no such payment.", ref=ref)
        return intent

    @staticmethod
    def _state(intent: TestProviderIntent) -> ProviderPayment:
        return ProviderPayment(
            ref=intent.id,
            status=PaymentStatus(intent.status),
            amount=intent.amount,
            currency=intent.currency,
            failure_code=intent.failure_code,
            payment_id=uuid_or_none(intent.payment_id),
        )
