"""The mail outbox: mail is a row first, written in the same transaction as the change that
caused it, then handed to the mailer after commit; failures are retried with backoff, and a
restart sends whatever a dead process left behind."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import String, Text, Uuid, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base, UnitOfWork
from craftreel.core.ids import uuid7
from craftreel.core.mail import Mail, Mailer

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120
MAX_ATTEMPTS = 8


class OutgoingMail(Base):
    __tablename__ = "outgoing_mail"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    to: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … capped at an hour."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


class MailOutbox:
    """Queue mail inside a unit of work; deliver after commit; retry what failed."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], mailer: Mailer) -> None:
        self._sessions = sessions
        self.mailer = mailer

    def queue(self, uow: UnitOfWork, mail: Mail) -> None:
        """Store ``mail`` with the current transaction; it is sent once that commits."""
        row = OutgoingMail(id=uuid7(), to=mail.to, subject=mail.subject, text=mail.text)
        uow.session.add(row)
        uow.after_commit(self.deliver, row.id)

    async def _claim(self, mail_id: UUID, now: datetime) -> OutgoingMail | None:
        """Take one row for sending, so two processes never send the same mail at once."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(OutgoingMail)
                .where(
                    OutgoingMail.id == mail_id,
                    OutgoingMail.sent_at.is_(None),
                    OutgoingMail.failed_at.is_(None),
                    or_(OutgoingMail.claimed_until.is_(None), OutgoingMail.claimed_until < now),
                )
                .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            return await session.get(OutgoingMail, mail_id)

    async def deliver(self, mail_id: UUID) -> bool:
        """Send one queued mail now; on failure schedule a retry. True when sent."""
        row = await self._claim(mail_id, utcnow())
        if row is None:
            return False
        error: str | None = None
        try:
            await self.mailer.send(Mail(to=row.to, subject=row.subject, text=row.text))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = utcnow()
        async with self._sessions() as session, session.begin():
            if error is None:
                values: dict[str, object] = {"sent_at": now, "claimed_until": None}
            else:
                attempts = row.attempts + 1
                log.warning("mail delivery failed", extra={"mail_id": str(row.id), "error": error})
                values = {
                    "attempts": attempts,
                    "last_error": error,
                    "claimed_until": None,
                    "next_attempt_at": now + backoff(attempts),
                    "failed_at": now if attempts >= MAX_ATTEMPTS else None,
                }
            await session.execute(
                update(OutgoingMail).where(OutgoingMail.id == row.id).values(**values)
            )
        return error is None

    async def deliver_due(self, limit: int = 100) -> int:
        """Send every mail whose time has come (left by a crash or a failed attempt)."""
        now = utcnow()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(OutgoingMail.id)
                    .where(
                        OutgoingMail.sent_at.is_(None),
                        OutgoingMail.failed_at.is_(None),
                        OutgoingMail.next_attempt_at <= now,
                        or_(
                            OutgoingMail.claimed_until.is_(None),
                            OutgoingMail.claimed_until < now,
                        ),
                    )
                    .order_by(OutgoingMail.next_attempt_at)
                    .limit(limit)
                )
            ).all()
        sent = 0
        for mail_id in due:
            sent += await self.deliver(mail_id)
        return sent

    async def run(self, interval_seconds: float = 30.0) -> None:
        """Retry loop for the app's lifespan: sweep due mail every ``interval_seconds``."""
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("mail outbox sweep failed")
            await asyncio.sleep(interval_seconds)
