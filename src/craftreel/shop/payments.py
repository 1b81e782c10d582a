"""Payments: one provider interface, the built-in test provider and Stripe, and the rules that
turn what a provider says into paid orders, refunds and each seller's ledger.

Why money cannot go wrong here, whatever the timing:

- A payment attempt is a row first, committed before the provider hears of it. A partial
  unique index lets a checkout hold one live (not failed) payment, so two racing attempts
  end with one payment and a 409. The provider is then called *outside* any transaction,
  keyed by the row's id (a retried call is the same charge), and what it answered is
  recorded in a second transaction. A reconcile job, queued with the row, finishes the
  work if the process dies in between.
- Success is applied by one function in one transaction, guarded by conditional updates
  (payment open → succeeded, then checkout open → paid). The webhook is the source of
  truth; the reconcile job asks the provider when a webhook never comes. Whichever arrives
  first does the work and the others find nothing left to do: one paid order, one set of
  ledger rows (each also unique by its ``entry_key``).
- Every webhook event is a row (unique per provider and event id) written in the same
  transaction that applies it: a repeat is answered 200 and changes nothing. Provider
  states only move forward, so events arriving out of order cannot undo each other.
- A success for a checkout that lapsed meanwhile (its stock given back) takes the stock
  again if it is all still there; otherwise the payment is refunded in full, automatically.
- Refunds claim their amount with a conditional update on the payment before the provider
  is asked, so concurrent refunds can never exceed what was paid; the ledger gets its rows
  once the provider confirms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar, cast
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import (
    JSON,
    CheckConstraint,
    CursorResult,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    and_,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core import idempotency
from craftreel.core.clock import utcnow
from craftreel.core.db import Base, UnitOfWork
from craftreel.core.errors import Conflict, DomainError, InvalidInput, NotFound
from craftreel.core.ids import uuid7
from craftreel.core.money import apply_rate
from craftreel.core.pagination import decode_time_cursor, page_of
from craftreel.shop import repository as shop_repo
from craftreel.shop.mails import queue_receipt
from craftreel.shop.models import (
    Checkout,
    CheckoutStatus,
    Order,
    OrderLine,
    OrderStatus,
    Reservation,
    Shop,
)
from craftreel.shop.service import NoShop

if TYPE_CHECKING:
    from craftreel.accounts.models import User
    from craftreel.config import Settings
    from craftreel.context import AppContext
    from craftreel.core.jobs import JobQueue

log = logging.getLogger(__name__)

#: Job kinds (registered by ``shop.payments_tasks``).
DELIVER_TEST_WEBHOOK = "shop.deliver_test_webhook"
RECONCILE_PAYMENT = "shop.reconcile_payment"
RECONCILE_REFUND = "shop.reconcile_refund"

#: A signed webhook older (or further in the future) than this is refused.
WEBHOOK_TOLERANCE_SECONDS = 300
#: How many times the reconcile jobs look again at a payment or refund still in flight.
RECONCILE_ROUNDS = 12


# --- settings ---------------------------------------------------------------------------

T = TypeVar("T")


def _setting(settings: Settings, name: str, default: T) -> T:
    """A setting by name, or ``default`` while ``config.Settings`` does not declare it yet."""
    value = getattr(settings, name, default)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return cast(T, value)


@dataclass(frozen=True)
class PaymentSettings:
    """What payments read from the settings (see ``docs/settings.md``)."""

    provider: str
    platform_fee_bps: int
    test_webhook_secret: str
    test_webhook_url: str
    stripe_secret_key: str | None
    stripe_webhook_secret: str | None
    stripe_api_base: str
    reconcile_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> PaymentSettings:
        provider = _setting(settings, "payment_provider", "test")
        fee = _setting(settings, "platform_fee_bps", 500)
        test_secret = (
            _setting(settings, "test_payments_webhook_secret", None)
            or hmac.new(
                settings.signing_key, b"craftreel test payments webhooks", hashlib.sha256
            ).hexdigest()
        )
        stripe_key = _setting(settings, "stripe_secret_key", None)
        stripe_webhook = _setting(settings, "stripe_webhook_secret", None)
        reconcile = _setting(settings, "payment_reconcile_seconds", 300)
        if provider not in ("test", "stripe"):
            raise ValueError(f"CRAFTREEL_PAYMENT_PROVIDER must be test or stripe, not {provider!r}")
        if not isinstance(fee, int) or not 0 <= fee <= 10_000:
            raise ValueError("CRAFTREEL_PLATFORM_FEE_BPS must be 0 to 10000 basis points")
        if provider == "stripe" and not (stripe_key and stripe_webhook):
            raise ValueError(
                "CRAFTREEL_STRIPE_SECRET_KEY and CRAFTREEL_STRIPE_WEBHOOK_SECRET must be set "
                "when CRAFTREEL_PAYMENT_PROVIDER=stripe"
            )
        if provider == "test" and settings.environment == "production" and not settings.demo_mode:
            raise ValueError(
                "the test payment provider takes test cards as money; "
                "set CRAFTREEL_PAYMENT_PROVIDER=stripe in production"
            )
        base = str(settings.base_url).rstrip("/")
        return cls(
            provider=provider,
            platform_fee_bps=fee,
            test_webhook_secret=test_secret,
            test_webhook_url=f"{base}/api/v1/payments/webhooks/test",
            stripe_secret_key=stripe_key,
            stripe_webhook_secret=stripe_webhook,
            stripe_api_base=str(
                _setting(settings, "stripe_api_base", "https://api.stripe.com")
            ).rstrip("/"),
            reconcile_after=timedelta(seconds=int(reconcile)),
        )


# --- errors -----------------------------------------------------------------------------


class CheckoutNotFound(NotFound):
    """No such checkout for this buyer."""

    code = "checkout_not_found"
    message = "No such checkout."


class CheckoutNotPayable(Conflict):
    """Only an open checkout, before its hold lapses, can be paid."""

    code = "checkout_not_payable"
    message = "This checkout can no longer be paid. Check out again."


class PaymentInProgress(Conflict):
    """The checkout already has a live payment."""

    code = "payment_in_progress"
    message = "This checkout is already being paid."


class PaymentNotFound(NotFound):
    """No such payment for this buyer."""

    code = "payment_not_found"
    message = "No such payment."


class PaymentNotAwaitingAction(Conflict):
    """Only a payment that asked for a confirm step can be confirmed."""

    code = "payment_not_awaiting_action"
    message = "This payment is not waiting for a confirmation."


class ProviderNotAvailable(InvalidInput):
    """The payment provider asked for is not switched on here."""

    code = "payment_provider_not_available"
    message = "That payment provider is not available."


class InvalidCardNumber(InvalidInput):
    """The card number is not a card number."""

    code = "invalid_card_number"
    message = "That card number is not valid."


class PaymentProviderError(DomainError):
    """The payment provider failed or did not answer."""

    status_code = 502
    code = "payment_provider_unavailable"
    message = "The payment service did not answer. Try again in a moment."


class WebhookSignatureInvalid(DomainError):
    """A webhook's signature is missing, forged or stale."""

    status_code = 400
    code = "webhook_signature_invalid"
    message = "The webhook signature is not valid."


