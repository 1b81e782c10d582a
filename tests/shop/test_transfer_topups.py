"""Top-ups: a seller's Stripe account holding less for an order than the order owes them.

A transfer that failed is sent again for what the order still owes (a refund made meanwhile
took nothing back from a transfer that never arrived). Should that refund then fail after it
succeeded (the buyer's card was closed), its part is the seller's again in the ledger, but
no reversal of it was ever made, so no restore can give it back: the shortfall is sent by a
top-up transfer, once, however the refund's events come. Against the local Stripe stand-in,
on both databases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select

from craftreel.context import AppContext
from craftreel.shop import payments
from craftreel.shop.payments import PaymentTransfer
from tests.conftest import Outbox
from tests.shop.test_payments import StripeStandIn, StripeWorld, stand_in
from tests.shop.test_refund_bounces import (
    deliver,
    held_at_stripe,
    order_ledger,
    page_text,
    seller_bounce_mails,
)
from tests.shop.test_refund_mail import body_of, gbp
from tests.shop.test_transfers import (
    ATTEMPTS,
    operator_mail,
    paid_two_shops,
    retry_command,
    reversal_rows,
    share,
    stripe,
    transfer_keys,
    transfer_rows,
)
from tests.shop.test_transfers_found import (
    drain,
    made_but_never_answered,
    order_of,
    reconciled,
    seller_part,
)

POTTER = "xpotter-studio"


async def top_up_rows(ctx: AppContext) -> list[PaymentTransfer]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(PaymentTransfer)
            .where(PaymentTransfer.kind == payments.TransferKind.TOP_UP)
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
        )
        return list(rows.all())


def top_ups_at_stripe(stand_in: StripeStandIn) -> list[dict[str, Any]]:
    return [t for t in stand_in.transfers.values() if t["metadata"].get("kind") == "top_up"]


@dataclass
class RefusedThenRefunded:
    """Steps 1 and 2: the potter's transfer refused, then 1000 of the order refunded."""

    order: dict[str, Any]
    account: str
    seller: Any
    transfer: PaymentTransfer
    refund_id: str


async def refused_then_refunded(world: StripeWorld) -> RefusedThenRefunded:
    """The potter's transfer is refused, and the buyer is refunded 1000 of the order (nothing
    to take back: nothing reached the seller)."""
    ctx, stand_in, client = world.ctx, world.stand_in, world.client
    started, accounts, sellers = await paid_two_shops(world)
    potter, account = sellers[POTTER], accounts[POTTER]
    mug_order = order_of(started, POTTER)
    stand_in.fail_next(
        "POST", "/v1/transfers", 400, "balance_insufficient", when={"destination": account}
    )
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.failure_code) == ("failed", "balance_insufficient")
    refunded = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={"amount": 1000}
    )
    assert refunded.json()["status"] == "succeeded", refunded.text
    assert await reversal_rows(ctx) == []
    return RefusedThenRefunded(mug_order, account, potter, mug, refunded.json()["id"])


async def refused_then_sent_short(
    world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str, dict[str, str], str]:
    """Steps 1 to 3: the potter's transfer is refused, the buyer is refunded 1000 of the
    order (nothing to take back: nothing reached the seller), and the operator's retry sends
    what the order owes now. (order, account, seller's auth, refund id)"""
    done = await refused_then_refunded(world)
    retry = retry_command(world, monkeypatch)
    assert await asyncio.to_thread(retry, done.transfer.id) == 0
    part = seller_part(done.order, 1000)
    assert await reconciled(world, done.order, done.account) == share(done.order) - part
    return done.order, done.account, done.seller.auth, done.refund_id


def stripe_refund(stand_in: StripeStandIn, refund_id: str) -> str:
    return next(
        r["id"] for r in stand_in.refunds.values() if r["metadata"]["refund_id"] == refund_id
    )


