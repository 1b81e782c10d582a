"""Stripe Connect for a marketplace: each shop's connected account and its onboarding, the
transfers that pay each seller their share of a multi-shop payment (and the reversals a
refund makes, the restores of those whose refund failed after all, and the top-ups of what
such a refund leaves a seller's account short), and the payouts that leave a seller's
account.

Why a seller is paid exactly once, whatever the timing:

- Transfers are rows first, written in the same transaction that settles the payment — which
  happens once per payment, by the webhook or the reconcile job, whichever comes first. A
  transfer row is unique by its idempotency key (``transfer-<order>``), and that key goes to
  the provider too: a retried job, or one that died after the provider said yes, makes one
  transfer. A reversal is keyed by its refund (``reversal-<refund>``) the same way.
- The provider is asked outside any transaction; what it said is recorded by a conditional
  update (pending → succeeded or failed), so a late twin finds nothing left to do.
- A provider that does not answer (a network error, a 5xx, a 429) is asked again by the
  transfer's job, with backoff, under the same key, up to ``transfer_max_attempts`` times. A
  refusal (a 4xx: the platform's balance is short, the account cannot take transfers) or the
  last unanswered attempt marks the row failed with its reason — no ledger row is written —
  and alerts the operator. ``retry_transfer`` (``craftreel payments retry-transfer``) sends a
  failed one again: it first asks the provider whether the transfer was made after all, and
  sends what the order still owes the seller under a new key (the refused key's answer is
  remembered by the provider).
- Money that reaches a seller's account — also a transfer found made after all, by a retry
  or an answer that comes late — is checked, under the order's lock, against what the order
  owes them: refunds settled while it was thought failed took nothing back from it, so
  their part is taken back then, under the keys the refunds would have used
  (``_take_back_over_sent``).
- A refund that fails after it succeeded (the buyer's card was closed) gives the seller back
  what its reversal took: a restore, a transfer keyed ``restore-<reversal>`` made like any
  other. A reversal not yet made is stopped instead, and its restore first asks the provider
  whether a call in flight made it after all (``_restore_reversals``). What the seller's
  account is then still short for the order — no reversal of the refund was made, as the
  order's transfer was sent after it, for what the order owed then — is sent by a top-up,
  keyed ``top-up-<refund>`` (``_top_up``). So the check runs both ways, under the order's
  lock: money over what the order owes is taken back, money short of it is sent.
- ``account.updated`` events are applied from the account as the provider shows it *now*, so
  two events arriving in the wrong order cannot leave a stale state behind; payout events
  write ledger rows unique by payout, and a failed payout's rows net to zero whichever of its
  events arrives first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.ids import uuid7
from craftreel.shop import repository as shop_repo
from craftreel.shop.models import Order, Shop
from craftreel.shop.payments.alerts import alert_operator
from craftreel.shop.payments.config import (
    CONNECT_PROVIDERS,
    EXECUTE_TRANSFER,
    PaymentSettings,
)
from craftreel.shop.payments.errors import (
    PaymentProviderError,
    PayoutsNotAvailable,
    PayoutsNotEnabled,
    ProviderRefused,
    TransferNotFailed,
    TransferNotFound,
    TransferNotRetryable,
)
from craftreel.shop.payments.ledger import (
    NOTHING_MOVED,
    REFUND_FAILED,
    REVERSAL_NOT_MADE,
    SENDING,
    TRANSFER_FAILED,
    UNANSWERED,
    add_shop_entry,
    failure_text,
    platform_fee,
)
from craftreel.shop.payments.models import (
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentTransfer,
    PayoutAccount,
    Refund,
    RefundStatus,
    TransferKind,
    TransferStatus,
)
from craftreel.shop.payments.providers import connect_provider, provider_named
from craftreel.shop.payments.providers.base import (
    ConnectedAccount,
    ConnectProvider,
    ProviderPayout,
    ProviderTransfer,
    TransferRequest,
)
from craftreel.shop.payments.repository import changed, locked_order
from craftreel.shop.payments.schemas import OnboardingLinkOut, PayoutAccountOut
from craftreel.shop.prices import format_price
from craftreel.shop.service import NoShop

if TYPE_CHECKING:
    from craftreel.accounts.models import User
    from craftreel.context import AppContext

log = logging.getLogger(__name__)

#: Where the provider sends a seller back after onboarding, and for a fresh link.
ONBOARDING_RETURN_PATH = "/sell/payouts/return"
ONBOARDING_REFRESH_PATH = "/sell/payouts/refresh"
#: Payout events that mean the money came back to the seller's account.
PAYOUT_RETURNED = ("payout.failed", "payout.canceled")


def transfer_group(checkout_id: UUID) -> str:
    """The group a multi-shop payment and its transfers share at the provider."""
    return f"checkout_{checkout_id}"


# --- accounts and onboarding ------------------------------------------------------------


def _account_out(provider_name: str, account: PayoutAccount | None) -> PayoutAccountOut:
    if account is None:
        return PayoutAccountOut(provider=provider_name, status="not_started")
    if account.charges_enabled and account.payouts_enabled:
        status = "enabled"
    elif account.charges_enabled:
        status = "payouts_paused"
    elif account.details_submitted:
        status = "in_review"
    else:
        status = "incomplete"
    return PayoutAccountOut(
        provider=provider_name,
        status=status,
        account_ref=account.account_ref,
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
    )


async def payout_account(ctx: AppContext, uow: UnitOfWork, seller: User) -> PayoutAccountOut | None:
    """How far the seller's shop is with payouts (None when no provider here pays sellers)."""
    provider = connect_provider(ctx)
    if provider is None:
        return None
    shop = await shop_repo.shop_of_owner(uow.session, seller.id)
    if shop is None:
        raise NoShop()
    account = await uow.session.get(PayoutAccount, (shop.id, provider.name))
    return _account_out(provider.name, account)


