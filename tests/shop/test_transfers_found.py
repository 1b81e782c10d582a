"""Transfers recorded failed that Stripe had made after all (every attempt went unanswered,
but one had landed). Refunds settled meanwhile took nothing back from them; once the
transfer is found made — by ``craftreel payments retry-transfer``, by an answer that comes
late, or by a restore sent again under its key — what the seller's account holds for the
order beyond what the order owes them is taken back, refund by refund, once, so the ledger
and the seller's Stripe account agree again. Against the local Stripe stand-in, on both
databases."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest

from craftreel.context import AppContext
from craftreel.core.money import apply_rate
from craftreel.shop import payments
from tests.shop.test_payments import FEE_BPS, StripeStandIn, StripeWorld, stand_in
from tests.shop.test_refund_bounces import deliver, held_at_stripe, order_ledger, restore_rows
from tests.shop.test_transfers import (
    ATTEMPTS,
    operator_mail,
    paid_two_shops,
    retry_command,
    reversal_rows,
    run_transfer_jobs,
    sent_transfers,
    share,
    stripe,
    transfer_rows,
)


async def drain(ctx: AppContext) -> None:
    """Run the transfer jobs, their backoff skipped, until none is left queued."""
    for _ in range(4 * ATTEMPTS):
        if not await run_transfer_jobs(ctx):
            return
    raise AssertionError("transfer jobs are still queued")


def order_of(started: dict[str, Any], shop: str) -> dict[str, Any]:
    return dict(next(o for o in started["orders"] if o["shop_handle"] == shop))


def seller_part(order: dict[str, Any], amount: int) -> int:
    """A refund's part that comes back from the seller: the refund less the fee given back."""
    fee = apply_rate(int(order["total"]), FEE_BPS)
    return amount - payments.share(fee, amount, int(order["total"]))


def made_but_never_answered(stand_in: StripeStandIn, account: str, down: int) -> None:
    """Stripe makes the next transfer to ``account`` but its answer is lost; then it does not
    answer the next ``down`` requests for that account."""
    stand_in.fail_next(
        "POST", "/v1/transfers", 500, after_doing_it=True, when={"destination": account}
    )
    stand_in.fail_next("POST", "/v1/transfers", 503, times=down, when={"destination": account})


async def reconciled(world: StripeWorld, order: dict[str, Any], account: str) -> int:
    """What the order owes the seller (its ledger), asserted to be what their account holds."""
    owed = sum((await order_ledger(world.ctx, order["id"])).values())
    assert held_at_stripe(world, account) == owed
    return owed


async def test_a_transfer_found_made_takes_back_the_part_of_a_refund_made_meanwhile(
    stripe: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    potter, account = sellers["xpotter-studio"], accounts["xpotter-studio"]
    mug_order = order_of(started, "xpotter-studio")
    made_but_never_answered(stand_in, account, ATTEMPTS - 1)
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.failure_code) == ("failed", "provider_unavailable")
    [made] = [t for t in stand_in.transfers.values() if t["destination"] == account]

    # The buyer gets part of it back meanwhile: nothing is taken from a transfer that failed.
    refunded = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={"amount": 1000}
    )
    assert refunded.json()["status"] == "succeeded", refunded.text
    refund_id = refunded.json()["id"]
    assert await reversal_rows(ctx) == []
    assert held_at_stripe(stripe, account) == share(mug_order)  # more than the order owes

    # The operator sends it again: Stripe had made it, so it is recorded, and the refund's
    # part is taken back from it under the key the refund would have used.
    retry = retry_command(stripe, monkeypatch)
    assert await asyncio.to_thread(retry, mug.id) == 0
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.provider_ref, mug.amount) == ("succeeded", made["id"], made["amount"])
    [reversal] = await reversal_rows(ctx)
    part = seller_part(mug_order, 1000)
    assert (reversal.refund_id, reversal.transfer_id, reversal.amount, reversal.status) == (
        UUID(refund_id),
        mug.id,
        part,
        "succeeded",
    )
    assert reversal.idempotency_key == f"reversal-{refund_id}"
    assert made["amount_reversed"] == part
    assert await reconciled(stripe, mug_order, account) == share(mug_order) - part

    # Once: the command again, and every job, take nothing more.
    assert await asyncio.to_thread(retry, mug.id) == 1
    await drain(ctx)
    assert len(made["reversals"]) == 1 and len(await reversal_rows(ctx)) == 1
    balance = (await client.get("/api/v1/shops/mine/balance", headers=potter.auth)).json()
    assert (balance["failed_transfers"], balance["failed_reversals"]) == ([], [])
    assert len(operator_mail(stripe)) == 1  # the transfer that failed; nothing since


