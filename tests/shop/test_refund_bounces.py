"""Refunds Stripe fails after they succeeded (the buyer's card was closed): the webhook that
says so undoes the refund once, however often and in whatever order Stripe's events come —
the payment's refunded total and claim, ledger rows that cancel the refund's own (so every
sum reads as before it), the seller's part taken back from their Stripe account given back
by a restore transfer (a reversal not yet made is stopped instead), one mail to the buyer
and one alert to the operator — and the seller can refund again. Against the local Stripe
stand-in, on both databases."""

from __future__ import annotations

import asyncio
from email.header import decode_header, make_header
from email.message import Message
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.money import apply_rate
from craftreel.shop import payments
from craftreel.shop.payments import LedgerEntry, Payment, PaymentTransfer
from tests.accounts.test_pages import Browser
from tests.conftest import Outbox
from tests.shop.test_payments import FEE_BPS, StripeWorld, stand_in
from tests.shop.test_refund_mail import body_of, gbp, refund_mails
from tests.shop.test_refund_settling import (
    money,
    paid_at_stripe,
    refund,
    stored_refund,
)
from tests.shop.test_transfers import (
    operator_mail,
    reversal_rows,
    run_transfer_jobs,
    sent_transfers,
    stripe,
    transfer_jobs,
    transfer_rows,
)
from tests.shop.test_views import text_of

BOUNCED = "did not go through"


def bounce_mails(outbox: Outbox, to: str) -> list[Message]:
    return [m for m in refund_mails(outbox, to) if str(m["Subject"]).endswith(BOUNCED)]


def made_mails(outbox: Outbox, to: str) -> list[Message]:
    return [m for m in refund_mails(outbox, to) if not str(m["Subject"]).endswith(BOUNCED)]


async def order_ledger(ctx: AppContext, order_id: str) -> dict[str, int]:
    """The order's ledger summed by kind."""
    async with ctx.sessions() as session:
        rows = await session.execute(
            select(LedgerEntry.kind, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.order_id == UUID(order_id))
            .group_by(LedgerEntry.kind)
        )
        return {kind: int(amount) for kind, amount in rows.all()}


async def the_payment(ctx: AppContext) -> Payment:
    async with ctx.sessions() as session:
        [payment] = (await session.scalars(select(Payment))).all()
        return payment


async def restore_rows(ctx: AppContext) -> list[PaymentTransfer]:
    async with ctx.sessions() as session:
        rows = await session.scalars(
            select(PaymentTransfer)
            .where(PaymentTransfer.kind == payments.TransferKind.RESTORE)
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
        )
        return list(rows.all())


async def deliver(world: StripeWorld, events: list[dict[str, Any]]) -> None:
    for event in events:
        assert (await world.deliver(event)).status_code == 200


def held_at_stripe(world: StripeWorld, account: str) -> int:
    """What a connected account holds from the platform: transferred less reversed."""
    return sum(
        t["amount"] - t["amount_reversed"]
        for t in world.stand_in.transfers.values()
        if t["destination"] == account
    )


