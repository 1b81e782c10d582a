"""Shop rules: shops, listings, the cart, and checkout with stock held for a limited time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from craftreel.accounts.models import User
from craftreel.context import AppContext
from craftreel.core import idempotency
from craftreel.core.clock import utcnow
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, DomainError, InvalidInput, NotFound
from craftreel.core.ids import uuid7
from craftreel.core.money import apply_rate, parse_rates
from craftreel.core.pagination import decode_time_cursor, page_of
from craftreel.media.models import MediaObject
from craftreel.media.service import media_url
from craftreel.shop import photos as shop_photos
from craftreel.shop import repository as repo
from craftreel.shop import schemas, shipping
from craftreel.shop.models import (
    CartLine,
    Checkout,
    CheckoutStatus,
    Listing,
    ListingKind,
    ListingStatus,
    Order,
    OrderLine,
    Reservation,
    Shop,
    Variant,
)


class ShopExists(Conflict):
    """A maker has one shop."""

    code = "shop_exists"
    message = "You already have a shop."


class ShopHandleTaken(Conflict):
    """Another shop uses this handle."""

    code = "shop_handle_taken"
    message = "That shop handle is taken."


class NoShop(DomainError):
    """The action needs a shop first."""

    status_code = 409
    code = "no_shop"
    message = "Open a shop first."


class ListingNotFound(NotFound):
    """No such listing, or not visible."""

    code = "listing_not_found"
    message = "That listing does not exist."


class OutOfStock(Conflict):
    """Not enough units are left."""

    code = "out_of_stock"
    message = "Not enough of that is left."


class NotForSale(Conflict):
    """The listing is not active."""

    code = "not_for_sale"
    message = "That is not for sale right now."


class CartEmpty(Conflict):
    """Checkout needs something in the cart."""

    code = "cart_empty"
    message = "Your cart is empty."


class MixedCurrencies(Conflict):
    """One payment cannot cover shops that price in different currencies."""

    code = "mixed_currencies"
    message = "Your cart has shops with different currencies; check them out one at a time."


class ShopNotFound(NotFound):
    """No shop has that handle."""

    code = "shop_not_found"
    message = "That shop does not exist."


class LeadTimeNeeded(InvalidInput):
    """A made-to-order listing says how long making takes."""

    code = "lead_time_needed"
    message = "Say how many days it takes to make (1 to 365)."


class StockChanged(Conflict):
    """A sale changed a variant's stock while the seller was editing it."""

    code = "stock_changed"
    message = "Someone bought one while you were editing. Check the stock and save again."


# --- shops and listings -----------------------------------------------------------------


def shop_out(shop: Shop) -> schemas.ShopOut:
    return schemas.ShopOut(
        id=shop.id,
        handle=shop.handle,
        name=shop.name,
        currency=shop.currency,
        origin_country=shop.origin_country,
        shipping_policy=shop.shipping_policy,
        returns_policy=shop.returns_policy,
    )


async def open_shop(uow: UnitOfWork, owner: User, body: schemas.ShopCreate) -> Shop:
    if await repo.shop_of_owner(uow.session, owner.id) is not None:
        raise ShopExists()
    if await repo.shop_by_handle(uow.session, body.handle) is not None:
        raise ShopHandleTaken(field="handle")
    shop = Shop(
        id=uuid7(),
        owner_id=owner.id,
        handle=body.handle.lower(),
        name=body.name,
        currency=body.currency,
        origin_country=body.origin_country,
        shipping_policy=body.shipping_policy,
        returns_policy=body.returns_policy,
    )
    uow.session.add(shop)
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        raise ShopHandleTaken(field="handle") from exc
    await shipping.add_flat_profile(
        uow.session, shop, dict(body.shipping_rates), body.free_shipping_over
    )
    return shop


async def shop_profile(uow: UnitOfWork, handle: str) -> schemas.ShopProfile:
    """A shop as anyone sees it, with its rating."""
    shop = await repo.shop_by_handle(uow.session, handle)
    if shop is None:
        raise ShopNotFound()
    rating, count = await repo.shop_rating(uow.session, shop.id)
    return schemas.ShopProfile(**shop_out(shop).model_dump(), rating=rating, review_count=count)


