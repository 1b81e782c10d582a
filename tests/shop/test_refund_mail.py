"""The buyer hears of each refund once: by the seller (in full or in part, with a reason), by
cancelling before shipping, or automatically — never for a refund that failed, and never twice
however often the refund job or the provider's webhook comes again."""

from __future__ import annotations

from email.message import Message
from uuid import UUID

import httpx
from sqlalchemy import select, update

from craftreel.config import Settings
from craftreel.context import AppContext
from craftreel.shop import payments
from craftreel.shop.payments import Refund, TestProviderIntent
from craftreel.shop.prices import format_price
from tests.conftest import Outbox
from tests.shop.test_payments import (
    StripeWorld,
    api,
    onboard,
    paid_purchase,
    purchase,
    queued,
    run_jobs,
    signed_test_event,
    stand_in,
    stripe,
)

REFUND_SUBJECT = "Your refund from {shop}"


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def refund_mails(outbox: Outbox, to: str) -> list[Message]:
    return [
        m
        for m in outbox.messages()
        if str(m["To"]) == to
        and str(m["Subject"]).startswith(("Your refund", "Your Craftreel payment was"))
    ]


def gbp(minor: int) -> str:
    return format_price(minor, "GBP")


async def test_each_refund_mails_the_buyer_once_with_amount_reason_and_timing(
    api: httpx.AsyncClient, ctx: AppContext, outbox: Outbox, settings: Settings
) -> None:
    bought = await paid_purchase(api, ctx, "mailrefunds", "mailbuyer", quantity=2, price=1500)
    url = f"/api/v1/orders/{bought.order_id}/refunds"
    assert refund_mails(outbox, bought.buyer.email) == []

    part = await api.post(
        url, headers=bought.seller.auth, json={"amount": 700, "reason": "damaged"}
    )
    assert part.status_code == 201 and part.json()["status"] == "succeeded", part.text
    [first] = refund_mails(outbox, bought.buyer.email)
    assert first["Subject"] == REFUND_SUBJECT.format(shop="mailrefunds studio")
    text = body_of(first)
    assert f"has refunded {gbp(700)} of your order" in text
    assert (
        f"Refunded so far: {gbp(700)}" in text and f"{gbp(bought.total - 700)} not refunded" in text
    )
    assert "Why: the item arrived damaged." in text
    assert "5 to 10 working days" in text
    assert f"/orders/{bought.order_id}" in text

    # More than is left is refused (409): no refund, no mail.
    too_much = await api.post(url, headers=bought.seller.auth, json={"amount": bought.total})
    assert too_much.status_code == 409
    assert len(refund_mails(outbox, bought.buyer.email)) == 1

    # The rest, for "something else": the reason is not given, the whole order is.
    rest = await api.post(url, headers=bought.seller.auth, json={"reason": "other"})
    assert rest.status_code == 201, rest.text
    first_again, second = refund_mails(outbox, bought.buyer.email)
    assert first_again["Message-ID"] == first["Message-ID"]
    text = body_of(second)
    assert f"has refunded {gbp(bought.total - 700)} of your order" in text
    assert f"Refunded: {gbp(bought.total)} — the whole order" in text
    assert "Why:" not in text

    # The provider's refund webhooks (delivered by jobs) and their repeats, the refund job run
    # again, the refund executed again: still one mail per refund.
    events = [job.payload["event"] for job in await queued(ctx, payments.DELIVER_TEST_WEBHOOK)]
    assert [e["type"] for e in events] == ["payment.refunded", "payment.refunded"]
    await run_jobs(ctx)
    for event in events:
        body, headers = signed_test_event(settings, event)
        repeat = await api.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
        assert repeat.json() == {"received": True, "duplicate": True}
    async with ctx.sessions() as session:
        refund_ids = list((await session.scalars(select(Refund.id))).all())
    for refund_id in refund_ids:
        assert await payments.execute_refund(ctx, refund_id) == "succeeded"
        await payments.reconcile_refund(ctx, refund_id)
    assert len(refund_mails(outbox, bought.buyer.email)) == 2
    # The seller gets none.
    assert refund_mails(outbox, bought.seller.email) == []


async def test_cancelling_before_shipping_mails_the_buyer_a_full_refund(
    api: httpx.AsyncClient, ctx: AppContext, outbox: Outbox
) -> None:
    bought = await paid_purchase(api, ctx, "mailcancels", "cancelbuyer")
    cancelled = await api.post(
        f"/api/v1/orders/{bought.order_id}/cancel", headers=bought.buyer.auth
    )
    assert cancelled.status_code == 200, cancelled.text
    [notice] = refund_mails(outbox, bought.buyer.email)
    text = body_of(notice)
    assert f"was cancelled, and {gbp(bought.total)} is refunded" in text
    assert "the whole order" in text
    assert "Why: the order was cancelled before it shipped." in text


async def test_a_refund_the_provider_refuses_sends_no_mail(
    api: httpx.AsyncClient, ctx: AppContext, outbox: Outbox
) -> None:
    bought = await paid_purchase(api, ctx, "mailrefused", "refusedbuyer")
    # Meanwhile the money left the card another way (at the provider): it refuses our refund.
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(TestProviderIntent).values(amount_refunded=TestProviderIntent.amount)
        )
    refused = await api.post(
        f"/api/v1/orders/{bought.order_id}/refunds", headers=bought.seller.auth, json={}
    )
    assert refused.status_code == 201
    assert (refused.json()["status"], refused.json()["failure_code"]) == (
        "failed",
        "charge_not_refundable",
    )
    await payments.reconcile_refund(ctx, UUID(refused.json()["id"]))
    await run_jobs(ctx)
    assert refund_mails(outbox, bought.buyer.email) == []


async def test_stripe_refund_and_its_repeated_webhooks_mail_once(stripe: StripeWorld) -> None:
    client, ctx, stand_in = stripe.client, stripe.ctx, stripe.stand_in
    outbox = Outbox(ctx.settings.mail_dir)
    bought = await purchase(client, "stripemail", "stripemailbuyer")
    await onboard(stripe, bought.seller)
    paid = await client.post(
        f"/api/v1/checkouts/{bought.checkout_id}/payments",
        headers={**bought.buyer.auth, "Idempotency-Key": "s1"},
        json={"provider": "stripe", "payment_method": "pm_card_visa"},
    )
    assert paid.status_code == 201, paid.text
    for event in stand_in.events_of("payment_intent.succeeded"):
        assert (await stripe.deliver(event)).status_code == 200

    refund = await client.post(
        f"/api/v1/orders/{bought.order_id}/refunds",
        headers=bought.seller.auth,
        json={"amount": 400, "reason": "not_received"},
    )
    assert refund.status_code == 201 and refund.json()["status"] == "succeeded", refund.text
    [charge_refunded] = stand_in.events_of("charge.refunded")
    for _ in range(3):
        assert (await stripe.deliver(charge_refunded)).status_code == 200
    await payments.reconcile_refund(ctx, UUID(refund.json()["id"]))
    [notice] = refund_mails(outbox, bought.buyer.email)
    assert "Why: the parcel never arrived." in body_of(notice)
    assert f"has refunded {gbp(400)}" in body_of(notice)


__all__ = ["api", "stand_in", "stripe"]  # the fixtures, imported for these tests
