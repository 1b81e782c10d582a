"""Live news about orders: ``order.updated`` to an order's buyer and its shop's owner.

Called in the unit of work that changed the order, after the change, from here (shipped,
delivered, completed, downloads delivered) and from payments (paid, cancelled, refunded).
Called twice for one order in one unit of work, it still makes one event per person, with
the order as it stands last.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from craftreel.core.db import UnitOfWork
from craftreel.realtime import service as realtime
from craftreel.shop.models import Order, Shipment, Shop

ORDER_UPDATED = "order.updated"


async def order_updated(uow: UnitOfWork, order_id: UUID) -> None:
    """Tell the buyer and the seller, once this unit of work commits, how the order stands."""
    row = (
        await uow.session.execute(
            select(
                Order.status,
                Order.buyer_id,
                Shop.owner_id,
                Shipment.carrier,
                Shipment.tracking_number,
            )
            .join(Shop, Shop.id == Order.shop_id)
            .outerjoin(Shipment, Shipment.order_id == Order.id)
            .where(Order.id == order_id)
        )
    ).first()
    if row is None:
        return
    status, buyer_id, seller_id, carrier, tracking_number = row
    realtime.emit(
        uow,
        [buyer_id, seller_id],
        ORDER_UPDATED,
        {
            "order_id": order_id,
            "status": str(status),
            "carrier": carrier,
            "tracking_number": tracking_number,
        },
        key=str(order_id),
    )
