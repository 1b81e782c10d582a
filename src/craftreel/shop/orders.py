"""After checkout: the order's journey, the buyer's history, the seller's dashboard, and
reviews. Every transition is one conditional update, and tells the buyer's and the seller's
open pages (``order.updated``, see ``shop.live``).

The journey: placed → paid → shipped (carrier, tracking number) → delivered → completed;
a paid order not yet shipped may be cancelled (stock back, payment refunded). An order of
nothing but digital downloads has nothing to ship — the download is its delivery — so it
goes from paid straight to delivered, in the same transaction that marks it paid: it never
waits among the seller's orders "to ship", cannot be cancelled once its files are open, and
its buyer may review it (and complete it) at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, NotFound
from craftreel.core.mail import Mail
from craftreel.core.pagination import decode_time_cursor, page_of
from craftreel.media.models import MediaObject
from craftreel.shop import live, photos, shipping
from craftreel.shop import repository as repo
from craftreel.shop.downloads import UNLOCKED
from craftreel.shop.models import (
    Checkout,
    CheckoutStatus,
    Listing,
    ListingKind,
    Order,
    OrderLine,
    OrderStatus,
    Review,
    Shipment,
    Shop,
    Variant,
)
from craftreel.shop.payments import (
    LedgerEntry,
    Payment,
    Refund,
    RefundStatus,
    bounced_not_refunded_again,
)
from craftreel.shop.schemas import ShippingChoice


class OrderNotFound(NotFound):
    """No such order, or not yours to see."""

    code = "order_not_found"
    message = "That order does not exist."


class WrongOrderState(Conflict):
    """The order is not in a state that allows this."""

    code = "wrong_order_state"
    message = "That cannot be done to this order now."


class AlreadyReviewed(Conflict):
    """Each bought line is reviewed once."""

    code = "already_reviewed"
    message = "You have already reviewed this."


class AlreadyReplied(Conflict):
    """The seller replies to a review once."""

    code = "already_replied"
    message = "You have already replied to this review."


class ReviewNotFound(NotFound):
    """No such review of yours."""

    code = "review_not_found"
    message = "That review does not exist."


class ReviewHasPhoto(Conflict):
    """A review carries one photo."""

    code = "review_has_photo"
    message = "This review already has a photo."


class ShipmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carrier: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    tracking_number: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)
    ]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stars: Annotated[int, Field(ge=1, le=5)]
    text: str = Field(default="", max_length=4000)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class OrderSummary(BaseModel):
    id: UUID
    shop_handle: str
    status: str
    currency: str
    total: int
    carrier: str | None
    tracking_number: str | None
    created_at: datetime
    #: How the buyer chose to have it sent: "Express (1–2 days)" (None: nothing to send).
    shipping_method: str | None = None


class ReviewOut(BaseModel):
    id: UUID
    order_line_id: UUID
    stars: int
    text: str
    reply: str | None
    created_at: datetime
    photo_url: str | None = None


class ReviewView(ReviewOut):
    """A review as shown with a listing, a shop or an order: who wrote it, about what."""

    listing_id: UUID
    item_title: str
    author_handle: str
    author_name: str
    author_avatar_url: str | None
    replied_at: datetime | None


class OrderLineView(BaseModel):
    id: UUID
    variant_id: UUID
    listing_id: UUID
    title: str
    unit_price: int
    quantity: int
    line_total: int
    digital: bool
    review: ReviewView | None


class OrderDetail(BaseModel):
    """One order as its buyer or its seller sees it."""

    id: UUID
    checkout_id: UUID
    shop_handle: str
    shop_name: str
    status: str
    currency: str
    items_total: int
    shipping_total: int
    tax_total: int
    total: int
    created_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    carrier: str | None
    tracking_number: str | None
    shipping_address: dict[str, Any]
    #: How it travels, as the buyer chose at checkout (one per shipping profile).
    shipping: list[ShippingChoice]
    lines: list[OrderLineView]
    #: Who is looking: the order's buyer or the shop's owner.
    viewer: Literal["buyer", "seller"]
    #: The newest payment attempt's status and failure code (None before any).
    payment_status: str | None
    payment_failure: str | None
    #: The checkout is still open: an unpaid order can be paid now.
    payable: bool
    downloads_unlocked: bool
    #: Only downloads: delivered as soon as it is paid, nothing to ship.
    digital_only: bool = False
    #: Its buyer may cancel it now (paid, not yet shipped): stock back, payment refunded.
    cancellable: bool = False
    #: Money given back for this order: confirmed by the provider, and still on its way.
    refunded: int = 0
    refund_pending: int = 0
    #: Refunds that failed after they had succeeded: they never reached the buyer's card.
    refund_bounced: int = 0
    #: Of those, what no refund made since has given the buyer: while there is any, the
    #: page says a refund did not go through.
    refund_bounced_open: int = 0
    #: The other orders placed in the same checkout (other shops).
    sibling_order_ids: list[UUID]


class SellerDashboard(BaseModel):
    to_ship: int
    shipped: int
    revenue: dict[str, int]
    rating: float | None
    reviews: int


async def _shop_of(uow: UnitOfWork, user: User) -> Shop:
    shop = await uow.session.scalar(select(Shop).where(Shop.owner_id == user.id))
    if shop is None:
        raise OrderNotFound()
    return shop


async def _transition(
    uow: UnitOfWork, order_id: UUID, where: list[object], to: OrderStatus, allowed: OrderStatus
) -> None:
    result = await uow.session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == allowed, *where)  # type: ignore[arg-type]
        .values(status=to, updated_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        exists = await uow.session.scalar(select(Order.id).where(Order.id == order_id, *where))  # type: ignore[arg-type]
        raise WrongOrderState() if exists else OrderNotFound()


def _has_physical_line() -> Any:
    """Whether an order (the statement's ``orders`` row) holds anything but downloads."""
    return (
        select(OrderLine.id)
        .join(Variant, Variant.id == OrderLine.variant_id)
        .join(Listing, Listing.id == Variant.listing_id)
        .where(OrderLine.order_id == Order.id, Listing.kind != ListingKind.DIGITAL)
        .exists()
    )


async def deliver_downloads(uow: UnitOfWork, checkout_id: UUID) -> None:
    """A checkout was just paid: its digital-only orders are delivered (by download) now."""
    delivered = await uow.session.scalars(
        update(Order)
        .where(
            Order.checkout_id == checkout_id,
            Order.status == OrderStatus.PAID,
            ~_has_physical_line(),
        )
        .values(status=OrderStatus.DELIVERED, updated_at=utcnow())
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    )
    for order_id in delivered.all():
        await live.order_updated(uow, order_id)


async def ship(
    ctx: AppContext, uow: UnitOfWork, seller: User, order_id: UUID, body: ShipmentIn
) -> OrderSummary:
    """The seller sends a paid order, with carrier and tracking number; the buyer is told."""
    shop = await _shop_of(uow, seller)
    await _transition(
        uow, order_id, [Order.shop_id == shop.id], OrderStatus.SHIPPED, OrderStatus.PAID
    )
    uow.session.add(
        Shipment(order_id=order_id, carrier=body.carrier, tracking_number=body.tracking_number)
    )
    await uow.session.flush()
    await live.order_updated(uow, order_id)
    order = await uow.session.get(Order, order_id)
    assert order is not None
    buyer = await uow.session.get(User, order.buyer_id)
    method = shipping.summary(order.shipping_choices or [])
    if buyer is not None:
        ctx.outbox.queue(
            uow,
            Mail(
                to=buyer.email,
                subject=f"Your order from {shop.name} is on its way",
                text=(
                    f"Hi {buyer.display_name},\n\n{shop.name} has sent your order.\n"
                    + (f"Delivery: {method}\n" if method else "")
                    + f"Carrier: {body.carrier}\nTracking number: {body.tracking_number}\n"
                ),
            ),
        )
    return await _summary(uow, order, shop)


async def mark_delivered(uow: UnitOfWork, user: User, order_id: UUID) -> OrderSummary:
    """The buyer (or the seller) says a shipped order arrived."""
    order = await uow.session.get(Order, order_id)
    shop = await uow.session.get(Shop, order.shop_id) if order else None
    if order is None or shop is None or user.id not in (order.buyer_id, shop.owner_id):
        raise OrderNotFound()
    await _transition(uow, order_id, [], OrderStatus.DELIVERED, OrderStatus.SHIPPED)
    await uow.session.execute(
        update(Shipment).where(Shipment.order_id == order_id).values(delivered_at=utcnow())
    )
    await live.order_updated(uow, order_id)
    await uow.session.refresh(order)
    return await _summary(uow, order, shop)


async def complete(uow: UnitOfWork, buyer: User, order_id: UUID) -> OrderSummary:
    """The buyer is happy: a delivered order is completed."""
    await _transition(
        uow, order_id, [Order.buyer_id == buyer.id], OrderStatus.COMPLETED, OrderStatus.DELIVERED
    )
    await live.order_updated(uow, order_id)
    order = await uow.session.get(Order, order_id)
    assert order is not None
    await uow.session.refresh(order)
    shop = await uow.session.get(Shop, order.shop_id)
    assert shop is not None
    return await _summary(uow, order, shop)


async def _summary(uow: UnitOfWork, order: Order, shop: Shop) -> OrderSummary:
    shipment = await uow.session.get(Shipment, order.id)
    return OrderSummary(
        id=order.id,
        shop_handle=shop.handle,
        status=order.status,
        currency=order.currency,
        total=order.total,
        carrier=shipment.carrier if shipment else None,
        tracking_number=shipment.tracking_number if shipment else None,
        created_at=order.created_at,
        shipping_method=shipping.summary(order.shipping_choices or []),
    )


async def _page(
    uow: UnitOfWork, condition: object, cursor: str | None, limit: int
) -> tuple[list[OrderSummary], str | None]:
    query = (
        select(Order, Shop, Shipment)
        .join(Shop, Shop.id == Order.shop_id)
        .outerjoin(Shipment, Shipment.order_id == Order.id)
        .where(condition)  # type: ignore[arg-type]
    )
    if cursor:
        at, order_id = decode_time_cursor(cursor)
        query = query.where(
            or_(Order.created_at < at, and_(Order.created_at == at, Order.id < order_id))
        )
    rows = (
        await uow.session.execute(
            query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
        )
    ).all()
    items, next_cursor = page_of(rows, limit, lambda r: (r[0].created_at, r[0].id))
    return [
        OrderSummary(
            id=o.id,
            shop_handle=s.handle,
            status=o.status,
            currency=o.currency,
            total=o.total,
            carrier=sh.carrier if sh else None,
            tracking_number=sh.tracking_number if sh else None,
            created_at=o.created_at,
            shipping_method=shipping.summary(o.shipping_choices or []),
        )
        for o, s, sh in items
    ], next_cursor


async def buyer_orders(
    uow: UnitOfWork, buyer: User, cursor: str | None, limit: int
) -> tuple[list[OrderSummary], str | None]:
    """My orders, newest first (never anyone else's)."""
    return await _page(uow, Order.buyer_id == buyer.id, cursor, limit)


async def seller_orders(
    uow: UnitOfWork, seller: User, status: OrderStatus | None, cursor: str | None, limit: int
) -> tuple[list[OrderSummary], str | None]:
    """My shop's orders (placed ones are not yet paid, so not shown), newest first."""
    shop = await _shop_of(uow, seller)
    condition = and_(
        Order.shop_id == shop.id,
        Order.status == status if status else Order.status != OrderStatus.PLACED,
    )
    return await _page(uow, condition, cursor, limit)


async def dashboard(uow: UnitOfWork, seller: User) -> SellerDashboard:
    shop = await _shop_of(uow, seller)
    counts = dict(
        (
            await uow.session.execute(
                select(Order.status, func.count())
                .where(Order.shop_id == shop.id)
                .group_by(Order.status)
            )
        ).all()
    )
    paid_states = [
        OrderStatus.PAID,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.COMPLETED,
    ]
    revenue = dict(
        (
            await uow.session.execute(
                select(Order.currency, func.sum(Order.total))
                .where(Order.shop_id == shop.id, Order.status.in_(paid_states))
                .group_by(Order.currency)
            )
        ).all()
    )
    rating, reviews = await repo.shop_rating(uow.session, shop.id)
    return SellerDashboard(
        to_ship=int(counts.get(OrderStatus.PAID, 0)),
        shipped=int(counts.get(OrderStatus.SHIPPED, 0)),
        revenue={str(k): int(v) for k, v in revenue.items()},
        rating=rating,
        reviews=reviews,
    )


async def review(uow: UnitOfWork, buyer: User, order_line_id: UUID, body: ReviewIn) -> ReviewOut:
    """Review a line the buyer received (delivered or completed), once."""
    row = (
        await uow.session.execute(
            select(OrderLine, Order)
            .join(Order, Order.id == OrderLine.order_id)
            .where(OrderLine.id == order_line_id, Order.buyer_id == buyer.id)
        )
    ).first()
    if row is None:
        raise OrderNotFound()
    line, order = row
    if order.status not in (OrderStatus.DELIVERED, OrderStatus.COMPLETED):
        raise WrongOrderState("You can review what you bought once it has arrived.")
    written = Review(
        order_line_id=line.id,
        shop_id=order.shop_id,
        author_id=buyer.id,
        stars=body.stars,
        text=body.text.strip(),
    )
    uow.session.add(written)
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        raise AlreadyReviewed() from exc
    return _review_out(written)


async def reply(uow: UnitOfWork, seller: User, review_id: UUID, body: ReplyIn) -> ReviewOut:
    """The seller answers a review of their shop, once."""
    shop = await _shop_of(uow, seller)
    result = await uow.session.execute(
        update(Review)
        .where(Review.id == review_id, Review.shop_id == shop.id, Review.reply.is_(None))
        .values(reply=body.text, replied_at=utcnow())
    )
    found = await uow.session.get(Review, review_id)
    if found is None or found.shop_id != shop.id:
        raise NotFound("No such review of your shop.")
    if not result.rowcount:  # type: ignore[attr-defined]
        raise AlreadyReplied()
    await uow.session.refresh(found)
    return _review_out(found)


def _review_out(row: Review, photo_url: str | None = None) -> ReviewOut:
    return ReviewOut(
        id=row.id,
        order_line_id=row.order_line_id,
        stars=row.stars,
        text=row.text,
        reply=row.reply,
        created_at=row.created_at,
        photo_url=photo_url,
    )


async def attach_review_photo(
    ctx: AppContext, uow: UnitOfWork, author: User, review_id: UUID, data: bytes
) -> ReviewOut:
    """Add the one photo a review may carry (its author only)."""
    found = await uow.session.get(Review, review_id)
    if found is None or found.author_id != author.id:
        raise ReviewNotFound()
    if found.photo_media_id is not None:
        raise ReviewHasPhoto()
    media_id = await photos.store_review_photo(ctx, uow, author.id, data)
    result = await uow.session.execute(
        update(Review)
        .where(Review.id == review_id, Review.photo_media_id.is_(None))
        .values(photo_media_id=media_id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise ReviewHasPhoto()
    await uow.session.refresh(found)
    media = await uow.session.get(MediaObject, media_id)
    assert media is not None
    return _review_out(found, photos.photo_url(ctx, media))


# --- reading orders and reviews for pages ---------------------------------------------


async def _review_views(
    ctx: AppContext, uow: UnitOfWork, condition: object, limit: int
) -> list[ReviewView]:
    """Reviews matching ``condition``, newest first, with author, item and photo (3 queries)."""
    rows = (
        await uow.session.execute(
            select(Review, OrderLine, Variant.listing_id, User)
            .join(OrderLine, OrderLine.id == Review.order_line_id)
            .join(Variant, Variant.id == OrderLine.variant_id)
            .join(User, User.id == Review.author_id)
            .where(condition)  # type: ignore[arg-type]
            .order_by(Review.created_at.desc(), Review.id.desc())
            .limit(limit)
        )
    ).all()
    media_ids = {review.photo_media_id for review, _, _, _ in rows if review.photo_media_id}
    media = (
        {
            m.id: m
            for m in await uow.session.scalars(
                select(MediaObject).where(MediaObject.id.in_(media_ids))
            )
        }
        if media_ids
        else {}
    )
    views = []
    for review, line, listing_id, author in rows:
        person = accounts.summary(ctx, author)
        photo = media.get(review.photo_media_id) if review.photo_media_id else None
        views.append(
            ReviewView(
                **_review_out(review, photos.photo_url(ctx, photo) if photo else None).model_dump(),
                listing_id=listing_id,
                item_title=line.title,
                author_handle=person.handle,
                author_name=person.display_name,
                author_avatar_url=person.avatar_url,
                replied_at=review.replied_at,
            )
        )
    return views


async def listing_reviews(
    ctx: AppContext, uow: UnitOfWork, listing_id: UUID, limit: int = 20
) -> list[ReviewView]:
    """The newest reviews of what was bought from one listing."""
    return await _review_views(ctx, uow, Variant.listing_id == listing_id, limit)


async def shop_reviews(
    ctx: AppContext, uow: UnitOfWork, shop_id: UUID, limit: int = 20
) -> list[ReviewView]:
    """The newest reviews of a shop."""
    return await _review_views(ctx, uow, Review.shop_id == shop_id, limit)


async def my_shop_reviews(
    ctx: AppContext, uow: UnitOfWork, seller: User, limit: int = 20
) -> list[ReviewView]:
    """The newest reviews of the seller's own shop (to reply to)."""
    shop = await _shop_of(uow, seller)
    return await shop_reviews(ctx, uow, shop.id, limit)


async def order_detail(ctx: AppContext, uow: UnitOfWork, user: User, order_id: UUID) -> OrderDetail:
    """An order for its buyer or its shop's owner; for anyone else it does not exist."""
    session = uow.session
    row = (
        await session.execute(
            select(Order, Shop, Checkout, Shipment)
            .join(Shop, Shop.id == Order.shop_id)
            .join(Checkout, Checkout.id == Order.checkout_id)
            .outerjoin(Shipment, Shipment.order_id == Order.id)
            .where(Order.id == order_id)
        )
    ).first()
    if row is None or user.id not in (row[0].buyer_id, row[1].owner_id):
        raise OrderNotFound()
    order, shop, checkout, shipment = row
    lines = (
        await session.execute(
            select(OrderLine, Listing.id, Listing.kind)
            .join(Variant, Variant.id == OrderLine.variant_id)
            .join(Listing, Listing.id == Variant.listing_id)
            .where(OrderLine.order_id == order.id)
            .order_by(OrderLine.id)
        )
    ).all()
    reviews = {
        review.order_line_id: review
        for review in await _review_views(ctx, uow, OrderLine.order_id == order.id, len(lines) or 1)
    }
    payment = await session.scalar(
        select(Payment)
        .where(Payment.checkout_id == checkout.id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(1)
    )
    paid_at = await session.scalar(
        select(LedgerEntry.created_at).where(LedgerEntry.entry_key == f"sale:{order.id}")
    )
    siblings = (
        await session.scalars(
            select(Order.id)
            .where(Order.checkout_id == checkout.id, Order.id != order.id)
            .order_by(Order.id)
        )
    ).all()
    refunds = (await session.scalars(select(Refund).where(Refund.order_id == order.id))).all()
    is_buyer = user.id == order.buyer_id
    digital_only = bool(lines) and all(kind == ListingKind.DIGITAL for _, _, kind in lines)
    delivered_at = shipment.delivered_at if shipment else None
    if digital_only and order.status in (OrderStatus.DELIVERED, OrderStatus.COMPLETED):
        delivered_at = paid_at
    return OrderDetail(
        id=order.id,
        checkout_id=checkout.id,
        shop_handle=shop.handle,
        shop_name=shop.name,
        status=order.status,
        currency=order.currency,
        items_total=order.items_total,
        shipping_total=order.shipping_total,
        tax_total=order.tax_total,
        total=order.total,
        created_at=order.created_at,
        paid_at=paid_at,
        shipped_at=shipment.shipped_at if shipment else None,
        delivered_at=delivered_at,
        carrier=shipment.carrier if shipment else None,
        tracking_number=shipment.tracking_number if shipment else None,
        shipping_address=dict(checkout.shipping_address or {}),
        shipping=[ShippingChoice(**choice) for choice in order.shipping_choices or []],
        lines=[
            OrderLineView(
                id=line.id,
                variant_id=line.variant_id,
                listing_id=listing_id,
                title=line.title,
                unit_price=line.unit_price,
                quantity=line.quantity,
                line_total=line.unit_price * line.quantity,
                digital=kind == ListingKind.DIGITAL,
                review=reviews.get(line.id),
            )
            for line, listing_id, kind in lines
        ],
        viewer="buyer" if is_buyer else "seller",
        payment_status=payment.status if payment else None,
        payment_failure=payment.failure_code if payment else None,
        payable=is_buyer
        and order.status == OrderStatus.PLACED
        and checkout.status == CheckoutStatus.OPEN
        and checkout.expires_at > utcnow(),
        downloads_unlocked=order.status in UNLOCKED,
        digital_only=digital_only,
        cancellable=is_buyer and order.status == OrderStatus.PAID,
        refunded=sum(r.amount for r in refunds if r.status == RefundStatus.SUCCEEDED),
        refund_pending=sum(r.amount for r in refunds if r.status == RefundStatus.PENDING),
        refund_bounced=sum(r.amount for r in refunds if r.bounced_at is not None),
        refund_bounced_open=bounced_not_refunded_again(refunds),
        sibling_order_ids=list(siblings) if is_buyer else [],
    )