async def shop_listings(
    ctx: AppContext, uow: UnitOfWork, handle: str, cursor: str | None, limit: int
) -> tuple[list[schemas.ListingOut], str | None]:
    """A shop's listings for sale (active or sold out), newest first."""
    shop = await repo.shop_by_handle(uow.session, handle)
    if shop is None:
        raise ShopNotFound()
    return await _listings_page(ctx, uow, shop, list(VISIBLE), cursor, limit)


async def my_shop(uow: UnitOfWork, owner: User) -> Shop | None:
    """The seller's own shop, if they opened one."""
    return await repo.shop_of_owner(uow.session, owner.id)


async def my_listings(
    ctx: AppContext, uow: UnitOfWork, owner: User, cursor: str | None, limit: int
) -> tuple[list[schemas.ListingOut], str | None]:
    """Every listing of the seller's shop, drafts and archived ones too, newest first."""
    shop = await _own_shop(uow, owner)
    return await _listings_page(ctx, uow, shop, list(ListingStatus), cursor, limit)


async def _listings_page(
    ctx: AppContext,
    uow: UnitOfWork,
    shop: Shop,
    statuses: list[ListingStatus],
    cursor: str | None,
    limit: int,
) -> tuple[list[schemas.ListingOut], str | None]:
    """A page of one shop's listings: three queries whatever the page size."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.listings_of_shop(uow.session, shop.id, statuses, after, limit)
    items, next_cursor = page_of(rows, limit, lambda listing: (listing.created_at, listing.id))
    variants = await repo.variants_of(uow.session, [listing.id for listing in items])
    media = await repo.photos_of(uow.session, items)
    return [
        listing_out(shop, listing, variants[listing.id], photo_outs(ctx, listing, media))
        for listing in items
    ], next_cursor


async def _own_shop(uow: UnitOfWork, owner: User) -> Shop:
    shop = await repo.shop_of_owner(uow.session, owner.id)
    if shop is None:
        raise NoShop()
    return shop


#: The states in which a listing (and so its photos) is shown to everyone.
VISIBLE = (ListingStatus.ACTIVE, ListingStatus.SOLD_OUT)


def photo_outs(
    ctx: AppContext, listing: Listing, media: dict[UUID, MediaObject]
) -> list[schemas.ListingPhoto]:
    """A listing's photos in its order (one whose media is gone is left out)."""
    out = []
    for media_id in repo.photo_ids(listing):
        found = media.get(media_id)
        webps = shop_photos.webp_variants(found) if found is not None else []
        if found is None or not webps:
            continue
        largest = max(webps, key=lambda v: int(v["width"]))
        smallest = min(webps, key=lambda v: int(v["width"]))
        out.append(
            schemas.ListingPhoto(
                id=found.id,
                url=media_url(ctx, found, str(largest["key"])),
                thumb_url=media_url(ctx, found, str(smallest["key"])),
                width=found.width,
                height=found.height,
                blurhash=found.assets.get("blurhash"),
            )
        )
    return out


async def listing_view(ctx: AppContext, uow: UnitOfWork, listing_id: UUID) -> schemas.ListingOut:
    """A listing as its API shows it (whoever may see it has been checked already)."""
    found = await repo.listing_with_shop(uow.session, listing_id)
    if found is None:
        raise ListingNotFound()
    listing, shop = found
    variants = (await repo.variants_of(uow.session, [listing.id]))[listing.id]
    media = await repo.photos_of(uow.session, [listing])
    return listing_out(shop, listing, variants, photo_outs(ctx, listing, media))


