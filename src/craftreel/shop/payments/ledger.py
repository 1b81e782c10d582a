"""Money rules and each seller's ledger: every movement a row, the balance their sum."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import (
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.core.db import UnitOfWork
from craftreel.core.ids import uuid7
from craftreel.core.money import apply_rate
from craftreel.core.pagination import decode_time_cursor, page_of
from craftreel.shop import repository as shop_repo
from craftreel.shop.models import (
    Order,
)
from craftreel.shop.payments.errors import AUTHENTICATION_FAILED, PERMISSION_DENIED
from craftreel.shop.payments.models import (
    LedgerEntry,
    LedgerKind,
    PaymentTransfer,
    Refund,
    RefundStatus,
    TransferKind,
    TransferStatus,
)
from craftreel.shop.payments.schemas import (
    BalanceOut,
    LedgerEntryOut,
    TransferOut,
)
from craftreel.shop.service import NoShop

if TYPE_CHECKING:
    from craftreel.accounts.models import User

# --- money ------------------------------------------------------------------------------


def platform_fee(order_total: int, basis_points: int) -> int:
    """The platform's fee on an order, rounded half up to a whole minor unit."""
    return apply_rate(order_total, basis_points)


def share(amount: int, part: int, whole: int) -> int:
    """``amount × part / whole``, rounded half up, in integers (0 when ``whole`` is 0)."""
    if whole <= 0:
        return 0
    return (2 * amount * part + whole) // (2 * whole)


def add_entry(
    session: AsyncSession,
    order: Order,
    kind: LedgerKind,
    amount: int,
    key: str,
    refund_id: UUID | None = None,
) -> None:
    session.add(
        LedgerEntry(
            id=uuid7(),
            shop_id=order.shop_id,
            order_id=order.id,
            refund_id=refund_id,
            kind=kind,
            amount=amount,
            currency=order.currency,
            entry_key=key,
        )
    )


# --- payout accounts and the balance ----------------------------------------------------


async def add_shop_entry(
    session: AsyncSession, shop_id: UUID, kind: LedgerKind, amount: int, currency: str, key: str
) -> bool:
    """Write a movement not tied to an order (a payout) unless its key is there already."""
    try:
        async with session.begin_nested():
            session.add(
                LedgerEntry(
                    id=uuid7(),
                    shop_id=shop_id,
                    order_id=None,
                    kind=kind,
                    amount=amount,
                    currency=currency,
                    entry_key=key,
                )
            )
    except IntegrityError:
        return False
    return True


async def balance(
    uow: UnitOfWork,
    seller: User,
    cursor: str | None,
    limit: int,
    kinds: Sequence[LedgerKind] | None = None,
) -> BalanceOut:
    """The seller's balance (the sum of their ledger) and its entries, newest first (only
    those of ``kinds`` when given, e.g. payouts)."""
    shop = await shop_repo.shop_of_owner(uow.session, seller.id)
    if shop is None:
        raise NoShop()
    total = await uow.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.shop_id == shop.id)
    )
    query = select(LedgerEntry).where(LedgerEntry.shop_id == shop.id)
    if kinds is not None:
        query = query.where(LedgerEntry.kind.in_(list(kinds)))
    if cursor:
        at, entry_id = decode_time_cursor(cursor)
        query = query.where(
            or_(
                LedgerEntry.created_at < at,
                and_(LedgerEntry.created_at == at, LedgerEntry.id < entry_id),
            )
        )
    rows: Sequence[LedgerEntry] = (
        await uow.session.scalars(
            query.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(limit + 1)
        )
    ).all()
    items, next_cursor = page_of(rows, limit, lambda e: (e.created_at, e.id))
    return BalanceOut(
        shop_handle=shop.handle,
        currency=shop.currency,
        balance=int(total or 0),
        entries=[
            LedgerEntryOut(
                id=e.id,
                order_id=e.order_id,
                kind=e.kind,
                amount=e.amount,
                currency=e.currency,
                created_at=e.created_at,
            )
            for e in items
        ],
        next_cursor=next_cursor,
        failed_transfers=await failed_transfers(uow.session, shop.id),
        failed_reversals=await failed_transfers(uow.session, shop.id, TAKING),
    )


# --- transfers that failed -------------------------------------------------------------

