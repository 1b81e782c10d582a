"""Transfers to sellers that Stripe does not make: a provider that does not answer (a network
error, a 5xx, a 429) is asked again by the job, with backoff, under the same key, a bounded
number of times; a refusal (a 4xx) or the last unanswered attempt fails the transfer with its
reason, writes no ledger row, mails the operator and shows on the seller's dashboard; and
``craftreel payments retry-transfer`` sends it again without ever paying twice. Against the
local Stripe stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, update

from craftreel.cli import main
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.jobs import Job, JobStatus
from craftreel.core.money import apply_rate
from craftreel.shop import payments
from craftreel.shop.payments import LedgerEntry, PaymentTransfer
from tests.accounts.test_pages import Browser
from tests.conftest import Outbox
from tests.factories import Person, sign_up
from tests.shop.test_checkout import seller_with_listing
from tests.shop.test_payments import (
    FEE_BPS,
    StripeStandIn,
    StripeWorld,
    buy_from,
    checkout_status,
    ledger,
    onboard,
    stand_in,
    stripe_pay,
    stripe_world,
)
from tests.shop.test_views import text_of

OPERATOR = "ops@craftreel.example"
ATTEMPTS = 4


@pytest.fixture
async def stripe(
    backend: str, database_urls: dict[str, str], tmp_path: Path, stand_in: StripeStandIn
) -> AsyncIterator[StripeWorld]:
    """The Stripe world of the payment tests, with an operator to alert and few attempts."""
    async with stripe_world(
        database_urls[backend],
        tmp_path,
        stand_in,
        operator_email=OPERATOR,
        transfer_max_attempts=ATTEMPTS,
    ) as world:
        yield world


async def paid_two_shops(
    world: StripeWorld,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Person]]:
    """Two onboarded shops and a paid checkout with an order from each; its webhooks handled,
    its transfers queued and not yet run. (checkout, account by shop, seller by shop)"""
    client, stand_in = world.client, world.stand_in
    potter, mug = await seller_with_listing(client, "xpotter", price=2500)
    weaver, rug = await seller_with_listing(client, "xweaver", price=4175)
    accounts = {
        "xpotter-studio": await onboard(world, potter),
        "xweaver-studio": await onboard(world, weaver),
    }
    buyer = await sign_up(client, "xbuyer")
    started = await buy_from(world, buyer, mug, rug)
    stand_in.events.clear()
    assert (await stripe_pay(world, buyer, started["id"], "x")).status_code == 201
    for event in stand_in.events_of("payment_intent.succeeded"):
        assert (await world.deliver(event)).status_code == 200
    assert await checkout_status(world.ctx, started["id"]) == "paid"
    return started, accounts, {"xpotter-studio": potter, "xweaver-studio": weaver}


async def transfer_jobs(ctx: AppContext) -> list[Job]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(Job).where(Job.kind == payments.EXECUTE_TRANSFER).order_by(Job.created_at)
        )
        return list(rows.all())


async def run_transfer_jobs(ctx: AppContext) -> list[str]:
    """Run each queued transfer job once, its backoff skipped; the statuses they end in."""
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(Job)
            .where(Job.kind == payments.EXECUTE_TRANSFER, Job.status == JobStatus.QUEUED)
            .values(run_at=utcnow())
        )
    outcomes = []
    for job in await transfer_jobs(ctx):
        if job.status == JobStatus.QUEUED:
            outcomes.append(str(await ctx.jobs.run(job.id, "test-worker")))
    return outcomes


async def transfer_rows(ctx: AppContext) -> dict[UUID, PaymentTransfer]:
    """The transfers (not reversals), by order."""
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(PaymentTransfer).where(PaymentTransfer.kind == payments.TransferKind.TRANSFER)
        )
        return {row.order_id: row for row in rows.all()}


def transfer_keys(stand_in: StripeStandIn) -> list[str]:
    return [headers["idempotency-key"] for _, headers in stand_in.calls("POST", "/v1/transfers")]


def operator_mail(world: StripeWorld) -> list[str]:
    outbox = Outbox(world.ctx.settings.mail_dir)
    found = []
    for message in outbox.messages():
        if str(message["To"]) == OPERATOR:
            payload = message.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append(f"{message['Subject']}\n{payload.decode()}")
    return found


def retry_command(world: StripeWorld, monkeypatch: pytest.MonkeyPatch) -> Callable[[object], int]:
    """``craftreel payments retry-transfer <id>`` as the operator runs it (in a thread, as it
    runs its own event loop): its exit code."""
    ctx = world.ctx
    for name, value in {
        "CRAFTREEL_ENVIRONMENT": "test",
        "CRAFTREEL_DATABASE_URL": ctx.settings.effective_database_url,
        "CRAFTREEL_VAR_DIR": str(ctx.settings.var_dir),
        "CRAFTREEL_PAYMENT_PROVIDER": "stripe",
        "CRAFTREEL_STRIPE_SECRET_KEY": StripeStandIn.api_key,
        "CRAFTREEL_STRIPE_WEBHOOK_SECRET": StripeStandIn.webhook_secret,
        "CRAFTREEL_STRIPE_API_BASE": world.stand_in.url,
        "CRAFTREEL_PLATFORM_FEE_BPS": str(FEE_BPS),
    }.items():
        monkeypatch.setenv(name, value)

    def retry(transfer_id: object) -> int:
        with pytest.raises(SystemExit) as exited:
            main(["payments", "retry-transfer", str(transfer_id)])
        return int(exited.value.code or 0)

    return retry


def share(order: dict[str, Any]) -> int:
    return int(order["total"]) - apply_rate(int(order["total"]), FEE_BPS)


async def test_an_unanswered_transfer_is_retried_with_backoff_under_the_same_key(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    # Stripe is down, then busy, then makes one transfer but its answer is lost.
    stand_in.fail_next("POST", "/v1/transfers", 500, times=2)
    stand_in.fail_next("POST", "/v1/transfers", 429, "rate_limit")
    stand_in.fail_next("POST", "/v1/transfers", 500, after_doing_it=True)
    started, _, _ = await paid_two_shops(stripe)
    ledger_before = sorted(await ledger(ctx))

    assert await run_transfer_jobs(ctx) == ["queued", "queued"]
    jobs = await transfer_jobs(ctx)
    assert all(job.run_at > utcnow() and job.last_error for job in jobs)  # backing off
    assert await run_transfer_jobs(ctx) == ["queued", "queued"]  # 429, answer lost
    assert await run_transfer_jobs(ctx) == ["done", "done"]

    rows = await transfer_rows(ctx)
    assert sorted(row.status for row in rows.values()) == ["succeeded", "succeeded"]
    # Every attempt carried the order's one key, so the lost answer cost no second transfer.
    keys = transfer_keys(stand_in)
    assert len(keys) == 6
    assert set(keys) == {f"transfer-{order['id']}" for order in started["orders"]}
    assert sorted(t["amount"] for t in stand_in.transfers.values()) == sorted(
        share(order) for order in started["orders"]
    )
    assert sorted(await ledger(ctx)) == ledger_before
    assert operator_mail(stripe) == []


async def test_a_refused_transfer_fails_alerts_and_shows_and_can_be_sent_again(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    ledger_before = sorted(await ledger(ctx))
    mug_order = next(o for o in started["orders"] if o["shop_handle"] == "xpotter-studio")
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "xweaver-studio")
    # The weaver's account was switched off at Stripe; the platform's balance is short for
    # the potter's transfer.
    stand_in.accounts[accounts["xweaver-studio"]]["charges_enabled"] = False
    stand_in.fail_next(
        "POST",
        "/v1/transfers",
        400,
        "balance_insufficient",
        when={"destination": accounts["xpotter-studio"]},
    )

    assert await run_transfer_jobs(ctx) == ["done", "done"]  # a refusal is not retried
    assert await run_transfer_jobs(ctx) == []
    rows = await transfer_rows(ctx)
    mug_row, rug_row = rows[UUID(mug_order["id"])], rows[UUID(rug_order["id"])]
    assert (mug_row.status, mug_row.failure_code) == ("failed", "balance_insufficient")
    assert (rug_row.status, rug_row.failure_code) == ("failed", "account_invalid")
    assert mug_row.failed_at is not None and rug_row.failed_at is not None
    assert stand_in.transfers == {}
    assert sorted(await ledger(ctx)) == ledger_before  # nothing written to the ledger

    # The operator is told, once per transfer, with what to run.
    alerts = operator_mail(stripe)
    assert len(alerts) == 2
    mug_alert = next(a for a in alerts if str(mug_row.id) in a)
    assert "could not cover it (balance_insufficient)" in mug_alert
    assert f"craftreel payments retry-transfer {mug_row.id}" in mug_alert
    assert (
        f"Stripe did not send £{share(mug_order) / 100:.2f} to the connected account" in mug_alert
    )

    # The seller sees it on the dashboard (and the API), with the reason.
    balance = (
        await client.get("/api/v1/shops/mine/balance", headers=sellers["xweaver-studio"].auth)
    ).json()
    [failed] = balance["failed_transfers"]
    assert (failed["id"], failed["amount"], failed["failure_code"]) == (
        str(rug_row.id),
        share(rug_order),
        "account_invalid",
    )
    transport = httpx.ASGITransport(app=stripe.app, client=("203.0.113.91", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        weaver = Browser(browser)
        assert (await weaver.sign_in(sellers["xweaver-studio"].email)).status_code == 303
        page = text_of(await weaver.get("/sell"))
        assert "Not sent to your Stripe account yet." in page
        assert "The Stripe account it goes to cannot receive transfers" in page
        order_page = text_of(await weaver.get(f"/sell/orders/{rug_order['id']}"))
        assert "could not be sent to your Stripe account" in order_page

    # Meanwhile the buyer gets part of the potter's order back: nothing is taken back from a
    # transfer that never arrived, so a retry sends only what the order still owes.
    refunded = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds",
        headers=sellers["xpotter-studio"].auth,
        json={"amount": 1000},
    )
    assert refunded.status_code == 201 and refunded.json()["status"] == "succeeded"
    owed = share(mug_order) - (
        1000 - payments.share(apply_rate(mug_order["total"], FEE_BPS), 1000, mug_order["total"])
    )

    # The operator retries from the command line.
    retry = retry_command(stripe, monkeypatch)

    # The weaver's account is still off: refused again, under a new key (Stripe would
    # answer the old key with its old refusal for a day).
    assert await asyncio.to_thread(retry, rug_row.id) == 1
    assert (await transfer_rows(ctx))[rug_row.order_id].status == "failed"
    stand_in.accounts[accounts["xweaver-studio"]]["charges_enabled"] = True
    assert await asyncio.to_thread(retry, rug_row.id) == 0
    assert await asyncio.to_thread(retry, mug_row.id) == 0
    rows = await transfer_rows(ctx)
    assert [rows[r.order_id].status for r in (mug_row, rug_row)] == ["succeeded", "succeeded"]
    assert rows[rug_row.order_id].retries == 2 and rows[mug_row.order_id].retries == 1
    keys = transfer_keys(stand_in)
    assert sorted(keys[:2]) == sorted(f"transfer-{o['id']}" for o in (mug_order, rug_order))
    assert keys[2:] == [
        f"transfer-{rug_order['id']}-retry-1",
        f"transfer-{rug_order['id']}-retry-2",
        f"transfer-{mug_order['id']}-retry-1",
    ]
    by_destination = {t["destination"]: t["amount"] for t in stand_in.transfers.values()}
    assert by_destination == {
        accounts["xweaver-studio"]: share(rug_order),
        accounts["xpotter-studio"]: owed,
    }
    # Sent is sent: a retry, or the retry's job running too, pays no one twice.
    assert await asyncio.to_thread(retry, mug_row.id) == 1
    await run_transfer_jobs(ctx)
    assert len(stand_in.transfers) == 2
    assert await asyncio.to_thread(retry, "not-an-id") == 2
    page_balance = (
        await client.get("/api/v1/shops/mine/balance", headers=sellers["xweaver-studio"].auth)
    ).json()
    assert page_balance["failed_transfers"] == []


async def test_a_transfer_never_answered_fails_after_its_attempts_and_a_retry_finds_it_made(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    # The first attempt was made at Stripe but its answer lost; then Stripe stays down.
    stand_in.fail_next("POST", "/v1/transfers", 500, after_doing_it=True)
    stand_in.fail_next("POST", "/v1/transfers", 503, times=2 * ATTEMPTS - 1)
    started, _, _ = await paid_two_shops(stripe)
    for _ in range(ATTEMPTS - 1):
        assert await run_transfer_jobs(ctx) == ["queued", "queued"]
    assert await run_transfer_jobs(ctx) == ["done", "done"]
    rows = await transfer_rows(ctx)
    assert {(r.status, r.failure_code) for r in rows.values()} == {
        ("failed", "provider_unavailable")
    }
    assert len(transfer_keys(stand_in)) == 2 * ATTEMPTS
    assert len(operator_mail(stripe)) == 2
    [made] = stand_in.transfers.values()

    # Sent again: the one Stripe made is found and recorded, the other is made once.
    statuses = [await payments.retry_transfer(ctx, row.id) for row in rows.values()]
    assert statuses == ["succeeded", "succeeded"]
    assert len(stand_in.transfers) == 2
    rows = await transfer_rows(ctx)
    assert made["id"] in {row.provider_ref for row in rows.values()}
    assert sorted(t["amount"] for t in stand_in.transfers.values()) == sorted(
        share(order) for order in started["orders"]
    )
    with pytest.raises(payments.TransferNotFailed):
        await payments.retry_transfer(ctx, next(iter(rows.values())).id)


# --- reversals: the seller's part of a refund, taken back from a transfer ---------------


async def reversal_rows(ctx: AppContext) -> list[PaymentTransfer]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(PaymentTransfer)
            .where(PaymentTransfer.kind == payments.TransferKind.REVERSAL)
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
        )
        return list(rows.all())


def reversal_calls(stand_in: StripeStandIn, transfer_ref: str) -> list[tuple[str, str]]:
    """(idempotency key, amount) of each reversal asked of one transfer."""
    return [
        (headers["idempotency-key"], form["amount"])
        for form, headers in stand_in.calls("POST", f"/v1/transfers/{transfer_ref}/reversals")
    ]


async def sent_transfers(
    world: StripeWorld,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Person], dict[str, dict[str, Any]]]:
    """``paid_two_shops`` with both transfers made: and Stripe's transfer by shop."""
    started, accounts, sellers = await paid_two_shops(world)
    assert await run_transfer_jobs(world.ctx) == ["done", "done"]
    by_account = {t["destination"]: t for t in world.stand_in.transfers.values()}
    return started, accounts, sellers, {shop: by_account[a] for shop, a in accounts.items()}