async def test_a_refund_that_fails_after_succeeding_is_undone_once_in_any_event_order(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "bounceshop", "bouncebuyer")
    fee = payments.platform_fee(bought.total, FEE_BPS)
    answered = await refund(stripe, bought, amount=1200, reason="damaged")
    assert answered.json()["status"] == "succeeded", answered.text
    refund_id = answered.json()["id"]
    [stripe_ref] = stand_in.refunds
    made_events = [e for e in stand_in.events if e["data"]["object"].get("object") == "refund"]
    assert await order_ledger(ctx, bought.order_id) == {
        "sale": bought.total,
        "platform_fee": -fee,
        "refund": -1200,
        "fee_refund": payments.share(fee, 1200, bought.total),
    }
    assert len(made_mails(outbox, bought.buyer.email)) == 1

    # Days later Stripe fails it: the card was closed. refund.failed comes first, then every
    # event again newest first, then the refund's old "succeeded" event, late.
    bounced = stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card")
    assert [e["type"] for e in bounced] == [
        "charge.refund.updated",
        "refund.updated",
        "refund.failed",
    ]
    await deliver(stripe, [bounced[2], *reversed(bounced), *made_events])
    assert (await stripe.deliver(bounced[0])).json()["duplicate"] is True

    stored = await stored_refund(stripe, refund_id)
    assert (stored.status, stored.failure_code) == ("failed", "expired_or_canceled_card")
    assert stored.bounced_at is not None
    # The ledger reads as if the refund had not happened: what the order owes the seller is
    # their share again, and so is the balance.
    assert await order_ledger(ctx, bought.order_id) == {
        "sale": bought.total,
        "platform_fee": -fee,
        "refund": 0,
        "fee_refund": 0,
    }
    balance = await stripe.client.get("/api/v1/shops/mine/balance", headers=bought.seller.auth)
    assert balance.json()["balance"] == bought.total - fee
    payment = await the_payment(ctx)
    assert (payment.status, payment.amount_refunded, payment.amount_refund_claimed) == (
        "succeeded",
        0,
        0,
    )
    shown = await money(stripe, bought)
    assert (shown["refunded"], shown["refund_pending"], shown["refund_bounced"]) == (0, 0, 1200)
    assert shown["refundable"] == bought.total
    [listed] = shown["refunds"]
    assert (listed["status"], listed["failure"]) == (
        "failed",
        "the card has expired or was cancelled",
    )
    assert listed["bounced_at"] is not None

    # The buyer hears once that it did not reach them; the operator once, with what to check.
    [notice] = bounce_mails(outbox, bought.buyer.email)
    assert notice["Subject"] == "Your refund from bounceshop studio did not go through"
    text = body_of(notice)
    assert f"The refund of {gbp(1200)} that bounceshop studio made" in text
    assert "the card has expired or was cancelled" in text
    assert "Please contact bounceshop studio" in text and "/shop/bounceshop-studio" in text
    assert f"Refunded: {gbp(0)}" in text
    [alert] = operator_mail(stripe)
    assert f"Stripe moved refund {stripe_ref} from succeeded to failed" in alert
    assert refund_id in alert and "(expired_or_canceled_card)" in alert
    assert "destination charge" in alert and payment.destination is not None
    assert payment.destination in alert
    assert stand_in.calls("POST", "/v1/transfers") == []  # Stripe's own reversal: not ours

    # The seller refunds again (to another card of the buyer's, say): it is a refund like any.
    again = await refund(stripe, bought, amount=1200)
    assert again.status_code == 201 and again.json()["status"] == "succeeded", again.text
    shown = await money(stripe, bought)
    assert (shown["refunded"], shown["refund_bounced"]) == (1200, 1200)
    assert shown["refundable"] == bought.total - 1200
    after = await order_ledger(ctx, bought.order_id)
    assert (after["refund"], after["fee_refund"]) == (
        -1200,
        payments.share(fee, 1200, bought.total),
    )
    await deliver(stripe, bounced)
    assert len(made_mails(outbox, bought.buyer.email)) == 2
    assert len(bounce_mails(outbox, bought.buyer.email)) == 1
    assert len(operator_mail(stripe)) == 1


