"""What payments read from the settings, and the constants they share."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar, cast

from pydantic import SecretStr

if TYPE_CHECKING:
    from craftreel.config import Settings

#: Job kinds (registered by ``shop.payments_tasks``).
DELIVER_TEST_WEBHOOK = "shop.deliver_test_webhook"
RECONCILE_PAYMENT = "shop.reconcile_payment"
RECONCILE_REFUND = "shop.reconcile_refund"
EXECUTE_TRANSFER = "shop.execute_transfer"

#: Providers that pay sellers through connected accounts of their own (Stripe Connect).
CONNECT_PROVIDERS = ("stripe",)

#: A signed webhook older (or further in the future) than this is refused.
WEBHOOK_TOLERANCE_SECONDS = 300
#: How many times the reconcile jobs look again at a payment or refund still in flight.
RECONCILE_ROUNDS = 12
#: A refund the provider holds as pending (Stripe does until its balance covers it, or the
#: card's bank answers) is looked at for longer: after RECONCILE_ROUNDS, each wait doubles up
#: to a day, for about two weeks in all; then a person is told.
REFUND_RECONCILE_ROUNDS = 32
REFUND_RECONCILE_MAX_WAIT = timedelta(days=1)


def refund_reconcile_wait(round_: int, reconcile_after: timedelta) -> timedelta:
    """How long the refund reconcile job waits before its round ``round_``."""
    doublings = max(0, round_ - RECONCILE_ROUNDS + 1)
    wait: timedelta = reconcile_after * (2 ** min(doublings, 20))
    return min(wait, REFUND_RECONCILE_MAX_WAIT)


# --- settings ---------------------------------------------------------------------------

T = TypeVar("T")


def setting(settings: Settings, name: str, default: T) -> T:
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
    #: The secret of a Connect webhook endpoint (events on sellers' accounts), if separate.
    stripe_connect_webhook_secret: str | None
    stripe_api_base: str
    reconcile_after: timedelta
    #: How many times a transfer's job asks a provider that does not answer before giving up.
    transfer_max_attempts: int
    #: Where alerts that need a person go ("" = the log only).
    operator_email: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PaymentSettings:
        provider = setting(settings, "payment_provider", "test")
        fee = setting(settings, "platform_fee_bps", 500)
        test_secret = (
            setting(settings, "test_payments_webhook_secret", None)
            or hmac.new(
                settings.signing_key, b"craftreel test payments webhooks", hashlib.sha256
            ).hexdigest()
        )
        stripe_key = setting(settings, "stripe_secret_key", None)
        stripe_webhook = setting(settings, "stripe_webhook_secret", None)
        reconcile = setting(settings, "payment_reconcile_seconds", 300)
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
            stripe_connect_webhook_secret=setting(settings, "stripe_connect_webhook_secret", None),
            stripe_api_base=str(
                setting(settings, "stripe_api_base", "https://api.stripe.com")
            ).rstrip("/"),
            reconcile_after=timedelta(seconds=int(reconcile)),
            transfer_max_attempts=int(setting(settings, "transfer_max_attempts", 10)),
            operator_email=str(setting(settings, "operator_email", "") or "").strip(),
        )
