"""Shoppable video JSON API: product tags in posts, and "get the kit"."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from craftreel.accounts.deps import ApiOrWebOptionalUser, ApiOrWebUser
from craftreel.deps import Ctx, Uow
from craftreel.posts.schemas import ProductTagOut
from craftreel.shop import tags

router = APIRouter(prefix="/api/v1", tags=["shop"])


@router.get("/posts/{post_id}/products")
async def list_tags(
    post_id: UUID, viewer: ApiOrWebOptionalUser, ctx: Ctx, uow: Uow
) -> list[ProductTagOut]:
    """The listings shown in a post, with the time range each shows for."""
    return await tags.list_tags(ctx, uow, viewer, post_id)


@router.post("/posts/{post_id}/products", status_code=201)
async def add_tag(
    post_id: UUID, body: tags.TagIn, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> ProductTagOut:
    """Tag a listing on sale in my post, for a time range or a chapter."""
    return await tags.add_tag(ctx, uow, user, post_id, body)


@router.post("/posts/{post_id}/products/{tag_id}/cart")
async def add_tag_to_cart(
    post_id: UUID, tag_id: UUID, body: tags.ChipAdd, user: ApiOrWebUser, uow: Uow
) -> tags.ChipAdded:
    """ "Add to cart" from a product chip in the player; the video keeps playing."""
    return await tags.add_tag_to_cart(uow, user, post_id, tag_id, body)


@router.delete("/posts/{post_id}/products/{tag_id}", status_code=204)
async def remove_tag(post_id: UUID, tag_id: UUID, user: ApiOrWebUser, uow: Uow) -> Response:
    await tags.remove_tag(uow, user, post_id, tag_id)
    return Response(status_code=204)


@router.get("/posts/{post_id}/kit")
async def get_kit(post_id: UUID, viewer: ApiOrWebOptionalUser, uow: Uow) -> tags.KitOut:
    """The post's materials that link to listings, with today's price and stock."""
    return await tags.get_kit(uow, viewer, post_id)


@router.put("/posts/{post_id}/kit")
async def set_kit(
    post_id: UUID, body: tags.KitIn, user: ApiOrWebUser, ctx: Ctx, uow: Uow
) -> tags.KitOut:
    """Link my post's materials to listings (replaces the earlier links)."""
    return await tags.set_kit(ctx, uow, user, post_id, body)


@router.post("/posts/{post_id}/kit/cart")
async def add_kit_to_cart(post_id: UUID, user: ApiOrWebUser, uow: Uow) -> tags.KitAdded:
    """ "Get the kit": every available item into my cart at once."""
    return await tags.add_kit_to_cart(uow, user, post_id)
