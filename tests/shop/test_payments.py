"""Payments: the test provider end to end, webhooks (signed, repeated, out of order), a crash
between the provider's success and our order write, lapsed checkouts, refunds and the
ledger, who may do what — and Stripe against a local stand-in for its HTTP API."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select, update

from craftreel.app import create_app
from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.jobs import Job, JobStatus
from craftreel.core.money import apply_rate
from craftreel.runtime import register_job_handlers
from craftreel.shop import payments
from craftreel.shop import service as shop_service
from craftreel.shop.models import Checkout, Order, Shop, Variant
from craftreel.shop.payments import (
    LedgerEntry,
    Payment,
    PaymentEvent,
    PaymentSettings,
    PaymentTransfer,
    Refund,
    TestProviderIntent,
)
from tests.conftest import client_for, fresh_context
from tests.factories import Person, sign_up
from tests.shop.test_checkout import checkout, seller_with_listing

FEE_BPS = 1000  # 10 %, so fees are easy to check by eye
SUCCESS, DECLINE, NO_FUNDS, ACTION = (
    "4242424242424242",
    "4000000000000002",
    "4000000000009995",
    "4000000000003220",
)
PAY_PATH = "/api/v1/checkouts/{checkout_id}/payments"  # to see if app.py mounts the router


class PaymentTestSettings(Settings):
    """Settings with the payment settings config.py is to gain (same names and defaults)."""

    payment_provider: str = "test"
    platform_fee_bps: int = 500
    test_payments_webhook_secret: SecretStr | None = None
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_connect_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    payment_reconcile_seconds: int = 300


def _settings(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return PaymentTestSettings(
        environment="test",  # type: ignore[arg-type]
        database_url=database_url,
        var_dir=tmp_path / "var",
        log_json=False,
        log_level="WARNING",
        platform_fee_bps=FEE_BPS,
        **extra,
    )


@pytest.fixture
def settings(backend: str, database_urls: dict[str, str], tmp_path: Path) -> Settings:
    return _settings(database_urls[backend], tmp_path)


@asynccontextmanager
async def payments_app(settings: Settings, context: AppContext) -> AsyncIterator[FastAPI]:
    """The app with the payments router, its jobs registered, and our own base URL served
    in-process (so the test provider's webhooks reach this app). Jobs run when a test says."""
    application = create_app(settings, context)
    application.state.ctx = context
    register_job_handlers(context)
    real_http = context.http
    own_origin = str(settings.base_url).rstrip("/")
    context.http = httpx.AsyncClient(
        mounts={own_origin: httpx.ASGITransport(app=application)}, timeout=10
    )
    try:
        yield application
    finally:
        await context.http.aclose()
        context.http = real_http


@pytest.fixture
async def api(settings: Settings, ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    async with payments_app(settings, ctx) as application, client_for(application) as client:
        yield client


# --- helpers ----------------------------------------------------------------------------


async def run_jobs(ctx: AppContext) -> list[str]:
    """Run every due job (and those they make due) as a worker would; their kinds, in order."""
    kinds: list[str] = []
    while True:
        due = await ctx.jobs.due()
        if not due:
            return kinds
        for job_id in due:
            assert await ctx.jobs.run(job_id, "test-worker") == JobStatus.DONE, await ctx.jobs.get(
                job_id
            )
            job = await ctx.jobs.get(job_id)
            assert job is not None
            kinds.append(job.kind)


async def queued(ctx: AppContext, kind: str) -> list[Job]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(Job)
            .where(Job.kind == kind, Job.status == JobStatus.QUEUED)
            .order_by(Job.created_at, Job.id)
        )
        return list(rows.all())


async def make_due(ctx: AppContext, kind: str) -> None:
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Job)
            .where(Job.kind == kind, Job.status == JobStatus.QUEUED)
            .values(run_at=utcnow())
        )


async def pay(
    client: httpx.AsyncClient, buyer: Person, checkout_id: str, card: str, key: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/checkouts/{checkout_id}/payments",
        headers={**buyer.auth, "Idempotency-Key": key},
        json={"card_number": card, "provider": "test"},
    )


@dataclass
class Purchase:
    seller: Person
    buyer: Person
    variant_id: str
    checkout: dict[str, Any]

    @property
    def checkout_id(self) -> str:
        return str(self.checkout["id"])

    @property
    def order_id(self) -> str:
        return str(self.checkout["orders"][0]["id"])

    @property
    def total(self) -> int:
        return int(self.checkout["total"])


async def purchase(
    client: httpx.AsyncClient,
    seller_handle: str,
    buyer_handle: str,
    stock: int = 5,
    price: int = 1250,
    quantity: int = 1,
) -> Purchase:
    """A seller with a listing, and a buyer with an open checkout for ``quantity`` of it."""
    seller, listing = await seller_with_listing(client, seller_handle, stock=stock, price=price)
    buyer = await sign_up(client, buyer_handle)
    variant_id = listing["variants"][0]["id"]
    added = await client.post(
        "/api/v1/cart/lines",
        headers=buyer.auth,
        json={"variant_id": variant_id, "quantity": quantity},
    )
    assert added.status_code == 200, added.text
    started = await checkout(client, buyer, f"checkout-{buyer_handle}")
    assert started.status_code == 201, started.text
    return Purchase(seller, buyer, variant_id, started.json())


async def paid_purchase(
    client: httpx.AsyncClient, ctx: AppContext, seller_handle: str, buyer_handle: str, **kw: Any
) -> Purchase:
    bought = await purchase(client, seller_handle, buyer_handle, **kw)
    response = await pay(client, bought.buyer, bought.checkout_id, SUCCESS, "pay")
    assert response.status_code == 201, response.text
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "paid"
    return bought


async def checkout_status(ctx: AppContext, checkout_id: str) -> str:
    async with ctx.sessions() as session:
        found = await session.get(Checkout, UUID(checkout_id))
        assert found is not None
        return found.status


async def order_statuses(ctx: AppContext, checkout_id: str) -> list[str]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(Order.status).where(Order.checkout_id == UUID(checkout_id)).order_by(Order.id)
        )
        return list(rows.all())


async def stock_of(ctx: AppContext, variant_id: str) -> int | None:
    async with ctx.sessions() as session:
        variant = await session.get(Variant, UUID(variant_id))
        assert variant is not None
        return variant.stock


async def ledger(ctx: AppContext) -> list[tuple[str, int]]:
    """Every ledger row as (kind, amount), oldest first."""
    async with ctx.sessions() as session:
        rows = await session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount).order_by(
                LedgerEntry.created_at, LedgerEntry.id
            )
        )
        return [(kind, amount) for kind, amount in rows.all()]


async def count(ctx: AppContext, model: type[Any]) -> int:
    async with ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def signed_test_event(
    settings: Settings, event: dict[str, Any], at: float | None = None, secret: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    key = secret or PaymentSettings.from_settings(settings).test_webhook_secret
    header = payments.sign_webhook(key, body, int(at if at is not None else time.time()))
    return body, {"Craftreel-Signature": header, "Content-Type": "application/json"}


# --- the test provider, end to end ------------------------------------------------------


async def test_success_card_then_webhook_pays_the_checkout_and_writes_the_ledger(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    _, mug = await seller_with_listing(api, "potter")
    _, scarf = await seller_with_listing(api, "knitter", price=3000)
    buyer = await sign_up(api, "shopper")
    for listing, quantity in ((mug, 2), (scarf, 1)):
        await api.post(
            "/api/v1/cart/lines",
            headers=buyer.auth,
            json={"variant_id": listing["variants"][0]["id"], "quantity": quantity},
        )
    started = (await checkout(api, buyer, "c1")).json()
    assert len(started["orders"]) == 2

    response = await pay(api, buyer, started["id"], SUCCESS, "p1")
    assert response.status_code == 201, response.text
    payment = response.json()
    # The amount is the checkout's; success waits for the provider's signed webhook.
    assert (payment["amount"], payment["currency"]) == (started["total"], "GBP")
    assert payment["status"] == "processing"
    assert await checkout_status(ctx, started["id"]) == "open"

    delivered = await run_jobs(ctx)
    assert delivered.count(payments.DELIVER_TEST_WEBHOOK) == 2  # processing, succeeded

    seen = (await api.get(f"/api/v1/payments/{payment['id']}", headers=buyer.auth)).json()
    assert seen["status"] == "succeeded"
    assert (await api.get(f"/api/v1/checkouts/{started['id']}", headers=buyer.auth)).json()[
        "status"
    ] == "paid"
    assert await order_statuses(ctx, started["id"]) == ["paid", "paid"]
    rows = await ledger(ctx)
    assert sorted(rows) == sorted(
        [("sale", o["total"]) for o in started["orders"]]
        + [("platform_fee", -apply_rate(o["total"], FEE_BPS)) for o in started["orders"]]
    )
    assert sum(amount for kind, amount in rows if kind == "sale") == started["total"]

    # The stock stays sold: a paid checkout's hold is never given back.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Checkout).where(Checkout.id == UUID(started["id"])).values(expires_at=utcnow())
        )
    async with ctx.uow() as uow:
        assert await shop_service.expire_checkout(uow, UUID(started["id"])) is False
    assert await stock_of(ctx, mug["variants"][0]["id"]) == 3


async def test_the_seller_balance_is_the_ledger_sum(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "balancer", "balancebuyer", quantity=2)
    response = await api.get("/api/v1/shops/mine/balance", headers=bought.seller.auth)
    assert response.status_code == 200
    body = response.json()
    fee = apply_rate(bought.total, FEE_BPS)
    assert body["balance"] == bought.total - fee
    assert body["currency"] == "GBP"
    assert sorted((e["kind"], e["amount"]) for e in body["entries"]) == [
        ("platform_fee", -fee),
        ("sale", bought.total),
    ]
    first = await api.get(
        "/api/v1/shops/mine/balance", params={"limit": 1}, headers=bought.seller.auth
    )
    rest = await api.get(
        "/api/v1/shops/mine/balance",
        params={"limit": 1, "cursor": first.json()["next_cursor"]},
        headers=bought.seller.auth,
    )
    assert len(first.json()["entries"]) == len(rest.json()["entries"]) == 1
    assert rest.json()["next_cursor"] is None
    not_a_seller = await api.get("/api/v1/shops/mine/balance", headers=bought.buyer.auth)
    assert not_a_seller.status_code == 409 and not_a_seller.json()["error"]["code"] == "no_shop"


@pytest.mark.parametrize(
    ("card", "code"), [(DECLINE, "card_declined"), (NO_FUNDS, "insufficient_funds")]
)
async def test_a_refused_card_fails_with_its_code_and_the_checkout_stays_open(
    api: httpx.AsyncClient, ctx: AppContext, card: str, code: str
) -> None:
    bought = await purchase(api, "refused", "unlucky")
    response = await pay(api, bought.buyer, bought.checkout_id, card, "first")
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["failure_code"]) == ("failed", code)
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "open"
    assert await order_statuses(ctx, bought.checkout_id) == ["placed"]
    assert await ledger(ctx) == []
    assert await stock_of(ctx, bought.variant_id) == 4  # still held for the buyer

    # Another card, another try: the failed payment does not block the checkout.
    again = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "second")
    assert again.status_code == 201 and again.json()["status"] == "processing"
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "paid"