async def test_a_refund_that_fails_before_its_success_arrives_moved_nothing(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in = stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "earlyfail", "earlyfailbuyer")
    ledger_before = await order_ledger(ctx, bought.order_id)
    stand_in.hold_refunds = True
    answered = await refund(stripe, bought)
    assert answered.json()["status"] == "pending"
    [stripe_ref] = stand_in.refunds
    # It succeeds, then fails, at Stripe; the failure's events arrive before the success's.
    made = stand_in.settle_refund(stripe_ref, "succeeded")
    bounced = stand_in.bounce_refund(stripe_ref, "lost_or_stolen_card")
    await deliver(stripe, [*bounced, *made])

    stored = await stored_refund(stripe, answered.json()["id"])
    assert (stored.status, stored.failure_code, stored.bounced_at) == (
        "failed",
        "lost_or_stolen_card",
        None,
    )
    # As far as we are concerned no money moved: nothing to undo, no one to tell.
    assert await order_ledger(ctx, bought.order_id) == ledger_before
    assert refund_mails(outbox, bought.buyer.email) == []
    assert operator_mail(stripe) == []
    shown = await money(stripe, bought)
    assert (shown["refundable"], shown["refunded"], shown["refund_bounced"]) == (
        bought.total,
        0,
        0,
    )


async def test_the_sellers_part_taken_back_is_given_back_once_and_taken_again_later(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers, transfers = await sent_transfers(stripe)
    weaver, rug_transfer = sellers["xweaver-studio"], transfers["xweaver-studio"]
    account = accounts["xweaver-studio"]
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "xweaver-studio")
    total, fee = rug_order["total"], apply_rate(rug_order["total"], FEE_BPS)
    seller_share = total - fee
    url = f"/api/v1/orders/{rug_order['id']}/refunds"
    part = await client.post(url, headers=weaver.auth, json={"amount": 1000})
    assert part.json()["status"] == "succeeded", part.text
    [reversal] = await reversal_rows(ctx)
    assert reversal.status == "succeeded"
    assert reversal.amount == 1000 - payments.share(fee, 1000, total)

    # The refund fails after all; its events come twice, newest first.
    [stripe_ref] = stand_in.refunds
    bounced = stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card")
    await deliver(stripe, [*reversed(bounced), *bounced])
    [restore] = await restore_rows(ctx)
    assert (restore.status, restore.amount, restore.transfer_id) == (
        "pending",
        reversal.amount,
        reversal.id,
    )
    assert set(await run_transfer_jobs(ctx)) == {"done"}  # the reversal's, and the restore's

    # Given back to the seller's account, from the platform's balance, once.
    [(form, headers)] = stand_in.calls("POST", "/v1/transfers")[2:]
    assert (form["destination"], form["amount"]) == (account, str(reversal.amount))
    assert headers["idempotency-key"] == f"restore-{reversal.id}"
    assert "source_transaction" not in form
    assert form["metadata[reversal_id]"] == str(reversal.id)
    [restore] = await restore_rows(ctx)
    assert restore.status == "succeeded"
    # What the order owes the seller (its ledger) is what their Stripe account holds for it.
    assert sum((await order_ledger(ctx, rug_order["id"])).values()) == seller_share
    assert held_at_stripe(stripe, account) == seller_share
    await deliver(stripe, bounced)
    await run_transfer_jobs(ctx)
    assert len(stand_in.calls("POST", "/v1/transfers")) == 3
    assert len(await restore_rows(ctx)) == 1

    # The seller refunds the whole order: its transfer has less left to take back than that,
    # so the rest comes back from the restore.
    whole = await client.post(url, headers=weaver.auth, json={})
    assert whole.json()["status"] == "succeeded" and whole.json()["amount"] == total
    rug_row = (await transfer_rows(ctx))[UUID(rug_order["id"])]
    second = [r for r in await reversal_rows(ctx) if str(r.refund_id) == whole.json()["id"]]
    assert [(r.transfer_id, r.amount, r.status, r.idempotency_key) for r in second] == [
        (rug_row.id, seller_share - reversal.amount, "succeeded", f"reversal-{whole.json()['id']}"),
        (restore.id, reversal.amount, "succeeded", f"reversal-{whole.json()['id']}-2"),
    ]
    assert rug_transfer["amount_reversed"] == rug_transfer["amount"]
    assert held_at_stripe(stripe, account) == 0
    assert sum((await order_ledger(ctx, rug_order["id"])).values()) == 0
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert (balance["failed_transfers"], balance["failed_reversals"]) == ([], [])
    assert len(operator_mail(stripe)) == 1  # the bounce