async def test_a_refused_reversal_alerts_once_shows_to_the_seller_and_is_sent_again(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers, transfers = await sent_transfers(stripe)
    weaver, rug_transfer = sellers["xweaver-studio"], transfers["xweaver-studio"]
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "xweaver-studio")
    fee = apply_rate(rug_order["total"], FEE_BPS)
    seller_part = 1000 - payments.share(fee, 1000, rug_order["total"])
    # The weaver has paid their Stripe balance out: Stripe cannot take anything back.
    stand_in.fail_next(
        "POST", f"/v1/transfers/{rug_transfer['id']}/reversals", 400, "balance_insufficient"
    )

    refunded = await client.post(
        f"/api/v1/orders/{rug_order['id']}/refunds", headers=weaver.auth, json={"amount": 1000}
    )
    # The buyer's refund stands; the seller's part of it stays in their Stripe account.
    assert refunded.status_code == 201 and refunded.json()["status"] == "succeeded"
    [reversal] = await reversal_rows(ctx)
    assert (reversal.status, reversal.failure_code) == ("failed", "balance_insufficient")
    assert reversal.amount == seller_part and reversal.failed_at is not None
    assert rug_transfer["amount_reversed"] == 0
    # Its job and a second look change nothing, and the operator is told once.
    await run_transfer_jobs(ctx)
    assert await payments.execute_transfer(ctx, reversal.id) == "failed"
    [alert] = operator_mail(stripe)
    assert f"Stripe did not take £{seller_part / 100:.2f} back" in alert
    assert "the Stripe account's balance could not cover it (balance_insufficient)" in alert
    assert f"craftreel payments retry-transfer {reversal.id}" in alert

    # The seller sees it on the dashboard (and the API), like a transfer that failed.
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert balance["failed_transfers"] == []
    [shown] = balance["failed_reversals"]
    assert (shown["id"], shown["amount"], shown["failure_code"]) == (
        str(reversal.id),
        seller_part,
        "balance_insufficient",
    )
    transport = httpx.ASGITransport(app=stripe.app, client=("203.0.113.92", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        seller_browser = Browser(browser)
        assert (await seller_browser.sign_in(weaver.email)).status_code == 303
        page = text_of(await seller_browser.get("/sell"))
        assert "Not taken back from your Stripe account yet." in page
        assert "The Stripe account's balance could not cover it" in page
        assert "Not sent to your Stripe account yet." not in page

    # Once the seller's balance is back, the operator sends it again: under a new key, since
    # Stripe answers the refused one with its refusal.
    retry = retry_command(stripe, monkeypatch)
    assert await asyncio.to_thread(retry, reversal.id) == 0
    [reversal] = await reversal_rows(ctx)
    assert (reversal.status, reversal.retries) == ("succeeded", 1)
    assert reversal_calls(stand_in, rug_transfer["id"]) == [
        (f"reversal-{refunded.json()['id']}", str(seller_part)),
        (f"reversal-{refunded.json()['id']}-retry-1", str(seller_part)),
    ]
    assert rug_transfer["amount_reversed"] == seller_part
    # Sent is sent: neither the command again nor the retry's job takes it back twice.
    assert await asyncio.to_thread(retry, reversal.id) == 1
    await run_transfer_jobs(ctx)
    assert len(rug_transfer["reversals"]) == 1
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert balance["failed_reversals"] == []
    assert len(operator_mail(stripe)) == 1
    assert accounts["xweaver-studio"] == rug_transfer["destination"]


async def test_a_reversal_whose_answer_was_lost_is_made_once(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, _, sellers, transfers = await sent_transfers(stripe)
    potter, mug_transfer = sellers["xpotter-studio"], transfers["xpotter-studio"]
    mug_order = next(o for o in started["orders"] if o["shop_handle"] == "xpotter-studio")
    path = f"/v1/transfers/{mug_transfer['id']}/reversals"

    # Stripe takes the first part back, but its answer is lost; the job asks again under the
    # same key and is answered from it.
    stand_in.fail_next("POST", path, 500, after_doing_it=True)
    first = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={"amount": 600}
    )
    assert first.json()["status"] == "succeeded"
    [reversal] = await reversal_rows(ctx)
    assert reversal.status == "pending"
    assert await run_transfer_jobs(ctx) == ["done"]
    [reversal] = await reversal_rows(ctx)
    assert reversal.status == "succeeded"
    assert reversal.provider_ref == mug_transfer["reversals"][0]["id"]
    assert len(mug_transfer["reversals"]) == 1

    # The rest: made at Stripe, answer lost, then Stripe is down for every attempt. It fails
    # as unanswered, and the operator's retry keeps its key, so Stripe answers from it.
    stand_in.fail_next("POST", path, 500, after_doing_it=True)
    stand_in.fail_next("POST", path, 503, times=ATTEMPTS)
    rest = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={}
    )
    assert rest.json()["status"] == "succeeded"
    for _ in range(ATTEMPTS - 1):
        assert await run_transfer_jobs(ctx) == ["queued"]
    assert await run_transfer_jobs(ctx) == ["done"]  # its last attempt: failed
    second = (await reversal_rows(ctx))[1]
    assert (second.status, second.failure_code) == ("failed", "provider_unavailable")
    assert len(operator_mail(stripe)) == 1
    retry = retry_command(stripe, monkeypatch)
    assert await asyncio.to_thread(retry, second.id) == 0
    second = (await reversal_rows(ctx))[1]
    assert second.status == "succeeded"
    keys = {key for key, _ in reversal_calls(stand_in, mug_transfer["id"])}
    assert keys == {f"reversal-{first.json()['id']}", f"reversal-{rest.json()['id']}"}
    # Two reversals at Stripe, together exactly what was transferred; the ledger nets to 0.
    assert len(mug_transfer["reversals"]) == 2
    assert mug_transfer["amount_reversed"] == mug_transfer["amount"] == share(mug_order)
    async with ctx.sessions() as session:
        mug_ledger = await session.scalar(
            select(func.sum(LedgerEntry.amount)).where(
                LedgerEntry.order_id == UUID(mug_order["id"])
            )
        )
    assert mug_ledger == 0


__all__ = ["stand_in"]  # the fixture, imported for these tests