async def test_a_card_that_requires_action_is_paid_once_confirmed(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await purchase(api, "careful", "secure")
    response = await pay(api, bought.buyer, bought.checkout_id, ACTION, "k")
    payment = response.json()
    assert (payment["status"], payment["next_action"]) == ("requires_action", "confirm")
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "open"

    stranger = await sign_up(api, "stranger")
    refused = await api.post(f"/api/v1/payments/{payment['id']}/confirm", headers=stranger.auth)
    assert refused.status_code == 404

    confirmed = await api.post(
        f"/api/v1/payments/{payment['id']}/confirm", headers=bought.buyer.auth
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "processing"
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "paid"
    # Confirming again changes nothing.
    again = await api.post(f"/api/v1/payments/{payment['id']}/confirm", headers=bought.buyer.auth)
    assert again.json()["status"] == "succeeded"

    declined = await purchase(api, "careful2", "secure2")
    failed = (await pay(api, declined.buyer, declined.checkout_id, DECLINE, "d")).json()
    not_waiting = await api.post(
        f"/api/v1/payments/{failed['id']}/confirm", headers=declined.buyer.auth
    )
    assert not_waiting.status_code == 409
    assert not_waiting.json()["error"]["code"] == "payment_not_awaiting_action"


async def test_two_payments_at_once_for_one_checkout_one_wins(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await purchase(api, "doubled", "eager")
    first, second = await asyncio.gather(
        pay(api, bought.buyer, bought.checkout_id, SUCCESS, "tab-1"),
        pay(api, bought.buyer, bought.checkout_id, SUCCESS, "tab-2"),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["error"]["code"] in ("payment_in_progress", "checkout_not_payable")
    await run_jobs(ctx)
    assert await count(ctx, Payment) == 1
    assert await count(ctx, TestProviderIntent) == 1
    assert await order_statuses(ctx, bought.checkout_id) == ["paid"]
    # And once paid, a third attempt is refused too.
    third = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "tab-3")
    assert third.status_code == 409 and third.json()["error"]["code"] == "checkout_not_payable"


async def test_the_same_idempotency_key_is_the_same_payment(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await purchase(api, "keyed", "repeater")
    first = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "same")
    again = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "same")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other_card = await pay(api, bought.buyer, bought.checkout_id, DECLINE, "same")
    assert other_card.status_code == 422
    assert other_card.json()["error"]["code"] == "idempotency_key_reused"
    no_key = await api.post(
        f"/api/v1/checkouts/{bought.checkout_id}/payments",
        headers=bought.buyer.auth,
        json={"card_number": SUCCESS},
    )
    assert no_key.status_code == 400
    bad_card = await pay(api, bought.buyer, bought.checkout_id, "4242424242424241", "luhn")
    assert bad_card.status_code == 400
    assert bad_card.json()["error"]["code"] == "invalid_card_number"
    assert await count(ctx, Payment) == 1


async def test_webhooks_repeated_and_out_of_order_are_handled_once(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    bought = await purchase(api, "orderly", "impatient")
    payment = (await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "k")).json()
    processing, succeeded = await queued(ctx, payments.DELIVER_TEST_WEBHOOK)
    assert processing.payload["event"]["type"] == "payment.processing"
    assert succeeded.payload["event"]["type"] == "payment.succeeded"

    # "succeeded" overtakes "processing".
    assert await ctx.jobs.run(succeeded.id, "w") == JobStatus.DONE
    assert await ctx.jobs.run(processing.id, "w") == JobStatus.DONE
    seen = (await api.get(f"/api/v1/payments/{payment['id']}", headers=bought.buyer.auth)).json()
    assert seen["status"] == "succeeded"

    # The provider delivers "succeeded" again (and again): 200, nothing more happens.
    for _ in range(2):
        body, headers = signed_test_event(settings, succeeded.payload["event"])
        repeat = await api.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
        assert repeat.status_code == 200
        assert repeat.json() == {"received": True, "duplicate": True}
    assert await count(ctx, PaymentEvent) == 2
    fee = apply_rate(bought.total, FEE_BPS)
    assert sorted(await ledger(ctx)) == [("platform_fee", -fee), ("sale", bought.total)]
    assert await order_statuses(ctx, bought.checkout_id) == ["paid"]


async def test_forged_or_stale_webhooks_are_refused_and_change_nothing(
    api: httpx.AsyncClient, ctx: AppContext, settings: Settings
) -> None:
    bought = await purchase(api, "guarded", "waiting")
    payment = (await pay(api, bought.buyer, bought.checkout_id, ACTION, "k")).json()
    async with ctx.sessions() as session:
        intent = await session.scalar(select(TestProviderIntent))
    assert intent is not None
    forged_event = {
        "id": "evt_forged",
        "type": "payment.succeeded",
        "data": {
            "object": {
                "id": intent.id,
                "status": "succeeded",
                "amount": bought.total,
                "currency": "GBP",
                "amount_refunded": 0,
                "failure_code": None,
                "metadata": {"payment_id": payment["id"]},
            }
        },
    }
    attempts = [
        signed_test_event(settings, forged_event, secret="not-the-secret"),
        signed_test_event(settings, forged_event, at=time.time() - 301),
        signed_test_event(settings, forged_event, at=time.time() + 301),
        (json.dumps(forged_event).encode(), {"Content-Type": "application/json"}),
    ]
    body, headers = signed_test_event(settings, forged_event)
    tampered = body.replace(b'"amount": ' + str(bought.total).encode(), b'"amount": 1')
    attempts.append((tampered, headers))
    for body, headers in attempts:
        response = await api.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "webhook_signature_invalid"
    unknown = await api.post("/api/v1/payments/webhooks/paypal", content=b"{}")
    assert unknown.status_code == 404
    # Genuinely signed but unreadable: refused as well, never a 500.
    body, headers = signed_test_event(settings, {"id": "evt_x", "data": {"object": {"id": 1}}})
    unreadable = await api.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert unreadable.status_code == 400
    assert unreadable.json()["error"]["code"] == "webhook_payload_invalid"
    huge = await api.post(
        "/api/v1/payments/webhooks/test", content=b"x" * (300 * 1024), headers=headers
    )
    assert huge.status_code == 413

    assert await count(ctx, PaymentEvent) == 0
    seen = (await api.get(f"/api/v1/payments/{payment['id']}", headers=bought.buyer.auth)).json()
    assert seen["status"] == "requires_action"
    assert await checkout_status(ctx, bought.checkout_id) == "open"
    assert await ledger(ctx) == []


@pytest.mark.parametrize("found_by", ["reconcile", "webhook"])
async def test_a_crash_between_provider_success_and_our_write_ends_with_one_paid_order(
    api: httpx.AsyncClient, ctx: AppContext, found_by: str
) -> None:
    bought = await purchase(api, "crashy", "survivor")
    # Our attempt is recorded, the provider charges the card … and we die before writing
    # down its answer (submit_payment's second half never runs).
    payment_id = await payments.begin_payment(
        ctx,
        UUID(str((await api.get("/api/v1/me", headers=bought.buyer.auth)).json()["id"])),
        UUID(bought.checkout_id),
        "test",
        payments.PaymentCreate(provider="test", card_number=SUCCESS),
        "crash-key",
    )
    provider = payments.providers(ctx)["test"]
    charged = await provider.create_payment(
        payments.PaymentRequest(
            payment_id=payment_id,
            checkout_id=UUID(bought.checkout_id),
            amount=bought.total,
            currency="GBP",
            payment_method=SUCCESS,
        )
    )
    assert charged.status == "succeeded"
    async with ctx.sessions() as session:
        payment = await session.get(Payment, payment_id)
    assert payment is not None and (payment.status, payment.provider_ref) == (
        "requires_payment",
        None,
    )
    if found_by == "reconcile":
        # …and the webhooks are lost too: the reconcile job asks the provider.
        async with ctx.uow() as uow:
            await uow.session.execute(
                update(Job)
                .where(Job.kind == payments.DELIVER_TEST_WEBHOOK)
                .values(status=JobStatus.FAILED)
            )
    await make_due(ctx, payments.RECONCILE_PAYMENT)
    await run_jobs(ctx)
    # Whichever came first did the work; the other (and any repeat) found nothing to do.
    await payments.reconcile_payment(ctx, payment_id)
    for event_job in await queued(ctx, payments.DELIVER_TEST_WEBHOOK):
        await payments.deliver_test_webhook(ctx, event_job.payload["event"])

    assert await checkout_status(ctx, bought.checkout_id) == "paid"
    assert await order_statuses(ctx, bought.checkout_id) == ["paid"]
    async with ctx.sessions() as session:
        payment = await session.get(Payment, payment_id)
    assert payment is not None
    assert (payment.status, payment.provider_ref) == ("succeeded", charged.ref)
    fee = apply_rate(bought.total, FEE_BPS)
    assert sorted(await ledger(ctx)) == [("platform_fee", -fee), ("sale", bought.total)]
    # The buyer retrying with the same key gets the same, now paid, payment.
    retry = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "crash-key")
    assert retry.status_code == 201 and retry.json()["status"] == "succeeded"


async def test_reconcile_frees_a_checkout_whose_payment_never_reached_the_provider(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await purchase(api, "quiet", "abandoned")
    me = (await api.get("/api/v1/me", headers=bought.buyer.auth)).json()
    payment_id = await payments.begin_payment(
        ctx,
        UUID(me["id"]),
        UUID(bought.checkout_id),
        "test",
        payments.PaymentCreate(provider="test", card_number=SUCCESS),
        "lost",
    )
    blocked = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "other")
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "payment_in_progress"
    await make_due(ctx, payments.RECONCILE_PAYMENT)
    await run_jobs(ctx)
    async with ctx.sessions() as session:
        payment = await session.get(Payment, payment_id)
    assert payment is not None and (payment.status, payment.failure_code) == (
        "failed",
        "not_submitted",
    )
    retried = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "other")
    assert retried.status_code == 201