def listing_out(
    shop: Shop,
    listing: Listing,
    variants: list[Variant],
    photos: Sequence[schemas.ListingPhoto] = (),
) -> schemas.ListingOut:
    return schemas.ListingOut(
        id=listing.id,
        shop_handle=shop.handle,
        title=listing.title,
        description=listing.description,
        category=listing.category,
        kind=listing.kind,
        lead_time_days=listing.lead_time_days,
        status=listing.status,
        shipping_profile_id=listing.shipping_profile_id,
        variants=[
            schemas.VariantOut(
                id=v.id,
                name=v.name,
                price_minor=v.price_minor,
                currency=shop.currency,
                stock=v.stock,
                available=listing.status == ListingStatus.ACTIVE
                and (v.stock is None or v.stock > 0),
            )
            for v in variants
        ],
        photos=list(photos),
        has_file=listing.digital_file_key is not None,
        created_at=listing.created_at,
    )


def _lead_time(kind: str, lead_time_days: int | None) -> int | None:
    """Made to order needs a lead time; nothing else has one."""
    if kind != ListingKind.MADE_TO_ORDER:
        return None
    if lead_time_days is None:
        raise LeadTimeNeeded(field="lead_time_days")
    return lead_time_days


async def create_listing(
    uow: UnitOfWork, owner: User, body: schemas.ListingCreate
) -> schemas.ListingOut:
    """A draft listing in the seller's own shop (the shop comes from who asks, never the body);
    photos and a digital file are added to it after."""
    shop = await _own_shop(uow, owner)
    listing = Listing(
        id=uuid7(),
        shop_id=shop.id,
        title=body.title,
        description=body.description,
        category=body.category,
        kind=body.kind,
        lead_time_days=_lead_time(body.kind, body.lead_time_days),
        status=ListingStatus.DRAFT,
        shipping_profile_id=await shipping.profile_for_listing(
            uow.session, shop, body.kind, body.shipping_profile_id
        ),
    )
    uow.session.add(listing)
    variants = [
        Variant(
            id=uuid7(),
            listing_id=listing.id,
            name=v.name,
            price_minor=v.price_minor,
            # Made-to-order and digital listings have no stock to run out of.
            stock=v.stock if body.kind == "physical" else None,
            position=n,
        )
        for n, v in enumerate(body.variants)
    ]
    await uow.session.flush()
    uow.session.add_all(variants)
    await uow.session.flush()
    return listing_out(shop, listing, variants)


async def own_listing(
    uow: UnitOfWork, owner: User, listing_id: UUID
) -> tuple[Listing, Shop, list[Variant]]:
    """A listing of the seller's own shop (another seller's is as good as not there)."""
    found = await repo.listing_with_shop(uow.session, listing_id)
    if found is None or found[1].owner_id != owner.id:
        raise ListingNotFound()
    listing, shop = found
    return listing, shop, (await repo.variants_of(uow.session, [listing.id]))[listing.id]


async def update_listing(
    ctx: AppContext, uow: UnitOfWork, owner: User, listing_id: UUID, body: schemas.ListingUpdate
) -> schemas.ListingOut:
    """Change a listing of the seller's own shop and its variants, all or nothing."""
    listing, shop, current = await own_listing(uow, owner, listing_id)
    physical = listing.kind == ListingKind.PHYSICAL
    listing.title = body.title
    listing.description = body.description
    listing.category = body.category
    listing.lead_time_days = _lead_time(listing.kind, body.lead_time_days)
    if body.shipping_profile_id is not None:
        listing.shipping_profile_id = await shipping.profile_for_listing(
            uow.session, shop, listing.kind, body.shipping_profile_id
        )
    known = {variant.id: variant for variant in current}
    added: list[Variant] = []
    for position, edit in enumerate(body.variants):
        stock = edit.stock if physical else None
        if edit.id is None:
            added.append(
                Variant(
                    id=uuid7(),
                    listing_id=listing.id,
                    name=edit.name,
                    price_minor=edit.price_minor,
                    stock=stock,
                    position=position,
                )
            )
            continue
        variant = known.get(edit.id)
        if variant is None:
            raise InvalidInput("That variant is not part of this listing.", field="variants")
        values: dict[str, object] = {
            "name": edit.name,
            "price_minor": edit.price_minor,
            "position": position,
        }
        guard: int | None = None
        if physical and stock != edit.stock_was:
            # Only a stock the seller actually changed is written, and only over the stock
            # they saw: a sale meanwhile makes this a conflict, never a lost sale.
            values["stock"] = stock
            guard = edit.stock_was
        if not await repo.change_variant(uow.session, listing.id, variant.id, values, guard):
            raise StockChanged(variant_id=str(variant.id))
    await uow.session.flush()
    uow.session.add_all(added)
    await uow.session.flush()
    for variant in current:
        await uow.session.refresh(variant)
    variants = sorted([*current, *added], key=lambda v: (v.position, v.id))
    media = await repo.photos_of(uow.session, [listing])
    return listing_out(shop, listing, variants, photo_outs(ctx, listing, media))


