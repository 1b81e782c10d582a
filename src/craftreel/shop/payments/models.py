"""Payments' tables: payments, webhook events, refunds, the ledger, payout accounts, and
the built-in test provider's own records."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7

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
    #: The buyer asked for it.
    REQUESTED = "requested"
    DAMAGED = "damaged"
    NOT_AS_DESCRIBED = "not_as_described"
    NOT_RECEIVED = "not_received"
    OTHER = "other"
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
    #: Money paid out to the seller's bank (negative) …
    PAYOUT = "payout"
    #: … and given back when the bank returned it.
    PAYOUT_REVERSAL = "payout_reversal"


class TransferKind(StrEnum):
    #: The seller's share of a multi-shop payment, sent to their connected account.
    TRANSFER = "transfer"
    #: Part of a transfer taken back when its order is refunded.
    REVERSAL = "reversal"
    #: A reversal given back: its refund failed after it had succeeded (the card was closed),
    #: so the seller's part of it is theirs again.
    RESTORE = "restore"
    #: What a seller's account is short for an order once a refund fails after succeeding
    #: and no reversal of it is there to give back (the order's transfer was sent after the
    #: refund, for what the order owed then).
    TOP_UP = "top_up"


class TransferStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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
    #: The provider's refund (its webhooks are looked up by it).
    provider_ref: Mapped[str | None] = mapped_column(String(255), index=True)
    failure_code: Mapped[str | None] = mapped_column(String(60))
    #: When a refund the provider had confirmed failed after all (the buyer's card was closed,
    #: say): the money came back to the platform instead of reaching the buyer.
    bounced_at: Mapped[datetime | None]
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

    __table_args__ = (
        # A provider's account belongs to one shop: its webhooks find the shop by it.
        UniqueConstraint("provider", "account_ref"),
    )

    shop_id: Mapped[UUID] = mapped_column(
        ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    account_ref: Mapped[str] = mapped_column(String(255))
    #: What the provider last told us (``account.updated``): may the account take charges,
    #: receive payouts, and has its owner finished onboarding.
    charges_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    payouts_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    details_submitted: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentTransfer(Base):
    """Money moved to or back from a seller's connected account for one order: the transfer
    of a multi-shop payment's share, the reversal of part of it for a refund, a restore of
    a reversal whose refund failed after all, or a top-up of what the account is short for
    the order when such a refund had no reversal to restore. Unique by its idempotency key
    (one transfer per order, one reversal per refund and transfer it takes from, one
    restore per reversal, one top-up per refund that failed after succeeding)."""

    __tablename__ = "payment_transfers"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    kind: Mapped[str] = mapped_column(String(10))
    payment_id: Mapped[UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    order_id: Mapped[UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id"))
    #: A reversal's refund and the transfer (restore or top-up) it takes back from; a
    #: restore's refund and the reversal it gives back; a top-up's refund (no transfer).
    refund_id: Mapped[UUID | None] = mapped_column(ForeignKey("refunds.id"))
    transfer_id: Mapped[UUID | None] = mapped_column(ForeignKey("payment_transfers.id"))
    destination: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default=TransferStatus.PENDING)
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    #: Why it failed: the provider's code for a refusal, ``provider_unavailable`` when every
    #: attempt went unanswered.
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failed_at: Mapped[datetime | None]
    #: How often an operator sent it again (``craftreel payments retry-transfer``).
    retries: Mapped[int] = mapped_column(default=0, server_default="0")
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


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
