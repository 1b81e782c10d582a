"""Payments' SQL."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    CursorResult,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.shop import repository as shop_repo
from craftreel.shop.models import (
    Order,
    Reservation,
)
from craftreel.shop.payments.models import (
    MOVES_FROM,
    PAID,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)

# --- SQL --------------------------------------------------------------------------------


def changed(result: object) -> bool:
    return bool(cast(CursorResult[Any], result).rowcount)


async def move_payment(
    session: AsyncSession, payment_id: UUID, to: PaymentStatus, failure_code: str | None = None
) -> bool:
    """Move a payment forward to ``to`` — true for exactly one caller."""
    values: dict[str, Any] = {"status": to}
    if to == PaymentStatus.FAILED:
        values["failure_code"] = failure_code
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status.in_(MOVES_FROM[to]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return changed(result)


async def payment_by_id(session: AsyncSession, payment_id: UUID) -> Payment | None:
    return await session.get(Payment, payment_id, populate_existing=True)


async def paid_payment_of(session: AsyncSession, checkout_id: UUID) -> Payment | None:
    return await session.scalar(
        select(Payment)
        .where(Payment.checkout_id == checkout_id, Payment.status.in_(PAID))
        .execution_options(populate_existing=True)
    )


async def locked_order(session: AsyncSession, order_id: UUID) -> Order | None:
    """The order, row-locked until commit (PostgreSQL; SQLite writers queue anyway)."""
    return await session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def order_sum(session: AsyncSession, order_id: UUID, kind: LedgerKind) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.order_id == order_id, LedgerEntry.kind == kind
        )
    )
    return int(total or 0)


async def refund_claimed_for_order(session: AsyncSession, order_id: UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order_id, Refund.status != RefundStatus.FAILED
        )
    )
    return int(total or 0)


async def retake_stock(session: AsyncSession, checkout_id: UUID) -> bool:
    """Hold a lapsed checkout's stock again, all of it or none (in variant order)."""
    reservations = (
        await session.scalars(
            select(Reservation)
            .where(Reservation.checkout_id == checkout_id, Reservation.released_at.is_not(None))
            .order_by(Reservation.variant_id, Reservation.id)
        )
    ).all()
    taken: list[Reservation] = []
    for reservation in reservations:
        if not await shop_repo.take_stock(session, reservation.variant_id, reservation.quantity):
            for held in taken:
                await shop_repo.give_back_stock(session, held.variant_id, held.quantity)
            return False
        taken.append(reservation)
    await session.execute(
        update(Reservation)
        .where(Reservation.checkout_id == checkout_id)
        .values(released_at=None)
        .execution_options(synchronize_session=False)
    )
    return True