async def test_after_a_whole_refund_the_retry_still_looks_for_the_transfer_first(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    # Both transfers go unanswered: the potter's had been made, the weaver's never was.
    made_but_never_answered(stand_in, accounts["xpotter-studio"], ATTEMPTS - 1)
    stand_in.fail_next(
        "POST",
        "/v1/transfers",
        503,
        times=ATTEMPTS,
        when={"destination": accounts["xweaver-studio"]},
    )
    await drain(ctx)
    rows = await transfer_rows(ctx)
    assert {(r.status, r.failure_code) for r in rows.values()} == {
        ("failed", "provider_unavailable")
    }
    # Both orders are refunded in full meanwhile: neither owes its seller anything now.
    for shop in ("xpotter-studio", "xweaver-studio"):
        whole = await client.post(
            f"/api/v1/orders/{order_of(started, shop)['id']}/refunds",
            headers=sellers[shop].auth,
            json={},
        )
        assert whole.json()["status"] == "succeeded", whole.text

    # The potter's was made: all of it is taken back. The weaver's was not: nothing to send.
    mug_order = order_of(started, "xpotter-studio")
    assert await payments.retry_transfer(ctx, rows[UUID(mug_order["id"])].id) == "succeeded"
    [reversal] = await reversal_rows(ctx)
    assert (reversal.amount, reversal.status) == (share(mug_order), "succeeded")
    assert await reconciled(stripe, mug_order, accounts["xpotter-studio"]) == 0
    rug_order = order_of(started, "xweaver-studio")
    with pytest.raises(payments.TransferNotRetryable):
        await payments.retry_transfer(ctx, rows[UUID(rug_order["id"])].id)
    assert await reconciled(stripe, rug_order, accounts["xweaver-studio"]) == 0
    assert len(stand_in.transfers) == 1


async def test_a_refund_made_while_the_transfer_was_pending_is_taken_back_once_it_is_found(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    potter, account = sellers["xpotter-studio"], accounts["xpotter-studio"]
    mug_order = order_of(started, "xpotter-studio")
    url = f"/api/v1/orders/{mug_order['id']}/refunds"
    # The reversal's job asks Stripe for its transfer too, so Stripe is down for longer.
    made_but_never_answered(stand_in, account, 4 * ATTEMPTS)
    assert sorted(await run_transfer_jobs(ctx)) == ["done", "queued"]

    # A refund while the transfer is still being tried: its reversal waits for the transfer,
    # and fails with it (there was nothing to take back from).
    first = await client.post(url, headers=potter.auth, json={"amount": 1000})
    assert first.json()["status"] == "succeeded", first.text
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.failure_code) == ("failed", "provider_unavailable")
    [stopped] = await reversal_rows(ctx)
    assert (stopped.status, stopped.failure_code) == ("failed", "transfer_failed")

    # A second refund after it failed, which then fails itself (the card was closed): it
    # reads as if it had not happened, so there is nothing of it to take back.
    second = await client.post(url, headers=potter.auth, json={"amount": 500})
    assert second.json()["status"] == "succeeded", second.text
    stripe_ref = next(r["id"] for r in stand_in.refunds.values() if r["amount"] == 500)
    await deliver(stripe, stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
    assert [r.id for r in await reversal_rows(ctx)] == [stopped.id]

    # Found made: the first refund's part is taken back, once, by a reversal of its own.
    assert await payments.retry_transfer(ctx, mug.id) == "succeeded"
    part = seller_part(mug_order, 1000)
    rows = await reversal_rows(ctx)
    assert [(r.refund_id, r.transfer_id, r.amount, r.status) for r in rows] == [
        (stopped.refund_id, mug.id, stopped.amount, "failed"),
        (UUID(first.json()["id"]), mug.id, part, "succeeded"),
    ]
    assert rows[1].idempotency_key == f"reversal-{first.json()['id']}-2"
    await drain(ctx)
    assert await reconciled(stripe, mug_order, account) == share(mug_order) - part
    [made] = [t for t in stand_in.transfers.values() if t["destination"] == account]
    assert len(made["reversals"]) == 1


async def test_a_transfer_found_made_for_what_the_order_owed_after_a_refund_takes_nothing(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    potter, account = sellers["xpotter-studio"], accounts["xpotter-studio"]
    mug_order = order_of(started, "xpotter-studio")
    # Stripe never hears of the first transfer at all.
    stand_in.fail_next("POST", "/v1/transfers", 503, times=ATTEMPTS, when={"destination": account})
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert mug.failure_code == "provider_unavailable" and stand_in.transfers.keys() != set()
    refunded = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={"amount": 1000}
    )
    assert refunded.json()["status"] == "succeeded", refunded.text
    owed = share(mug_order) - seller_part(mug_order, 1000)

    # The retry sends what the order owes now; Stripe makes it, but never answers.
    made_but_never_answered(stand_in, account, ATTEMPTS)
    assert await payments.retry_transfer(ctx, mug.id) == "pending"
    await drain(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.amount) == ("failed", owed)

    # Found made, for what the order owed after the refund: nothing is left to take back.
    assert await payments.retry_transfer(ctx, mug.id) == "succeeded"
    [made] = [t for t in stand_in.transfers.values() if t["destination"] == account]
    assert made["amount"] == owed
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.provider_ref, mug.retries) == ("succeeded", made["id"], 2)
    await drain(ctx)
    assert await reversal_rows(ctx) == []
    assert await reconciled(stripe, mug_order, account) == owed


async def test_an_answer_that_comes_after_the_transfer_failed_records_it_and_takes_back(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers = await paid_two_shops(stripe)
    potter, account = sellers["xpotter-studio"], accounts["xpotter-studio"]
    mug_order = order_of(started, "xpotter-studio")
    stand_in.fail_next(
        "POST", "/v1/transfers", 503, times=ATTEMPTS - 1, when={"destination": account}
    )
    for _ in range(ATTEMPTS - 1):
        await run_transfer_jobs(ctx)
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert mug.status == "pending"

    # One call for the transfer is on its way to Stripe while its job's last attempt goes
    # unanswered and fails it, and the buyer is refunded part of the order.
    pause = stand_in.pause_next("POST", "/v1/transfers")
    try:
        in_flight = asyncio.create_task(payments.execute_transfer(ctx, mug.id))
        assert await asyncio.to_thread(pause.arrived.wait, 10)
        stand_in.fail_next("POST", "/v1/transfers", 503, when={"destination": account})
        assert await run_transfer_jobs(ctx) == ["done"]
        mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
        assert (mug.status, mug.failure_code) == ("failed", "provider_unavailable")
        refunded = await client.post(
            f"/api/v1/orders/{mug_order['id']}/refunds",
            headers=potter.auth,
            json={"amount": 1000},
        )
        assert refunded.json()["status"] == "succeeded", refunded.text
        assert await reversal_rows(ctx) == []
    finally:
        pause.go.set()

    # Stripe makes it and answers: recorded made, and the refund's part is taken back.
    assert await in_flight == "succeeded"
    [made] = [t for t in stand_in.transfers.values() if t["destination"] == account]
    mug = (await transfer_rows(ctx))[UUID(mug_order["id"])]
    assert (mug.status, mug.provider_ref, mug.failure_code) == ("succeeded", made["id"], None)
    await drain(ctx)
    [reversal] = await reversal_rows(ctx)
    part = seller_part(mug_order, 1000)
    assert (reversal.amount, reversal.status, reversal.idempotency_key) == (
        part,
        "succeeded",
        f"reversal-{refunded.json()['id']}",
    )
    assert await reconciled(stripe, mug_order, account) == share(mug_order) - part
    balance = (await client.get("/api/v1/shops/mine/balance", headers=potter.auth)).json()
    assert balance["failed_transfers"] == []


async def test_a_restore_found_made_gives_back_what_a_later_refund_could_not_take(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers, transfers = await sent_transfers(stripe)
    weaver, account = sellers["xweaver-studio"], accounts["xweaver-studio"]
    rug_order, rug_transfer = order_of(started, "xweaver-studio"), transfers["xweaver-studio"]
    url = f"/api/v1/orders/{rug_order['id']}/refunds"
    first = await client.post(url, headers=weaver.auth, json={"amount": 1000})
    assert first.json()["status"] == "succeeded", first.text
    part = seller_part(rug_order, 1000)

    # The refund fails after all; its restore is made at Stripe, but never answered.
    made_but_never_answered(stand_in, account, ATTEMPTS - 1)
    [stripe_ref] = stand_in.refunds
    await deliver(stripe, stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
    await drain(ctx)
    [restore] = await restore_rows(ctx)
    assert (restore.status, restore.failure_code) == ("failed", "provider_unavailable")

    # The seller refunds the whole order: the transfer has only what the first refund left
    # of it to take back, and the restore is not known to have arrived.
    whole = await client.post(url, headers=weaver.auth, json={})
    assert whole.json()["status"] == "succeeded", whole.text
    assert rug_transfer["amount_reversed"] == rug_transfer["amount"]
    assert held_at_stripe(stripe, account) == part  # the restore's, which the seller keeps

    # The operator sends the restore again under its key: Stripe answers that it was made,
    # and what the whole refund could not take is taken back from it.
    assert await payments.retry_transfer(ctx, restore.id) == "succeeded"
    await drain(ctx)
    rug_row = (await transfer_rows(ctx))[UUID(rug_order["id"])]
    taken = [r for r in await reversal_rows(ctx) if str(r.refund_id) == whole.json()["id"]]
    assert [(r.transfer_id, r.amount, r.status, r.idempotency_key) for r in taken] == [
        (rug_row.id, share(rug_order) - part, "succeeded", f"reversal-{whole.json()['id']}"),
        (restore.id, part, "succeeded", f"reversal-{whole.json()['id']}-2"),
    ]
    assert await reconciled(stripe, rug_order, account) == 0
    restores_at_stripe = [
        t for t in stand_in.transfers.values() if t["metadata"].get("reversal_id")
    ]
    assert [t["amount_reversed"] for t in restores_at_stripe] == [part]


__all__ = ["stand_in", "stripe"]  # the fixtures, imported for these tests
