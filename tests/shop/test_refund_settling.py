"""Refunds Stripe answers ``pending``: the reconcile job looks at them (GET, never a second
POST that Stripe would answer from its key with the same ``pending``), and ``refund.updated``
/ ``charge.refund.updated`` webhooks settle them — once, in any order, never backwards. One
that succeeds writes the ledger and mails the buyer once; one that fails or is cancelled gives
its amount back to refund again and writes nothing. And a Stripe key that is wrong (401) or may
not do something (403) fails at once and tells the operator. Against the local Stripe stand-in.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest

from craftreel.shop import payments
from craftreel.shop.payments import Refund
from tests.conftest import Outbox
from tests.shop.test_payments import (
    Purchase,
    StripeStandIn,
    StripeWorld,
    ledger,
    make_due,
    onboard,
    purchase,
    queued,
    run_jobs,
)
from tests.shop.test_refund_mail import body_of, gbp, refund_mails
from tests.shop.test_transfers import (
    operator_mail,
    paid_two_shops,
    run_transfer_jobs,
    stand_in,
    stripe,
    transfer_rows,
)


async def paid_at_stripe(world: StripeWorld, shop: str, buyer: str) -> Purchase:
    """One onboarded shop and a buyer's checkout paid by destination charge, settled."""
    bought = await purchase(world.client, shop, buyer, price=3000)
    await onboard(world, bought.seller)
    paid = await world.client.post(
        f"/api/v1/checkouts/{bought.checkout_id}/payments",
        headers={**bought.buyer.auth, "Idempotency-Key": f"pay-{buyer}"},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )
    assert paid.status_code == 201, paid.text
    for event in world.stand_in.events_of("payment_intent.succeeded"):
        assert (await world.deliver(event)).status_code == 200
    return bought


async def refund(world: StripeWorld, bought: Purchase, **body: Any) -> httpx.Response:
    return await world.client.post(
        f"/api/v1/orders/{bought.order_id}/refunds", headers=bought.seller.auth, json=body
    )