async def test_a_refused_reversal_is_stopped_when_its_refund_fails_after_all(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers, transfers = await sent_transfers(stripe)
    weaver, rug_transfer = sellers["xweaver-studio"], transfers["xweaver-studio"]
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "xweaver-studio")
    seller_share = rug_order["total"] - apply_rate(rug_order["total"], FEE_BPS)
    path = f"/v1/transfers/{rug_transfer['id']}/reversals"
    stand_in.fail_next("POST", path, 400, "balance_insufficient")
    refunded = await client.post(
        f"/api/v1/orders/{rug_order['id']}/refunds", headers=weaver.auth, json={"amount": 1500}
    )
    assert refunded.json()["status"] == "succeeded"
    [reversal] = await reversal_rows(ctx)
    assert (reversal.status, reversal.failure_code) == ("failed", "balance_insufficient")

    [stripe_ref] = stand_in.refunds
    await deliver(stripe, stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
    # Stopped: not listed to the seller, not to be sent again.
    [reversal] = await reversal_rows(ctx)
    assert (reversal.status, reversal.failure_code) == ("failed", "refund_failed")
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert balance["failed_reversals"] == []
    with pytest.raises(payments.TransferNotRetryable):
        await payments.retry_transfer(ctx, reversal.id)
    # Its restore looks at Stripe a while later (a call in flight would have landed by then)
    # and finds nothing was taken: nothing to give back, no one to tell.
    [restore] = await restore_rows(ctx)
    [job] = [j for j in await transfer_jobs(ctx) if j.payload["transfer_id"] == str(restore.id)]
    assert job.run_at > utcnow()
    await run_transfer_jobs(ctx)
    [restore] = await restore_rows(ctx)
    assert (restore.status, restore.failure_code) == ("failed", "reversal_not_made")
    assert len(stand_in.calls("GET", path)) == 1
    assert len(stand_in.calls("POST", "/v1/transfers")) == 2  # the two sales only
    with pytest.raises(payments.TransferNotRetryable):
        await payments.retry_transfer(ctx, restore.id)
    balance = (await client.get("/api/v1/shops/mine/balance", headers=weaver.auth)).json()
    assert balance["failed_transfers"] == []
    assert sum((await order_ledger(ctx, rug_order["id"])).values()) == seller_share
    assert held_at_stripe(stripe, accounts["xweaver-studio"]) == seller_share
    alerts = operator_mail(stripe)
    assert len(alerts) == 2  # the refused reversal, then the bounce
    assert "had not been done: it is stopped" in alerts[1]


async def test_a_reversal_in_flight_when_its_refund_fails_is_given_back_if_it_landed(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    started, accounts, sellers, transfers = await sent_transfers(stripe)
    potter, mug_transfer = sellers["xpotter-studio"], transfers["xpotter-studio"]
    account = accounts["xpotter-studio"]
    mug_order = next(o for o in started["orders"] if o["shop_handle"] == "xpotter-studio")
    seller_share = mug_order["total"] - apply_rate(mug_order["total"], FEE_BPS)
    path = f"/v1/transfers/{mug_transfer['id']}/reversals"
    # Stripe is down when the refund is made: the reversal waits for its job.
    stand_in.fail_next("POST", path, 503)
    first = await client.post(
        f"/api/v1/orders/{mug_order['id']}/refunds", headers=potter.auth, json={"amount": 600}
    )
    assert first.json()["status"] == "succeeded"
    [reversal] = await reversal_rows(ctx)
    assert reversal.status == "pending"

    # The reversal is on its way to Stripe when the refund's failure arrives.
    pause = stand_in.pause_next("POST", path)
    try:
        in_flight = asyncio.create_task(payments.execute_transfer(ctx, reversal.id))
        assert await asyncio.to_thread(pause.arrived.wait, 10)
        [stripe_ref] = stand_in.refunds
        await deliver(stripe, stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
        [reversal] = await reversal_rows(ctx)
        assert (reversal.status, reversal.failure_code) == ("failed", "refund_failed")
        # Its restore looks before the reversal has landed: nothing to give back yet. The
        # reversal's own job asks nothing more.
        await run_transfer_jobs(ctx)
        [restore] = await restore_rows(ctx)
        assert (restore.status, restore.failure_code) == ("failed", "reversal_not_made")
        assert len(stand_in.calls("POST", path)) == 1  # the 503
    finally:
        pause.go.set()
    # Stripe makes it after all: recorded, and its restore runs again and gives it back.
    assert await in_flight == "succeeded"
    [made] = mug_transfer["reversals"]
    [reversal] = await reversal_rows(ctx)
    assert (reversal.status, reversal.provider_ref) == ("succeeded", made["id"])
    [restore] = await restore_rows(ctx)
    assert restore.status == "pending"
    assert await run_transfer_jobs(ctx) == ["done"]
    [restore] = await restore_rows(ctx)
    assert restore.status == "succeeded"
    [(form, _)] = stand_in.calls("POST", "/v1/transfers")[2:]
    assert form["amount"] == str(reversal.amount)
    assert held_at_stripe(stripe, account) == seller_share
    assert sum((await order_ledger(ctx, mug_order["id"])).values()) == seller_share
    assert len(operator_mail(stripe)) == 1


async def test_the_order_pages_say_a_refund_did_not_go_through(stripe: StripeWorld) -> None:
    stand_in = stripe.stand_in
    bought = await paid_at_stripe(stripe, "pageshop", "pagebuyer")
    # The buyer cancels before shipping: the whole order is refunded, then the refund fails.
    cancelled = await stripe.client.post(
        f"/api/v1/orders/{bought.order_id}/cancel", headers=bought.buyer.auth
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "succeeded"
    [stripe_ref] = stand_in.refunds
    await deliver(stripe, stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
    total = gbp(bought.total)

    async def page(person_email: str, path: str, ip: str) -> str:
        transport = httpx.ASGITransport(app=stripe.app, client=(ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
            browser = Browser(web)
            assert (await browser.sign_in(person_email)).status_code == 303
            return text_of(await browser.get(path))

    buyer_page = await page(bought.buyer.email, f"/orders/{bought.order_id}", "203.0.113.71")
    assert "Cancelled." in buyer_page
    assert "Anything paid for this order is refunded" not in buyer_page
    assert (
        f"A refund did not go through. {total} that pageshop studio refunded did not reach "
        "your card after all, so it was not returned to you." in buyer_page
    )
    seller_page = await page(bought.seller.email, f"/sell/orders/{bought.order_id}", "203.0.113.72")
    assert f"A refund did not go through. {total} you refunded did not reach" in seller_page
    assert f"{total} · did not reach the buyer’s card" in seller_page
    assert "The card has expired or was cancelled" in seller_page
    assert f"Left to refund {total}" in seller_page
    seller_order = await page(bought.seller.email, f"/orders/{bought.order_id}", "203.0.113.73")
    assert "It is back in your balance" in seller_order

    # The seller refunds it again: the buyer's page says so.
    again = await refund(stripe, bought)
    assert again.json()["status"] == "succeeded"
    buyer_page = await page(bought.buyer.email, f"/orders/{bought.order_id}", "203.0.113.74")
    assert f"{total} is refunded to your card." in buyer_page


async def page_text(world: StripeWorld, person_email: str, path: str, ip: str) -> str:
    """A page as a signed-in person sees it, as text."""
    transport = httpx.ASGITransport(app=world.app, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
        browser = Browser(web)
        assert (await browser.sign_in(person_email)).status_code == 303
        return text_of(await browser.get(path))


def seller_bounce_mails(outbox: Outbox, to: str) -> list[Message]:
    return [
        m
        for m in outbox.messages()
        if str(m["To"]) == to and str(m["Subject"]).startswith("A refund of")
    ]


async def test_the_seller_is_mailed_once_that_the_orders_money_is_theirs_again(
    stripe: StripeWorld,
) -> None:
    ctx, stand_in, client = stripe.ctx, stripe.stand_in, stripe.client
    outbox = Outbox(ctx.settings.mail_dir)
    started, accounts, sellers, _ = await sent_transfers(stripe)
    weaver = sellers["xweaver-studio"]
    rug_order = next(o for o in started["orders"] if o["shop_handle"] == "xweaver-studio")
    fee = apply_rate(rug_order["total"], FEE_BPS)
    part = 1000 - payments.share(fee, 1000, rug_order["total"])
    refunded = await client.post(
        f"/api/v1/orders/{rug_order['id']}/refunds", headers=weaver.auth, json={"amount": 1000}
    )
    assert refunded.json()["status"] == "succeeded", refunded.text
    assert seller_bounce_mails(outbox, weaver.email) == []

    # The refund fails after all; its events come twice, and a late "succeeded" too.
    [stripe_ref] = stand_in.refunds
    made = [e for e in stand_in.events if e["data"]["object"].get("object") == "refund"]
    bounced = stand_in.bounce_refund(stripe_ref, "lost_or_stolen_card")
    await deliver(stripe, [*bounced, *reversed(bounced), *made])

    [mail] = seller_bounce_mails(outbox, weaver.email)
    subject = str(make_header(decode_header(mail["Subject"])))
    assert subject == f"A refund of {gbp(1000)} to xbuyer did not go through"
    text = body_of(mail)
    assert f"The refund of {gbp(1000)} you made to xbuyer did not reach their card" in text
    assert "the card was reported lost or stolen" in text
    assert (
        f"The order's money is yours again: {gbp(part)} is back in your balance, and the "
        f"{gbp(part)} taken back from your Stripe account for it is being sent back there." in text
    )
    assert f"/sell/orders/{rug_order['id']}" in text
    # Only the seller whose order it was; the buyer has their own mail.
    assert seller_bounce_mails(outbox, sellers["xpotter-studio"].email) == []
    assert len(bounce_mails(outbox, "xbuyer@example.org")) == 1
    assert accounts["xweaver-studio"]


async def test_a_destination_charges_seller_is_told_the_money_is_back_in_their_balance(
    stripe: StripeWorld,
) -> None:
    outbox = Outbox(stripe.ctx.settings.mail_dir)
    bought = await paid_at_stripe(stripe, "destshop", "destbuyer")
    fee = payments.platform_fee(bought.total, FEE_BPS)
    answered = await refund(stripe, bought, amount=800)
    assert answered.json()["status"] == "succeeded", answered.text
    [stripe_ref] = stripe.stand_in.refunds
    await deliver(stripe, stripe.stand_in.bounce_refund(stripe_ref, "expired_or_canceled_card"))
    [mail] = seller_bounce_mails(outbox, bought.seller.email)
    text = body_of(mail)
    back = 800 - payments.share(fee, 800, bought.total)
    assert f"The order's money is yours again: {gbp(back)} is back in your balance." in text
    assert "Stripe account" not in text


async def test_the_did_not_go_through_note_shows_until_the_seller_refunds_it_again(
    stripe: StripeWorld,
) -> None:
    stand_in = stripe.stand_in
    bought = await paid_at_stripe(stripe, "noteshop", "notebuyer")
    order_path = f"/orders/{bought.order_id}"
    note = "A refund did not go through."

    def stripe_ref_of(answered: httpx.Response) -> str:
        refund_id = answered.json()["id"]
        return next(
            r["id"] for r in stand_in.refunds.values() if r["metadata"]["refund_id"] == refund_id
        )

    # A refund for one thing, then another that fails after all: the first, made before the
    # failure was known, answers none of it.
    assert (await refund(stripe, bought, amount=500)).json()["status"] == "succeeded"
    failed = await refund(stripe, bought, amount=1200)
    assert failed.json()["status"] == "succeeded", failed.text
    await deliver(stripe, stand_in.bounce_refund(stripe_ref_of(failed), "lost_or_stolen_card"))
    shown = await money(stripe, bought)
    assert (shown["refund_bounced"], shown["refund_bounced_open"]) == (1200, 1200)
    buyer_page = await page_text(stripe, bought.buyer.email, order_path, "203.0.113.81")
    assert f"{note} {gbp(1200)} that noteshop studio refunded did not reach" in buyer_page

    # The seller refunds it again in two pieces: the note says what is still open, then goes.
    assert (await refund(stripe, bought, amount=700)).json()["status"] == "succeeded"
    assert (await money(stripe, bought))["refund_bounced_open"] == 500
    seller_page = await page_text(
        stripe, bought.seller.email, f"/sell/orders/{bought.order_id}", "203.0.113.82"
    )
    assert f"{note} {gbp(500)} you refunded did not reach" in seller_page
    last = await refund(stripe, bought, amount=500)
    assert last.json()["status"] == "succeeded", last.text
    shown = await money(stripe, bought)
    assert (shown["refund_bounced"], shown["refund_bounced_open"]) == (1200, 0)
    for person, path, ip in (
        (bought.buyer.email, order_path, "203.0.113.83"),
        (bought.seller.email, f"/sell/orders/{bought.order_id}", "203.0.113.84"),
        (bought.seller.email, order_path, "203.0.113.85"),
    ):
        page = await page_text(stripe, person, path, ip)
        assert note not in page, path
    buyer_page = await page_text(stripe, bought.buyer.email, order_path, "203.0.113.86")
    assert f"{gbp(500 + 700 + 500)} is refunded to your card." in buyer_page
    # The list of refunds still tells what happened.
    seller_page = await page_text(
        stripe, bought.seller.email, f"/sell/orders/{bought.order_id}", "203.0.113.87"
    )
    assert f"{gbp(1200)} · did not reach the buyer’s card" in seller_page

    # The last of those fails too: the note is back, for what it left open.
    await deliver(stripe, stand_in.bounce_refund(stripe_ref_of(last), "expired_or_canceled_card"))
    assert (await money(stripe, bought))["refund_bounced_open"] == 500
    buyer_page = await page_text(stripe, bought.buyer.email, order_path, "203.0.113.88")
    assert f"{note} {gbp(500)} that noteshop studio refunded did not reach" in buyer_page


async def test_a_cancelled_order_refunded_and_more_on_its_way_says_whose_card(
    stripe: StripeWorld,
) -> None:
    bought = await paid_at_stripe(stripe, "waitshop", "waitbuyer")
    assert (await refund(stripe, bought, amount=1000)).json()["status"] == "succeeded"
    stripe.stand_in.hold_refunds = True
    cancelled = await stripe.client.post(
        f"/api/v1/orders/{bought.order_id}/cancel", headers=bought.seller.auth
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "pending"
    rest = gbp(bought.total - 1000)
    path = f"/orders/{bought.order_id}"
    seller_page = await page_text(stripe, bought.seller.email, path, "203.0.113.91")
    assert (
        f"Cancelled. {gbp(1000)} is refunded to the buyer’s card, and {rest} more is on its way."
        in seller_page
    )
    assert "your card" not in seller_page
    buyer_page = await page_text(stripe, bought.buyer.email, path, "203.0.113.92")
    assert (
        f"Cancelled. {gbp(1000)} is refunded to your card, and {rest} more is on its way."
        in buyer_page
    )


__all__ = ["stand_in", "stripe"]  # the fixtures, imported for these tests
