"""Shop JSON API: shops, shipping profiles, listings, the cart and checkout."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, File, Header, Query, UploadFile
from fastapi.responses import JSONResponse

from craftreel.accounts.api import read_upload
from craftreel.accounts.deps import ApiOptionalUser, ApiOrWebUser, ApiUser
from craftreel.core.pagination import Page
from craftreel.deps import Ctx, Uow
from craftreel.shop import downloads, gallery, schemas, service, shipping
from craftreel.shop.models import Category, ListingStatus

router = APIRouter(prefix="/api/v1", tags=["shop"])


@router.post("/shops", status_code=201)
async def open_shop(body: schemas.ShopCreate, user: ApiUser, uow: Uow) -> schemas.ShopOut:
    """Open my shop (one per maker)."""
    return service.shop_out(await service.open_shop(uow, user, body))


@router.get("/shops/{handle}")
async def get_shop(handle: str, uow: Uow) -> schemas.ShopProfile:
    """A shop with its policies and rating."""
    return await service.shop_profile(uow, handle)


@router.get("/shops/mine/shipping-profiles")
async def my_shipping_profiles(user: ApiUser, uow: Uow) -> list[schemas.ShippingProfileOut]:
    """My shop's shipping profiles, the default first, each with its delivery methods."""
    return await shipping.my_profiles(uow, user)


@router.post("/shops/mine/shipping-profiles", status_code=201)
async def create_shipping_profile(
    body: schemas.ShippingProfileIn, user: ApiUser, uow: Uow
) -> schemas.ShippingProfileOut:
    """A new shipping profile: a name and its delivery methods, each with a price per
    country (``"*"`` for everywhere else), an optional estimate in days and free-over amount."""
    return await shipping.create_profile(uow, user, body)


@router.get("/shops/mine/shipping-profiles/{profile_id}")
async def get_shipping_profile(
    profile_id: UUID, user: ApiUser, uow: Uow
) -> schemas.ShippingProfileOut:
    return await shipping.my_profile(uow, user, profile_id)


@router.put("/shops/mine/shipping-profiles/{profile_id}")
async def update_shipping_profile(
    profile_id: UUID, body: schemas.ShippingProfileIn, user: ApiUser, uow: Uow
) -> schemas.ShippingProfileOut:
    """Rename a profile and set its methods: sent with their ``id`` they change, without one
    they are added, left out they are removed. Placed orders keep what they were charged."""
    return await shipping.update_profile(uow, user, profile_id, body)


@router.post("/shops/mine/shipping-profiles/{profile_id}/default")
async def make_default_shipping_profile(
    profile_id: UUID, user: ApiUser, uow: Uow
) -> schemas.ShippingProfileOut:
    """Make this the profile new listings get unless told otherwise."""
    return await shipping.make_default(uow, user, profile_id)


@router.delete("/shops/mine/shipping-profiles/{profile_id}", status_code=204)
async def delete_shipping_profile(profile_id: UUID, user: ApiUser, uow: Uow) -> None:
    """Delete a profile no listing uses (never the default)."""
    await shipping.delete_profile(uow, user, profile_id)


