"""Payments' API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

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


#: The reasons a seller may give for a refund.
RefundReasonIn = Literal["requested", "damaged", "not_as_described", "not_received", "other"]


class RefundCreate(BaseModel):
    """A seller's refund of one order: the amount (default: all that is left)."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    #: Why (shown to the buyer with the refund).
    reason: RefundReasonIn = "requested"


class RefundOut(BaseModel):
    id: UUID
    order_id: UUID | None
    payment_id: UUID
    amount: int
    currency: str
    status: str
    failure_code: str | None
    created_at: datetime
    reason: str = "requested"
    #: Why it failed, as a person reads it.
    failure: str | None = None
    #: When it failed after it had succeeded: the money never reached the buyer's card.
    bounced_at: datetime | None = None


class LedgerEntryOut(BaseModel):
    id: UUID
    order_id: UUID | None
    kind: str
    amount: int
    currency: str
    created_at: datetime


class TransferOut(BaseModel):
    """Money sent to (or, for a reversal, taken back from) a seller's connected account; a
    restore gives back a reversal whose refund failed after all, and a top-up what the
    account was short for the order when such a refund had no reversal to give back."""

    id: UUID
    kind: str
    order_id: UUID
    amount: int
    currency: str
    status: str
    #: Why it failed: the provider's code, and the same as a person reads it.
    failure_code: str | None = None
    failure: str | None = None
    failed_at: datetime | None = None
    retries: int = 0


class BalanceOut(BaseModel):
    shop_handle: str
    currency: str
    #: The sum of every ledger entry: what the shop is owed.
    balance: int
    entries: list[LedgerEntryOut]
    next_cursor: str | None
    #: Transfers of the shop's share, restores of reversals whose refund failed after all,
    #: and top-ups, that failed (newest first): owed, not yet sent.
    failed_transfers: list[TransferOut] = []
    #: Reversals that failed (newest first): the seller's part of a refund the buyer got,
    #: not yet taken back from their connected account.
    failed_reversals: list[TransferOut] = []


class WebhookReceipt(BaseModel):
    received: bool
    duplicate: bool


class PayoutAccountOut(BaseModel):
    """How far a shop is with payouts at a provider that pays sellers out."""

    provider: str
    #: not_started · incomplete · in_review · payouts_paused · enabled
    status: str
    account_ref: str | None = None
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False


class OnboardingLinkOut(BaseModel):
    """Where the seller goes next to finish setting up payouts (single use, short-lived)."""

    url: str
    expires_at: int | None


class OrderMoneyOut(BaseModel):
    """One of the seller's orders as money: paid, refunded, what is left, and the transfer
    that paid the seller their share."""

    order_id: UUID
    status: str
    currency: str
    total: int
    created_at: datetime
    paid: bool
    refunded: int
    refund_pending: int
    #: Refunds that failed after they had succeeded: back in the seller's balance.
    refund_bounced: int = 0
    #: Of those, what no refund made since has given the buyer: while there is any, the
    #: order's pages say a refund did not go through.
    refund_bounced_open: int = 0
    #: What a refund may still give back.
    refundable: int
    #: Paid and not yet shipped: the seller may cancel it (stock back, payment refunded).
    cancellable: bool
    refunds: list[RefundOut]
    transfer_status: str | None = None
    transfer_amount: int | None = None
    #: Why the transfer failed, as a person reads it.
    transfer_failure: str | None = None