async def set_listing_status(
    uow: UnitOfWork, owner: User, listing_id: UUID, status: ListingStatus
) -> Listing:
    """Publish, archive (…) one of the seller's listings; its photos are public exactly while
    buyers can see it."""
    found = await repo.locked_listing_with_shop(uow.session, listing_id)
    if found is None:
        raise ListingNotFound()
    listing, shop = found
    if shop.owner_id != owner.id:
        # Another seller's listing: as good as not there.
        raise ListingNotFound()
    listing.status = status
    await repo.set_photos_public(uow.session, owner.id, repo.photo_ids(listing), status in VISIBLE)
    await uow.session.flush()
    return listing


async def get_listing(
    ctx: AppContext, uow: UnitOfWork, viewer: User | None, listing_id: UUID
) -> schemas.ListingOut:
    found = await repo.listing_with_shop(uow.session, listing_id)
    if found is None:
        raise ListingNotFound()
    listing, shop = found
    is_owner = viewer is not None and viewer.id == shop.owner_id
    if listing.status not in VISIBLE and not is_owner:
        raise ListingNotFound()
    variants = (await repo.variants_of(uow.session, [listing.id]))[listing.id]
    media = await repo.photos_of(uow.session, [listing])
    return listing_out(shop, listing, variants, photo_outs(ctx, listing, media))


async def browse(
    ctx: AppContext,
    uow: UnitOfWork,
    category: str | None,
    text: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[schemas.ListingOut], str | None]:
    """Listings for sale, newest first; three queries whatever the page size."""
    after = decode_time_cursor(cursor) if cursor else None
    rows = await repo.browse(uow.session, category, text, after, limit)
    items, next_cursor = page_of(rows, limit, lambda r: (r[0].created_at, r[0].id))
    variants = await repo.variants_of(uow.session, [listing.id for listing, _ in items])
    media = await repo.photos_of(uow.session, [listing for listing, _ in items])
    return [
        listing_out(shop, listing, variants[listing.id], photo_outs(ctx, listing, media))
        for listing, shop in items
    ], next_cursor


# --- cart -------------------------------------------------------------------------------


async def add_to_cart(
    uow: UnitOfWork, buyer: User, body: schemas.CartLineIn, ctx: AppContext | None = None
) -> schemas.CartOut:
    """Add units of a variant (adding again raises the quantity)."""
    variant = await uow.session.get(Variant, body.variant_id)
    found = await repo.listing_with_shop(uow.session, variant.listing_id) if variant else None
    if variant is None or found is None:
        raise ListingNotFound()
    listing, _ = found
    if listing.status != ListingStatus.ACTIVE:
        raise NotForSale()
    line = await uow.session.get(CartLine, (buyer.id, variant.id))
    quantity = body.quantity + (line.quantity if line else 0)
    if variant.stock is not None and variant.stock < quantity:
        raise OutOfStock(available=variant.stock)
    if line is None:
        uow.session.add(CartLine(buyer_id=buyer.id, variant_id=variant.id, quantity=quantity))
    else:
        line.quantity = quantity
    await uow.session.flush()
    return await cart(uow, buyer, ctx)


async def set_cart_quantity(
    uow: UnitOfWork, buyer: User, variant_id: UUID, quantity: int, ctx: AppContext | None = None
) -> schemas.CartOut:
    line = await uow.session.get(CartLine, (buyer.id, variant_id))
    if line is None:
        raise NotFound("That is not in your cart.")
    if quantity <= 0:
        await uow.session.delete(line)
    else:
        line.quantity = quantity
    await uow.session.flush()
    return await cart(uow, buyer, ctx)