def _connect(ctx: AppContext) -> ConnectProvider:
    provider = connect_provider(ctx)
    if provider is None:
        raise PayoutsNotAvailable()
    return provider


async def start_onboarding(ctx: AppContext, seller: User) -> OnboardingLinkOut:
    """A fresh onboarding link for the seller's shop, making its connected account the first
    time (once, however often this is asked: the account is keyed by the shop)."""
    provider = _connect(ctx)
    async with ctx.uow() as uow:
        shop = await shop_repo.shop_of_owner(uow.session, seller.id)
        if shop is None:
            raise NoShop()
        account = await uow.session.get(PayoutAccount, (shop.id, provider.name))
        shop_id, country = shop.id, shop.origin_country
        ref = account.account_ref if account is not None else None
    if ref is None:
        created = await provider.create_account(shop_id, country, f"account-{shop_id}")
        async with ctx.uow() as uow:
            ref = await _remember_account(uow, shop_id, provider.name, created)
    base = str(ctx.settings.base_url).rstrip("/")
    link = await provider.onboarding_link(
        ref, f"{base}{ONBOARDING_REFRESH_PATH}", f"{base}{ONBOARDING_RETURN_PATH}"
    )
    return OnboardingLinkOut(url=link.url, expires_at=link.expires_at)


async def _remember_account(
    uow: UnitOfWork, shop_id: UUID, provider_name: str, account: ConnectedAccount
) -> str:
    """Store a new connected account for the shop; a twin request's row, if first, wins."""
    try:
        async with uow.session.begin_nested():
            uow.session.add(
                PayoutAccount(
                    shop_id=shop_id,
                    provider=provider_name,
                    account_ref=account.ref,
                    charges_enabled=account.charges_enabled,
                    payouts_enabled=account.payouts_enabled,
                    details_submitted=account.details_submitted,
                )
            )
    except IntegrityError:
        pass
    stored = await uow.session.get(PayoutAccount, (shop_id, provider_name), populate_existing=True)
    assert stored is not None
    return stored.account_ref


async def refresh_account(ctx: AppContext, seller: User) -> PayoutAccountOut:
    """Ask the provider how the seller's account stands now (on their return from onboarding,
    before its webhook may have arrived) and record it."""
    provider = _connect(ctx)
    async with ctx.uow() as uow:
        shop = await shop_repo.shop_of_owner(uow.session, seller.id)
        if shop is None:
            raise NoShop()
        account = await uow.session.get(PayoutAccount, (shop.id, provider.name))
        if account is None:
            return _account_out(provider.name, None)
        shop_id, ref = shop.id, account.account_ref
    state = await provider.retrieve_account(ref)
    async with ctx.uow() as uow:
        await apply_account(uow.session, provider.name, state)
        stored = await uow.session.get(PayoutAccount, (shop_id, provider.name))
        return _account_out(provider.name, stored)


async def apply_account(session: AsyncSession, provider_name: str, state: ConnectedAccount) -> None:
    """Record what the provider says a connected account may do now."""
    result = await session.execute(
        update(PayoutAccount)
        .where(PayoutAccount.provider == provider_name, PayoutAccount.account_ref == state.ref)
        .values(
            charges_enabled=state.charges_enabled,
            payouts_enabled=state.payouts_enabled,
            details_submitted=state.details_submitted,
        )
        .execution_options(synchronize_session=False)
    )
    if not changed(result):
        log.warning("account event for an account we do not know", extra={"ref": state.ref})


async def link_payout_account(
    uow: UnitOfWork,
    shop_id: UUID,
    provider_name: str,
    account_ref: str,
    *,
    enabled: bool = False,
) -> None:
    """Record where a shop's money goes at a provider (an account made elsewhere, e.g. by an
    admin moving a seller over); ``enabled`` when it is known to take charges and payouts."""
    existing = await uow.session.get(PayoutAccount, (shop_id, provider_name))
    if existing is None:
        uow.session.add(
            PayoutAccount(
                shop_id=shop_id,
                provider=provider_name,
                account_ref=account_ref,
                charges_enabled=enabled,
                payouts_enabled=enabled,
                details_submitted=enabled,
            )
        )
    else:
        existing.account_ref = account_ref
        existing.charges_enabled = existing.payouts_enabled = enabled
        existing.details_submitted = enabled
    await uow.session.flush()


async def require_payouts_enabled(
    session: AsyncSession, provider_name: str, checkout_id: UUID
) -> None:
    """PayoutsNotEnabled unless every shop in the checkout can take charges through the
    provider (only providers that pay sellers out need this; the test provider does not)."""
    if provider_name not in CONNECT_PROVIDERS:
        return
    rows = await session.execute(
        select(Shop.handle, PayoutAccount.charges_enabled)
        .select_from(Order)
        .join(Shop, Shop.id == Order.shop_id)
        .outerjoin(
            PayoutAccount,
            and_(PayoutAccount.shop_id == Order.shop_id, PayoutAccount.provider == provider_name),
        )
        .where(Order.checkout_id == checkout_id)
    )
    not_ready = sorted({handle for handle, enabled in rows.all() if not enabled})
    if not_ready:
        raise PayoutsNotEnabled(shops=not_ready)


# --- transfers --------------------------------------------------------------------------