#: A transfer's failure code when the provider never answered any attempt: it may or may not
#: have made it, so only a look at the provider (or the same key) may send it again.
UNANSWERED = "provider_unavailable"
#: A reversal's failure code when its transfer failed: there was nothing to take back.
TRANSFER_FAILED = "transfer_failed"
#: A reversal's failure code when its refund failed after all (after it had succeeded): it
#: is not to be taken (or, if Stripe took it meanwhile, its restore gives it back).
REFUND_FAILED = "refund_failed"
#: A restore's failure code when its reversal was never made: there was nothing to give back.
REVERSAL_NOT_MADE = "reversal_not_made"
#: Failures that moved no money and need no one: not listed to the seller, never retried.
NOTHING_MOVED = (TRANSFER_FAILED, REFUND_FAILED, REVERSAL_NOT_MADE)
#: Why a transfer failed, as a person reads it (a provider code not here: "refused").
FAILURES = {
    "balance_insufficient": "the platform's Stripe balance could not cover it",
    "insufficient_funds": "the platform's Stripe balance could not cover it",
    "account_invalid": "the Stripe account it goes to cannot receive transfers",
    "transfers_not_allowed": "the Stripe account it goes to cannot receive transfers",
    "amount_too_large": "it is more than is left of the transfer",
    UNANSWERED: "Stripe did not answer, however often it was asked",
    AUTHENTICATION_FAILED: "Stripe did not accept the platform's API key",
    PERMISSION_DENIED: "the platform's Stripe API key may not do this",
    TRANSFER_FAILED: "its transfer was never made",
    REFUND_FAILED: "its refund failed after all, so there is nothing to take back",
    REVERSAL_NOT_MADE: "its reversal was never made, so there is nothing to give back",
}


#: Where a reversal's reason differs: the money comes from the seller's Stripe account.
REVERSAL_FAILURES = {
    "balance_insufficient": "the Stripe account's balance could not cover it",
    "insufficient_funds": "the Stripe account's balance could not cover it",
}


def failure_text(code: str | None, kind: str = TransferKind.TRANSFER) -> str:
    """Why a transfer (or reversal) failed, in words (lower case: it goes inside a sentence)."""
    if kind == TransferKind.REVERSAL and code in REVERSAL_FAILURES:
        return REVERSAL_FAILURES[code]
    return FAILURES.get(code or "", f"Stripe refused it ({code or 'no reason given'})")


#: What is sent to a seller (owed to them while it fails), and what is taken back.
SENDING = (TransferKind.TRANSFER, TransferKind.RESTORE, TransferKind.TOP_UP)
TAKING = (TransferKind.REVERSAL,)


#: Why a refund failed, as a person reads it (Stripe's ``failure_reason``; lower case).
REFUND_FAILURES = {
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "charge_for_pending_refund_disputed": "the payment was disputed with the card's bank",
    "insufficient_funds": "the platform's Stripe balance could not cover it",
    "declined": "the card's bank declined it",
    "merchant_request": "it was cancelled",
    "canceled": "it was cancelled",
    AUTHENTICATION_FAILED: "Stripe did not accept the platform's API key",
    PERMISSION_DENIED: "the platform's Stripe API key may not do this",
}


def refund_failure_text(code: str | None) -> str:
    """Why a refund failed, in words (lower case: it goes inside a sentence)."""
    return REFUND_FAILURES.get(code or "", "the card's bank did not take it")


def bounced_not_refunded_again(refunds: Iterable[Refund]) -> int:
    """What of an order's refunds that failed after succeeding no refund made since has given
    the buyer: the amount its pages say did not go through — none once the seller has
    refunded it again, in one go or in pieces.

    In time order, a refund failing after it succeeded opens its amount, and every refund
    that succeeded (even one that failed later in its turn) gives back up to what is open
    when it was made. One made before a failure was known was for something else, so it
    answers none of it; one still pending answers nothing yet.
    """
    moves: list[tuple[datetime, int]] = []
    for refund in refunds:
        if refund.status == RefundStatus.SUCCEEDED or refund.bounced_at is not None:
            moves.append((refund.created_at, -refund.amount))
        if refund.bounced_at is not None:
            moves.append((refund.bounced_at, refund.amount))
    still_open = 0
    for _, amount in sorted(moves, key=lambda move: move[0]):
        still_open = max(0, still_open + amount)
    return still_open


async def failed_transfers(
    session: AsyncSession, shop_id: UUID, kinds: Sequence[TransferKind] = SENDING
) -> list[TransferOut]:
    """The shop's transfers, restores and top-ups (or reversals) that failed, newest first:
    money owed to it, not yet sent (or its part of a refund, not yet taken back). One that
    failed without moving money — a reversal whose transfer failed or whose refund failed
    after all, a restore of a reversal never made — needs no one, so it is not listed."""
    rows = await session.scalars(
        select(PaymentTransfer)
        .where(
            PaymentTransfer.shop_id == shop_id,
            PaymentTransfer.kind.in_(list(kinds)),
            PaymentTransfer.status == TransferStatus.FAILED,
            PaymentTransfer.failure_code.not_in(NOTHING_MOVED),
        )
        .order_by(PaymentTransfer.created_at.desc(), PaymentTransfer.id.desc())
        .limit(20)
    )
    return [transfer_out(row) for row in rows.all()]


def transfer_out(row: PaymentTransfer) -> TransferOut:
    return TransferOut(
        id=row.id,
        kind=row.kind,
        order_id=row.order_id,
        amount=row.amount,
        currency=row.currency,
        status=row.status,
        failure_code=row.failure_code,
        failure=failure_text(row.failure_code, row.kind) if row.failure_code else None,
        failed_at=row.failed_at,
        retries=row.retries,
    )