@pytest.mark.parametrize("stock_left", [True, False])
async def test_a_payment_arriving_after_the_checkout_lapsed(
    api: httpx.AsyncClient, ctx: AppContext, stock_left: bool
) -> None:
    bought = await purchase(api, "slowshop", "slowpayer", stock=1)
    payment = (await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "k")).json()
    # The hold lapses before the provider's webhooks arrive: the stock goes back.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Checkout)
            .where(Checkout.id == UUID(bought.checkout_id))
            .values(expires_at=utcnow())
        )
    async with ctx.uow() as uow:
        assert await shop_service.expire_checkout(uow, UUID(bought.checkout_id))
    assert await stock_of(ctx, bought.variant_id) == 1
    if not stock_left:
        rival = await sign_up(api, "quickbuyer")
        await api.post(
            "/api/v1/cart/lines", headers=rival.auth, json={"variant_id": bought.variant_id}
        )
        assert (await checkout(api, rival, "rival")).status_code == 201
        assert await stock_of(ctx, bought.variant_id) == 0

    await run_jobs(ctx)

    seen = (await api.get(f"/api/v1/payments/{payment['id']}", headers=bought.buyer.auth)).json()
    if stock_left:
        # We chose to take the stock again when it is all still there …
        assert await checkout_status(ctx, bought.checkout_id) == "paid"
        assert await order_statuses(ctx, bought.checkout_id) == ["paid"]
        assert await stock_of(ctx, bought.variant_id) == 0
        assert seen["status"] == "succeeded"
        assert len(await ledger(ctx)) == 2
    else:
        # … and to refund the whole payment, automatically, when it is not.
        assert await checkout_status(ctx, bought.checkout_id) == "expired"
        assert await order_statuses(ctx, bought.checkout_id) == ["cancelled"]
        assert await stock_of(ctx, bought.variant_id) == 0  # the rival's hold is untouched
        assert seen["status"] == "refunded"
        async with ctx.sessions() as session:
            refund = await session.scalar(select(Refund))
            intent = await session.scalar(select(TestProviderIntent))
        assert refund is not None and (refund.status, refund.reason, refund.amount) == (
            "succeeded",
            "checkout_lapsed",
            bought.total,
        )
        assert intent is not None and (intent.status, intent.amount_refunded) == (
            "refunded",
            bought.total,
        )
        assert await ledger(ctx) == []


async def test_refunds_partial_then_full_and_the_ledger_reconciles(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "refunder", "returner", quantity=2, price=1737)
    total = bought.total
    fee = apply_rate(total, FEE_BPS)
    url = f"/api/v1/orders/{bought.order_id}/refunds"

    partial = await api.post(url, headers=bought.seller.auth, json={"amount": 1000})
    assert partial.status_code == 201, partial.text
    assert (partial.json()["status"], partial.json()["amount"]) == ("succeeded", 1000)
    too_much = await api.post(url, headers=bought.seller.auth, json={"amount": total})
    assert too_much.status_code == 409
    assert too_much.json()["error"] == {
        "code": "refund_too_large",
        "message": "That is more than is left to refund on this order.",
        "details": {"refundable": total - 1000},
    }
    rest = await api.post(url, headers=bought.seller.auth, json={})
    assert rest.status_code == 201 and rest.json()["amount"] == total - 1000
    nothing_left = await api.post(url, headers=bought.seller.auth, json={"amount": 1})
    assert nothing_left.status_code == 409
    assert nothing_left.json()["error"]["code"] == "order_not_refundable"

    rows = await ledger(ctx)
    by_kind: dict[str, int] = {}
    for kind, amount in rows:
        by_kind[kind] = by_kind.get(kind, 0) + amount
    # The order's money all went back, and so did the whole fee, in proportion.
    assert by_kind == {"sale": total, "platform_fee": -fee, "refund": -total, "fee_refund": fee}
    assert rows[3] == ("fee_refund", payments.share(fee, 1000, total))
    balance = (await api.get("/api/v1/shops/mine/balance", headers=bought.seller.auth)).json()
    assert balance["balance"] == 0
    async with ctx.sessions() as session:
        payment = await session.scalar(select(Payment))
        refunds = (await session.scalars(select(Refund))).all()
        intent = await session.scalar(select(TestProviderIntent))
    assert payment is not None and payment.status == "refunded"
    assert payment.amount_refunded == sum(r.amount for r in refunds) == total
    assert intent is not None and intent.amount_refunded == total


async def test_refund_with_an_idempotency_key_happens_once(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "onceshop", "oncebuyer")
    url = f"/api/v1/orders/{bought.order_id}/refunds"
    headers = {**bought.seller.auth, "Idempotency-Key": "refund-1"}
    first = await api.post(url, headers=headers, json={"amount": 300})
    again = await api.post(url, headers=headers, json={"amount": 300})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert await count(ctx, Refund) == 1


async def test_two_refunds_at_once_never_exceed_the_order(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "raceshop", "racebuyer")
    url = f"/api/v1/orders/{bought.order_id}/refunds"
    amount = bought.total // 2 + 1
    responses = await asyncio.gather(
        *(api.post(url, headers=bought.seller.auth, json={"amount": amount}) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    async with ctx.sessions() as session:
        payment = await session.scalar(select(Payment))
    assert payment is not None and payment.amount_refunded == amount


async def test_cancelling_before_shipping_gives_stock_back_and_refunds(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "cancelshop", "changedmind", quantity=2)
    assert await stock_of(ctx, bought.variant_id) == 3
    outsider = await sign_up(api, "outsider")
    async with ctx.sessions() as session:
        from craftreel.accounts.models import User

        buyer = await session.scalar(select(User).where(User.handle == "changedmind"))
        stranger = await session.scalar(select(User).where(User.handle == outsider.handle))
    assert buyer is not None and stranger is not None
    with pytest.raises(payments.OrderNotFound):
        await payments.cancel_order(ctx, stranger, UUID(bought.order_id))

    refund = await payments.cancel_order(ctx, buyer, UUID(bought.order_id))
    assert refund is not None and (refund.status, refund.amount) == ("succeeded", bought.total)
    assert await order_statuses(ctx, bought.checkout_id) == ["cancelled"]
    assert await stock_of(ctx, bought.variant_id) == 5
    assert sum(amount for _, amount in await ledger(ctx)) == 0
    with pytest.raises(payments.OrderNotCancellable):
        await payments.cancel_order(ctx, buyer, UUID(bought.order_id))
    assert await stock_of(ctx, bought.variant_id) == 5
    nothing_left = await api.post(
        f"/api/v1/orders/{bought.order_id}/refunds", headers=bought.seller.auth, json={}
    )
    assert nothing_left.status_code == 409
    assert nothing_left.json()["error"]["code"] == "order_not_refundable"


async def test_shipped_orders_cannot_be_cancelled(api: httpx.AsyncClient, ctx: AppContext) -> None:
    bought = await paid_purchase(api, ctx, "shipper", "latebuyer")
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Order).where(Order.id == UUID(bought.order_id)).values(status="shipped")
        )
    async with ctx.sessions() as session:
        from craftreel.accounts.models import User

        buyer = await session.scalar(select(User).where(User.handle == "latebuyer"))
    assert buyer is not None
    with pytest.raises(payments.OrderNotCancellable):
        await payments.cancel_order(ctx, buyer, UUID(bought.order_id))
    assert await stock_of(ctx, bought.variant_id) == 4
    # A shipped order can still be refunded by its seller (a return).
    refunded = await api.post(
        f"/api/v1/orders/{bought.order_id}/refunds", headers=bought.seller.auth, json={}
    )
    assert refunded.status_code == 201