async def money(world: StripeWorld, bought: Purchase) -> dict[str, Any]:
    response = await world.client.get(
        f"/api/v1/shops/mine/orders/{bought.order_id}/money", headers=bought.seller.auth
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def refund_kinds(rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(kind, amount) for kind, amount in rows if kind in ("refund", "fee_refund")]


async def stored_refund(world: StripeWorld, refund_id: str) -> Refund:
    async with world.ctx.sessions() as session:
        found = await session.get(Refund, UUID(refund_id))
        assert found is not None
        return found


async def test_a_pending_refund_is_looked_at_until_it_succeeds_then_mails_once(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "pendingshop", "pendingbuyer")
    stand_in.hold_refunds = True

    answered = await refund(stripe, bought, amount=1200, reason="damaged")
    assert answered.status_code == 201, answered.text
    assert answered.json()["status"] == "pending"
    [stripe_ref] = stand_in.refunds
    # Pending: set aside on the order, nothing in the ledger, no mail yet.
    shown = await money(stripe, bought)
    assert (shown["refund_pending"], shown["refunded"], shown["refundable"]) == (
        1200,
        0,
        bought.total - 1200,
    )
    assert refund_kinds(await ledger(ctx)) == []
    assert refund_mails(outbox, bought.buyer.email) == []

    # The reconcile job looks at the refund at Stripe; still pending, it looks again later.
    await make_due(ctx, payments.RECONCILE_REFUND)
    await run_jobs(ctx)
    assert len(stand_in.calls("GET", f"/v1/refunds/{stripe_ref}")) == 1
    [next_round] = await queued(ctx, payments.RECONCILE_REFUND)
    assert next_round.payload["round"] == 1

    # Stripe settles it, and its webhooks are lost: the next look finds it succeeded.
    stand_in.settle_refund(stripe_ref, "succeeded")
    await make_due(ctx, payments.RECONCILE_REFUND)
    await run_jobs(ctx)
    assert (await stored_refund(stripe, answered.json()["id"])).status == "succeeded"
    assert await queued(ctx, payments.RECONCILE_REFUND) == []
    # Stripe was asked to make it once; after that it was only looked at.
    assert len(stand_in.calls("POST", "/v1/refunds")) == 1
    assert len(stand_in.calls("GET", f"/v1/refunds/{stripe_ref}")) == 2
    fee = payments.platform_fee(bought.total, 1000)
    assert refund_kinds(await ledger(ctx)) == [
        ("refund", -1200),
        ("fee_refund", payments.share(fee, 1200, bought.total)),
    ]
    [notice] = refund_mails(outbox, bought.buyer.email)
    assert f"has refunded {gbp(1200)}" in body_of(notice)

    # The webhooks turn up late, repeated and in any order: nothing moves, nothing is mailed.
    events = [e for e in stand_in.events if e["data"]["object"].get("object") == "refund"]
    assert {e["type"] for e in events} >= {"refund.updated", "charge.refund.updated"}
    for event in [*reversed(events), *events]:
        assert (await stripe.deliver(event)).status_code == 200
    await payments.reconcile_refund(ctx, UUID(answered.json()["id"]), 3)
    assert len(refund_mails(outbox, bought.buyer.email)) == 1
    assert len(refund_kinds(await ledger(ctx))) == 2
    shown = await money(stripe, bought)
    assert (shown["refund_pending"], shown["refunded"]) == (0, 1200)


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
async def test_a_pending_refund_that_fails_gives_its_amount_back_whatever_the_event_order(
    stripe: StripeWorld, outcome: str
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, f"{outcome}shop", f"{outcome}buyer")
    ledger_before = await ledger(ctx)
    stand_in.hold_refunds = True
    answered = await refund(stripe, bought)  # the whole order
    assert answered.json()["status"] == "pending"
    assert (await money(stripe, bought))["refundable"] == 0
    [stripe_ref] = stand_in.refunds
    [created] = stand_in.events_of("refund.created")

    reason = "expired_or_canceled_card" if outcome == "failed" else None
    settled = stand_in.settle_refund(stripe_ref, outcome, reason)
    updated = [e for e in settled if e["type"] in ("refund.updated", "charge.refund.updated")]
    assert len(updated) == 2
    # refund.updated first, then charge.refund.updated, each twice, and the stale
    # refund.created (pending) last: settled once, never moved back.
    for event in [updated[1], updated[0], *settled, created]:
        assert (await stripe.deliver(event)).status_code == 200
    assert (await stripe.deliver(updated[0])).json()["duplicate"] is True

    stored = await stored_refund(stripe, answered.json()["id"])
    assert stored.status == "failed" and stored.provider_ref == stripe_ref
    assert stored.failure_code == (reason or "canceled")
    # No money moved: no ledger row, no mail; the whole order can be refunded again.
    assert await ledger(ctx) == ledger_before
    assert refund_mails(outbox, bought.buyer.email) == []
    shown = await money(stripe, bought)
    assert (shown["refundable"], shown["refund_pending"], shown["refunded"]) == (
        bought.total,
        0,
        0,
    )
    await make_due(ctx, payments.RECONCILE_REFUND)
    await run_jobs(ctx)
    assert stand_in.calls("GET", f"/v1/refunds/{stripe_ref}") == []  # settled: not looked at

    stand_in.hold_refunds = False
    again = await refund(stripe, bought)
    assert again.status_code == 201 and again.json()["status"] == "succeeded", again.text
    assert (await money(stripe, bought))["refunded"] == bought.total
    assert len(refund_mails(outbox, bought.buyer.email)) == 1


async def test_a_refund_whose_answer_was_lost_is_settled_by_its_webhook(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "lostrefundshop", "lostrefundbuyer")
    stand_in.hold_refunds = True
    # Stripe makes the refund but its answer never arrives.
    stand_in.fail_next("POST", "/v1/refunds", 500, after_doing_it=True)
    lost = await refund(stripe, bought, amount=700)
    assert lost.status_code == 502
    assert lost.json()["error"]["code"] == "payment_provider_unavailable"
    [pending] = await queued(ctx, payments.RECONCILE_REFUND)
    refund_id = pending.payload["refund_id"]
    assert (await stored_refund(stripe, refund_id)).provider_ref is None
    assert (await money(stripe, bought))["refund_pending"] == 700

    # It succeeds at Stripe; its webhook finds our refund by the id in its metadata.
    [stripe_ref] = stand_in.refunds
    assert stand_in.refunds[stripe_ref]["metadata"] == {"refund_id": refund_id}
    events = stand_in.settle_refund(stripe_ref, "succeeded")
    [charge_refund_updated] = [e for e in events if e["type"] == "charge.refund.updated"]
    assert (await stripe.deliver(charge_refund_updated)).status_code == 200
    stored = await stored_refund(stripe, refund_id)
    assert (stored.status, stored.provider_ref) == ("succeeded", stripe_ref)
    assert [kind for kind, _ in refund_kinds(await ledger(ctx))] == ["refund", "fee_refund"]
    assert len(refund_mails(outbox, bought.buyer.email)) == 1

    # The reconcile job finds nothing to do, and Stripe is never asked to make it again.
    await make_due(ctx, payments.RECONCILE_REFUND)
    await run_jobs(ctx)
    assert len(stand_in.calls("POST", "/v1/refunds")) == 1
    assert len(refund_mails(outbox, bought.buyer.email)) == 1
    # A refund event for a refund that is not ours is recorded and changes nothing.
    stranger = dict(charge_refund_updated, id="evt_not_ours")
    stranger["data"] = {"object": dict(events[-1]["data"]["object"], id="re_not_ours")}
    stranger["data"]["object"]["metadata"] = {}
    assert (await stripe.deliver(stranger)).status_code == 200
    assert len(refund_kinds(await ledger(ctx))) == 2


async def test_a_refund_pending_after_every_look_is_left_to_its_webhook_and_alerts(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    bought = await paid_at_stripe(stripe, "slowshop", "slowbuyer")
    stand_in.hold_refunds = True
    answered = await refund(stripe, bought, amount=900)
    refund_id = UUID(answered.json()["id"])
    # The looks thin out (doubling, up to a day) …
    every = payments.PaymentSettings.from_settings(ctx.settings).reconcile_after
    waits = [
        payments.refund_reconcile_wait(n, every) for n in range(1, payments.REFUND_RECONCILE_ROUNDS)
    ]
    assert waits == sorted(waits) and waits[0] == waits[payments.RECONCILE_ROUNDS - 2]
    assert waits[-1].days == 1 and sum(w.total_seconds() for w in waits) > 10 * 86400
    # … and after the last one the operator is told, and no more are queued.
    await payments.reconcile_refund(ctx, refund_id, payments.REFUND_RECONCILE_ROUNDS - 1)
    [stripe_ref] = stand_in.refunds
    [alert] = operator_mail(stripe)
    assert f"Stripe still shows refund {stripe_ref} as pending" in alert
    assert str(refund_id) in alert
    assert [j.payload["round"] for j in await queued(ctx, payments.RECONCILE_REFUND)] == [0]
    # The webhook still settles it.
    for event in stand_in.settle_refund(stripe_ref, "succeeded"):
        assert (await stripe.deliver(event)).status_code == 200
    assert (await money(stripe, bought))["refunded"] == 900


async def test_a_wrong_stripe_key_fails_transfers_at_once_and_tells_the_operator(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    await paid_two_shops(stripe)
    # The key was rolled at Stripe: every call we make is answered 401.
    stand_in.api_key = "sk_test_rolled"

    assert await run_transfer_jobs(ctx) == ["done", "done"]  # not retried
    assert await run_transfer_jobs(ctx) == []
    rows = await transfer_rows(ctx)
    assert {(r.status, r.failure_code) for r in rows.values()} == {
        ("failed", "authentication_failed")
    }
    alerts = operator_mail(stripe)
    assert len(alerts) == 2
    assert all("Stripe did not accept the platform's API key" in a for a in alerts)
    assert stand_in.transfers == {}

    # The operator fixes the key and sends them again.
    stand_in.api_key = StripeStandIn.api_key
    for row in rows.values():
        assert await payments.retry_transfer(ctx, row.id) == "succeeded"
    assert len(stand_in.transfers) == 2
    assert len(operator_mail(stripe)) == 2


async def test_a_key_without_permission_fails_a_transfer_at_once(stripe: StripeWorld) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    await paid_two_shops(stripe)
    stand_in.fail_next("POST", "/v1/transfers", 403, times=2)
    assert await run_transfer_jobs(ctx) == ["done", "done"]
    rows = await transfer_rows(ctx)
    assert {(r.status, r.failure_code) for r in rows.values()} == {("failed", "permission_denied")}
    assert all("may not do this" in alert for alert in operator_mail(stripe))


async def test_a_wrong_stripe_key_refuses_a_refund_and_payment_at_once(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "keyshop", "keybuyer")
    ledger_before = await ledger(ctx)
    stand_in.api_key = "sk_test_rolled"

    refused = await refund(stripe, bought, amount=500)
    assert refused.status_code == 201, refused.text
    assert (refused.json()["status"], refused.json()["failure_code"]) == (
        "failed",
        "authentication_failed",
    )
    [alert] = operator_mail(stripe)
    assert "CRAFTREEL_STRIPE_SECRET_KEY" in alert and refused.json()["id"] in alert
    assert await ledger(ctx) == ledger_before
    assert refund_mails(outbox, bought.buyer.email) == []
    assert (await money(stripe, bought))["refundable"] == bought.total

    # A buyer paying meanwhile is told the payment service is unavailable.
    other = await purchase(stripe.client, "keyshop2", "keybuyer2")
    stand_in.api_key = StripeStandIn.api_key
    await onboard(stripe, other.seller)
    stand_in.api_key = "sk_test_rolled"
    paying = await stripe.client.post(
        f"/api/v1/checkouts/{other.checkout_id}/payments",
        headers={**other.buyer.auth, "Idempotency-Key": "k"},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )
    assert paying.status_code == 502
    assert paying.json()["error"]["code"] == "payment_provider_auth_failed"

    stand_in.api_key = StripeStandIn.api_key
    again = await refund(stripe, bought, amount=500)
    assert again.json()["status"] == "succeeded"
    assert len(refund_mails(outbox, bought.buyer.email)) == 1


__all__ = ["stand_in", "stripe"]  # the fixtures, imported for these tests
