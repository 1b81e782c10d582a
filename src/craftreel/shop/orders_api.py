"""Orders JSON API: the buyer's history, the seller's dashboard, shipping, reviews."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, File, Query, UploadFile
from pydantic import BaseModel

from craftreel.accounts.api import read_upload
from craftreel.accounts.deps import ApiOrWebUser, ApiUser
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.shop import downloads, orders, payments
from craftreel.shop.models import OrderStatus

router = APIRouter(prefix="/api/v1", tags=["orders"])


@router.get("/orders")
async def my_orders(
    user: ApiUser,
    uow: Uow,
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> Page[orders.OrderSummary]:
    """My orders as a buyer, newest first."""
    items, next_cursor = await orders.buyer_orders(uow, user, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/orders/{order_id}")
async def order(order_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow) -> orders.OrderDetail:
    """One of my orders (as its buyer, or as the seller it was bought from)."""
    return await orders.order_detail(ctx, uow, user, order_id)


class DownloadLink(BaseModel):
    url: str
    expires_in: int


@router.get("/orders/{order_id}/lines/{line_id}/download")
async def download(
    order_id: UUID, line_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow
) -> DownloadLink:
    """A short-lived link to a digital item I bought, once the order is paid."""
    url = await downloads.download_url(ctx, uow, user, order_id, line_id)
    return DownloadLink(url=url, expires_in=ctx.settings.private_url_seconds)


@router.get("/shops/mine/orders")
async def shop_orders(
    user: ApiUser,
    uow: Uow,
    status: OrderStatus | None = None,
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> Page[orders.OrderSummary]:
    """My shop's orders (e.g. ``status=paid`` for those to ship)."""
    items, next_cursor = await orders.seller_orders(uow, user, status, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/shops/mine/dashboard")
async def dashboard(user: ApiUser, uow: Uow) -> orders.SellerDashboard:
    """To ship, shipped, revenue by currency, rating."""
    return await orders.dashboard(uow, user)


@router.post("/orders/{order_id}/ship")
async def ship(
    order_id: UUID, body: orders.ShipmentIn, user: ApiUser, ctx: Ctx, uow: Uow
) -> orders.OrderSummary:
    """Mark a paid order shipped (seller only); the buyer gets the tracking number by email."""
    return await orders.ship(ctx, uow, user, order_id, body)


@router.post("/orders/{order_id}/cancel")
async def cancel(order_id: UUID, user: ApiOrWebUser, ctx: Ctx) -> payments.RefundOut | None:
    """Cancel a paid order before it ships (buyer or seller): stock back, payment refunded."""
    return await payments.cancel_order(ctx, user, order_id)


@router.post("/orders/{order_id}/delivered")
async def delivered(order_id: UUID, user: ApiUser, uow: Uow) -> orders.OrderSummary:
    return await orders.mark_delivered(uow, user, order_id)


@router.post("/orders/{order_id}/complete")
async def complete(order_id: UUID, user: ApiUser, uow: Uow) -> orders.OrderSummary:
    return await orders.complete(uow, user, order_id)


@router.post("/order-lines/{line_id}/review", status_code=201)
async def review(line_id: UUID, body: orders.ReviewIn, user: ApiUser, uow: Uow) -> orders.ReviewOut:
    """Review a line you received (1–5 stars and text), once."""
    return await orders.review(uow, user, line_id, body)


@router.post("/reviews/{review_id}/reply")
async def reply(review_id: UUID, body: orders.ReplyIn, user: ApiUser, uow: Uow) -> orders.ReviewOut:
    """The seller's one reply to a review of their shop."""
    return await orders.reply(uow, user, review_id, body)


@router.put("/reviews/{review_id}/photo")
async def review_photo(
    review_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow, photo: UploadFile = File()
) -> orders.ReviewOut:
    """Add the one photo my review may carry (multipart field ``photo``)."""
    data = await read_upload(photo, ctx.settings.upload_max_image_bytes)
    return await orders.attach_review_photo(ctx, uow, user, review_id, data)