class OrderNotFound(NotFound):
    """No such order for this person."""

    code = "order_not_found"
    message = "No such order."


class OrderNotRefundable(Conflict):
    """The order was never paid (or is already fully refunded)."""

    code = "order_not_refundable"
    message = "This order has no payment to refund."


class RefundTooLarge(Conflict):
    """A refund cannot be more than what is left to refund."""

    code = "refund_too_large"
    message = "That is more than is left to refund on this order."


class OrderNotCancellable(Conflict):
    """Only a paid order that has not shipped can be cancelled."""

    code = "order_not_cancellable"
    message = "This order can no longer be cancelled."


class WebhookPayloadInvalid(DomainError):
    """A genuinely signed webhook whose event we cannot read."""

    status_code = 400
    code = "webhook_payload_invalid"
    message = "The webhook event could not be read."


class _DuplicateEvent(Exception):
    """A webhook event was handled before (internal: rolls its transaction back)."""


# --- tables -----------------------------------------------------------------------------


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


#: Not yet decided.
IN_FLIGHT = (
    PaymentStatus.REQUIRES_PAYMENT,
    PaymentStatus.REQUIRES_ACTION,
    PaymentStatus.PROCESSING,
)
#: The money was taken (some may have been given back since).
PAID = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
#: Which states a payment may move to each state from: forward only.
MOVES_FROM: dict[PaymentStatus, tuple[PaymentStatus, ...]] = {
    PaymentStatus.REQUIRES_ACTION: (PaymentStatus.REQUIRES_PAYMENT,),
    PaymentStatus.PROCESSING: (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.REQUIRES_ACTION),
    PaymentStatus.SUCCEEDED: IN_FLIGHT,
    PaymentStatus.FAILED: IN_FLIGHT,
    PaymentStatus.PARTIALLY_REFUNDED: (
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
    ),
    PaymentStatus.REFUNDED: (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED),
}


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundReason(StrEnum):
    REQUESTED = "requested"
    ORDER_CANCELLED = "order_cancelled"
    #: The payment succeeded after the checkout lapsed and its stock was gone.
    CHECKOUT_LAPSED = "checkout_lapsed"
    #: The provider took a different amount than the checkout's (never expected).
    AMOUNT_MISMATCH = "amount_mismatch"