async def test_a_refund_failing_after_the_transfer_was_sent_short_tops_the_seller_up(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    outbox = Outbox(ctx.settings.mail_dir)
    mug_order, account, seller_auth, refund_id = await refused_then_sent_short(stripe, monkeypatch)
    part = seller_part(mug_order, 1000)

    # 4. The refund fails after it succeeded: its part is the seller's again, in the ledger,
    # and — as no reversal of it was made to give back — by a top-up to their account.
    bounced = stand_in.bounce_refund(stripe_refund(stand_in, refund_id), "lost_or_stolen_card")
    await deliver(stripe, bounced)
    [top_up] = await top_up_rows(ctx)
    assert (top_up.amount, top_up.refund_id, top_up.status) == (part, UUID(refund_id), "pending")
    assert top_up.idempotency_key == f"top-up-{refund_id}"
    await drain(ctx)
    [top_up] = await top_up_rows(ctx)
    [made] = top_ups_at_stripe(stand_in)
    assert (top_up.status, top_up.provider_ref) == ("succeeded", made["id"])
    [form] = [
        form
        for form, headers in stand_in.calls("POST", "/v1/transfers")
        if headers["idempotency-key"] == f"top-up-{refund_id}"
    ]
    # From the platform's balance, where the failed refund's money came back.
    assert (form["destination"], form["amount"]) == (account, str(part))
    assert "source_transaction" not in form
    assert form["metadata[refund_id]"] == refund_id
    assert form["transfer_group"] == stripe_group(stand_in, account)

    # What the seller's account holds for the order is what the order owes them: all of it.
    assert await reconciled(stripe, mug_order, account) == share(mug_order)
    # Money reaching their account is checked for anything over: the top-up is not.
    assert await reversal_rows(ctx) == []
    assert made["amount_reversed"] == 0
    balance = (await client.get("/api/v1/shops/mine/balance", headers=seller_auth)).json()
    assert (balance["failed_transfers"], balance["failed_reversals"]) == ([], [])
    assert balance["balance"] == sum((await order_ledger(ctx, mug_order["id"])).values())

    # The operator is told what was put right; the seller that it is on its way.
    [alert] = [a for a in operator_mail(stripe) if "from succeeded to failed" in a]
    assert "Nothing had been taken back from the seller's Stripe account for it." not in alert
    assert (
        f"The order's transfer was sent after the refund, for what the order owed then, so "
        f"the seller's Stripe account holds {gbp(part)} less for it than the order now owes "
        f"them: {gbp(part)} is being sent to them (a top-up transfer" in " ".join(alert.split())
    )
    [mail] = seller_bounce_mails(outbox, "xpotter@example.org")
    assert (
        f"The order's money is yours again: {gbp(part)} is back in your balance, and "
        f"{gbp(part)} is being sent to your Stripe account." in " ".join(body_of(mail).split())
    )


def stripe_group(stand_in: StripeStandIn, account: str) -> str:
    """The transfer group of the (one) payment whose transfer went to ``account``."""
    return next(
        str(t["transfer_group"])
        for t in stand_in.transfers.values()
        if t["destination"] == account and "kind" not in t["metadata"]
    )


async def test_a_bounce_told_again_and_out_of_order_tops_up_once(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    mug_order, account, _, refund_id = await refused_then_sent_short(stripe, monkeypatch)
    ref = stripe_refund(stand_in, refund_id)
    made = [e for e in stand_in.events if e["data"]["object"].get("id") == ref]
    bounced = stand_in.bounce_refund(ref, "expired_or_canceled_card")

    # refund.failed first, then all of them at once, then again newest first, then the
    # refund's old "succeeded" events, late.
    await deliver(stripe, [bounced[2]])
    replies = await asyncio.gather(*(stripe.deliver(event) for event in bounced))
    assert {reply.status_code for reply in replies} == {200}
    await deliver(stripe, [*reversed(bounced), *made])
    await drain(ctx)
    await deliver(stripe, bounced)
    await drain(ctx)

    [top_up] = await top_up_rows(ctx)
    assert (top_up.status, top_up.amount) == ("succeeded", seller_part(mug_order, 1000))
    assert len(top_ups_at_stripe(stand_in)) == 1
    assert transfer_keys(stand_in).count(f"top-up-{refund_id}") == 1
    assert await reconciled(stripe, mug_order, account) == share(mug_order)


async def test_a_top_up_stripe_refuses_is_listed_alerted_and_sent_again(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    mug_order, account, seller_auth, refund_id = await refused_then_sent_short(stripe, monkeypatch)
    part = seller_part(mug_order, 1000)
    # The platform's balance is short again when the top-up goes.
    stand_in.fail_next(
        "POST", "/v1/transfers", 400, "balance_insufficient", when={"destination": account}
    )
    ref = stripe_refund(stand_in, refund_id)
    await deliver(stripe, stand_in.bounce_refund(ref, "expired_or_canceled_card"))
    await drain(ctx)
    [top_up] = await top_up_rows(ctx)
    assert (top_up.status, top_up.failure_code) == ("failed", "balance_insufficient")
    assert held_at_stripe(stripe, account) == share(mug_order) - part

    # Owed, not sent: on the seller's dashboard, and in a mail to the operator.
    balance = (await client.get("/api/v1/shops/mine/balance", headers=seller_auth)).json()
    [listed] = balance["failed_transfers"]
    assert (listed["id"], listed["kind"], listed["amount"]) == (str(top_up.id), "top_up", part)
    page = await page_text(stripe, "xpotter@example.org", "/sell", "203.0.113.101")
    assert "Not sent to your Stripe account yet." in page
    assert f"{gbp(part)} for order" in page
    assert "The platform's Stripe balance could not cover it" in page
    [alert] = [a for a in operator_mail(stripe) if str(top_up.id) in a]
    assert f"Stripe did not send {gbp(part)} to the connected account {account}" in alert
    assert f"refund {refund_id}" in alert and "could not cover it (balance_insufficient)" in alert
    assert f"craftreel payments retry-transfer {top_up.id}" in alert

    # The operator sends it again, under a new key; once.
    retry = retry_command(stripe, monkeypatch)
    assert await asyncio.to_thread(retry, top_up.id) == 0
    [top_up] = await top_up_rows(ctx)
    assert (top_up.status, top_up.retries, top_up.amount) == ("succeeded", 1, part)
    assert [k for k in transfer_keys(stand_in) if k.startswith("top-up-")] == [
        f"top-up-{refund_id}",
        f"top-up-{refund_id}-retry-1",
    ]
    assert await asyncio.to_thread(retry, top_up.id) == 1
    await drain(ctx)
    assert len(top_ups_at_stripe(stand_in)) == 1
    assert await reconciled(stripe, mug_order, account) == share(mug_order)
    balance = (await client.get("/api/v1/shops/mine/balance", headers=seller_auth)).json()
    assert balance["failed_transfers"] == []


async def test_a_retried_transfer_is_not_mistaken_for_a_top_up_nor_a_top_up_taken_back(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    done = await refused_then_refunded(stripe)
    mug_order, account, mug = done.order, done.account, done.transfer
    part = seller_part(mug_order, 1000)
    # The retry, for what the order owes now, is made at Stripe but never answered.
    made_but_never_answered(stand_in, account, ATTEMPTS)
    assert await payments.retry_transfer(ctx, mug.id) == "pending"
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.failure_code, mug.amount) == (
        "failed",
        "provider_unavailable",
        share(mug_order) - part,
    )

    # The refund fails after all: the transfer (thought failed) will send what it was for,
    # so only the refund's part is short, and a top-up sends it.
    ref = stripe_refund(stand_in, done.refund_id)
    await deliver(stripe, stand_in.bounce_refund(ref, "expired_or_canceled_card"))
    await drain(ctx)
    [top_up] = await top_up_rows(ctx)
    assert (top_up.status, top_up.amount) == ("succeeded", part)

    # The operator retries the transfer: Stripe's list (newest first) has the top-up too,
    # but it is the transfer that is found and recorded, and nothing is taken back.
    assert await payments.retry_transfer(ctx, mug.id) == "succeeded"
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    [transfer] = [
        t
        for t in stand_in.transfers.values()
        if t["destination"] == account and "kind" not in t["metadata"]
    ]
    assert (mug.status, mug.provider_ref, mug.amount) == (
        "succeeded",
        transfer["id"],
        share(mug_order) - part,
    )
    await drain(ctx)
    assert await reversal_rows(ctx) == []
    assert await reconciled(stripe, mug_order, account) == share(mug_order)


async def test_a_bounce_while_the_transfer_is_still_failed_leaves_it_to_the_retry(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    done = await refused_then_refunded(stripe)
    mug_order, account = done.order, done.account
    ref = stripe_refund(stand_in, done.refund_id)
    await deliver(stripe, stand_in.bounce_refund(ref, "expired_or_canceled_card"))
    await drain(ctx)
    # Nothing reached the seller yet: the failed transfer, listed, is what sends their share.
    assert await top_up_rows(ctx) == []
    assert held_at_stripe(stripe, account) == 0
    [alert] = [a for a in operator_mail(stripe) if "from succeeded to failed" in a]
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (
        "The order's transfer has not reached the seller's Stripe account: sent again with "
        f"craftreel payments retry-transfer {mug.id}, it sends what the order still owes "
        "them." in " ".join(alert.split())
    )
    retry = retry_command(stripe, monkeypatch)
    assert await asyncio.to_thread(retry, mug.id) == 0
    await drain(ctx)
    assert await top_up_rows(ctx) == []
    assert await reconciled(stripe, mug_order, account) == share(mug_order)


async def test_a_bounce_while_a_retry_looks_for_the_transfer_is_sent_by_the_retry(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    done = await refused_then_refunded(stripe)
    mug_order, account, mug = done.order, done.account, done.transfer

    # The retry asks Stripe whether the transfer was made; meanwhile the refund fails.
    pause = stand_in.pause_next("GET", "/v1/transfers")
    try:
        retrying = asyncio.create_task(payments.retry_transfer(ctx, mug.id))
        assert await asyncio.to_thread(pause.arrived.wait, 10)
        ref = stripe_refund(stand_in, done.refund_id)
        await deliver(stripe, stand_in.bounce_refund(ref, "expired_or_canceled_card"))
    finally:
        pause.go.set()
    # The retry sends what the order owes once the refund failed: all of it, and no top-up.
    assert await retrying == "succeeded"
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert mug.amount == share(mug_order)
    assert await top_up_rows(ctx) == []
    assert await reconciled(stripe, mug_order, account) == share(mug_order)


__all__ = ["stand_in", "stripe"]  # the fixtures, imported for these tests