async def cart(uow: UnitOfWork, buyer: User, ctx: AppContext | None = None) -> schemas.CartOut:
    """The cart with today's prices and stock (re-checked each time it is shown); with
    ``ctx``, each line with its listing's first photo (one query more)."""
    lines = []
    totals: dict[str, int] = defaultdict(int)
    rows = await repo.cart_rows(uow.session, buyer.id)
    firsts = (
        await repo.photos_of(uow.session, [row[2] for row in rows], first_only=True)
        if ctx is not None
        else {}
    )
    for line, variant, listing, shop in rows:
        if listing.status != ListingStatus.ACTIVE:
            availability = "unavailable"
        elif variant.stock is not None and variant.stock < line.quantity:
            availability = "not_enough_stock"
        else:
            availability = "ok"
        line_total = variant.price_minor * line.quantity
        if availability == "ok":
            totals[shop.currency] += line_total
        lines.append(
            schemas.CartLineOut(
                variant_id=variant.id,
                listing_id=listing.id,
                shop_handle=shop.handle,
                shop_name=shop.name,
                kind=listing.kind,
                title=f"{listing.title} — {variant.name}",
                unit_price=variant.price_minor,
                currency=shop.currency,
                quantity=line.quantity,
                line_total=line_total,
                availability=availability,
                stock=variant.stock,
                thumb_url=_thumb(ctx, listing, firsts) if ctx is not None else None,
            )
        )
    return schemas.CartOut(lines=lines, items_total=dict(totals))


def _thumb(ctx: AppContext, listing: Listing, media: dict[UUID, MediaObject]) -> str | None:
    ids = repo.photo_ids(listing)
    found = media.get(ids[0]) if ids else None
    if found is None or not shop_photos.webp_variants(found):
        return None
    smallest = min(shop_photos.webp_variants(found), key=lambda v: int(v["width"]))
    return media_url(ctx, found, str(smallest["key"]))


async def cart_count(uow: UnitOfWork, buyer_id: UUID) -> int:
    """How many items the buyer's cart holds (one cheap query, for the app bar)."""
    return await repo.cart_count(uow.session, buyer_id)


# --- checkout ---------------------------------------------------------------------------


def tax_rate(ctx: AppContext, country: str) -> int:
    rates = parse_rates(ctx.settings.tax_rates)
    return rates.get(country, rates.get("*", 0))


CartRow = tuple[CartLine, Variant, Listing, Shop]


def _title(listing: Listing, variant: Variant) -> str:
    return f"{listing.title} — {variant.name}"


def _shop_parcels(
    shop_rows: list[CartRow], profiles: shipping.Profiles, country: str, chosen: set[UUID]
) -> tuple[int, list[shipping.Parcel]]:
    """One shop's items total and its parcels for a destination (see ``shop.shipping``)."""
    items = sum(variant.price_minor * line.quantity for line, variant, _, _ in shop_rows)
    lines = [(listing, _title(listing, variant)) for _, variant, listing, _ in shop_rows]
    return items, shipping.parcels(lines, profiles, country, items, chosen)


def _by_shop(rows: list[CartRow]) -> dict[UUID, list[CartRow]]:
    by_shop: dict[UUID, list[CartRow]] = defaultdict(list)
    for row in rows:
        by_shop[row[3].id].append(row)
    return by_shop


