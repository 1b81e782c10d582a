"""All shop SQL. Stock changes are conditional atomic updates, never read-then-write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from craftreel.core.db import like_pattern
from craftreel.media.models import MediaObject
from craftreel.shop.models import (
    CartLine,
    Checkout,
    CheckoutStatus,
    Listing,
    ListingStatus,
    Order,
    OrderLine,
    OrderStatus,
    Reservation,
    Review,
    Shop,
    Variant,
)

#: Loads a listing's shipping profile id with it (a deferred column, see ``Listing``).
WITH_SHIPPING = undefer(Listing.shipping_profile_id)


async def shop_of_owner(session: AsyncSession, owner_id: UUID) -> Shop | None:
    return await session.scalar(select(Shop).where(Shop.owner_id == owner_id))


async def shop_by_handle(session: AsyncSession, handle: str) -> Shop | None:
    return await session.scalar(select(Shop).where(Shop.handle == handle.lower()))


async def shops_by_ids(session: AsyncSession, ids: set[UUID]) -> dict[UUID, Shop]:
    if not ids:
        return {}
    rows = await session.scalars(select(Shop).where(Shop.id.in_(ids)))
    return {shop.id: shop for shop in rows}


async def listing_with_shop(session: AsyncSession, listing_id: UUID) -> tuple[Listing, Shop] | None:
    row = (
        await session.execute(
            select(Listing, Shop)
            .join(Shop, Shop.id == Listing.shop_id)
            .where(Listing.id == listing_id)
            .options(WITH_SHIPPING)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def locked_listing_with_shop(
    session: AsyncSession, listing_id: UUID
) -> tuple[Listing, Shop] | None:
    """A listing and its shop, the listing's row locked until commit (PostgreSQL; on SQLite
    writers queue anyway), so changes to its photo list never overwrite each other."""
    row = (
        await session.execute(
            select(Listing, Shop)
            .join(Shop, Shop.id == Listing.shop_id)
            .where(Listing.id == listing_id)
            .with_for_update(of=Listing)
            .options(WITH_SHIPPING)
            .execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else (row[0], row[1])


def photo_ids(listing: Listing) -> list[UUID]:
    return [UUID(str(value)) for value in listing.photo_media_ids or []]


async def photos_of(
    session: AsyncSession, listings: Sequence[Listing], first_only: bool = False
) -> dict[UUID, MediaObject]:
    """The photos of these listings (or only each one's first), by media id; one query."""
    wanted: set[UUID] = set()
    for listing in listings:
        ids = photo_ids(listing)
        wanted.update(ids[:1] if first_only else ids)
    if not wanted:
        return {}
    rows = await session.scalars(select(MediaObject).where(MediaObject.id.in_(wanted)))
    return {media.id: media for media in rows}


async def set_photos_public(
    session: AsyncSession, owner_id: UUID, media_ids: Sequence[UUID], public: bool
) -> None:
    """Show (or stop showing) a listing's photos to everyone."""
    if not media_ids:
        return
    await session.execute(
        update(MediaObject)
        .where(MediaObject.id.in_(media_ids), MediaObject.owner_id == owner_id)
        .values(is_public=public)
        .execution_options(synchronize_session=False)
    )


async def cart_count(session: AsyncSession, buyer_id: UUID) -> int:
    """How many items are in a buyer's cart (the app bar's badge)."""
    total = await session.scalar(
        select(func.sum(CartLine.quantity)).where(CartLine.buyer_id == buyer_id)
    )
    return int(total or 0)


async def variants_of(
    session: AsyncSession, listing_ids: Sequence[UUID]
) -> dict[UUID, list[Variant]]:
    out: dict[UUID, list[Variant]] = {listing_id: [] for listing_id in listing_ids}
    if not listing_ids:
        return out
    rows = await session.scalars(
        select(Variant)
        .where(Variant.listing_id.in_(listing_ids))
        .order_by(Variant.position, Variant.id)
    )
    for variant in rows:
        out[variant.listing_id].append(variant)
    return out


async def browse(
    session: AsyncSession,
    category: str | None,
    text: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Sequence[tuple[Listing, Shop]]:
    """Active listings, newest first (keyset), optionally by category and words."""
    query = (
        select(Listing, Shop)
        .join(Shop, Shop.id == Listing.shop_id)
        .where(Listing.status.in_([ListingStatus.ACTIVE, ListingStatus.SOLD_OUT]))
        .options(WITH_SHIPPING)
    )
    if category:
        query = query.where(Listing.category == category)
    if text:
        query = query.where(Listing.title.ilike(like_pattern(text), escape="\\"))
    if after is not None:
        query = query.where(
            or_(
                Listing.created_at < after[0],
                and_(Listing.created_at == after[0], Listing.id < after[1]),
            )
        )
    query = query.order_by(Listing.created_at.desc(), Listing.id.desc()).limit(limit + 1)
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def listings_of_shop(
    session: AsyncSession,
    shop_id: UUID,
    statuses: Sequence[str],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Sequence[Listing]:
    """One shop's listings in these states, newest first (keyset)."""
    query = (
        select(Listing)
        .where(Listing.shop_id == shop_id, Listing.status.in_(statuses))
        .options(WITH_SHIPPING)
    )
    if after is not None:
        query = query.where(
            or_(
                Listing.created_at < after[0],
                and_(Listing.created_at == after[0], Listing.id < after[1]),
            )
        )
    query = query.order_by(Listing.created_at.desc(), Listing.id.desc()).limit(limit + 1)
    return (await session.scalars(query)).all()


async def shop_rating(session: AsyncSession, shop_id: UUID) -> tuple[float | None, int]:
    """The shop's mean stars (two decimals) and how many reviews it rests on."""
    mean, count = (
        await session.execute(
            select(func.avg(Review.stars), func.count(Review.id)).where(Review.shop_id == shop_id)
        )
    ).one()
    return (round(float(mean), 2) if mean is not None else None), int(count)


async def change_variant(
    session: AsyncSession,
    listing_id: UUID,
    variant_id: UUID,
    values: dict[str, object],
    stock_was: int | None,
) -> bool:
    """Change a variant of this listing; with ``stock_was``, only while its stock is still that
    (a sale in between makes it false, so a seller's stale form never overwrites a sale)."""
    query = update(Variant).where(Variant.id == variant_id, Variant.listing_id == listing_id)
    if stock_was is not None:
        query = query.where(Variant.stock == stock_was)
    result = await session.execute(
        query.values(**values).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def cart_rows(
    session: AsyncSession, buyer_id: UUID
) -> Sequence[tuple[CartLine, Variant, Listing, Shop]]:
    rows = await session.execute(
        select(CartLine, Variant, Listing, Shop)
        .join(Variant, Variant.id == CartLine.variant_id)
        .join(Listing, Listing.id == Variant.listing_id)
        .join(Shop, Shop.id == Listing.shop_id)
        .where(CartLine.buyer_id == buyer_id)
        .order_by(CartLine.added_at, CartLine.variant_id)
        .options(WITH_SHIPPING)
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows.all()]


async def clear_cart(session: AsyncSession, buyer_id: UUID) -> None:
    await session.execute(delete(CartLine).where(CartLine.buyer_id == buyer_id))


async def take_stock(session: AsyncSession, variant_id: UUID, quantity: int) -> bool:
    """Hold ``quantity`` units if that many are left (made-to-order stock is unlimited)."""
    result = await session.execute(
        update(Variant)
        .where(Variant.id == variant_id, or_(Variant.stock.is_(None), Variant.stock >= quantity))
        .values(stock=Variant.stock - quantity)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def give_back_stock(session: AsyncSession, variant_id: UUID, quantity: int) -> None:
    await session.execute(
        update(Variant)
        .where(Variant.id == variant_id, Variant.stock.is_not(None))
        .values(stock=Variant.stock + quantity)
    )


async def lapse_checkout(session: AsyncSession, checkout_id: UUID, now: datetime) -> bool:
    """Mark an unpaid checkout expired — true for exactly one caller."""
    result = await session.execute(
        update(Checkout)
        .where(
            Checkout.id == checkout_id,
            Checkout.status == CheckoutStatus.OPEN,
            Checkout.expires_at <= now,
        )
        .values(status=CheckoutStatus.EXPIRED)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_reservations(session: AsyncSession, checkout_id: UUID, now: datetime) -> int:
    rows = (
        await session.scalars(
            select(Reservation).where(
                Reservation.checkout_id == checkout_id, Reservation.released_at.is_(None)
            )
        )
    ).all()
    for reservation in rows:
        claimed = await session.execute(
            update(Reservation)
            .where(Reservation.id == reservation.id, Reservation.released_at.is_(None))
            .values(released_at=now)
        )
        if claimed.rowcount:  # type: ignore[attr-defined]
            await give_back_stock(session, reservation.variant_id, reservation.quantity)
    await session.execute(
        update(Order)
        .where(Order.checkout_id == checkout_id, Order.status == OrderStatus.PLACED)
        .values(status=OrderStatus.CANCELLED)
    )
    return len(rows)


async def orders_of_checkout(
    session: AsyncSession, checkout_id: UUID
) -> Sequence[tuple[Order, Shop, list[OrderLine]]]:
    orders = (
        await session.execute(
            select(Order, Shop)
            .join(Shop, Shop.id == Order.shop_id)
            .where(Order.checkout_id == checkout_id)
            .order_by(Order.id)
        )
    ).all()
    lines = (
        await session.scalars(
            select(OrderLine)
            .where(OrderLine.order_id.in_([o.id for o, _ in orders]))
            .order_by(OrderLine.id)
        )
    ).all()
    return [(o, s, [line for line in lines if line.order_id == o.id]) for o, s in orders]