async def queue_transfers(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, orders: list[Order]
) -> None:
    """Once a payment without a destination is settled: one transfer per order of the seller's
    share (the order's total less the platform's fee), made after commit by a job."""
    if payment.provider not in CONNECT_PROVIDERS or payment.destination is not None:
        return
    session = uow.session
    accounts = dict(
        (
            await session.execute(
                select(PayoutAccount.shop_id, PayoutAccount.account_ref).where(
                    PayoutAccount.shop_id.in_({o.shop_id for o in orders}),
                    PayoutAccount.provider == payment.provider,
                )
            )
        ).all()
    )
    config = PaymentSettings.from_settings(ctx.settings)
    queued: list[UUID] = []
    for order in orders:
        amount = order.total - platform_fee(order.total, config.platform_fee_bps)
        destination = accounts.get(order.shop_id)
        if amount <= 0:
            continue
        if destination is None:
            # Checkouts are refused before payment when a shop has no account; keep the money
            # on the platform and say so loudly rather than guess where it goes.
            log.error("no connected account for a paid order", extra={"order_id": str(order.id)})
            continue
        transfer = PaymentTransfer(
            id=uuid7(),
            kind=TransferKind.TRANSFER,
            payment_id=payment.id,
            order_id=order.id,
            shop_id=order.shop_id,
            destination=destination,
            amount=amount,
            currency=order.currency,
            status=TransferStatus.PENDING,
            idempotency_key=f"transfer-{order.id}",
        )
        session.add(transfer)
        queued.append(transfer.id)
    await session.flush()
    for transfer_id in queued:
        _queue_execute(ctx, uow, transfer_id)


def _queue_execute(
    ctx: AppContext,
    uow: UnitOfWork,
    transfer_id: UUID,
    *,
    again: str = "",
    run_at: datetime | None = None,
) -> None:
    """Queue the job that makes a transfer; ``again`` tells a later job for the same row
    (a retry) from its first."""
    ctx.jobs.enqueue(
        uow,
        EXECUTE_TRANSFER,
        {"transfer_id": str(transfer_id)},
        run_at=run_at,
        dedupe_key=f"{EXECUTE_TRANSFER}:{transfer_id}" + (f":{again}" if again else ""),
        max_attempts=PaymentSettings.from_settings(ctx.settings).transfer_max_attempts,
    )