async def test_who_may_pay_see_and_refund(api: httpx.AsyncClient, ctx: AppContext) -> None:
    bought = await purchase(api, "privateshop", "owner")
    other_buyer = await sign_up(api, "nosy")
    other_seller, _ = await seller_with_listing(api, "rivalshop")

    # Another buyer can neither pay nor see this checkout's payment.
    stolen = await pay(api, other_buyer, bought.checkout_id, SUCCESS, "k")
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "checkout_not_found"
    payment = (await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "k")).json()
    peek = await api.get(f"/api/v1/payments/{payment['id']}", headers=other_buyer.auth)
    assert peek.status_code == 404
    assert (await api.get(f"/api/v1/payments/{payment['id']}")).status_code == 401

    # Refunding an unpaid order is refused; then only the order's own seller may refund.
    url = f"/api/v1/orders/{bought.order_id}/refunds"
    early = await api.post(url, headers=bought.seller.auth, json={})
    assert early.status_code == 409 and early.json()["error"]["code"] == "order_not_refundable"
    await run_jobs(ctx)
    for outsider in (other_seller, bought.buyer, other_buyer):
        refused = await api.post(url, headers=outsider.auth, json={"amount": 100})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "order_not_found"
    assert await count(ctx, Refund) == 0

    # A client cannot choose the amount, currency or status of a payment or a refund.
    await api.post(
        "/api/v1/cart/lines", headers=bought.buyer.auth, json={"variant_id": bought.variant_id}
    )
    fresh = (await checkout(api, bought.buyer, "second-checkout")).json()
    for extra in ({"amount": 1}, {"currency": "JPY"}, {"status": "succeeded"}):
        sneaky = await api.post(
            f"/api/v1/checkouts/{fresh['id']}/payments",
            headers={**bought.buyer.auth, "Idempotency-Key": f"sneaky-{extra}"},
            json={"card_number": SUCCESS, **extra},
        )
        assert sneaky.status_code == 422
        assert sneaky.json()["error"]["code"] == "validation_error"
    sneaky_refund = await api.post(
        url, headers=bought.seller.auth, json={"amount": 100, "status": "succeeded"}
    )
    assert sneaky_refund.status_code == 422
    assert await count(ctx, Refund) == 0
    async with ctx.sessions() as session:
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.checkout_id == UUID(fresh["id"]))
            )
            == 0
        )


async def test_an_expired_checkout_cannot_be_paid(api: httpx.AsyncClient, ctx: AppContext) -> None:
    bought = await purchase(api, "lateshop", "tardy")
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Checkout)
            .where(Checkout.id == UUID(bought.checkout_id))
            .values(expires_at=utcnow())
        )
    response = await pay(api, bought.buyer, bought.checkout_id, SUCCESS, "k")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "checkout_not_payable"


@pytest.mark.parametrize(
    ("total", "bps", "fee"),
    [
        (3474, 1000, 347),
        (3475, 1000, 348),
        (3465, 1000, 347),
        (10, 500, 1),
        (9, 500, 0),
        (0, 1000, 0),
    ],
)
def test_fees_round_half_up(total: int, bps: int, fee: int) -> None:
    assert payments.platform_fee(total, bps) == fee


def test_fee_refunds_in_pieces_add_up_to_the_whole_fee() -> None:
    total, fee = 3475, payments.platform_fee(3475, 1000)
    refunded = 0
    given_back = 0
    for piece in (1000, 1, 1, 1473, 1000):
        refunded += piece
        step = payments.share(fee, refunded, total) - given_back
        assert step >= 0
        given_back += step
    assert refunded == total and given_back == fee == 348


