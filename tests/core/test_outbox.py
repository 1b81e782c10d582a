"""The mail outbox: nothing is lost when delivery fails or the process dies."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from craftreel.context import AppContext
from craftreel.core.mail import Mail
from craftreel.core.outbox import MailOutbox, OutgoingMail
from tests.conftest import PASSWORD, Outbox


class BrokenMailer:
    def __init__(self) -> None:
        self.calls = 0

    async def send(self, mail: Mail) -> None:
        self.calls += 1
        raise ConnectionRefusedError("smtp is down")


async def _rows(ctx: AppContext) -> list[OutgoingMail]:
    async with ctx.sessions() as session:
        return list((await session.scalars(select(OutgoingMail))).all())


async def test_mail_is_kept_and_retried_when_delivery_fails(
    client: httpx.AsyncClient, ctx: AppContext, outbox: Outbox
) -> None:
    working = ctx.outbox.mailer
    ctx.outbox.mailer = BrokenMailer()
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "patient@example.org", "handle": "patient", "password": PASSWORD},
    )
    # The sign-up succeeds even though the mail could not go out yet.
    assert response.status_code == 201
    [row] = await _rows(ctx)
    assert row.sent_at is None and row.attempts == 1 and "smtp is down" in (row.last_error or "")
    assert outbox.messages() == []

    # Nothing is due until the backoff has passed.
    ctx.outbox.mailer = working
    assert await ctx.outbox.deliver_due() == 0
    async with ctx.sessions() as session, session.begin():
        stored = await session.get(OutgoingMail, row.id)
        assert stored is not None
        stored.next_attempt_at = stored.created_at
    assert await ctx.outbox.deliver_due() == 1
    assert outbox.link("patient@example.org", "/verify")
    [sent] = await _rows(ctx)
    assert sent.sent_at is not None
    # Sending again is a no-op: each mail goes out once.
    assert await ctx.outbox.deliver_due() == 0
    assert len(outbox.messages()) == 1


async def test_mail_left_by_a_dead_process_is_sent_on_the_next_sweep(
    ctx: AppContext, outbox: Outbox
) -> None:
    # A process committed the mail row and died before its after-commit hook ran.
    async with ctx.uow() as uow:
        uow.session.add(OutgoingMail(to="late@example.org", subject="Hello", text="body"))
    restarted = MailOutbox(ctx.sessions, ctx.outbox.mailer)
    assert await restarted.deliver_due() == 1
    assert outbox.last_to("late@example.org")["Subject"] == "Hello"


async def test_a_rolled_back_change_sends_no_mail(ctx: AppContext, outbox: Outbox) -> None:
    class Boom(Exception):
        pass

    try:
        async with ctx.uow() as uow:
            ctx.outbox.queue(uow, Mail(to="never@example.org", subject="No", text="no"))
            raise Boom
    except Boom:
        pass
    async with ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutgoingMail)) == 0
    assert outbox.messages() == []