@router.get("/shops/{handle}/listings")
async def shop_listings(
    handle: str,
    ctx: Ctx,
    uow: Uow,
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> Page[schemas.ListingOut]:
    """A shop's listings for sale, newest first."""
    items, next_cursor = await service.shop_listings(ctx, uow, handle, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("/listings", status_code=201)
async def create_listing(
    body: schemas.ListingCreate, user: ApiUser, uow: Uow
) -> schemas.ListingOut:
    """A draft listing in my shop, with its variants (price and stock each)."""
    return await service.create_listing(uow, user, body)


@router.patch("/listings/{listing_id}")
async def update_listing(
    listing_id: UUID, body: schemas.ListingUpdate, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    """Change my listing: text, category, lead time, variants (send ``stock_was`` with a new
    stock to refuse the change if a sale moved it meanwhile)."""
    return await service.update_listing(ctx, uow, user, listing_id, body)


@router.put("/listings/{listing_id}/file", status_code=204)
async def attach_digital_file(
    listing_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow, file: UploadFile = File()
) -> None:
    """Attach (or replace) my digital listing's file: a PDF, multipart field ``file``. The
    file it replaces is deleted."""
    await downloads.attach_file(ctx, uow, user, listing_id, file.file, file.filename)


@router.post("/listings/{listing_id}/photos", status_code=201)
async def add_photo(
    listing_id: UUID, user: ApiOrWebUser, ctx: Ctx, photo: UploadFile = File()
) -> schemas.ListingOut:
    """Add a photo to the end of my listing (multipart field ``photo``; up to 8 photos).
    EXIF and GPS data are removed; the listing comes back with the photo's copies."""
    data = await read_upload(photo, ctx.settings.upload_max_image_bytes)
    return await gallery.add_photo(ctx, user, listing_id, data)


@router.delete("/listings/{listing_id}/photos/{media_id}")
async def remove_photo(
    listing_id: UUID, media_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    """Take a photo off my listing (its files are deleted)."""
    return await gallery.remove_photo(ctx, uow, user, listing_id, media_id)


@router.put("/listings/{listing_id}/photos")
async def reorder_photos(
    listing_id: UUID, body: schemas.PhotoOrder, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    """Put my listing's photos in a new order: ``{"ids": [...]}``, each photo once."""
    return await gallery.reorder(ctx, uow, user, listing_id, body)


@router.post("/listings/{listing_id}/publish")
async def publish_listing(
    listing_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    await service.set_listing_status(uow, user, listing_id, ListingStatus.ACTIVE)
    return await service.listing_view(ctx, uow, listing_id)


@router.post("/listings/{listing_id}/archive")
async def archive_listing(
    listing_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    await service.set_listing_status(uow, user, listing_id, ListingStatus.ARCHIVED)
    return await service.listing_view(ctx, uow, listing_id)


@router.get("/listings/{listing_id}")
async def get_listing(
    listing_id: UUID, viewer: ApiOptionalUser, ctx: Ctx, uow: Uow
) -> schemas.ListingOut:
    return await service.get_listing(ctx, uow, viewer, listing_id)


@router.get("/listings")
async def browse_listings(
    ctx: Ctx,
    uow: Uow,
    category: Category | None = None,
    q: str | None = Query(default=None, max_length=80),
    cursor: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> Page[schemas.ListingOut]:
    """Listings for sale, newest first, by category and words."""
    items, next_cursor = await service.browse(ctx, uow, category, q, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/cart")
async def get_cart(user: ApiUser, ctx: Ctx, uow: Uow) -> schemas.CartOut:
    """My cart, with prices and stock checked again now."""
    return await service.cart(uow, user, ctx)


@router.post("/cart/lines")
async def add_to_cart(
    body: schemas.CartLineIn, user: ApiUser, ctx: Ctx, uow: Uow
) -> schemas.CartOut:
    return await service.add_to_cart(uow, user, body, ctx)


@router.put("/cart/lines/{variant_id}")
async def set_quantity(
    variant_id: UUID, user: ApiUser, ctx: Ctx, uow: Uow, quantity: int = Query(ge=0, le=99)
) -> schemas.CartOut:
    """Change a line's quantity; 0 removes it."""
    return await service.set_cart_quantity(uow, user, variant_id, quantity, ctx)


@router.get("/cart/quote")
async def quote(
    user: ApiUser,
    ctx: Ctx,
    uow: Uow,
    country: str = Query(pattern=r"^[A-Z]{2}$"),
    method: list[UUID] = Query(default_factory=list, max_length=50),
) -> schemas.CheckoutQuote:
    """What checking out the cart would cost, delivered to ``country`` (nothing is held):
    each shop's parcels with the delivery methods that go there, cheapest first, priced.
    ``method`` (repeatable) picks a method for its parcel; the others go the cheapest way."""
    return await service.quote(ctx, uow, user, country, method)


@router.post("/checkouts", status_code=201, response_model=schemas.CheckoutOut)
async def start_checkout(
    body: schemas.CheckoutCreate,
    user: ApiUser,
    ctx: Ctx,
    uow: Uow,
    idempotency_key: str | None = Header(default=None),
) -> JSONResponse:
    """Check out the cart: one order per shop, stock held for a while. Needs Idempotency-Key.
    ``shipping_methods``: a delivery method id per parcel (see the quote); any parcel left
    out goes the cheapest way. Prices are the server's, from the shop's shipping profiles."""
    status, payload = await service.start_checkout(ctx, uow, user, body, idempotency_key)
    return JSONResponse(payload, status_code=status)


@router.get("/checkouts/{checkout_id}")
async def get_checkout(checkout_id: UUID, user: ApiUser, uow: Uow) -> schemas.CheckoutOut:
    return await service.get_checkout(uow, user, checkout_id)