def test_payment_settings_fail_loudly(tmp_path: Path) -> None:
    """Bad payment settings stop start-up, not the first payment."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match="STRIPE_SECRET_KEY"):
        Settings(environment="test", database_url=url, payment_provider="stripe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test payment provider"):
        Settings(
            environment="production",  # type: ignore[arg-type]
            secret_key="s" * 40,  # type: ignore[arg-type]
            database_url=url,
        )
    defaults = PaymentSettings.from_settings(
        Settings(environment="test", database_url=url)  # type: ignore[arg-type]
    )
    assert (defaults.provider, defaults.platform_fee_bps) == ("test", 500)
    assert defaults.test_webhook_url == "http://127.0.0.1:8000/api/v1/payments/webhooks/test"


async def test_the_whole_flow_runs_by_itself_on_a_bare_machine(
    settings: Settings, ctx: AppContext
) -> None:
    """The app as `craftreel serve` runs it: the in-process runner delivers the webhooks."""
    application = create_app(settings, ctx)
    real_http = ctx.http
    ctx.http = httpx.AsyncClient(
        mounts={str(settings.base_url).rstrip("/"): httpx.ASGITransport(app=application)}
    )
    try:
        async with (
            application.router.lifespan_context(application),
            client_for(application) as client,
        ):
            bought = await purchase(client, "bareshop", "barebuyer")
            payment = (await pay(client, bought.buyer, bought.checkout_id, SUCCESS, "k")).json()
            await asyncio.wait_for(application.state.background.runner.drain(), 20)
            seen = await client.get(f"/api/v1/payments/{payment['id']}", headers=bought.buyer.auth)
            assert seen.json()["status"] == "succeeded"
            assert await checkout_status(ctx, bought.checkout_id) == "paid"
    finally:
        await ctx.http.aclose()
        ctx.http = real_http


# --- Stripe, against a local stand-in for its HTTP API ----------------------------------


@dataclass
class ForcedReply:
    """An answer the stand-in gives instead of (or after) doing what was asked."""

    method: str
    path: str
    status: int
    body: dict[str, Any]
    after_doing_it: bool
    when: dict[str, str]


@dataclass
class Pause:
    """A request the stand-in holds: ``arrived`` once it has come, answered after ``go``."""

    method: str
    path: str
    arrived: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)


class StripeStandIn:
    """Enough of Stripe's HTTP API for our calls: PaymentIntents (with Connect fields),
    confirm, search, refunds (made, looked at, and — when a test holds them — pending until
    it settles them; failing after they succeeded, ``bounce_refund``), Connect (Express
    accounts, account links, transfers — made, listed by group — and their reversals, made
    and listed), errors on demand (``fail_next``), requests held in flight (``pause_next``),
    idempotency keys (a key reused with other parameters is refused, as Stripe does),
    API-key checks — and the events it would send, signed the way Stripe signs them (events
    on connected accounts with the Connect endpoint's own secret)."""

    api_key = "sk_test_standin"
    webhook_secret = "whsec_standin"
    connect_webhook_secret = "whsec_connect_standin"
    OUTCOMES: ClassVar[dict[str, tuple[str, str | None]]] = {
        "pm_card_visa": ("succeeded", None),
        "pm_card_chargeDeclined": ("requires_payment_method", "generic_decline"),
        "pm_card_chargeDeclinedInsufficientFunds": (
            "requires_payment_method",
            "insufficient_funds",
        ),
        "pm_card_authenticationRequired": ("requires_action", None),
    }

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.events: list[dict[str, Any]] = []
        self.accounts: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        #: New refunds stay ``pending`` (until ``settle_refund``), as some do at Stripe.
        self.hold_refunds = False
        #: Requests that reused an idempotency key with other parameters (Stripe: 400).
        self.key_reuses: list[str] = []
        self._replies: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = {}
        self._forced: list[ForcedReply] = []
        self._paused: list[Pause] = []
        self._lock = threading.Lock()
        self._counter = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in._serve(self, "GET")

            def do_POST(self) -> None:
                stand_in._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str, path: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        return [
            (form, headers) for m, p, form, headers in self.requests if (m, p) == (method, path)
        ]

    def signed(
        self, event: dict[str, Any], secret: str | None = None, at: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        timestamp = int(at if at is not None else time.time())
        default = self.connect_webhook_secret if event.get("account") else self.webhook_secret
        mac = hmac.new(
            (secret or default).encode(),
            f"{timestamp}.".encode() + body,
            hashlib.sha256,
        ).hexdigest()
        return body, {
            "Stripe-Signature": f"t={timestamp},v1={mac}",
            "Content-Type": "application/json",
        }

    def _next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter:06d}"

    def _emit(self, event_type: str, obj: dict[str, Any], account: str | None = None) -> None:
        event = {
            "id": self._next("evt"),
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": copy.deepcopy(obj)},
        }
        if account is not None:
            event["account"] = account
        self.events.append(event)

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    # What happens at Stripe without us asking: a seller finishing onboarding, payouts.

    def update_account(self, ref: str, **state: bool) -> dict[str, Any]:
        """The seller did something at Stripe: the account changes and ``account.updated``
        is sent (to the Connect endpoint)."""
        with self._lock:
            account = self.accounts[ref]
            account.update(state)
            self._emit("account.updated", account, account=ref)
            return self.events[-1]

    def payout(self, account: str, amount: int, outcome: str) -> dict[str, Any]:
        """A payout from a connected account to its bank: ``payout.paid`` or ``payout.failed``."""
        with self._lock:
            payout = {
                "id": self._next("po"),
                "object": "payout",
                "amount": amount,
                "currency": "gbp",
                "status": outcome,
            }
            self._emit(f"payout.{outcome}", payout, account=account)
            return self.events[-1]

    def settle_refund(
        self, ref: str, outcome: str, failure_reason: str | None = None
    ) -> list[dict[str, Any]]:
        """A pending refund settles at Stripe (``succeeded``, ``failed`` or ``canceled``):
        its ``refund.updated`` and ``charge.refund.updated`` events (and ``refund.failed``
        or ``charge.refunded``), in the order Stripe sends them. A refund that did not
        succeed gives its amount back to what is left to refund."""
        with self._lock:
            refund = self.refunds[ref]
            assert refund["status"] == "pending", refund
            refund["status"] = outcome
            before = len(self.events)
            if outcome == "succeeded":
                self._emit(
                    "charge.refunded",
                    {"object": "charge", "payment_intent": refund["payment_intent"]},
                )
            else:
                refund["failure_reason"] = failure_reason
                self.intents[refund["payment_intent"]]["amount_refunded"] -= refund["amount"]
            self._emit("charge.refund.updated", refund)
            self._emit("refund.updated", refund)
            if outcome == "failed":
                self._emit("refund.failed", refund)
            return self.events[before:]

    def bounce_refund(self, ref: str, failure_reason: str) -> list[dict[str, Any]]:
        """A refund that succeeded fails after all (the card was closed): the money comes
        back to the platform, and its ``charge.refund.updated``, ``refund.updated`` and
        ``refund.failed`` events are sent, in that order. What Stripe does with a transfer
        reversed by the refund (``reverse_transfer``) is not played here."""
        with self._lock:
            refund = self.refunds[ref]
            assert refund["status"] == "succeeded", refund
            refund["status"], refund["failure_reason"] = "failed", failure_reason
            self.intents[refund["payment_intent"]]["amount_refunded"] -= refund["amount"]
            before = len(self.events)
            self._emit("charge.refund.updated", refund)
            self._emit("refund.updated", refund)
            self._emit("refund.failed", refund)
            return self.events[before:]

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        code: str | None = None,
        *,
        times: int = 1,
        after_doing_it: bool = False,
        when: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` (a prefix; only those whose form
        has the fields ``when`` gives) with ``status``: a 500 or 429 Stripe never got to, a
        400 refusal, or (``after_doing_it``) any status after doing what was asked — the
        answer lost on the way back."""
        error = {"type": "api_error" if status >= 500 else "invalid_request_error"}
        if code is not None:
            error["code"] = code
        for _ in range(times):
            self._forced.append(
                ForcedReply(method, path, status, {"error": error}, after_doing_it, when or {})
            )

    def pause_next(self, method: str, path: str) -> Pause:
        """Hold the next request to ``path`` (exactly) until the test lets it go: a call in
        flight while something else happens."""
        pause = Pause(method, path)
        with self._lock:
            self._paused.append(pause)
        return pause

    def _forced_reply(self, method: str, path: str, form: dict[str, str]) -> ForcedReply | None:
        for n, forced in enumerate(self._forced):
            if (
                forced.method == method
                and path.startswith(forced.path)
                and all(form.get(k) == v for k, v in forced.when.items())
            ):
                return self._forced.pop(n)
        return None

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(request.rfile.read(length).decode())) if length else {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            paused = next(
                (p for p in self._paused if (p.method, p.path) == (method, url.path)), None
            )
            if paused is not None:
                self._paused.remove(paused)
        if paused is not None:
            paused.arrived.set()
            paused.go.wait(timeout=30)
        with self._lock:
            self.requests.append((method, url.path, form, headers))
            key = headers.get("idempotency-key")
            forced = self._forced_reply(method, url.path, form)
            if forced is not None and not forced.after_doing_it:
                # Stripe keeps the answer of a request it looked at (a 4xx refusal) under
                # its key; one it never got to (a 5xx, a 429, a bad API key) it does not.
                status, reply = forced.status, forced.body
                if method == "POST" and key and status < 500 and status not in (401, 403, 429):
                    self._replies[key] = (form, status, reply)
            elif headers.get("authorization") != f"Bearer {self.api_key}":
                status, reply = 401, {"error": {"type": "invalid_request_error"}}
            elif method == "POST" and key in self._replies:
                first_form, status, reply = self._replies[key or ""]
                if first_form != form:
                    # Stripe refuses a key reused with different parameters.
                    self.key_reuses.append(key or "")
                    status, reply = 400, {"error": {"type": "idempotency_error"}}
            else:
                status, reply = self._route(method, url.path, form, dict(parse_qsl(url.query)))
                if method == "POST" and key:
                    self._replies[key] = (form, status, reply)
                if forced is not None:
                    # Done (and kept under its key), but the answer is lost on the way back.
                    status, reply = forced.status, forced.body
        payload = json.dumps(reply).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _route(
        self, method: str, path: str, form: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if (method, path) == ("POST", "/v1/payment_intents"):
            return self._create(form)
        if (method, path) == ("GET", "/v1/payment_intents/search"):
            match = re.fullmatch(r"metadata\['payment_id'\]:'([^']+)'", query.get("query", ""))
            wanted = match.group(1) if match else None
            found = [i for i in self.intents.values() if i["metadata"].get("payment_id") == wanted]
            return 200, {"object": "search_result", "data": found}
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 3 and parts[1] == "payment_intents":
            intent = self.intents.get(parts[2])
            return (200, intent) if intent else (404, {"error": {"code": "resource_missing"}})
        if method == "POST" and len(parts) == 4 and parts[3] == "confirm":
            intent = self.intents[parts[2]]
            if intent["status"] == "requires_action":
                intent["status"] = "succeeded"
                intent["amount_received"] = intent["amount"]
                self._charge(intent)
                self._emit("payment_intent.succeeded", intent)
            return 200, intent
        if path.startswith(("/v1/accounts", "/v1/account_links", "/v1/transfers")):
            return self._connect(method, parts, form, query)
        if (method, path) == ("POST", "/v1/refunds"):
            intent = self.intents[form["payment_intent"]]
            amount = int(form.get("amount", intent["amount"] - intent["amount_refunded"]))
            if (
                intent["status"] != "succeeded"
                or amount > intent["amount"] - intent["amount_refunded"]
            ):
                return 400, {"error": {"type": "invalid_request_error", "code": "amount_too_large"}}
            # A pending refund counts against what is left to refund until it fails.
            intent["amount_refunded"] += amount
            refund = {
                "id": self._next("re"),
                "object": "refund",
                "amount": amount,
                "charge": intent.get("latest_charge"),
                "payment_intent": intent["id"],
                "status": "pending" if self.hold_refunds else "succeeded",
                "failure_reason": None,
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            self.refunds[refund["id"]] = refund
            self._emit("refund.created", refund)
            if refund["status"] == "succeeded":
                self._emit("charge.refunded", {"object": "charge", "payment_intent": intent["id"]})
            return 200, copy.deepcopy(refund)
        if method == "GET" and len(parts) == 3 and parts[1] == "refunds":
            found = self.refunds.get(parts[2])
            return (200, found) if found else (404, {"error": {"code": "resource_missing"}})
        return 404, {"error": {"code": "resource_missing"}}

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, decline = self.OUTCOMES.get(
            form["payment_method"], ("requires_payment_method", "generic_decline")
        )
        intent: dict[str, Any] = {
            "id": self._next("pi"),
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "amount_received": int(form["amount"]) if status == "succeeded" else 0,
            "amount_refunded": 0,
            "currency": form["currency"],
            "status": status,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "application_fee_amount": int(form["application_fee_amount"])
            if "application_fee_amount" in form
            else None,
            "transfer_data": {"destination": form["transfer_data[destination]"]}
            if "transfer_data[destination]" in form
            else None,
            "transfer_group": form.get("transfer_group"),
            "last_payment_error": None,
        }
        self.intents[intent["id"]] = intent
        if status == "succeeded":
            self._charge(intent)
        self._emit("payment_intent.created", intent)
        if decline is not None:
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline,
            }
            self._emit("payment_intent.payment_failed", intent)
            return 402, {
                "error": {"type": "card_error", "code": "card_declined", "payment_intent": intent}
            }
        self._emit(f"payment_intent.{status}", intent)
        return 200, intent

    def _charge(self, intent: dict[str, Any]) -> None:
        charge = {"id": self._next("ch"), "amount": intent["amount"], "transferred": 0}
        self.charges[charge["id"]] = charge
        intent["latest_charge"] = charge["id"]

    def _connect(
        self, method: str, parts: list[str], form: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        missing = 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
        if (method, parts) == ("POST", ["v1", "accounts"]):
            if form.get("type") != "express" or len(form.get("country", "")) != 2:
                return 400, {
                    "error": {"type": "invalid_request_error", "code": "parameter_invalid"}
                }
            account = {
                "id": self._next("acct"),
                "object": "account",
                "type": "express",
                "country": form["country"],
                "charges_enabled": False,
                "payouts_enabled": False,
                "details_submitted": False,
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            self.accounts[account["id"]] = account
            return 200, account
        if method == "GET" and parts[:2] == ["v1", "accounts"] and len(parts) == 3:
            found = self.accounts.get(parts[2])
            return (200, found) if found else missing
        if (method, parts) == ("POST", ["v1", "account_links"]):
            if form.get("account") not in self.accounts or form.get("type") != "account_onboarding":
                return missing
            if not (form.get("refresh_url") and form.get("return_url")):
                return 400, {
                    "error": {"type": "invalid_request_error", "code": "parameter_missing"}
                }
            return 200, {
                "object": "account_link",
                "url": f"{self.url}/express/onboarding/{form['account']}/{self._next('link')}",
                "expires_at": int(time.time()) + 300,
                "return_url": form["return_url"],
            }
        if (method, parts) == ("GET", ["v1", "transfers"]):
            # Newest first, as Stripe lists them.
            group = query.get("transfer_group")
            found = [t for t in self.transfers.values() if t["transfer_group"] == group][::-1]
            return 200, {"object": "list", "data": found, "has_more": False}
        if (method, parts) == ("POST", ["v1", "transfers"]):
            account = self.accounts.get(form.get("destination", ""))
            amount = int(form["amount"])
            if account is None or not account["charges_enabled"]:
                return 400, stripe_error("account_invalid")
            # From a charge (up to what it took), or else from the platform's balance.
            if "source_transaction" in form:
                charge = self.charges.get(form["source_transaction"])
                if charge is None or charge["transferred"] + amount > charge["amount"]:
                    return 400, {
                        "error": {"type": "invalid_request_error", "code": "balance_insufficient"}
                    }
                charge["transferred"] += amount
            transfer = {
                "id": self._next("tr"),
                "object": "transfer",
                "amount": amount,
                "amount_reversed": 0,
                "currency": form["currency"],
                "destination": account["id"],
                "source_transaction": form.get("source_transaction"),
                "transfer_group": form.get("transfer_group"),
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                "reversals": [],
            }
            self.transfers[transfer["id"]] = transfer
            self._emit("transfer.created", transfer)
            return 200, transfer
        if method == "GET" and len(parts) == 4 and parts[1:4:2] == ["transfers", "reversals"]:
            transfer = self.transfers.get(parts[2])
            if transfer is None:
                return missing
            return 200, {"object": "list", "data": transfer["reversals"], "has_more": False}
        if method == "POST" and len(parts) == 4 and parts[1] == "transfers":
            transfer = self.transfers.get(parts[2])
            if transfer is None or parts[3] != "reversals":
                return missing
            amount = int(form["amount"])
            if transfer["amount_reversed"] + amount > transfer["amount"]:
                return 400, stripe_error("amount_too_large")
            transfer["amount_reversed"] += amount
            reversal = {
                "id": self._next("trr"),
                "object": "transfer_reversal",
                "amount": amount,
                "transfer": transfer["id"],
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            }
            transfer["reversals"].append(reversal)
            self._emit("transfer.reversed", transfer)
            return 200, reversal
        return missing


def stripe_error(code: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code}}


@pytest.fixture
def stand_in() -> Iterator[StripeStandIn]:
    server = StripeStandIn()
    server.start()
    yield server
    server.stop()
    # Our calls never reuse an idempotency key for a different request.
    assert server.key_reuses == []


@dataclass
class StripeWorld:
    ctx: AppContext
    client: httpx.AsyncClient
    stand_in: StripeStandIn
    app: FastAPI

    async def deliver(self, event: dict[str, Any]) -> httpx.Response:
        body, headers = self.stand_in.signed(event)
        return await self.client.post(
            "/api/v1/payments/webhooks/stripe", content=body, headers=headers
        )


@asynccontextmanager
async def stripe_world(
    database_url: str, tmp_path: Path, stand_in: StripeStandIn, **extra: Any
) -> AsyncIterator[StripeWorld]:
    """The app on the Stripe provider, pointed at the stand-in (``extra``: more settings)."""
    settings = _settings(
        database_url,
        tmp_path,
        payment_provider="stripe",
        stripe_secret_key=StripeStandIn.api_key,
        stripe_webhook_secret=StripeStandIn.webhook_secret,
        stripe_connect_webhook_secret=StripeStandIn.connect_webhook_secret,
        stripe_api_base=stand_in.url,
        **extra,
    )
    async with (
        fresh_context(settings) as context,
        payments_app(settings, context) as application,
        client_for(application) as client,
    ):
        yield StripeWorld(context, client, stand_in, application)


@pytest.fixture
async def stripe(
    backend: str, database_urls: dict[str, str], tmp_path: Path, stand_in: StripeStandIn
) -> AsyncIterator[StripeWorld]:
    async with stripe_world(database_urls[backend], tmp_path, stand_in) as world:
        yield world


async def onboard(world: StripeWorld, seller: Person) -> str:
    """The seller sets up payouts: an Express account and a link from us, the form at Stripe,
    and Stripe's ``account.updated`` webhook. Their connected account's id."""
    started = await world.client.post("/api/v1/shops/mine/payouts/onboarding", headers=seller.auth)
    assert started.status_code == 201, started.text
    account = started.json()["url"].split("/express/onboarding/")[1].split("/")[0]
    event = world.stand_in.update_account(
        account, details_submitted=True, charges_enabled=True, payouts_enabled=True
    )
    delivered = await world.deliver(event)
    assert delivered.status_code == 200, delivered.text
    return account


async def buy_from(world: StripeWorld, buyer: Person, *listings: dict[str, Any]) -> dict[str, Any]:
    """The buyer's open checkout for one of each listing."""
    for listing in listings:
        added = await world.client.post(
            "/api/v1/cart/lines",
            headers=buyer.auth,
            json={"variant_id": listing["variants"][0]["id"], "quantity": 1},
        )
        assert added.status_code == 200, added.text
    started = await checkout(world.client, buyer, f"checkout-{buyer.handle}-{len(listings)}")
    assert started.status_code == 201, started.text
    return dict(started.json())


async def stripe_pay(
    world: StripeWorld, buyer: Person, checkout_id: str, key: str
) -> httpx.Response:
    return await world.client.post(
        f"/api/v1/checkouts/{checkout_id}/payments",
        headers={**buyer.auth, "Idempotency-Key": key},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )


async def test_stripe_destination_charge_webhook_then_refund(stripe: StripeWorld) -> None:
    client, ctx, stand_in = stripe.client, stripe.ctx, stripe.stand_in
    bought = await purchase(client, "stripeshop", "stripebuyer", quantity=2)
    account = await onboard(stripe, bought.seller)
    stand_in.events.clear()

    response = await client.post(
        f"/api/v1/checkouts/{bought.checkout_id}/payments",
        headers={**bought.buyer.auth, "Idempotency-Key": "s1"},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "processing"
    [(form, headers)] = stand_in.calls("POST", "/v1/payment_intents")
    fee = apply_rate(bought.total, FEE_BPS)
    assert form["amount"] == str(bought.total) and form["currency"] == "gbp"
    assert form["transfer_data[destination]"] == account
    assert form["application_fee_amount"] == str(fee)
    assert form["metadata[payment_id]"] == payment["id"]
    assert headers["idempotency-key"] == f"payment-{payment['id']}"

    # Stripe's events, signed with the endpoint's secret, delivered (one of them twice).
    forged_body, forged_headers = stand_in.signed(stand_in.events[-1], secret="whsec_wrong")
    forged = await client.post(
        "/api/v1/payments/webhooks/stripe", content=forged_body, headers=forged_headers
    )
    assert forged.status_code == 400
    stale_body, stale_headers = stand_in.signed(stand_in.events[-1], at=time.time() - 400)
    stale = await client.post(
        "/api/v1/payments/webhooks/stripe", content=stale_body, headers=stale_headers
    )
    assert stale.status_code == 400
    assert await checkout_status(ctx, bought.checkout_id) == "open"
    for event in [*stand_in.events, stand_in.events[-1]]:
        delivered = await stripe.deliver(event)
        assert delivered.status_code == 200, delivered.text
    assert (await stripe.deliver(stand_in.events[-1])).json()["duplicate"] is True
    assert await checkout_status(ctx, bought.checkout_id) == "paid"
    assert sorted(await ledger(ctx)) == [("platform_fee", -fee), ("sale", bought.total)]

    refund = await client.post(
        f"/api/v1/orders/{bought.order_id}/refunds",
        headers=bought.seller.auth,
        json={"amount": 500},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "succeeded"
    [(refund_form, refund_headers)] = stand_in.calls("POST", "/v1/refunds")
    assert refund_form == {
        "payment_intent": stand_in.events[0]["data"]["object"]["id"],
        "amount": "500",
        "reverse_transfer": "true",
        "refund_application_fee": "true",
        "metadata[refund_id]": refund.json()["id"],
    }
    assert refund_headers["idempotency-key"] == f"refund-{refund.json()['id']}"
    rows = await ledger(ctx)
    assert ("refund", -500) in rows
    assert ("fee_refund", payments.share(fee, 500, bought.total)) in rows
    # A refund event from Stripe is recorded and changes nothing.
    assert (await stripe.deliver(stand_in.events[-1])).status_code == 200
    assert len(await ledger(ctx)) == 4


async def test_stripe_declines_and_action_steps(stripe: StripeWorld) -> None:
    client = stripe.client
    declined = await purchase(client, "declineshop", "brokebuyer")
    # A shop that has not set up payouts cannot take Stripe payments: nothing reaches Stripe.
    not_onboarded = await client.post(
        f"/api/v1/checkouts/{declined.checkout_id}/payments",
        headers={**declined.buyer.auth, "Idempotency-Key": "early"},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )
    assert not_onboarded.status_code == 409
    assert not_onboarded.json()["error"]["code"] == "shop_payouts_not_enabled"
    assert not_onboarded.json()["error"]["details"] == {"shops": ["declineshop-studio"]}
    assert stripe.stand_in.calls("POST", "/v1/payment_intents") == []
    account = await onboard(stripe, declined.seller)
    raw_card = await client.post(
        f"/api/v1/checkouts/{declined.checkout_id}/payments",
        headers={**declined.buyer.auth, "Idempotency-Key": "raw"},
        json={"provider": "stripe", "card_number": "4242424242424242"},
    )
    assert raw_card.status_code == 400
    assert stripe.stand_in.calls("POST", "/v1/payment_intents") == []
    test_cards_off = await client.post(
        f"/api/v1/checkouts/{declined.checkout_id}/payments",
        headers={**declined.buyer.auth, "Idempotency-Key": "tp"},
        json={"provider": "test", "card_number": "4242424242424242"},
    )
    assert test_cards_off.status_code == 400
    assert test_cards_off.json()["error"]["code"] == "payment_provider_not_available"
    response = await client.post(
        f"/api/v1/checkouts/{declined.checkout_id}/payments",
        headers={**declined.buyer.auth, "Idempotency-Key": "d"},
        json={"provider": "stripe", "payment_method": "pm_card_chargeDeclinedInsufficientFunds"},
    )
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["failure_code"]) == (
        "failed",
        "insufficient_funds",
    )
    # One shop: a destination charge to its account, with the platform's fee.
    [(form, _)] = stripe.stand_in.calls("POST", "/v1/payment_intents")
    assert form["transfer_data[destination]"] == account and "application_fee_amount" in form

    secure = await purchase(client, "secureshop", "securebuyer")
    await onboard(stripe, secure.seller)
    started = await client.post(
        f"/api/v1/checkouts/{secure.checkout_id}/payments",
        headers={**secure.buyer.auth, "Idempotency-Key": "a"},
        json={"provider": "stripe", "payment_method": "pm_card_authenticationRequired"},
    )
    assert started.json()["status"] == "requires_action"
    confirmed = await client.post(
        f"/api/v1/payments/{started.json()['id']}/confirm", headers=secure.buyer.auth
    )
    assert confirmed.json()["status"] == "processing"
    for event in stripe.stand_in.events:
        assert (await stripe.deliver(event)).status_code == 200
    assert await checkout_status(stripe.ctx, secure.checkout_id) == "paid"
    assert await checkout_status(stripe.ctx, declined.checkout_id) == "open"


async def test_stripe_reconcile_finds_a_payment_whose_answer_was_lost(stripe: StripeWorld) -> None:
    client, ctx = stripe.client, stripe.ctx
    bought = await purchase(client, "lostshop", "lostbuyer")
    await onboard(stripe, bought.seller)
    me = (await client.get("/api/v1/me", headers=bought.buyer.auth)).json()
    payment_id = await payments.begin_payment(
        ctx,
        UUID(me["id"]),
        UUID(bought.checkout_id),
        "stripe",
        payments.PaymentCreate(provider="stripe", payment_method="pm_card_visa"),
        "lost",
    )
    # Stripe charges the card, but its answer (and its webhooks) never reach us.
    await payments.providers(ctx)["stripe"].create_payment(
        payments.PaymentRequest(
            payment_id=payment_id,
            checkout_id=UUID(bought.checkout_id),
            amount=bought.total,
            currency="GBP",
            payment_method="pm_card_visa",
        )
    )
    await make_due(ctx, payments.RECONCILE_PAYMENT)
    await run_jobs(ctx)
    assert await checkout_status(ctx, bought.checkout_id) == "paid"
    assert len(await ledger(ctx)) == 2
    # The webhook turns up late: nothing more happens.
    for event in stripe.stand_in.events:
        assert (await stripe.deliver(event)).status_code == 200
    assert len(await ledger(ctx)) == 2


async def test_cancel_route_refunds_and_returns_stock(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "routeshop", "routebuyer", quantity=1)
    stranger = await sign_up(api, "routestranger")
    refused = await api.post(f"/api/v1/orders/{bought.order_id}/cancel", headers=stranger.auth)
    assert refused.status_code == 404
    cancelled = await api.post(
        f"/api/v1/orders/{bought.order_id}/cancel", headers=bought.buyer.auth
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["amount"] == bought.total
    assert await order_statuses(ctx, bought.checkout_id) == ["cancelled"]
    again = await api.post(f"/api/v1/orders/{bought.order_id}/cancel", headers=bought.buyer.auth)
    assert again.status_code == 409


# --- Stripe Connect: onboarding, transfers, reversals, payouts --------------------------


async def test_onboarding_makes_one_account_and_account_events_apply_in_any_order(
    stripe: StripeWorld,
) -> None:
    client, stand_in = stripe.client, stripe.stand_in
    seller, listing = await seller_with_listing(client, "onboarder")
    not_a_seller = await sign_up(client, "notaseller")
    refused = await client.post("/api/v1/shops/mine/payouts/onboarding", headers=not_a_seller.auth)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_shop"
    status = await client.get("/api/v1/shops/mine/payouts", headers=seller.auth)
    assert status.json()["status"] == "not_started"

    # Asking twice (a double tap, a lapsed link) makes one account and two fresh links.
    first, second = [
        await client.post("/api/v1/shops/mine/payouts/onboarding", headers=seller.auth)
        for _ in range(2)
    ]
    assert first.status_code == second.status_code == 201
    assert first.json()["url"] != second.json()["url"]
    [(account_form, account_headers)] = stand_in.calls("POST", "/v1/accounts")
    assert (account_form["type"], account_form["country"]) == ("express", "GB")
    assert account_headers["idempotency-key"].startswith("account-")
    [account] = stand_in.accounts
    links = stand_in.calls("POST", "/v1/account_links")
    assert [form["account"] for form, _ in links] == [account, account]
    assert links[0][0]["return_url"] == "http://127.0.0.1:8000/sell/payouts/return"
    status = await client.get("/api/v1/shops/mine/payouts", headers=seller.auth)
    assert (status.json()["status"], status.json()["account_ref"]) == ("incomplete", account)

    # Not enabled yet: its checkouts cannot be paid through Stripe.
    buyer = await sign_up(client, "earlybird")
    started = await buy_from(stripe, buyer, listing)
    early = await stripe_pay(stripe, buyer, started["id"], "early")
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "shop_payouts_not_enabled"

    # The seller fills in the form: two account.updated events, delivered newest first, each
    # twice. Each is applied from the account as Stripe shows it now, so order cannot matter.
    submitted = stand_in.update_account(account, details_submitted=True)
    enabled = stand_in.update_account(account, charges_enabled=True, payouts_enabled=True)
    body, headers = stand_in.signed(enabled, secret=StripeStandIn.webhook_secret)
    platform_signed = await client.post(
        "/api/v1/payments/webhooks/stripe", content=body, headers=headers
    )
    assert platform_signed.status_code == 200  # either endpoint's secret is genuine
    assert (await stripe.deliver(enabled)).json()["duplicate"] is True
    wrong = await client.post(
        "/api/v1/payments/webhooks/stripe",
        content=stand_in.signed(submitted, secret="whsec_wrong")[0],
        headers=stand_in.signed(submitted, secret="whsec_wrong")[1],
    )
    assert wrong.status_code == 400
    for event in (submitted, submitted):
        assert (await stripe.deliver(event)).status_code == 200
    status = await client.get("/api/v1/shops/mine/payouts", headers=seller.auth)
    assert status.json()["status"] == "enabled"
    assert (await stripe_pay(stripe, buyer, started["id"], "now")).status_code == 201

    # Stripe pauses the account later: the newest event wins however late the old ones come.
    paused = stand_in.update_account(account, payouts_enabled=False)
    assert (await stripe.deliver(paused)).status_code == 200
    assert (await stripe.deliver(enabled)).json()["duplicate"] is True
    status = await client.get("/api/v1/shops/mine/payouts", headers=seller.auth)
    assert status.json()["status"] == "payouts_paused"


async def test_the_test_provider_needs_no_payout_setup(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    bought = await paid_purchase(api, ctx, "plainshop", "plainbuyer")
    status = await api.get("/api/v1/shops/mine/payouts", headers=bought.seller.auth)
    assert status.status_code == 409
    assert status.json()["error"]["code"] == "payouts_not_available"
    link = await api.post("/api/v1/shops/mine/payouts/onboarding", headers=bought.seller.auth)
    assert link.status_code == 409 and link.json()["error"]["code"] == "payouts_not_available"
    assert await count(ctx, PaymentTransfer) == 0


async def _two_shop_payment(
    stripe: StripeWorld,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Person], Person]:
    """Two onboarded shops, and a buyer's paid checkout with an order from each, settled
    through duplicated, out-of-order webhooks and the reconcile job as well."""
    client, ctx, stand_in = stripe.client, stripe.ctx, stripe.stand_in
    potter, mug = await seller_with_listing(client, "tpotter", price=2500)
    weaver, rug = await seller_with_listing(client, "tweaver", price=4175)
    accounts = {
        "tpotter-studio": await onboard(stripe, potter),
        "tweaver-studio": await onboard(stripe, weaver),
    }
    buyer = await sign_up(client, "twoshopbuyer")
    started = await buy_from(stripe, buyer, mug, rug)
    assert len(started["orders"]) == 2
    stand_in.events.clear()
    paid = await stripe_pay(stripe, buyer, started["id"], "two-shops")
    assert paid.status_code == 201, paid.text

    # One PaymentIntent for the lot, in a transfer group, with no destination or fee.
    [(form, _)] = stand_in.calls("POST", "/v1/payment_intents")
    assert form["amount"] == str(started["total"])
    assert form["transfer_group"] == f"checkout_{started['id']}"
    assert "transfer_data[destination]" not in form and "application_fee_amount" not in form

    # The webhooks arrive newest first and twice; the reconcile job runs too.
    for event in [*reversed(stand_in.events), *stand_in.events]:
        assert (await stripe.deliver(event)).status_code == 200
    await make_due(ctx, payments.RECONCILE_PAYMENT)
    await run_jobs(ctx)
    assert await checkout_status(ctx, started["id"]) == "paid"
    return started, accounts, {"tpotter-studio": potter, "tweaver-studio": weaver}, buyer


async def test_a_multi_shop_checkout_pays_each_seller_once_by_transfer(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    started, accounts, _, _ = await _two_shop_payment(stripe)
    [intent] = stand_in.intents.values()

    transfers = stand_in.calls("POST", "/v1/transfers")
    assert len(transfers) == 2 == len(stand_in.transfers)
    by_destination = {form["destination"]: (form, headers) for form, headers in transfers}
    assert set(by_destination) == set(accounts.values())
    for order in started["orders"]:
        form, headers = by_destination[accounts[order["shop_handle"]]]
        share_of_seller = order["total"] - apply_rate(order["total"], FEE_BPS)
        assert form["amount"] == str(share_of_seller)
        assert form["transfer_group"] == f"checkout_{started['id']}"
        assert form["source_transaction"] == intent["latest_charge"]
        assert headers["idempotency-key"] == f"transfer-{order['id']}"
        assert form["metadata[order_id]"] == order["id"]

    # Whatever runs again — the webhook, the reconcile job, the transfer job, a transfer the
    # provider made but whose answer we lost — no seller is paid twice.
    async with ctx.sessions() as session:
        rows = (await session.scalars(select(PaymentTransfer))).all()
    assert sorted(r.status for r in rows) == ["succeeded", "succeeded"]
    for row in rows:
        assert await payments.execute_transfer(ctx, row.id) == "succeeded"
        await payments.providers(ctx)["stripe"].create_transfer(  # type: ignore[attr-defined]
            payments.TransferRequest(
                amount=row.amount,
                currency=row.currency,
                destination=row.destination,
                idempotency_key=row.idempotency_key,
                transfer_group=f"checkout_{started['id']}",
                source_charge=intent["latest_charge"],
                metadata={"order_id": str(row.order_id), "payment_id": str(row.payment_id)},
            )
        )
    for event in stand_in.events:
        await stripe.deliver(event)
    await payments.reconcile_payment(ctx, rows[0].payment_id)
    await run_jobs(ctx)
    assert len(stand_in.transfers) == 2
    assert sum(t["amount"] for t in stand_in.transfers.values()) == sum(
        o["total"] - apply_rate(o["total"], FEE_BPS) for o in started["orders"]
    )
    assert await count(ctx, PaymentTransfer) == 2


async def test_refunds_of_a_transferred_order_reverse_the_sellers_share(
    stripe: StripeWorld,
) -> None:
    client, ctx, stand_in = stripe.client, stripe.ctx, stripe.stand_in
    started, accounts, sellers, _ = await _two_shop_payment(stripe)
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "tweaver-studio")
    mug_order = next(o for o in started["orders"] if o["shop_handle"] == "tpotter-studio")
    total, fee = rug_order["total"], apply_rate(rug_order["total"], FEE_BPS)
    url = f"/api/v1/orders/{rug_order['id']}/refunds"

    # Part, then the rest: each reverses the seller's part of it (the refund less the fee
    # we give back), and together they take back exactly what was transferred.
    part = await client.post(url, headers=sellers["tweaver-studio"].auth, json={"amount": 1001})
    assert part.status_code == 201 and part.json()["status"] == "succeeded", part.text
    [(refund_form, _)] = stand_in.calls("POST", "/v1/refunds")
    assert "reverse_transfer" not in refund_form  # not a destination charge
    [(reversal_form, reversal_headers)] = [
        (form, headers)
        for m, p, form, headers in stand_in.requests
        if m == "POST" and p.endswith("/reversals")
    ]
    assert reversal_form["amount"] == str(1001 - payments.share(fee, 1001, total))
    assert reversal_headers["idempotency-key"] == f"reversal-{part.json()['id']}"
    rest = await client.post(url, headers=sellers["tweaver-studio"].auth, json={})
    assert rest.status_code == 201 and rest.json()["amount"] == total - 1001
    [rug_transfer] = [
        t for t in stand_in.transfers.values() if t["destination"] == accounts["tweaver-studio"]
    ]
    assert rug_transfer["amount_reversed"] == rug_transfer["amount"] == total - fee

    # The other seller cancels before shipping: the whole share comes back from them.
    cancelled = await client.post(
        f"/api/v1/orders/{mug_order['id']}/cancel", headers=sellers["tpotter-studio"].auth
    )
    assert cancelled.status_code == 200, cancelled.text
    [mug_transfer] = [
        t for t in stand_in.transfers.values() if t["destination"] == accounts["tpotter-studio"]
    ]
    assert mug_transfer["amount_reversed"] == mug_transfer["amount"]

    # Reversal jobs running again change nothing; the ledger is back to zero for both.
    await run_jobs(ctx)
    async with ctx.sessions() as session:
        rows = (await session.scalars(select(PaymentTransfer))).all()
    assert sorted((r.kind, r.status) for r in rows) == [
        ("reversal", "succeeded"),
        ("reversal", "succeeded"),
        ("reversal", "succeeded"),
        ("transfer", "succeeded"),
        ("transfer", "succeeded"),
    ]
    for row in rows:
        await payments.execute_transfer(ctx, row.id)
    assert sum(len(t["reversals"]) for t in stand_in.transfers.values()) == 3
    assert sum(amount for _, amount in await ledger(ctx)) == 0


async def test_payout_webhooks_write_the_ledger_and_the_balance_reconciles(
    stripe: StripeWorld,
) -> None:
    client, ctx, stand_in = stripe.client, stripe.ctx, stripe.stand_in
    started, accounts, sellers, _ = await _two_shop_payment(stripe)
    weaver, account = sellers["tweaver-studio"], accounts["tweaver-studio"]
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "tweaver-studio")
    refund = await client.post(
        f"/api/v1/orders/{rug_order['id']}/refunds", headers=weaver.auth, json={"amount": 700}
    )
    assert refund.status_code == 201

    paid = stand_in.payout(account, 1500, "paid")
    # A second payout fails; its "failed" event arrives before its "paid" one, and each of
    # the payouts' events is delivered twice.
    bounced_paid = stand_in.payout(account, 900, "paid")
    bounced_failed = copy.deepcopy(bounced_paid)
    bounced_failed["id"], bounced_failed["type"] = "evt_bounced_failed", "payout.failed"
    bounced_failed["data"]["object"]["status"] = "failed"
    for event in (paid, bounced_failed, bounced_paid, paid, bounced_failed):
        assert (await stripe.deliver(event)).status_code == 200
    # A payout on an account that is not ours is recorded as an event and changes nothing.
    stranger = stand_in.payout("acct_somebody_else", 5000, "paid")
    assert (await stripe.deliver(stranger)).status_code == 200

    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                select(LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.entry_key)
                .join(Shop, Shop.id == LedgerEntry.shop_id)
                .where(Shop.handle == "tweaver-studio")
            )
        ).all()
    payouts_rows = sorted((kind, amount) for kind, amount, _ in rows if "payout" in kind)
    assert payouts_rows == [("payout", -1500), ("payout", -900), ("payout_reversal", 900)]

    # The balance the seller sees is sales − fees − refunds − payouts, each summed from its
    # own source: the order, the refund the provider confirmed, and the payouts.
    total = rug_order["total"]
    fee = apply_rate(total, FEE_BPS)
    fee_back = payments.share(fee, 700, total)
    expected = total - (fee - fee_back) - 700 - (1500 + 900 - 900)
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert balance["balance"] == expected == sum(amount for _, amount, _ in rows)
    by_kind: dict[str, int] = {}
    for kind, amount, _ in rows:
        by_kind[kind] = by_kind.get(kind, 0) + amount
    assert by_kind == {
        "sale": total,
        "platform_fee": -fee,
        "refund": -700,
        "fee_refund": fee_back,
        "payout": -2400,
        "payout_reversal": 900,
    }
    # What the seller kept at Stripe (transferred less reversed) is the ledger before payouts.
    [rug_transfer] = [t for t in stand_in.transfers.values() if t["destination"] == account]
    assert rug_transfer["amount"] - rug_transfer["amount_reversed"] == expected + 1500
    payouts_only = await client.get(
        "/api/v1/shops/mine/balance", headers=weaver.auth, params={"limit": 50}
    )
    assert len(payouts_only.json()["entries"]) == len(rows)
