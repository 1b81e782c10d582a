"""Shoppable video: listings tagged in a post at time ranges or chapters, and "get the kit"
(a post's materials linked to listings, added to the cart all at once)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, func, select

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import DomainError, InvalidInput, NotFound
from craftreel.core.ids import uuid7
from craftreel.media.models import MediaObject
from craftreel.media.service import media_url
from craftreel.posts import service as posts
from craftreel.posts.schemas import ProductTagOut
from craftreel.shop import schemas as shop_schemas
from craftreel.shop import service as shop
from craftreel.shop.models import KitItem, Listing, ListingStatus, PostProductTag, Shop, Variant

MAX_TAGS = 20


class TagIn(BaseModel):
    """Show a listing from ``start_s`` to ``end_s`` (None: to the end), or for a chapter."""

    listing_id: UUID
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    chapter_index: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _range(self) -> TagIn:
        if self.chapter_index is None and self.start_s is None:
            raise ValueError("Give start_s (and end_s), or a chapter_index.")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s.")
        return self


class KitItemIn(BaseModel):
    material_index: int = Field(ge=0)
    listing_id: UUID
    variant_id: UUID | None = None
    quantity: int = Field(default=1, ge=1, le=20)


class KitIn(BaseModel):
    items: list[KitItemIn] = Field(max_length=40)


class KitItemOut(BaseModel):
    material_index: int
    material: str
    listing_id: UUID
    variant_id: UUID
    title: str
    price_minor: int
    currency: str
    quantity: int
    available: bool
    url: str


class KitOut(BaseModel):
    items: list[KitItemOut]


class KitAdded(BaseModel):
    """What "get the kit" put in the cart, and what it could not (sold out, not for sale)."""

    added: list[UUID]
    skipped: list[UUID]
    cart: shop_schemas.CartOut


class TooManyTags(DomainError):
    status_code = 409
    code = "too_many_tags"
    message = f"A post shows at most {MAX_TAGS} products."


class TagNotFound(NotFound):
    code = "tag_not_found"
    message = "That product tag does not exist."


def listing_url(listing_id: UUID) -> str:
    return f"/listings/{listing_id}"


# --- reading ----------------------------------------------------------------------------


async def for_posts(
    ctx: AppContext, uow: UnitOfWork, post_ids: list[UUID]
) -> dict[UUID, list[ProductTagOut]]:
    """The product tags of these posts, by post, for listings on sale: always three queries
    (tags with their listing and shop; the listings' options; their first photos)."""
    if not post_ids:
        return {}
    rows = (
        await uow.session.execute(
            select(PostProductTag, Listing, Shop.currency)
            .join(Listing, Listing.id == PostProductTag.listing_id)
            .join(Shop, Shop.id == Listing.shop_id)
            .where(PostProductTag.post_id.in_(post_ids), Listing.status == ListingStatus.ACTIVE)
            .order_by(PostProductTag.post_id, PostProductTag.start_s, PostProductTag.id)
        )
    ).all()
    options = await _options(uow, {listing.id for _, listing, _ in rows})
    photos = await _first_photos(uow, [listing for _, listing, _ in rows])
    out: dict[UUID, list[ProductTagOut]] = {}
    for tag, listing, currency in rows:
        variants = options.get(listing.id)
        if not variants:
            continue
        out.setdefault(tag.post_id, []).append(
            _tag_out(ctx, tag, listing, currency, variants, photos)
        )
    return out


async def _options(uow: UnitOfWork, listing_ids: set[UUID]) -> dict[UUID, list[Variant]]:
    rows = await uow.session.scalars(
        select(Variant)
        .where(Variant.listing_id.in_(listing_ids))
        .order_by(Variant.listing_id, Variant.position)
    )
    out: dict[UUID, list[Variant]] = {}
    for variant in rows.all():
        out.setdefault(variant.listing_id, []).append(variant)
    return out


def _default_option(variants: list[Variant]) -> Variant:
    return next((v for v in variants if v.stock is None or v.stock > 0), variants[0])


async def _first_photos(uow: UnitOfWork, listings: Sequence[Listing]) -> dict[UUID, MediaObject]:
    wanted = {
        UUID(str(listing.photo_media_ids[0])) for listing in listings if listing.photo_media_ids
    }
    rows = await uow.session.scalars(select(MediaObject).where(MediaObject.id.in_(wanted)))
    return {m.id: m for m in rows.all()}


def _image_url(ctx: AppContext, listing: Listing, photos: dict[UUID, MediaObject]) -> str | None:
    if not listing.photo_media_ids:
        return None
    media = photos.get(UUID(str(listing.photo_media_ids[0])))
    if media is None or not media.playable:
        return None
    variants = [v for v in media.assets.get("variants", []) if v.get("format") == "webp"]
    variants = variants or list(media.assets.get("variants", []))
    if not variants:
        return None
    smallest = min(variants, key=lambda v: int(v["width"]))
    return media_url(ctx, media, str(smallest["key"]))


def _tag_out(
    ctx: AppContext,
    tag: PostProductTag,
    listing: Listing,
    currency: str,
    variants: list[Variant],
    photos: dict[UUID, MediaObject],
) -> ProductTagOut:
    chosen = _default_option(variants)
    return ProductTagOut(
        id=tag.id,
        listing_id=listing.id,
        variant_id=chosen.id,
        available=chosen.stock is None or chosen.stock > 0,
        title=listing.title,
        price_minor=min(v.price_minor for v in variants),
        currency=currency,
        image_url=_image_url(ctx, listing, photos),
        start_s=tag.start_s,
        end_s=tag.end_s,
        chapter_index=tag.chapter_index,
        url=listing_url(listing.id),
    )


async def list_tags(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, post_id: UUID
) -> list[ProductTagOut]:
    post = await posts.viewable_post(uow, viewer, post_id)
    return (await for_posts(ctx, uow, [post.id])).get(post.id, [])


# --- tagging ----------------------------------------------------------------------------


async def _listing_on_sale(uow: UnitOfWork, listing_id: UUID) -> Listing:
    listing = await uow.session.get(Listing, listing_id)
    if listing is None or listing.status != ListingStatus.ACTIVE:
        raise shop.ListingNotFound(field="listing_id")
    return listing


async def add_tag(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID, body: TagIn
) -> ProductTagOut:
    """Tag a listing on sale in my post, for a time range or a whole chapter."""
    post, media = await posts.owned_post(uow, user, post_id)
    await _listing_on_sale(uow, body.listing_id)
    duration = media[0].duration_s if media else None
    if body.chapter_index is not None:
        chapters = sorted(post.chapters or [], key=lambda c: float(c["at"]))
        if body.chapter_index >= len(chapters):
            raise InvalidInput("That chapter does not exist.", field="chapter_index")
        start = float(chapters[body.chapter_index]["at"])
        following = chapters[body.chapter_index + 1 :]
        end = float(following[0]["at"]) if following else None
    else:
        assert body.start_s is not None  # the schema guarantees one or the other
        start, end = body.start_s, body.end_s
    if duration is not None and start >= duration:
        raise InvalidInput("The product would show after the video ends.", field="start_s")
    if duration is not None and end is not None and end > duration:
        end = None  # "to the end"
    count = await uow.session.scalar(
        select(func.count()).select_from(PostProductTag).where(PostProductTag.post_id == post.id)
    )
    if (count or 0) >= MAX_TAGS:
        raise TooManyTags()
    tag = PostProductTag(
        id=uuid7(),
        post_id=post.id,
        listing_id=body.listing_id,
        start_s=start,
        end_s=end,
        chapter_index=body.chapter_index,
    )
    uow.session.add(tag)
    await uow.session.flush()
    tags = (await for_posts(ctx, uow, [post.id])).get(post.id, [])
    return next(t for t in tags if t.id == tag.id)


class ChipAdd(BaseModel):
    """Add from a product chip: the chip's option unless another is chosen."""

    variant_id: UUID | None = None
    quantity: int = Field(default=1, ge=1, le=20)


class ChipAdded(BaseModel):
    listing_id: UUID
    variant_id: UUID
    cart_count: int


async def add_tag_to_cart(
    uow: UnitOfWork, buyer: User, post_id: UUID, tag_id: UUID, body: ChipAdd
) -> ChipAdded:
    """ "Add to cart" on a product chip while the video plays (no page change)."""
    post = await posts.viewable_post(uow, buyer, post_id)
    tag = await uow.session.get(PostProductTag, tag_id)
    if tag is None or tag.post_id != post.id:
        raise TagNotFound()
    variants = (await _options(uow, {tag.listing_id})).get(tag.listing_id, [])
    if not variants:
        raise shop.ListingNotFound()
    chosen = next((v for v in variants if v.id == body.variant_id), None)
    if body.variant_id is not None and chosen is None:
        raise InvalidInput("That option is not part of the listing.", field="variant_id")
    chosen = chosen or _default_option(variants)
    cart = await shop.add_to_cart(
        uow, buyer, shop_schemas.CartLineIn(variant_id=chosen.id, quantity=body.quantity)
    )
    return ChipAdded(
        listing_id=tag.listing_id,
        variant_id=chosen.id,
        cart_count=sum(line.quantity for line in cart.lines),
    )


async def remove_tag(uow: UnitOfWork, user: User, post_id: UUID, tag_id: UUID) -> None:
    post, _ = await posts.owned_post(uow, user, post_id)
    result = await uow.session.execute(
        delete(PostProductTag).where(PostProductTag.id == tag_id, PostProductTag.post_id == post.id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise TagNotFound()


# --- get the kit ------------------------------------------------------------------------


async def set_kit(
    ctx: AppContext, uow: UnitOfWork, user: User, post_id: UUID, body: KitIn
) -> KitOut:
    """Link my post's materials to listings (replacing earlier links)."""
    post, _ = await posts.owned_post(uow, user, post_id)
    materials = list(post.materials or [])
    seen: set[int] = set()
    for item in body.items:
        if item.material_index >= len(materials):
            raise InvalidInput("That material is not in the post.", field="material_index")
        if item.material_index in seen:
            raise InvalidInput("Each material links to one listing.", field="material_index")
        seen.add(item.material_index)
        await _listing_on_sale(uow, item.listing_id)
        if item.variant_id is not None:
            variant = await uow.session.get(Variant, item.variant_id)
            if variant is None or variant.listing_id != item.listing_id:
                raise InvalidInput("That option is not part of the listing.", field="variant_id")
    await uow.session.execute(delete(KitItem).where(KitItem.post_id == post.id))
    for item in body.items:
        uow.session.add(
            KitItem(
                post_id=post.id,
                material_index=item.material_index,
                listing_id=item.listing_id,
                variant_id=item.variant_id,
                quantity=item.quantity,
            )
        )
    await uow.session.flush()
    return await _kit(uow, post.id, materials)


async def get_kit(uow: UnitOfWork, viewer: User | None, post_id: UUID) -> KitOut:
    post = await posts.viewable_post(uow, viewer, post_id)
    return await _kit(uow, post.id, list(post.materials or []))


async def _kit(uow: UnitOfWork, post_id: UUID, materials: list[str]) -> KitOut:
    """The kit's lines with today's price and stock: the chosen option, or the listing's first
    available one (three queries)."""
    rows = (
        await uow.session.execute(
            select(KitItem, Listing, Shop.currency)
            .join(Listing, Listing.id == KitItem.listing_id)
            .join(Shop, Shop.id == Listing.shop_id)
            .where(KitItem.post_id == post_id)
            .order_by(KitItem.material_index)
        )
    ).all()
    variants = (
        await uow.session.scalars(
            select(Variant)
            .where(Variant.listing_id.in_([listing.id for _, listing, _ in rows]))
            .order_by(Variant.listing_id, Variant.position)
        )
    ).all()
    by_listing: dict[UUID, list[Variant]] = {}
    for variant in variants:
        by_listing.setdefault(variant.listing_id, []).append(variant)
    items = []
    for item, listing, currency in rows:
        options = by_listing.get(listing.id, [])
        chosen = next((v for v in options if v.id == item.variant_id), None)
        if chosen is None:
            chosen = next((v for v in options if v.stock is None or v.stock > 0), None)
        chosen = chosen or (options[0] if options else None)
        if chosen is None or item.material_index >= len(materials):
            continue
        items.append(
            KitItemOut(
                material_index=item.material_index,
                material=materials[item.material_index],
                listing_id=listing.id,
                variant_id=chosen.id,
                title=listing.title,
                price_minor=chosen.price_minor,
                currency=currency,
                quantity=item.quantity,
                available=listing.status == ListingStatus.ACTIVE
                and (chosen.stock is None or chosen.stock >= item.quantity),
                url=listing_url(listing.id),
            )
        )
    return KitOut(items=items)


async def add_kit_to_cart(uow: UnitOfWork, buyer: User, post_id: UUID) -> KitAdded:
    """Put every available kit item in the cart at once; what is sold out is skipped and said."""
    kit = await get_kit(uow, buyer, post_id)
    added: list[UUID] = []
    skipped: list[UUID] = []
    for item in kit.items:
        if not item.available:
            skipped.append(item.listing_id)
            continue
        try:
            await shop.add_to_cart(
                uow,
                buyer,
                shop_schemas.CartLineIn(variant_id=item.variant_id, quantity=item.quantity),
            )
        except (shop.OutOfStock, shop.NotForSale, shop.ListingNotFound):
            skipped.append(item.listing_id)
        else:
            added.append(item.listing_id)
    return KitAdded(added=added, skipped=skipped, cart=await shop.cart(uow, buyer))
