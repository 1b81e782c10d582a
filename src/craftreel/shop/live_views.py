"""The live parts of an order's page, fetched again when an ``order.updated`` event arrives
(``web/static/js/live_orders.js``): the same markup the page itself renders."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response

from craftreel.accounts.deps import WebIdentity
from craftreel.deps import Ctx, Uow
from craftreel.shop import orders
from craftreel.shop.views import awaiting_payment, shop_page, timeline

router = APIRouter(include_in_schema=False)


@router.get("/orders/{order_id}/live")
async def order_live(
    order_id: UUID, request: Request, identity: WebIdentity, ctx: Ctx, uow: Uow
) -> Response:
    """The order's status, progress, lines and cancel parts, for its buyer or its seller."""
    detail = await orders.order_detail(ctx, uow, identity.user, order_id)
    context = {
        "order": detail,
        "timeline": timeline(detail),
        "waiting": awaiting_payment(detail),
        "errors": {},
        "values": {},
    }
    response = shop_page(request, "shop/_order_live.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response
