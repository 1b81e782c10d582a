"""Alerts that need a person: logged at ERROR, and mailed to the operator when there is one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from craftreel.core.db import UnitOfWork
from craftreel.core.mail import Mail
from craftreel.shop.payments.config import PaymentSettings

if TYPE_CHECKING:
    from craftreel.context import AppContext

log = logging.getLogger(__name__)


def alert_operator(
    ctx: AppContext,
    uow: UnitOfWork,
    event: str,
    facts: Mapping[str, str | None],
    subject: str,
    text: str,
) -> None:
    """Log ``event`` with its facts at ERROR and queue the mail to ``CRAFTREEL_OPERATOR_EMAIL``
    (sent once this unit of work commits, so an alert is as once-only as the update that
    raised it)."""
    log.error(event, extra=dict(facts))
    operator = PaymentSettings.from_settings(ctx.settings).operator_email
    if operator:
        ctx.outbox.queue(uow, Mail(to=operator, subject=subject, text=text))
