"""One payment provider interface, and the webhook signature scheme both providers use."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from craftreel.shop.payments.config import (
    WEBHOOK_TOLERANCE_SECONDS,
)
from craftreel.shop.payments.errors import (
    WebhookSignatureInvalid,
)
from craftreel.shop.payments.models import (
    PaymentStatus,
    RefundStatus,
)

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
    #: The charge that took the money (the source of later transfers), once there is one.
    charge_ref: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    """A provider's view of a refund: pending until it settles as succeeded or failed."""

    ref: str | None
    status: RefundStatus
    amount: int
    failure_code: str | None = None
    #: Our refund id, from the metadata we sent.
    refund_id: UUID | None = None


@dataclass(frozen=True)
class ConnectedAccount:
    """A seller's connected account as the provider sees it now."""

    ref: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool


@dataclass(frozen=True)
class OnboardingLink:
    """A single-use address where the seller finishes onboarding at the provider."""

    url: str
    expires_at: int | None


@dataclass(frozen=True)
class TransferRequest:
    """Money to move to a connected account, once per idempotency key."""

    amount: int
    currency: str
    destination: str
    idempotency_key: str
    transfer_group: str | None = None
    #: The charge the money came from (so a transfer does not wait for the platform's balance).
    source_charge: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderTransfer:
    ref: str
    amount: int


@dataclass(frozen=True)
class ProviderPayout:
    """A payout from a connected account to its owner's bank (``payout.*`` events)."""

    ref: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    payment: ProviderPayment | None
    #: The connected account an event happened on (Connect events), if any.
    account_ref: str | None = None
    #: The account an ``account.*`` event is about.
    account: ConnectedAccount | None = None
    payout: ProviderPayout | None = None
    #: The refund a ``refund.*`` or ``charge.refund.*`` event is about.
    refund: ProviderRefund | None = None


class ConnectProvider(Protocol):
    """A provider that pays sellers through connected accounts (Stripe Connect)."""

    name: str

    async def create_account(
        self, shop_id: UUID, country: str, idempotency_key: str
    ) -> ConnectedAccount:
        """A new connected account for a shop (Express: the provider hosts onboarding)."""
        ...

    async def retrieve_account(self, ref: str) -> ConnectedAccount:
        """The account as it stands now."""
        ...

    async def onboarding_link(self, ref: str, refresh_url: str, return_url: str) -> OnboardingLink:
        """Where the seller goes to finish (or update) onboarding."""
        ...

    async def create_transfer(self, request: TransferRequest) -> ProviderTransfer:
        """Send money to a connected account; the same key twice is one transfer."""
        ...

    async def reverse_transfer(
        self, ref: str, amount: int, idempotency_key: str, metadata: Mapping[str, str]
    ) -> ProviderTransfer:
        """Take ``amount`` of a transfer back; the same key twice is one reversal."""
        ...

    async def find_transfer(self, transfer_group: str, order_id: str) -> ProviderTransfer | None:
        """The transfer made for an order (by its metadata) in a group, if there is one: the
        order's own, never a restore or top-up sent to the same account for it."""
        ...

    async def find_reversal(self, ref: str, refund_id: str) -> ProviderTransfer | None:
        """The reversal of a transfer made for a refund (by its metadata), if there is one."""
        ...


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
        self,
        ref: str,
        amount: int,
        refund_id: UUID,
        *,
        reverse_transfer: bool,
    ) -> ProviderRefund:
        """Give back ``amount`` of a succeeded payment, once per refund id (the idempotency
        key, and metadata that lets the refund's own events find it)."""
        ...

    async def retrieve_refund(self, ref: str) -> ProviderRefund:
        """The refund as the provider sees it now (a pending one may have settled)."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """The event a signed webhook carries; WebhookSignatureInvalid if it is not genuine."""
        ...


def refund_key(refund_id: UUID) -> str:
    """The idempotency key of our refund at the provider (the same however often it is asked)."""
    return f"refund-{refund_id}"


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


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise WebhookSignatureInvalid("The webhook body is not JSON.") from exc
    if not isinstance(parsed, dict):
        raise WebhookSignatureInvalid("The webhook body is not an event.")
    return parsed


def uuid_or_none(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None