async def queue_reversal(
    ctx: AppContext, uow: UnitOfWork, order: Order, refund: Refund, amount: int
) -> list[UUID]:
    """Take ``amount`` (the seller's part of a refund) back from what the order sent them.

    Usually that is one reversal of the order's transfer. After a refund failed after all,
    its restore (or top-up) is a transfer of its own, and the transfer has less left to take
    back than the order owes back: a later refund takes from the transfer first, then from
    restores and top-ups, as much from each as it has left (one reversal each, keyed
    ``reversal-<refund>`` then ``reversal-<refund>-2`` …, numbered on from the refund's
    earlier reversals). Nothing is taken back when the transfer failed: its retry sends only
    what the order still owes, and should it turn out made after all,
    ``_take_back_over_sent`` takes it back then.
    """
    session = uow.session
    sent = (
        await session.scalars(
            select(PaymentTransfer)
            .where(
                PaymentTransfer.order_id == order.id,
                PaymentTransfer.kind.in_(SENDING),
                PaymentTransfer.status != TransferStatus.FAILED,
            )
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    if amount <= 0 or not sent:
        return []
    # What each has had taken back, or may yet (a refused reversal can be sent again).
    taken = dict(
        (
            await session.execute(
                select(PaymentTransfer.transfer_id, func.sum(PaymentTransfer.amount))
                .where(
                    PaymentTransfer.kind == TransferKind.REVERSAL,
                    PaymentTransfer.transfer_id.in_([row.id for row in sent]),
                    _STILL_TAKING,
                )
                .group_by(PaymentTransfer.transfer_id)
            )
        ).all()
    )
    earlier = await session.scalar(
        select(func.count())
        .select_from(PaymentTransfer)
        .where(
            PaymentTransfer.refund_id == refund.id,
            PaymentTransfer.kind == TransferKind.REVERSAL,
        )
    )
    queued: list[UUID] = []
    left = amount
    for parent in sent:
        piece = min(left, parent.amount - int(taken.get(parent.id) or 0))
        if piece <= 0:
            continue
        reversal = _pending_after(
            parent,
            TransferKind.REVERSAL,
            piece,
            _reversal_key(refund.id, int(earlier or 0) + len(queued)),
            refund_id=refund.id,
            transfer_id=parent.id,
        )
        session.add(reversal)
        queued.append(reversal.id)
        left -= piece
        if not left:
            break
    if left:
        log.error(
            "a refund takes back more than its order sent the seller",
            extra={"refund_id": str(refund.id), "order_id": str(order.id), "left": left},
        )
    await session.flush()
    for reversal_id in queued:
        _queue_execute(ctx, uow, reversal_id)
    return queued


#: A reversal that took, or may yet take, money back (a refused one can be sent again).
_STILL_TAKING = or_(
    PaymentTransfer.status != TransferStatus.FAILED,
    PaymentTransfer.failure_code.not_in(NOTHING_MOVED),
)


def _pending_after(
    parent: PaymentTransfer,
    kind: TransferKind,
    amount: int,
    key: str,
    *,
    refund_id: UUID,
    transfer_id: UUID | None = None,
) -> PaymentTransfer:
    """A pending reversal, restore or top-up of ``amount``, for a refund, moving money to or
    from the same connected account, for the same order and payment, as ``parent``."""
    return PaymentTransfer(
        id=uuid7(),
        kind=kind,
        payment_id=parent.payment_id,
        order_id=parent.order_id,
        shop_id=parent.shop_id,
        refund_id=refund_id,
        transfer_id=transfer_id,
        destination=parent.destination,
        amount=amount,
        currency=parent.currency,
        status=TransferStatus.PENDING,
        idempotency_key=key,
    )


def _reversal_key(refund_id: UUID, earlier: int) -> str:
    """A refund's reversal's key, after ``earlier`` reversals of it: ``reversal-<refund>``,
    then ``reversal-<refund>-2`` …"""
    return f"reversal-{refund_id}" + (f"-{earlier + 1}" if earlier else "")


async def _take_back_over_sent(ctx: AppContext, uow: UnitOfWork, order_id: UUID) -> list[UUID]:
    """Take back what a seller's account holds for an order beyond what the order owes them,
    once money has reached it: the reversals queued (run after commit by their jobs).

    Nothing, as a rule: a refund settled while the money was on its way queued its reversal
    then. But a transfer (or restore) recorded failed may turn out made after all (every
    attempt went unanswered, yet one had landed), and a refund settled meanwhile took nothing
    back from it. What is over — sent, less what reversals took or are taking, less the
    order's ledger — is taken back refund by refund, oldest first, each up to its own part
    (what its ledger rows took from the seller, less what its reversals take), under the
    keys the refund would have used. Measured against the ledger, a transfer made for what
    the order owed after its refunds (a retry's) takes nothing back, and a refund that failed
    after all (its ledger rows cancelled) none either. Called under the order's lock, which
    every refund settles under, so a refund settling at the same time is counted once:
    here, or by its own ``queue_reversal``, which then sees the transfer made.
    """
    session = uow.session
    ledger = await order_ledger(session, order_id)
    held = await _held(
        session,
        order_id,
        or_(
            and_(
                PaymentTransfer.kind.in_(SENDING),
                PaymentTransfer.status == TransferStatus.SUCCEEDED,
            ),
            and_(PaymentTransfer.kind == TransferKind.REVERSAL, _STILL_TAKING),
        ),
    )
    over = held - ledger
    if over <= 0:
        return []
    order = await session.get(Order, order_id)
    assert order is not None
    refunds = (
        await session.scalars(
            select(Refund)
            .where(Refund.order_id == order_id, Refund.status == RefundStatus.SUCCEEDED)
            .order_by(Refund.created_at, Refund.id)
        )
    ).all()
    parts = dict(
        (
            await session.execute(
                select(LedgerEntry.refund_id, -func.sum(LedgerEntry.amount))
                .where(LedgerEntry.order_id == order_id, LedgerEntry.refund_id.is_not(None))
                .group_by(LedgerEntry.refund_id)
            )
        ).all()
    )
    taken = dict(
        (
            await session.execute(
                select(PaymentTransfer.refund_id, func.sum(PaymentTransfer.amount))
                .where(
                    PaymentTransfer.order_id == order_id,
                    PaymentTransfer.kind == TransferKind.REVERSAL,
                    _STILL_TAKING,
                )
                .group_by(PaymentTransfer.refund_id)
            )
        ).all()
    )
    queued: list[UUID] = []
    for refund in refunds:
        piece = min(over, int(parts.get(refund.id) or 0) - int(taken.get(refund.id) or 0))
        if piece <= 0:
            continue
        queued += await queue_reversal(ctx, uow, order, refund, piece)
        over -= piece
        if not over:
            break
    if over:
        log.error(
            "a seller's account holds more for an order than its refunds took back",
            extra={"order_id": str(order_id), "over": over},
        )
    return queued


async def reversals_of(ctx: AppContext, refund_id: UUID) -> list[UUID]:
    async with ctx.uow() as uow:
        rows = await uow.session.scalars(
            select(PaymentTransfer.id)
            .where(
                PaymentTransfer.refund_id == refund_id,
                PaymentTransfer.kind == TransferKind.REVERSAL,
            )
            .order_by(PaymentTransfer.id)
        )
        return list(rows.all())


@dataclass(frozen=True)
class PartGivenBack:
    """What a refund that failed after succeeding does at the seller's Stripe account."""

    #: Taken back by the refund's reversals, and being given back by restores.
    restored: int = 0
    #: Not taken back yet: its reversals are stopped (and given back should they be made).
    stopped: int = 0
    #: What the account is short for the order beyond that, sent by a top-up.
    topped_up: int = 0
    #: The order's transfer, and how it stands (None: the order is paid without transfers).
    transfer_id: UUID | None = None
    transfer_status: str | None = None


async def give_back_refund_part(
    ctx: AppContext, uow: UnitOfWork, order: Order, refund: Refund
) -> PartGivenBack:
    """A refund failed after it had succeeded, and the order's ledger has its part back: bring
    what the seller's Stripe account holds for the order back up to what the order owes them.

    What the refund's reversals took is given back by restores (``_restore_reversals``);
    what the account is still short — no reversal of it was made, as the order's transfer
    was sent after the refund, for what the order owed then — by a top-up (``_top_up``).
    Called once per refund, by the transaction that records the failure, under the order's
    lock, after the ledger rows that cancel the refund's."""
    restored, stopped = await _restore_reversals(ctx, uow, refund)
    topped_up, transfer = await _top_up(ctx, uow, order, refund)
    return PartGivenBack(
        restored=restored,
        stopped=stopped,
        topped_up=topped_up,
        transfer_id=transfer.id if transfer is not None else None,
        transfer_status=transfer.status if transfer is not None else None,
    )


async def _restore_reversals(ctx: AppContext, uow: UnitOfWork, refund: Refund) -> tuple[int, int]:
    """Give the seller back what the reversals of a refund that failed after succeeding took.

    Called once per refund, by the transaction that records the failure. A reversal not yet
    made (pending, or failed and waiting for a retry) is stopped — no job or retry sends it
    any more — and one that was made is given back by a restore: a transfer of the same
    amount, keyed ``restore-<reversal>``, from the platform's balance (where the refund's
    money came back). A stopped reversal gets a restore too, which runs a while later and
    first looks at the provider: a call in flight when it was stopped may have been made
    (and is then given back), or not (and the restore ends with nothing to do). Returns
    how much is being given back now, and how much was stopped.
    """
    session = uow.session
    await session.execute(
        update(PaymentTransfer)
        .where(
            PaymentTransfer.refund_id == refund.id,
            PaymentTransfer.kind == TransferKind.REVERSAL,
            or_(
                PaymentTransfer.status == TransferStatus.PENDING,
                and_(
                    PaymentTransfer.status == TransferStatus.FAILED,
                    PaymentTransfer.failure_code.not_in(NOTHING_MOVED),
                ),
            ),
        )
        .values(status=TransferStatus.FAILED, failure_code=REFUND_FAILED, failed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    reversals = (
        await session.scalars(
            select(PaymentTransfer)
            .where(
                PaymentTransfer.refund_id == refund.id,
                PaymentTransfer.kind == TransferKind.REVERSAL,
                or_(
                    PaymentTransfer.status == TransferStatus.SUCCEEDED,
                    PaymentTransfer.failure_code == REFUND_FAILED,
                ),
            )
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    later = utcnow() + PaymentSettings.from_settings(ctx.settings).reconcile_after
    queued: list[tuple[UUID, datetime | None]] = []
    for reversal in reversals:
        restore = _pending_after(
            reversal,
            TransferKind.RESTORE,
            reversal.amount,
            f"restore-{reversal.id}",
            refund_id=refund.id,
            transfer_id=reversal.id,
        )
        session.add(restore)
        made = reversal.status == TransferStatus.SUCCEEDED
        queued.append((restore.id, None if made else later))
    await session.flush()
    for restore_id, run_at in queued:
        _queue_execute(ctx, uow, restore_id, run_at=run_at)
    given_back = sum(r.amount for r in reversals if r.status == TransferStatus.SUCCEEDED)
    return given_back, sum(r.amount for r in reversals) - given_back


async def _top_up(
    ctx: AppContext, uow: UnitOfWork, order: Order, refund: Refund
) -> tuple[int, PaymentTransfer | None]:
    """Send what the seller's account is short for an order once ``refund`` failed after
    succeeding: its ledger less what the account holds for it or will (``_bound_for``),
    restores included. Short when no reversal of the refund was there to give back — the
    order's transfer failed, the refund took nothing from it, and its retry sent what the
    order owed then. Nothing for an order paid without transfers (a destination charge, or
    a seller with no connected account): there the ledger is all there is. Keyed by the
    refund, which fails after succeeding once: ``top-up-<refund>``. The amount sent, and the
    order's transfer."""
    session = uow.session
    rows = (
        await session.scalars(
            select(PaymentTransfer)
            .where(PaymentTransfer.order_id == order.id)
            .order_by(PaymentTransfer.created_at, PaymentTransfer.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    transfer = next((row for row in rows if row.kind == TransferKind.TRANSFER), None)
    if transfer is None:
        return 0, None
    short = await order_ledger(session, order.id) - _bound_for(rows)
    if short <= 0:
        return 0, transfer
    top_up = _pending_after(
        transfer, TransferKind.TOP_UP, short, f"top-up-{refund.id}", refund_id=refund.id
    )
    session.add(top_up)
    await session.flush()
    log.warning(
        "a seller's account is short for an order: topping it up",
        extra={"order_id": str(order.id), "refund_id": str(refund.id), "short": short},
    )
    _queue_execute(ctx, uow, top_up.id)
    return short, transfer


def _bound_for(rows: Sequence[PaymentTransfer]) -> int:
    """What a seller's account will hold for an order once what is under way lands: what was
    sent, is on its way or failed and is to be sent again (its retry sends what the order
    still owes), less what was taken back, is being taken or is to be taken again. Failures
    that moved nothing count for nothing, and so does the restore of a stopped reversal
    until that reversal turns out made: then both count, and cancel out."""
    reversals_made = {
        row.id
        for row in rows
        if row.kind == TransferKind.REVERSAL and row.status == TransferStatus.SUCCEEDED
    }
    bound = 0
    for row in rows:
        if row.status == TransferStatus.FAILED and row.failure_code in NOTHING_MOVED:
            continue
        if row.kind == TransferKind.REVERSAL:
            bound -= row.amount
        elif row.kind != TransferKind.RESTORE or row.transfer_id in reversals_made:
            bound += row.amount
    return bound


async def execute_transfer(
    ctx: AppContext, transfer_id: UUID, *, last_attempt: bool = False
) -> TransferStatus:
    """Ask the provider for a pending transfer, reversal, restore or top-up (idempotent by its
    key) and record the answer. A provider that cannot be reached raises, so the job tries
    again — unless this is its ``last_attempt``: then the row fails (``provider_unavailable``)
    and the operator is told. A refusal fails the row and tells the operator at once."""
    async with ctx.uow() as uow:
        row = await uow.session.get(PaymentTransfer, transfer_id, populate_existing=True)
        if row is None:
            return TransferStatus.FAILED
        if row.status != TransferStatus.PENDING:
            return TransferStatus(row.status)
        payment = await uow.session.get(Payment, row.payment_id)
        assert payment is not None
        kind, parent_id = row.kind, row.transfer_id
        provider_name, payment_ref = payment.provider, payment.provider_ref
        request = TransferRequest(
            amount=row.amount,
            currency=row.currency,
            destination=row.destination,
            idempotency_key=row.idempotency_key,
            transfer_group=transfer_group(payment.checkout_id),
            metadata={"order_id": str(row.order_id), "payment_id": str(payment.id)},
        )
        refund_id = row.refund_id
    connect = _connect(ctx)
    try:
        if kind == TransferKind.TRANSFER:
            assert payment_ref is not None  # a settled payment has its provider reference
            charge = (await provider_named(ctx, provider_name).retrieve(payment_ref)).charge_ref
            done = await connect.create_transfer(replace(request, source_charge=charge))
        elif kind == TransferKind.RESTORE:
            assert parent_id is not None
            if not await _reversal_made(ctx, connect, parent_id):
                return await _settle_transfer(ctx, transfer_id, None, REVERSAL_NOT_MADE)
            # From the platform's balance, where the failed refund's money came back.
            metadata = {**request.metadata, "reversal_id": str(parent_id)}
            done = await connect.create_transfer(replace(request, metadata=metadata))
        elif kind == TransferKind.TOP_UP:
            # From the platform's balance too; marked, so it is never taken for the order's
            # own transfer (``find_transfer``).
            top_up = {"refund_id": str(refund_id), "kind": TransferKind.TOP_UP.value}
            done = await connect.create_transfer(
                replace(request, metadata={**request.metadata, **top_up})
            )
        else:
            assert parent_id is not None
            parent_status = await execute_transfer(ctx, parent_id)
            if parent_status == TransferStatus.FAILED:
                # Nothing reached the seller, so there is nothing to take back (a retried
                # transfer sends only what the order still owes them).
                return await _settle_transfer(ctx, transfer_id, None, TRANSFER_FAILED)
            async with ctx.uow() as uow:
                parent = await uow.session.get(PaymentTransfer, parent_id)
                assert parent is not None and parent.provider_ref is not None
                parent_ref = parent.provider_ref
            done = await connect.reverse_transfer(
                parent_ref,
                request.amount,
                request.idempotency_key,
                {"refund_id": str(refund_id), "order_id": request.metadata["order_id"]},
            )
    except ProviderRefused as exc:
        code = str(exc.details.get("provider_code") or "refused")
        return await _settle_transfer(ctx, transfer_id, None, code)
    except PaymentProviderError:
        if not last_attempt:
            raise  # the job asks again, with backoff, under the same key
        return await _settle_transfer(ctx, transfer_id, None, UNANSWERED)
    return await _settle_transfer(ctx, transfer_id, done, None, request.idempotency_key)


async def _reversal_made(ctx: AppContext, connect: ConnectProvider, reversal_id: UUID) -> bool:
    """Whether a reversal took money from the seller — for a stopped one (its refund failed
    after all), as the provider shows it: a call in flight when it was stopped may have
    landed, and is then recorded."""
    async with ctx.uow() as uow:
        reversal = await uow.session.get(PaymentTransfer, reversal_id, populate_existing=True)
        assert reversal is not None and reversal.transfer_id is not None
        if reversal.status == TransferStatus.SUCCEEDED:
            return True
        if reversal.failure_code != REFUND_FAILED:
            return False
        parent = await uow.session.get(PaymentTransfer, reversal.transfer_id)
        assert parent is not None
        parent_ref, refund_id = parent.provider_ref, reversal.refund_id
    if parent_ref is None:
        return False  # its transfer was never made: nothing could be taken from it
    made = await connect.find_reversal(parent_ref, str(refund_id))
    if made is None:
        return False
    async with ctx.uow() as uow:
        await _record_stopped_reversal(ctx, uow, reversal_id, made.ref)
    return True


async def _record_stopped_reversal(
    ctx: AppContext, uow: UnitOfWork, reversal_id: UUID, ref: str
) -> None:
    """The provider made a reversal we had stopped (its refund failed after all while the
    call was in flight): record it made, and have its restore give it back — again, if
    the restore had already found nothing to give."""
    session = uow.session
    recorded = await session.execute(
        update(PaymentTransfer)
        .where(
            PaymentTransfer.id == reversal_id,
            PaymentTransfer.status == TransferStatus.FAILED,
            PaymentTransfer.failure_code == REFUND_FAILED,
        )
        .values(
            status=TransferStatus.SUCCEEDED, provider_ref=ref, failure_code=None, failed_at=None
        )
        .execution_options(synchronize_session=False)
    )
    if not changed(recorded):
        return
    log.warning("a stopped reversal had been made", extra={"transfer_id": str(reversal_id)})
    restore_id = await session.scalar(
        select(PaymentTransfer.id).where(
            PaymentTransfer.transfer_id == reversal_id,
            PaymentTransfer.kind == TransferKind.RESTORE,
        )
    )
    assert restore_id is not None  # made with the stop, in the same transaction
    rearmed = await session.execute(
        update(PaymentTransfer)
        .where(
            PaymentTransfer.id == restore_id,
            PaymentTransfer.status == TransferStatus.FAILED,
            PaymentTransfer.failure_code == REVERSAL_NOT_MADE,
        )
        .values(status=TransferStatus.PENDING, failure_code=None, failed_at=None)
        .execution_options(synchronize_session=False)
    )
    if changed(rearmed):
        _queue_execute(ctx, uow, restore_id, again="reversal-made")


async def _settle_transfer(
    ctx: AppContext,
    transfer_id: UUID,
    made: ProviderTransfer | None,
    failure_code: str | None,
    key: str = "",
) -> TransferStatus:
    """Record the provider's answer once (pending → succeeded or failed); a failure is logged
    and the operator is mailed in the same transaction. No ledger row either way: the ledger
    already holds the seller's share, and it stays theirs until it is sent.

    Money that reached a seller's account is checked against what the order owes them (a
    transfer or restore found made after all may hold a refund's part: it is taken back).
    A ``made`` answer that comes after the row was settled otherwise is recorded too: a
    reversal stopped meanwhile (its refund failed after all), or a call under the row's key
    (``key``) that outlived the attempt whose silence failed it."""
    status = TransferStatus.FAILED if failure_code else TransferStatus.SUCCEEDED
    async with ctx.uow() as uow:
        session = uow.session
        if made is not None:
            # The refunds that decide what the order owes its seller settle under this lock.
            order_id = await session.scalar(
                select(PaymentTransfer.order_id).where(PaymentTransfer.id == transfer_id)
            )
            assert order_id is not None
            await locked_order(session, order_id)
        settled = await session.execute(
            update(PaymentTransfer)
            .where(
                PaymentTransfer.id == transfer_id,
                PaymentTransfer.status == TransferStatus.PENDING,
            )
            .values(
                status=status,
                provider_ref=made.ref if made is not None else None,
                failure_code=failure_code,
                failed_at=utcnow() if failure_code else None,
            )
            .execution_options(synchronize_session=False)
        )
        row = await session.get(PaymentTransfer, transfer_id, populate_existing=True)
        assert row is not None
        if changed(settled):
            if failure_code is not None and failure_code not in NOTHING_MOVED:
                await _alert_operator(ctx, uow, row)
            elif made is not None and row.kind in SENDING:
                await _take_back_over_sent(ctx, uow, row.order_id)
        elif made is not None and row.failure_code == REFUND_FAILED:
            await _record_stopped_reversal(ctx, uow, transfer_id, made.ref)
        elif made is not None and row.failure_code == UNANSWERED and row.idempotency_key == key:
            await _record_made_after_all(ctx, uow, row, made, retries=row.retries)
        row = await session.get(PaymentTransfer, transfer_id, populate_existing=True)
        assert row is not None
        return TransferStatus(row.status)


async def _record_made_after_all(
    ctx: AppContext, uow: UnitOfWork, row: PaymentTransfer, made: ProviderTransfer, *, retries: int
) -> list[UUID] | None:
    """A transfer, reversal, restore or top-up recorded failed was made by the provider after
    all (found by ``retry_transfer``, or an answer that came late): record it made, as the
    provider made it, and — for money sent to the seller — take back from it what the order
    no longer owes them (refunds settled meanwhile took nothing back from it). The reversals
    queued, or None when another caller recorded it first."""
    session = uow.session
    await locked_order(session, row.order_id)
    recorded = await session.execute(
        update(PaymentTransfer)
        .where(
            PaymentTransfer.id == row.id,
            PaymentTransfer.status == TransferStatus.FAILED,
            PaymentTransfer.retries == row.retries,
        )
        .values(
            status=TransferStatus.SUCCEEDED,
            provider_ref=made.ref,
            amount=made.amount,
            failure_code=None,
            failed_at=None,
            retries=retries,
        )
        .execution_options(synchronize_session=False)
    )
    if not changed(recorded):
        return None
    log.warning(
        "a failed transfer had been made after all",
        extra={"transfer_id": str(row.id), "kind": row.kind, "ref": made.ref},
    )
    if row.kind not in SENDING:
        return []
    return await _take_back_over_sent(ctx, uow, row.order_id)


async def _alert_operator(ctx: AppContext, uow: UnitOfWork, row: PaymentTransfer) -> None:
    """Log a failed transfer, reversal, restore or top-up loudly, and mail the operator when
    there is one."""
    shop = await uow.session.get(Shop, row.shop_id)
    shop_name = f"{shop.name} (@{shop.handle})" if shop else str(row.shop_id)
    amount = format_price(row.amount, row.currency)
    if row.kind == TransferKind.TRANSFER:
        subject = f"Craftreel: a transfer of {amount} to {shop_name} failed"
        what = (
            f"Stripe did not send {amount} to the connected account {row.destination} "
            f"of {shop_name} for order {row.order_id}."
        )
        after = (
            "Nothing was written to the seller's ledger: the money stays on the platform's "
            "balance, owed to them, and their dashboard shows the transfer as not sent."
        )
    elif row.kind == TransferKind.RESTORE:
        subject = f"Craftreel: giving {amount} back to {shop_name} failed"
        what = (
            f"Stripe did not send {amount} to the connected account {row.destination} "
            f"of {shop_name}: their part of refund {row.refund_id} of order {row.order_id}, "
            "taken back when the refund was made, and theirs again since the refund failed "
            "after all."
        )
        after = (
            "The money stays on the platform's balance, owed to them (it is back in their "
            "ledger), and their dashboard shows it as not sent."
        )
    elif row.kind == TransferKind.TOP_UP:
        subject = f"Craftreel: a top-up of {amount} to {shop_name} failed"
        what = (
            f"Stripe did not send {amount} to the connected account {row.destination} "
            f"of {shop_name}: what their account was short for order {row.order_id} once "
            f"refund {row.refund_id} failed after succeeding. The refund's part is theirs "
            "again, and no reversal of it was there to give back: the order's transfer was "
            "sent after the refund, for what the order owed then."
        )
        after = (
            "The money stays on the platform's balance, owed to them (it is back in their "
            "ledger), and their dashboard shows it as not sent."
        )
    else:
        subject = f"Craftreel: taking back {amount} from {shop_name} failed"
        what = (
            f"Stripe did not take {amount} back from the connected account {row.destination} "
            f"of {shop_name} for refund {row.refund_id} of order {row.order_id}."
        )
        after = "The buyer's refund was made; the seller's part of it is still in their account."
    text = "\n".join(
        [
            what,
            "",
            f"Why: {failure_text(row.failure_code, row.kind)} ({row.failure_code}).",
            "",
            after,
            "",
            "Once the cause is fixed, send it again with:",
            f"    craftreel payments retry-transfer {row.id}",
            "",
        ]
    )
    alert_operator(
        ctx,
        uow,
        "a transfer failed",
        {
            "transfer_id": str(row.id),
            "kind": row.kind,
            "order_id": str(row.order_id),
            "code": row.failure_code,
        },
        subject,
        text,
    )


async def retry_transfer(ctx: AppContext, transfer_id: UUID) -> TransferStatus:
    """Send a failed transfer, reversal, restore or top-up again (an operator's command, once
    its cause is fixed); its outcome now, or pending when the provider did not answer (its job
    goes on).

    A transfer is looked for at the provider first — one whose every attempt went unanswered
    may have been made: it is then recorded made, and the refunds settled meanwhile take
    their part back from it — and otherwise sent as what the order still owes the seller
    (its ledger less what their account holds for it: refunds made meanwhile took nothing
    back from a transfer that never arrived), under a new key, since the provider remembers
    the refused key's answer. A reversal, restore or top-up keeps its key when its outcome
    was unknown and takes a new one after a refusal (a restore or top-up then sends at most what
    the order still owes). One that failed without moving money is not sent again.

    What the order owes is read under its lock, in the transaction that sends the row again:
    a refund that settles or fails after succeeding (and so changes it) either comes first
    and is counted, or comes after and sees the row on its way, at the amount it goes for.
    """
    connect = _connect(ctx)
    async with ctx.uow() as uow:
        row = await uow.session.get(PaymentTransfer, transfer_id, populate_existing=True)
        if row is None:
            raise TransferNotFound()
        if row.status != TransferStatus.FAILED:
            raise TransferNotFailed(status=row.status)
        payment = await uow.session.get(Payment, row.payment_id)
        assert payment is not None
        group, order_id = transfer_group(payment.checkout_id), row.order_id
        amount = row.amount
        # It may have been made: only its own key can tell (a transfer is looked for instead).
        same_key = row.kind != TransferKind.TRANSFER and row.failure_code == UNANSWERED
        if row.failure_code == TRANSFER_FAILED:
            raise TransferNotRetryable(
                "Its transfer was never made, so there is nothing to take back; retry the "
                "transfer instead (it sends only what the order still owes).",
                transfer_id=str(row.transfer_id),
            )
        if row.failure_code in (REFUND_FAILED, REVERSAL_NOT_MADE):
            raise TransferNotRetryable(
                f"Not to be sent: {failure_text(row.failure_code)}.", refund_id=str(row.refund_id)
            )
    # Looked for even when the order was refunded in full meanwhile: if it was made, all of
    # it is the seller's to give back.
    made = (
        await connect.find_transfer(group, str(order_id))
        if row.kind == TransferKind.TRANSFER
        else None
    )
    retries = row.retries + 1
    if made is not None:
        async with ctx.uow() as uow:
            taking = await _record_made_after_all(ctx, uow, row, made, retries=retries)
            if taking is None:
                raise TransferNotFailed()
        for reversal_id in taking:
            await try_transfer(ctx, reversal_id)
        return TransferStatus.SUCCEEDED
    async with ctx.uow() as uow:
        await locked_order(uow.session, order_id)
        if row.kind in SENDING and not same_key:
            owed = await owed_to_seller(uow.session, order_id)
            amount = min(row.amount, owed)
            if amount <= 0:
                raise TransferNotRetryable(
                    "Nothing is left to send: the order was refunded.", owed=owed
                )
        first_key = row.idempotency_key.split("-retry-")[0]
        key = row.idempotency_key if same_key else f"{first_key}-retry-{retries}"
        moved = await uow.session.execute(
            update(PaymentTransfer)
            .where(
                PaymentTransfer.id == transfer_id,
                PaymentTransfer.status == TransferStatus.FAILED,
                PaymentTransfer.retries == row.retries,
            )
            .values(
                status=TransferStatus.PENDING,
                idempotency_key=key,
                amount=amount,
                retries=retries,
                failed_at=None,
                failure_code=None,
            )
            .execution_options(synchronize_session=False)
        )
        if not changed(moved):
            raise TransferNotFailed()
        _queue_execute(ctx, uow, transfer_id, again=f"retry-{retries}")
    try:
        return await execute_transfer(ctx, transfer_id)
    except PaymentProviderError:
        return TransferStatus.PENDING  # its job asks again


async def owed_to_seller(session: AsyncSession, order_id: UUID) -> int:
    """What an order still owes its seller at the provider: its ledger (their share less
    refunds) less what their connected account holds for it (sent less taken back)."""
    held = await _held(session, order_id, PaymentTransfer.status == TransferStatus.SUCCEEDED)
    return await order_ledger(session, order_id) - held


#: A transfer row's part in what a seller's account holds: a reversal takes, the rest give.
_SIGNED_AMOUNT = case(
    (PaymentTransfer.kind == TransferKind.REVERSAL, -PaymentTransfer.amount),
    else_=PaymentTransfer.amount,
)


async def _held(session: AsyncSession, order_id: UUID, which: ColumnElement[bool]) -> int:
    """What a seller's connected account holds for an order by the transfer rows ``which``
    picks (a SQL condition): what they gave less what reversals took."""
    total = await session.scalar(
        select(func.coalesce(func.sum(_SIGNED_AMOUNT), 0)).where(
            PaymentTransfer.order_id == order_id, which
        )
    )
    return int(total or 0)


async def order_ledger(session: AsyncSession, order_id: UUID) -> int:
    """What an order owes its seller, all told: the sum of its ledger rows (their share,
    less refunds and the fees given back with them)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.order_id == order_id
        )
    )
    return int(total or 0)


async def try_transfer(ctx: AppContext, transfer_id: UUID) -> None:
    """Make a queued transfer now if the provider answers (its job stays as the safety net)."""
    try:
        await execute_transfer(ctx, transfer_id)
    except PaymentProviderError:
        log.warning("transfer left to its job", extra={"transfer_id": str(transfer_id)})


# --- payouts ----------------------------------------------------------------------------


async def record_payout(
    session: AsyncSession,
    provider_name: str,
    event_type: str,
    account_ref: str | None,
    payout: ProviderPayout,
) -> None:
    """A payout left a seller's account (``payout.paid``) or came back (``payout.failed``):
    ledger rows unique by payout, so repeats and any order of arrival end the same."""
    if account_ref is None:
        return
    shop_id = await session.scalar(
        select(PayoutAccount.shop_id).where(
            PayoutAccount.provider == provider_name, PayoutAccount.account_ref == account_ref
        )
    )
    if shop_id is None:
        log.warning("payout for an account we do not know", extra={"ref": account_ref})
        return
    # A returned payout was paid out first (or never left): its two rows net to nothing.
    await add_shop_entry(
        session, shop_id, LedgerKind.PAYOUT, -payout.amount, payout.currency, f"payout:{payout.ref}"
    )
    if event_type in PAYOUT_RETURNED:
        await add_shop_entry(
            session,
            shop_id,
            LedgerKind.PAYOUT_REVERSAL,
            payout.amount,
            payout.currency,
            f"payout_reversal:{payout.ref}",
        )