async def quote(
    ctx: AppContext,
    uow: UnitOfWork,
    buyer: User,
    country: str,
    chosen: Sequence[UUID] = (),
) -> schemas.CheckoutQuote:
    """Price the cart for a destination as checkout would, holding nothing. ``chosen``:
    delivery method ids; a parcel whose chosen method does not serve the country (or was
    not chosen) goes the cheapest way."""
    rows = list(await repo.cart_rows(uow.session, buyer.id))
    problems: list[str] = []
    if not rows:
        problems.append(CartEmpty.message)
    currencies = sorted({shop.currency for _, _, _, shop in rows})
    if len(currencies) > 1:
        problems.append(MixedCurrencies.message)
    for line, variant, listing, _ in rows:
        if listing.status != ListingStatus.ACTIVE:
            problems.append(f"{listing.title} is no longer for sale: remove it from your cart.")
        elif variant.stock is not None and variant.stock < line.quantity:
            problems.append(f"Only {variant.stock} of {listing.title} — {variant.name} left.")
    rate = tax_rate(ctx, country)
    profiles = await shipping.profiles_for(uow.session, [row[2] for row in rows])
    shops: list[schemas.QuoteShop] = []
    for shop_rows in _by_shop(rows).values():
        shop = shop_rows[0][3]
        items, parcels = _shop_parcels(shop_rows, profiles, country, set(chosen))
        ships = all(parcel.chosen is not None for parcel in parcels)
        shipping_total = shipping.shipping_total(parcels) if ships else 0
        tax = apply_rate(items + shipping_total, rate) if ships else 0
        if not ships:
            problems.append(f"{shop.name} does not ship to {country}.")
        shops.append(
            schemas.QuoteShop(
                shop_handle=shop.handle,
                shop_name=shop.name,
                items_total=items,
                shipping_total=shipping_total,
                tax_total=tax,
                total=items + shipping_total + tax,
                ships_to_country=ships,
                digital_only=not parcels,
                delivery=shipping.delivery_groups(parcels),
            )
        )
    return schemas.CheckoutQuote(
        country=country,
        currency=currencies[0] if len(currencies) == 1 else None,
        shops=shops,
        items_total=sum(s.items_total for s in shops),
        shipping_total=sum(s.shipping_total for s in shops),
        tax_total=sum(s.tax_total for s in shops),
        total=sum(s.total for s in shops),
        problems=problems,
    )


async def start_checkout(
    ctx: AppContext,
    uow: UnitOfWork,
    buyer: User,
    body: schemas.CheckoutCreate,
    idempotency_key: str | None,
) -> tuple[int, dict[str, object]]:
    """Turn the cart into one order per shop, holding their stock until the checkout lapses.

    Repeating the request with the same ``Idempotency-Key`` returns the first result.
    """
    key = idempotency.check_key(idempotency_key)
    digest = idempotency.request_hash(body.model_dump(mode="json"))
    earlier = await idempotency.replay(uow.session, buyer.id, "checkout", key, digest)
    if earlier is not None:
        return earlier.status_code, earlier.response
    result = await _checkout(ctx, uow, buyer, body)
    payload = result.model_dump(mode="json")
    await idempotency.remember(uow.session, buyer.id, "checkout", key, digest, 201, payload)
    return 201, payload


