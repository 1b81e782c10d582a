"""A listing's photos: up to eight, in the seller's order, the first one the listing's
picture everywhere (grids, the cart, product chips in videos).

Each photo goes through the media pipeline's probe and image code (``photos``): upright,
sRGB, no EXIF/GPS, WebP and JPEG at a few widths. Processing happens before the
transaction that records it, so the database is never held while pictures are encoded;
whatever a failed or refused photo had stored is deleted, and the listing is left as it was.
The photo list changes under the listing's row lock, so two changes never overwrite each
other. A listing's photos are public exactly while buyers can see the listing; a removed
photo's files and row go by the media pipeline's delete job once the change is committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from uuid import UUID

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, InvalidInput, NotFound
from craftreel.media.models import MediaObject
from craftreel.shop import photos, schemas, service
from craftreel.shop import repository as repo
from craftreel.shop.schemas import MAX_PHOTOS


class TooManyPhotos(Conflict):
    """A listing holds at most ``MAX_PHOTOS`` photos."""

    code = "too_many_photos"
    message = f"A listing can have up to {MAX_PHOTOS} photos. Remove one to add another."


class ListingPhotoNotFound(NotFound):
    """No such photo on this listing."""

    code = "listing_photo_not_found"
    message = "That photo is not on this listing."


class PhotoOrderInvalid(InvalidInput):
    """A new order must name each of the listing's photos once."""

    code = "photo_order_invalid"
    message = "List each of the listing's photos once, in the order to show them."


Reader = Callable[[], Awaitable[bytes]]


async def prepare(ctx: AppContext, owner: User, readers: Sequence[Reader]) -> list[MediaObject]:
    """Check, clean and store photos (outside any transaction), each read only when its turn
    comes; all of them, or none."""
    done: list[MediaObject] = []
    try:
        for read in readers:
            done.append(
                await photos.process_photo(
                    ctx,
                    owner.id,
                    await read(),
                    field="photos",
                    invalid=photos.ListingPhotoInvalid,
                    too_large=photos.ListingPhotoTooLarge,
                )
            )
    except BaseException:
        await photos.discard(ctx, done)
        raise
    return done


async def arrange(
    ctx: AppContext,
    uow: UnitOfWork,
    owner: User,
    listing_id: UUID,
    *,
    order: Sequence[UUID] | None = None,
    strict: bool = True,
    remove: Collection[UUID] = (),
    add: Sequence[MediaObject] = (),
) -> None:
    """Change one of the seller's listings' photos: remove some, put the rest in ``order``,
    then append ``add`` (photos from ``prepare``) — at most ``MAX_PHOTOS`` in all.

    ``strict`` orders must name every photo the listing has, once. A form's order is not
    strict: it names the photos the seller saw, so one added meanwhile (elsewhere) stays,
    after them, and one removed meanwhile stays removed.
    """
    found = await repo.locked_listing_with_shop(uow.session, listing_id)
    if found is None or found[1].owner_id != owner.id:
        raise service.ListingNotFound()
    listing, _ = found
    current = repo.photo_ids(listing)
    if strict and set(remove) - set(current):
        raise ListingPhotoNotFound(field="photos")
    kept = [media_id for media_id in current if media_id not in remove]
    if order is not None:
        if strict and (len(order) != len(set(order)) or set(order) != set(kept)):
            raise PhotoOrderInvalid(field="ids")
        seen = [media_id for media_id in dict.fromkeys(order) if media_id in kept]
        kept = seen + [media_id for media_id in kept if media_id not in seen]
    arranged = kept + [media.id for media in add]
    if len(arranged) > MAX_PHOTOS:
        raise TooManyPhotos(field="photos", max_photos=MAX_PHOTOS)
    await photos.record(ctx, uow, add, public=listing.status in service.VISIBLE)
    listing.photo_media_ids = [str(media_id) for media_id in arranged]
    await uow.session.flush()
    for media_id in current:
        if media_id not in arranged:
            ctx.jobs.enqueue(uow, "media.delete", {"media_id": str(media_id)})


async def add_photo(
    ctx: AppContext, owner: User, listing_id: UUID, data: bytes
) -> schemas.ListingOut:
    """Add one photo to the end of one of the seller's listings.

    Opens its own transactions (a short check, then the record), so the picture is encoded
    while nothing in the database is held; a refused photo leaves nothing behind."""
    async with ctx.uow() as uow:
        listing, _, _ = await service.own_listing(uow, owner, listing_id)
        if len(repo.photo_ids(listing)) >= MAX_PHOTOS:
            raise TooManyPhotos(field="photos", max_photos=MAX_PHOTOS)

    async def read() -> bytes:
        return data

    prepared = await prepare(ctx, owner, [read])
    try:
        async with ctx.uow() as uow:
            await arrange(ctx, uow, owner, listing_id, add=prepared)
            return await service.listing_view(ctx, uow, listing_id)
    except BaseException:
        await photos.discard(ctx, prepared)
        raise


async def remove_photo(
    ctx: AppContext, uow: UnitOfWork, owner: User, listing_id: UUID, media_id: UUID
) -> schemas.ListingOut:
    """Take a photo off one of the seller's listings (its files go once this commits)."""
    await arrange(ctx, uow, owner, listing_id, remove=[media_id])
    return await service.listing_view(ctx, uow, listing_id)


async def reorder(
    ctx: AppContext, uow: UnitOfWork, owner: User, listing_id: UUID, body: schemas.PhotoOrder
) -> schemas.ListingOut:
    """Put one of the seller's listings' photos in a new order (the first leads)."""
    await arrange(ctx, uow, owner, listing_id, order=body.ids)
    return await service.listing_view(ctx, uow, listing_id)
