"""The providers switched on by the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from craftreel.shop.payments.config import PaymentSettings
from craftreel.shop.payments.errors import ProviderNotAvailable
from craftreel.shop.payments.providers.base import ConnectProvider, PaymentProvider
from craftreel.shop.payments.providers.stripe import StripeProvider
from craftreel.shop.payments.providers.test import TestProvider

if TYPE_CHECKING:
    from craftreel.context import AppContext


def providers(ctx: AppContext) -> dict[str, PaymentProvider]:
    """The providers switched on by the settings, by name (cheap: no I/O)."""
    config = PaymentSettings.from_settings(ctx.settings)
    found: dict[str, PaymentProvider] = {}
    if config.provider == "test":
        found["test"] = TestProvider(ctx.uow, ctx.jobs, config.test_webhook_secret)
    if config.stripe_secret_key and config.stripe_webhook_secret:
        found["stripe"] = StripeProvider(
            ctx.http,
            config.stripe_api_base,
            config.stripe_secret_key,
            config.stripe_webhook_secret,
            config.stripe_connect_webhook_secret,
        )
    return found


def connect_provider(ctx: AppContext) -> ConnectProvider | None:
    """The provider that pays sellers through connected accounts, when it is switched on."""
    found = providers(ctx).get("stripe")
    if isinstance(found, StripeProvider):
        connect: ConnectProvider = found
        return connect
    return None


def provider_named(ctx: AppContext, name: str) -> PaymentProvider:
    provider = providers(ctx).get(name)
    if provider is None:
        raise ProviderNotAvailable(provider=name)
    return provider