class LedgerKind(StrEnum):
    SALE = "sale"
    PLATFORM_FEE = "platform_fee"
    REFUND = "refund"
    FEE_REFUND = "fee_refund"
    PAYOUT = "payout"


class Payment(Base):
    """One attempt to pay a checkout, mirroring the provider's state."""

    __tablename__ = "payments"
    __table_args__ = (
        # One live payment per checkout: a second attempt fails here, whatever the timing.
        Index(
            "uq_payments_live_checkout",
            "checkout_id",
            unique=True,
            sqlite_where=text("status <> 'failed'"),
            postgresql_where=text("status <> 'failed'"),
        ),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refund_claimed >= amount_refunded "
            "AND amount_refund_claimed <= amount",
            name="refunds_within_amount",
        ),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    checkout_id: Mapped[UUID] = mapped_column(ForeignKey("checkouts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_ref: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.REQUIRES_PAYMENT)
    failure_code: Mapped[str | None] = mapped_column(String(60))
    #: The seller's connected account for a Connect destination charge.
    destination: Mapped[str | None] = mapped_column(String(255))
    #: Refunded and confirmed by the provider.
    amount_refunded: Mapped[int] = mapped_column(default=0)
    #: Refunded or being refunded: claimed before the provider is asked.
    amount_refund_claimed: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentEvent(Base):
    """A provider's webhook event, stored once: a repeat delivery fails on the unique key."""

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(80))
    payment_id: Mapped[UUID | None] = mapped_column(ForeignKey("payments.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Refund(Base):
    """Money given back on a payment: for one order, or the whole payment when it arrived
    for a checkout that could no longer be filled."""

    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    payment_id: Mapped[UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    order_id: Mapped[UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default=RefundStatus.PENDING)
    reason: Mapped[str] = mapped_column(String(20))
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One movement of a seller's money (signed minor units); the balance is the sum."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_shop_id_created_at", "shop_id", "created_at"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id"))
    order_id: Mapped[UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    refund_id: Mapped[UUID | None] = mapped_column(ForeignKey("refunds.id"))
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    #: What this movement is for ("sale:<order>", "fee_refund:<refund>"): written once.
    entry_key: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutAccount(Base):
    """A shop's account at a provider (a Stripe Connect account), where its sales go."""

    __tablename__ = "payout_accounts"

    shop_id: Mapped[UUID] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    account_ref: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TestProviderIntent(Base):
    """The built-in test provider's own record of a payment (it plays an outside service)."""

    __test__ = False
    __tablename__ = "test_provider_intents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payment_id: Mapped[str | None] = mapped_column(String(64), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    amount_refunded: Mapped[int] = mapped_column(default=0)
    card_last4: Mapped[str] = mapped_column(String(4))
    destination: Mapped[str | None] = mapped_column(String(255))
    application_fee: Mapped[int | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TestProviderRefund(Base):
    """A refund the test provider made (once per idempotency key)."""

    __test__ = False
    __tablename__ = "test_provider_refunds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("test_provider_intents.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    amount: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- API shapes -------------------------------------------------------------------------


class PaymentCreate(BaseModel):
    """How a buyer pays. Amount and currency come from the checkout, never from here."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["test", "stripe"] | None = None
    #: The test provider's card number.
    card_number: Annotated[str, Field(min_length=1, max_length=30)] | None = None
    #: A Stripe PaymentMethod id made by Stripe.js (raw card numbers never reach us).
    payment_method: Annotated[str, Field(min_length=1, max_length=255)] | None = None


class PaymentOut(BaseModel):
    id: UUID
    checkout_id: UUID
    provider: str
    status: str
    amount: int
    currency: str
    failure_code: str | None
    #: "confirm" when the buyer must complete a step (POST .../confirm).
    next_action: str | None
    created_at: datetime


class RefundCreate(BaseModel):
    """A seller's refund of one order: the amount (default: all that is left)."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[int, Field(ge=1, le=100_000_000)] | None = None


class RefundOut(BaseModel):
    id: UUID
    order_id: UUID | None
    payment_id: UUID
    amount: int
    currency: str
    status: str
    failure_code: str | None
    created_at: datetime


class LedgerEntryOut(BaseModel):
    id: UUID
    order_id: UUID | None
    kind: str
    amount: int
    currency: str
    created_at: datetime


class BalanceOut(BaseModel):
    shop_handle: str
    currency: str
    #: The sum of every ledger entry: what the shop is owed.
    balance: int
    entries: list[LedgerEntryOut]
    next_cursor: str | None


class WebhookReceipt(BaseModel):
    received: bool
    duplicate: bool


# --- providers --------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentRequest:
    """What we ask a provider to charge."""

    payment_id: UUID
    checkout_id: UUID
    amount: int
    currency: str
    payment_method: str
    #: Connect destination charge: the seller's account, and the platform's fee on it.
    destination: str | None = None
    application_fee: int | None = None
    #: Several sellers in one payment: the group their later transfers belong to.
    transfer_group: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"payment-{self.payment_id}"


@dataclass(frozen=True)
class ProviderPayment:
    """A provider's view of a payment, in our vocabulary."""

    ref: str
    status: PaymentStatus
    amount: int
    currency: str
    failure_code: str | None = None
    #: Our payment id, from the metadata we sent.
    payment_id: UUID | None = None


@dataclass(frozen=True)
class ProviderRefund:
    ref: str | None
    status: RefundStatus
    amount: int
    failure_code: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    payment: ProviderPayment | None


class PaymentProvider(Protocol):
    """What every payment provider offers. Calls are idempotent by the key they carry."""

    name: str

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """Charge (or start charging) the payment method; the same request twice is one charge."""
        ...

    async def confirm(self, ref: str) -> ProviderPayment:
        """Finish a payment that required an action from the buyer."""
        ...

    async def retrieve(self, ref: str) -> ProviderPayment:
        """The payment as the provider sees it now."""
        ...

    async def find(self, payment_id: UUID) -> ProviderPayment | None:
        """The provider's payment made for our payment id, if it ever made one."""
        ...

    async def refund(
        self, ref: str, amount: int, idempotency_key: str, *, reverse_transfer: bool
    ) -> ProviderRefund:
        """Give back ``amount`` of a succeeded payment."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """The event a signed webhook carries; WebhookSignatureInvalid if it is not genuine."""
        ...


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<HMAC-SHA256 of "timestamp.body">`` (Stripe's scheme)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def check_signature(header: str | None, secret: str, body: bytes, now: float) -> None:
    """Raise WebhookSignatureInvalid unless a v1 signature matches and ``t`` is recent."""
    if not header:
        raise WebhookSignatureInvalid("The webhook carries no signature.")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureInvalid("The webhook signature header is malformed.")
    if abs(now - timestamp) > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookSignatureInvalid("The webhook signature is too old.")
    expected = sign_webhook(secret, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookSignatureInvalid()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise WebhookSignatureInvalid("The webhook body is not JSON.") from exc
    if not isinstance(parsed, dict):
        raise WebhookSignatureInvalid("The webhook body is not an event.")
    return parsed


def _uuid_or_none(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


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
        self, ref: str, amount: int, idempotency_key: str, *, reverse_transfer: bool
    ) -> ProviderRefund:
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
            if not _changed(claimed):
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

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        check_signature(_lower(headers).get("craftreel-signature"), self._secret, body, time.time())
        event = _json_object(body)
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
                    payment_id=_uuid_or_none(metadata.get("payment_id")),
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
        if _changed(moved):
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
            payment_id=_uuid_or_none(intent.payment_id),
        )


class StripeProvider:
    """Stripe PaymentIntents over its HTTP API (base URL is a setting): Connect destination
    charges with the platform's fee, refunds, and Stripe-Signature checks."""

    name = "stripe"

    def __init__(
        self, http: httpx.AsyncClient, api_base: str, secret_key: str, webhook_secret: str
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._key = secret_key
        self._webhook_secret = webhook_secret

    async def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        form: dict[str, str] = {
            "amount": str(request.amount),
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "payment_method_types[]": "card",
            "confirm": "true",
            "metadata[payment_id]": str(request.payment_id),
            "metadata[checkout_id]": str(request.checkout_id),
        }
        if request.destination is not None:
            form["transfer_data[destination]"] = request.destination
            form["application_fee_amount"] = str(request.application_fee or 0)
        if request.transfer_group is not None:
            form["transfer_group"] = request.transfer_group
        intent = await self._call(
            "POST", "/v1/payment_intents", form, idempotency_key=request.idempotency_key
        )
        return self._payment(intent)

    async def confirm(self, ref: str) -> ProviderPayment:
        intent = await self._call(
            "POST", f"/v1/payment_intents/{ref}/confirm", {}, idempotency_key=f"confirm-{ref}"
        )
        return self._payment(intent)

    async def retrieve(self, ref: str) -> ProviderPayment:
        return self._payment(await self._call("GET", f"/v1/payment_intents/{ref}"))

    async def find(self, payment_id: UUID) -> ProviderPayment | None:
        # Stripe's search lags writes by up to a minute; the reconcile job runs minutes later.
        found = await self._call(
            "GET",
            "/v1/payment_intents/search",
            params={"query": f"metadata['payment_id']:'{payment_id}'"},
        )
        data = found.get("data") or []
        return self._payment(data[0]) if data else None

    async def refund(
        self, ref: str, amount: int, idempotency_key: str, *, reverse_transfer: bool
    ) -> ProviderRefund:
        form = {"payment_intent": ref, "amount": str(amount)}
        if reverse_transfer:
            # The seller gives back their share and we give back our fee, pro rata.
            form["reverse_transfer"] = "true"
            form["refund_application_fee"] = "true"
        refund = await self._call("POST", "/v1/refunds", form, idempotency_key=idempotency_key)
        status = {
            "succeeded": RefundStatus.SUCCEEDED,
            "failed": RefundStatus.FAILED,
            "canceled": RefundStatus.FAILED,
        }.get(str(refund.get("status")), RefundStatus.PENDING)
        return ProviderRefund(
            ref=str(refund["id"]),
            status=status,
            amount=int(refund.get("amount", amount)),
            failure_code=refund.get("failure_reason"),
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        check_signature(
            _lower(headers).get("stripe-signature"), self._webhook_secret, body, time.time()
        )
        event = _json_object(body)
        try:
            data = event.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            payment = None
            if isinstance(obj, dict) and obj.get("object") == "payment_intent":
                payment = self._payment(obj)
            return WebhookEvent(id=str(event["id"]), type=str(event["type"]), payment=payment)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookPayloadInvalid() from exc

    async def _call(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", data=form, params=params, headers=headers
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PaymentProviderError() from exc
        if not isinstance(body, dict):
            raise PaymentProviderError()
        if response.status_code >= 400:
            error = body.get("error") or {}
            # A declined card still makes a PaymentIntent: it comes back with the error.
            if isinstance(error, dict) and isinstance(error.get("payment_intent"), dict):
                return cast(dict[str, Any], error["payment_intent"])
            log.warning(
                "stripe refused a request",
                extra={"path": path, "status": response.status_code, "error": str(error)[:300]},
            )
            raise PaymentProviderError(
                provider_code=error.get("code") if isinstance(error, dict) else None
            )
        return body

    @staticmethod
    def _payment(intent: dict[str, Any]) -> ProviderPayment:
        stripe_status = str(intent.get("status"))
        error = intent.get("last_payment_error") or {}
        failure_code: str | None = None
        if stripe_status == "requires_payment_method" and error:
            status = PaymentStatus.FAILED
            failure_code = error.get("decline_code") or error.get("code") or "card_declined"
        elif stripe_status == "canceled":
            status, failure_code = PaymentStatus.FAILED, "canceled"
        else:
            status = {
                "succeeded": PaymentStatus.SUCCEEDED,
                "processing": PaymentStatus.PROCESSING,
                # We never capture by hand: an authorised payment is on its way.
                "requires_capture": PaymentStatus.PROCESSING,
                "requires_action": PaymentStatus.REQUIRES_ACTION,
            }.get(stripe_status, PaymentStatus.REQUIRES_PAYMENT)
        metadata = intent.get("metadata") or {}
        return ProviderPayment(
            ref=str(intent["id"]),
            status=status,
            amount=int(intent.get("amount", 0)),
            currency=str(intent.get("currency", "")).upper(),
            failure_code=failure_code,
            payment_id=_uuid_or_none(metadata.get("payment_id")),
        )


def providers(ctx: AppContext) -> dict[str, PaymentProvider]:
    """The providers switched on by the settings, by name (cheap: no I/O)."""
    config = PaymentSettings.from_settings(ctx.settings)
    found: dict[str, PaymentProvider] = {}
    if config.provider == "test":
        found["test"] = TestProvider(ctx.uow, ctx.jobs, config.test_webhook_secret)
    if config.stripe_secret_key and config.stripe_webhook_secret:
        found["stripe"] = StripeProvider(
            ctx.http, config.stripe_api_base, config.stripe_secret_key, config.stripe_webhook_secret
        )
    return found


def _provider(ctx: AppContext, name: str) -> PaymentProvider:
    provider = providers(ctx).get(name)
    if provider is None:
        raise ProviderNotAvailable(provider=name)
    return provider


# --- money ------------------------------------------------------------------------------


def platform_fee(order_total: int, basis_points: int) -> int:
    """The platform's fee on an order, rounded half up to a whole minor unit."""
    return apply_rate(order_total, basis_points)


def share(amount: int, part: int, whole: int) -> int:
    """``amount × part / whole``, rounded half up, in integers (0 when ``whole`` is 0)."""
    if whole <= 0:
        return 0
    return (2 * amount * part + whole) // (2 * whole)


# --- SQL --------------------------------------------------------------------------------


def _changed(result: object) -> bool:
    return bool(cast(CursorResult[Any], result).rowcount)


async def _move_payment(
    session: AsyncSession, payment_id: UUID, to: PaymentStatus, failure_code: str | None = None
) -> bool:
    """Move a payment forward to ``to`` — true for exactly one caller."""
    values: dict[str, Any] = {"status": to}
    if to == PaymentStatus.FAILED:
        values["failure_code"] = failure_code
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status.in_(MOVES_FROM[to]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _changed(result)


async def _payment(session: AsyncSession, payment_id: UUID) -> Payment | None:
    return await session.get(Payment, payment_id, populate_existing=True)


async def _paid_payment_of(session: AsyncSession, checkout_id: UUID) -> Payment | None:
    return await session.scalar(
        select(Payment)
        .where(Payment.checkout_id == checkout_id, Payment.status.in_(PAID))
        .execution_options(populate_existing=True)
    )


async def _locked_order(session: AsyncSession, order_id: UUID) -> Order | None:
    """The order, row-locked until commit (PostgreSQL; SQLite writers queue anyway)."""
    return await session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _ledger_sum(session: AsyncSession, order_id: UUID, kind: LedgerKind) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.order_id == order_id, LedgerEntry.kind == kind
        )
    )
    return int(total or 0)


async def _refund_claimed_for_order(session: AsyncSession, order_id: UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order_id, Refund.status != RefundStatus.FAILED
        )
    )
    return int(total or 0)


def _ledger(
    session: AsyncSession,
    order: Order,
    kind: LedgerKind,
    amount: int,
    key: str,
    refund_id: UUID | None = None,
) -> None:
    session.add(
        LedgerEntry(
            id=uuid7(),
            shop_id=order.shop_id,
            order_id=order.id,
            refund_id=refund_id,
            kind=kind,
            amount=amount,
            currency=order.currency,
            entry_key=key,
        )
    )


async def _retake_stock(session: AsyncSession, checkout_id: UUID) -> bool:
    """Hold a lapsed checkout's stock again, all of it or none (in variant order)."""
    reservations = (
        await session.scalars(
            select(Reservation)
            .where(Reservation.checkout_id == checkout_id, Reservation.released_at.is_not(None))
            .order_by(Reservation.variant_id, Reservation.id)
        )
    ).all()
    taken: list[Reservation] = []
    for reservation in reservations:
        if not await shop_repo.take_stock(session, reservation.variant_id, reservation.quantity):
            for held in taken:
                await shop_repo.give_back_stock(session, held.variant_id, held.quantity)
            return False
        taken.append(reservation)
    await session.execute(
        update(Reservation)
        .where(Reservation.checkout_id == checkout_id)
        .values(released_at=None)
        .execution_options(synchronize_session=False)
    )
    return True


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
    _provider(ctx, provider_name)
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
        idempotency.remember(
            uow.session,
            buyer_id,
            "payment",
            key,
            digest,
            201,
            payment_out(payment).model_dump(mode="json"),
        )
        try:
            await uow.session.flush()
        except IntegrityError:
            raise Conflict("That request is already being handled.", retry=True) from None
        _queue_reconcile_payment(ctx, uow, payment.id, 0, config)
        return payment.id


async def submit_payment(ctx: AppContext, payment_id: UUID, payment_method: str) -> PaymentOut:
    """Ask the provider to charge a recorded attempt (again, harmlessly, if it was asked
    before but its answer was lost) and record what it says."""
    async with ctx.uow() as uow:
        payment = await _payment(uow.session, payment_id)
        if payment is None:
            raise PaymentNotFound()
        if payment.status != PaymentStatus.REQUIRES_PAYMENT or payment.provider_ref is not None:
            return payment_out(payment)
        request = await _payment_request(ctx, uow.session, payment, payment_method)
        provider_name = payment.provider
    state = await _provider(ctx, provider_name).create_payment(request)
    async with ctx.uow() as uow:
        await apply_state(ctx, uow, payment_id, state, settle=False)
        payment = await _payment(uow.session, payment_id)
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
        group = str(payment.checkout_id)
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
    state = await _provider(ctx, provider_name).confirm(ref)
    async with ctx.uow() as uow:
        await apply_state(ctx, uow, payment_id, state, settle=False)
        confirmed = await _payment(uow.session, payment_id)
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
    payment = await _payment(session, payment_id)
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
        await _move_payment(session, payment_id, PaymentStatus.FAILED, state.failure_code)
    elif status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING):
        await _move_payment(session, payment_id, status)


async def _settle_success(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, state: ProviderPayment
) -> None:
    """Exactly once per payment: checkout paid, its orders paid, their ledger rows written —
    or, when the checkout cannot be filled any more, the whole payment refunded."""
    session = uow.session
    if not await _move_payment(session, payment.id, PaymentStatus.SUCCEEDED):
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
    if _changed(paid):
        await _mark_orders_paid(ctx, uow, payment, OrderStatus.PLACED)
        return
    checkout = await session.get(Checkout, payment.checkout_id, populate_existing=True)
    assert checkout is not None
    # The hold lapsed while the buyer paid: take the stock again if it is all still there.
    if checkout.status == CheckoutStatus.EXPIRED and await _retake_stock(session, checkout.id):
        revived = await session.execute(
            update(Checkout)
            .where(Checkout.id == checkout.id, Checkout.status == CheckoutStatus.EXPIRED)
            .values(status=CheckoutStatus.PAID)
            .execution_options(synchronize_session=False)
        )
        if _changed(revived):
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
        _ledger(session, order, LedgerKind.SALE, order.total, f"sale:{order.id}")
        fee = platform_fee(order.total, config.platform_fee_bps)
        _ledger(session, order, LedgerKind.PLATFORM_FEE, -fee, f"platform_fee:{order.id}")
    await session.flush()
    await queue_receipt(ctx, uow, payment.checkout_id)
    # Orders of nothing but downloads are delivered by their download (see shop.orders).
    from craftreel.shop.orders import deliver_downloads  # orders builds on payments

    await deliver_downloads(uow, payment.checkout_id)


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
    if not _changed(claimed) or payment.amount == 0:
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


# --- webhooks and reconciliation --------------------------------------------------------


async def handle_webhook(
    ctx: AppContext, provider_name: str, headers: Mapping[str, str], body: bytes
) -> WebhookReceipt:
    """Check a webhook's signature and apply its event — once, however often it arrives."""
    provider = providers(ctx).get(provider_name)
    if provider is None:
        raise NotFound("No such payment provider.")
    event = provider.verify_webhook(headers, body)
    try:
        async with ctx.uow() as uow:
            payment = await _payment_of_event(uow.session, provider_name, event)
            uow.session.add(
                PaymentEvent(
                    provider=provider_name,
                    event_id=event.id[:255],
                    type=event.type[:80],
                    payment_id=payment.id if payment else None,
                )
            )
            try:
                await uow.session.flush()
            except IntegrityError:
                raise _DuplicateEvent() from None
            if payment is not None and event.payment is not None:
                await apply_state(ctx, uow, payment.id, event.payment, settle=True)
    except _DuplicateEvent:
        return WebhookReceipt(received=True, duplicate=True)
    return WebhookReceipt(received=True, duplicate=False)


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
        payment = await _payment(uow.session, payment_id)
        if payment is None or payment.status not in IN_FLIGHT:
            return
        ref, provider_name = payment.provider_ref, payment.provider
    provider = _provider(ctx, provider_name)
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
        payment = await _payment(uow.session, payment_id)
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
        refund = await _claim_refund(ctx, uow, order, body.amount, RefundReason.REQUESTED)
        if key is not None:
            idempotency.remember(
                uow.session,
                seller.id,
                "refund",
                key,
                digest,
                201,
                refund_out(refund).model_dump(mode="json"),
            )
            try:
                await uow.session.flush()
            except IntegrityError:
                raise Conflict("That request is already being handled.", retry=True) from None
    await execute_refund(ctx, refund.id)
    return await _refund_view(ctx, refund.id)


async def _sellers_order(session: AsyncSession, seller_id: UUID, order_id: UUID) -> Order:
    order = await _locked_order(session, order_id)
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
    payment = await _paid_payment_of(session, order.checkout_id)
    if payment is None:
        raise OrderNotRefundable(status=order.status)
    left = order.total - await _refund_claimed_for_order(session, order.id)
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
    if not _changed(claimed):
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
    return refund


async def execute_refund(ctx: AppContext, refund_id: UUID) -> RefundStatus:
    """Ask the provider for a claimed refund (idempotent by the refund's id) and record it."""
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
        ref, amount = payment.provider_ref, refund.amount
        provider_name, reverse = payment.provider, payment.destination is not None
    result = await _provider(ctx, provider_name).refund(
        ref, amount, f"refund-{refund_id}", reverse_transfer=reverse
    )
    async with ctx.uow() as uow:
        await _record_refund(ctx, uow, refund_id, result)
    return result.status


async def _record_refund(
    ctx: AppContext, uow: UnitOfWork, refund_id: UUID, result: ProviderRefund
) -> None:
    session = uow.session
    refund = await session.get(Refund, refund_id, populate_existing=True)
    if refund is None or refund.status != RefundStatus.PENDING:
        return
    order = await _locked_order(session, refund.order_id) if refund.order_id else None
    if result.status == RefundStatus.PENDING:
        await session.execute(
            update(Refund)
            .where(Refund.id == refund_id, Refund.provider_ref.is_(None))
            .values(provider_ref=result.ref)
            .execution_options(synchronize_session=False)
        )
        return
    settled = await session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == RefundStatus.PENDING)
        .values(status=result.status, provider_ref=result.ref, failure_code=result.failure_code)
        .execution_options(synchronize_session=False)
    )
    if not _changed(settled):
        return
    if result.status == RefundStatus.FAILED:
        await session.execute(
            update(Payment)
            .where(Payment.id == refund.payment_id)
            .values(amount_refund_claimed=Payment.amount_refund_claimed - refund.amount)
            .execution_options(synchronize_session=False)
        )
        log.warning(
            "refund refused by the provider",
            extra={"refund_id": str(refund_id), "code": result.failure_code},
        )
        return
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
        fee = -await _ledger_sum(session, order.id, LedgerKind.PLATFORM_FEE)
        refunded = -await _ledger_sum(session, order.id, LedgerKind.REFUND) + refund.amount
        fee_back = share(fee, refunded, order.total) - await _ledger_sum(
            session, order.id, LedgerKind.FEE_REFUND
        )
        _ledger(session, order, LedgerKind.REFUND, -refund.amount, f"refund:{refund.id}", refund.id)
        if fee_back:
            _ledger(
                session,
                order,
                LedgerKind.FEE_REFUND,
                fee_back,
                f"fee_refund:{refund.id}",
                refund.id,
            )
        await session.flush()


async def reconcile_refund(ctx: AppContext, refund_id: UUID, round_: int = 0) -> None:
    """Finish a refund left pending (a crash, a provider outage, or a provider still busy)."""
    status = await execute_refund(ctx, refund_id)
    if status == RefundStatus.PENDING and round_ + 1 < RECONCILE_ROUNDS:
        config = PaymentSettings.from_settings(ctx.settings)
        async with ctx.uow() as uow:
            ctx.jobs.enqueue(
                uow,
                RECONCILE_REFUND,
                {"refund_id": str(refund_id), "round": round_ + 1},
                run_at=utcnow() + config.reconcile_after,
                dedupe_key=f"{RECONCILE_REFUND}:{refund_id}:{round_ + 1}",
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
        order = await _locked_order(session, order_id)
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
        if not _changed(cancelled):
            raise OrderNotCancellable(status=order.status)
        lines = (
            await session.scalars(
                select(OrderLine)
                .where(OrderLine.order_id == order_id)
                .order_by(OrderLine.variant_id, OrderLine.id)
            )
        ).all()
        for line in lines:
            await shop_repo.give_back_stock(session, line.variant_id, line.quantity)
        left = order.total - await _refund_claimed_for_order(session, order.id)
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


# --- payout accounts and the balance ----------------------------------------------------


async def link_payout_account(
    uow: UnitOfWork, shop_id: UUID, provider_name: str, account_ref: str
) -> None:
    """Record where a shop's money goes at a provider (after Connect onboarding)."""
    existing = await uow.session.get(PayoutAccount, (shop_id, provider_name))
    if existing is None:
        uow.session.add(
            PayoutAccount(shop_id=shop_id, provider=provider_name, account_ref=account_ref)
        )
    else:
        existing.account_ref = account_ref
    await uow.session.flush()


async def balance(uow: UnitOfWork, seller: User, cursor: str | None, limit: int) -> BalanceOut:
    """The seller's balance (the sum of their ledger) and its entries, newest first."""
    shop = await shop_repo.shop_of_owner(uow.session, seller.id)
    if shop is None:
        raise NoShop()
    total = await uow.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.shop_id == shop.id)
    )
    query = select(LedgerEntry).where(LedgerEntry.shop_id == shop.id)
    if cursor:
        at, entry_id = decode_time_cursor(cursor)
        query = query.where(
            or_(
                LedgerEntry.created_at < at,
                and_(LedgerEntry.created_at == at, LedgerEntry.id < entry_id),
            )
        )
    rows: Sequence[LedgerEntry] = (
        await uow.session.scalars(
            query.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(limit + 1)
        )
    ).all()
    items, next_cursor = page_of(rows, limit, lambda e: (e.created_at, e.id))
    return BalanceOut(
        shop_handle=shop.handle,
        currency=shop.currency,
        balance=int(total or 0),
        entries=[
            LedgerEntryOut(
                id=e.id,
                order_id=e.order_id,
                kind=e.kind,
                amount=e.amount,
                currency=e.currency,
                created_at=e.created_at,
            )
            for e in items
        ],
        next_cursor=next_cursor,
    )