async def _checkout(
    ctx: AppContext, uow: UnitOfWork, buyer: User, body: schemas.CheckoutCreate
) -> schemas.CheckoutOut:
    rows = await repo.cart_rows(uow.session, buyer.id)
    if not rows:
        raise CartEmpty()
    currencies = {shop.currency for _, _, _, shop in rows}
    if len(currencies) > 1:
        raise MixedCurrencies(currencies=sorted(currencies))
    currency = currencies.pop()
    country = body.shipping_address.country
    now = utcnow()
    checkout = Checkout(
        id=uuid7(),
        buyer_id=buyer.id,
        status=CheckoutStatus.OPEN,
        currency=currency,
        shipping_address=body.shipping_address.model_dump(),
        items_total=0,
        shipping_total=0,
        tax_total=0,
        total=0,
        expires_at=now + timedelta(minutes=ctx.settings.checkout_reservation_minutes),
    )
    uow.session.add(checkout)
    await uow.session.flush()
    for _, variant, listing, _ in rows:
        if listing.status != ListingStatus.ACTIVE:
            raise NotForSale(variant_id=str(variant.id))
    rate = tax_rate(ctx, country)
    # Prices come from the shop's profiles as they are now, never from the request: the
    # request only names which methods.
    chosen = list(body.shipping_methods)
    profiles = await shipping.profiles_for(uow.session, [row[2] for row in rows])
    priced = [
        (shop_rows[0][3], *_shop_parcels(shop_rows, profiles, country, set(chosen)), shop_rows)
        for shop_rows in _by_shop(list(rows)).values()
    ]
    every_parcel = [parcel for _, _, parcels, _ in priced for parcel in parcels]
    shipping.check_choices(every_parcel, chosen, country)
    for shop, items, parcels, shop_rows in priced:
        shipping.require_served(parcels, country, shop.handle)
        shipping_total = shipping.shipping_total(parcels)
        tax = apply_rate(items + shipping_total, rate)
        order = Order(
            id=uuid7(),
            checkout_id=checkout.id,
            shop_id=shop.id,
            buyer_id=buyer.id,
            currency=currency,
            items_total=items,
            shipping_total=shipping_total,
            tax_total=tax,
            total=items + shipping_total + tax,
            shipping_choices=[
                choice.model_dump(mode="json") for choice in shipping.choices(parcels)
            ],
        )
        uow.session.add(order)
        await uow.session.flush()
        for line, variant, listing, _ in shop_rows:
            uow.session.add(
                OrderLine(
                    order_id=order.id,
                    variant_id=variant.id,
                    title=_title(listing, variant),
                    unit_price=variant.price_minor,
                    quantity=line.quantity,
                )
            )
        checkout.items_total += items
        checkout.shipping_total += shipping_total
        checkout.tax_total += tax
        checkout.total += order.total
    await repo.clear_cart(uow.session, buyer.id)
    await uow.session.flush()
    # Take stock last, so the stock rows stay locked only from here to the commit, and in one
    # fixed order (by variant id) so concurrent checkouts cannot deadlock.
    for line, variant, listing, _ in sorted(rows, key=lambda r: r[1].id):
        if not await repo.take_stock(uow.session, variant.id, line.quantity):
            raise OutOfStock(variant_id=str(variant.id), title=listing.title)
        uow.session.add(
            Reservation(checkout_id=checkout.id, variant_id=variant.id, quantity=line.quantity)
        )
    ctx.jobs.enqueue(
        uow,
        "shop.expire_checkout",
        {"checkout_id": str(checkout.id)},
        run_at=checkout.expires_at,
        dedupe_key=f"shop.expire_checkout:{checkout.id}",
    )
    return await checkout_out(uow, checkout)


async def checkout_out(uow: UnitOfWork, checkout: Checkout) -> schemas.CheckoutOut:
    orders = await repo.orders_of_checkout(uow.session, checkout.id)
    return schemas.CheckoutOut(
        id=checkout.id,
        status=checkout.status,
        currency=checkout.currency,
        items_total=checkout.items_total,
        shipping_total=checkout.shipping_total,
        tax_total=checkout.tax_total,
        total=checkout.total,
        expires_at=checkout.expires_at,
        orders=[
            schemas.OrderOut(
                id=order.id,
                shop_handle=shop.handle,
                status=order.status,
                currency=order.currency,
                items_total=order.items_total,
                shipping_total=order.shipping_total,
                tax_total=order.tax_total,
                total=order.total,
                shipping=[schemas.ShippingChoice(**c) for c in order.shipping_choices or []],
                lines=[
                    schemas.OrderLineOut(
                        variant_id=line.variant_id,
                        title=line.title,
                        unit_price=line.unit_price,
                        quantity=line.quantity,
                    )
                    for line in lines
                ],
                created_at=order.created_at,
            )
            for order, shop, lines in orders
        ],
    )


async def get_checkout(uow: UnitOfWork, buyer: User, checkout_id: UUID) -> schemas.CheckoutOut:
    checkout = await uow.session.get(Checkout, checkout_id)
    if checkout is None or checkout.buyer_id != buyer.id:
        raise NotFound("No such checkout.")
    return await checkout_out(uow, checkout)


async def expire_checkout(uow: UnitOfWork, checkout_id: UUID) -> bool:
    """Give an unpaid, lapsed checkout's stock back — exactly once, however often it runs."""
    now = utcnow()
    if not await repo.lapse_checkout(uow.session, checkout_id, now):
        return False
    await repo.release_reservations(uow.session, checkout_id, now)
    return True
