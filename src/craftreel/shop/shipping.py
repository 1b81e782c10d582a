"""Shipping profiles: how a shop sends things, and what sending a checkout's parcels costs.

A shop has shipping profiles ("Small parcel", "Furniture"), exactly one of them its default.
A profile has delivery methods ("Standard", 3–5 days; "Express", 1–2 days), each with a price
per destination country (``"*"`` for everywhere else; a country not listed, with no ``"*"``,
is not served) and, optionally, an amount over which it is free. Every listing that is not a
download points at one profile. Amounts are in the shop's currency, in minor units.

How a shop's order is charged for shipping:

- its physical lines are grouped by their listing's profile: one **parcel** per profile;
- for each parcel the buyer picks one of the profile's methods that serve the country
  (by default the cheapest; equal prices go to the one listed first);
- a parcel costs its method's rate for the country, once, however many lines and units it
  holds — or nothing when the shop order's items (everything bought from that shop in the
  checkout, downloads included) come to the method's free-over amount or more;
- the order's shipping is the sum of its parcels. Downloads travel free.

So a mug (Small parcel, Standard £3.95) and a stool (Furniture, Standard £45) from one shop
cost £48.95 to send; two mugs cost £3.95. The choice is kept with the order (profile, method,
estimate, amount), so later edits to the profiles change no placed order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from craftreel.accounts.models import User
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import Conflict, InvalidInput, NotFound
from craftreel.core.ids import uuid7
from craftreel.shop import schemas
from craftreel.shop.models import (
    Listing,
    ListingKind,
    ShippingMethod,
    ShippingProfile,
    Shop,
)

#: What a shop opened with flat rates gets: its default profile and that profile's method.
DEFAULT_PROFILE = "Default"
DEFAULT_METHOD = "Standard"


class NoShippingToCountry(Conflict):
    """A shop in the cart does not ship to the address's country (by the chosen method)."""

    code = "no_shipping_to_country"
    message = "A shop in your cart does not ship to that country."


class ShippingMethodNotOffered(Conflict):
    """A chosen delivery method is not one of those for what is in the cart."""

    code = "shipping_method_not_offered"
    message = "That delivery method is not offered for what is in your cart. Choose another."


class OneMethodPerParcel(InvalidInput):
    """Two methods were chosen for the same parcel."""

    code = "one_shipping_method_per_parcel"
    message = "Choose one delivery method for each parcel."


class ShippingProfileNotFound(NotFound):
    """No such profile in the seller's shop (another shop's is as good as not there)."""

    code = "shipping_profile_not_found"
    message = "That shipping profile does not exist."


class ShippingProfileNameTaken(Conflict):
    """A shop's profiles have different names."""

    code = "shipping_profile_name_taken"
    message = "You already have a shipping profile with that name."


class ShippingProfileInUse(Conflict):
    """A profile that listings use, or the default, cannot be deleted."""

    code = "shipping_profile_in_use"
    message = "Listings use this profile: move them to another one first."


class DefaultProfileKept(Conflict):
    """The default profile cannot be deleted; make another the default first."""

    code = "default_shipping_profile"
    message = "This is your default profile: make another one the default first."


class UnknownShippingMethod(InvalidInput):
    """An edit names a method id that is not part of the profile."""

    code = "unknown_shipping_method"
    message = "That delivery method is not part of this profile."


# --- prices -----------------------------------------------------------------------------


def estimate(min_days: int | None, max_days: int | None) -> str | None:
    """``"3–5 days"``, ``"1 day"``, ``"up to 5 days"`` — or None without an estimate."""

    def days(n: int) -> str:
        return f"{n} day" if n == 1 else f"{n} days"

    if min_days is None and max_days is None:
        return None
    if min_days is None:
        return f"up to {days(max_days or 0)}"
    if max_days is None:
        return f"{days(min_days)} or more"
    if min_days == max_days:
        return days(min_days)
    return f"{min_days}–{days(max_days)}"


def rate_for(method: ShippingMethod, country: str) -> int | None:
    """The method's price to ``country`` before any free-over, or None if it does not go."""
    rates = method.rates or {}
    if country in rates:
        return int(rates[country])
    if "*" in rates:
        return int(rates["*"])
    return None


def price_of(method: ShippingMethod, country: str, shop_items_total: int) -> int | None:
    """What the method charges a shop order worth ``shop_items_total`` to ``country``."""
    rate = rate_for(method, country)
    if rate is None:
        return None
    if method.free_over is not None and shop_items_total >= method.free_over:
        return 0
    return rate


@dataclass
class Parcel:
    """The lines of one shop order that travel under one profile, and the pick for them."""

    profile: ShippingProfile
    methods: list[ShippingMethod]
    titles: list[str] = field(default_factory=list)
    #: (method, amount) for each method that serves the country, cheapest first.
    options: list[tuple[ShippingMethod, int]] = field(default_factory=list)
    chosen: tuple[ShippingMethod, int] | None = None


@dataclass
class Profiles:
    """Shipping profiles (with their methods, in order) and each shop's default."""

    by_id: dict[UUID, tuple[ShippingProfile, list[ShippingMethod]]]
    default_of: dict[UUID, UUID]

    def of_listing(self, listing: Listing) -> tuple[ShippingProfile, list[ShippingMethod]]:
        profile_id = listing.shipping_profile_id or self.default_of.get(listing.shop_id)
        if profile_id is None or profile_id not in self.by_id:
            # A physical listing always has a profile (the migration and every write see to
            # it); should one not, it is not sent anywhere rather than sent for free.
            return ShippingProfile(id=uuid7(), shop_id=listing.shop_id, name="—"), []
        return self.by_id[profile_id]


async def profiles_for(session: AsyncSession, listings: Iterable[Listing]) -> Profiles:
    """The profiles these listings travel under, and their shops' defaults: two queries."""
    wanted = {listing.shipping_profile_id for listing in listings} - {None}
    shop_ids = {listing.shop_id for listing in listings}
    if not shop_ids:
        return Profiles({}, {})
    rows = (
        await session.scalars(
            select(ShippingProfile).where(
                or_(
                    ShippingProfile.id.in_(wanted),
                    ShippingProfile.shop_id.in_(shop_ids) & ShippingProfile.is_default,
                )
            )
        )
    ).all()
    methods = await _methods_of(session, [profile.id for profile in rows])
    return Profiles(
        {profile.id: (profile, methods[profile.id]) for profile in rows},
        {profile.shop_id: profile.id for profile in rows if profile.is_default},
    )


async def _methods_of(
    session: AsyncSession, profile_ids: Sequence[UUID]
) -> dict[UUID, list[ShippingMethod]]:
    out: dict[UUID, list[ShippingMethod]] = {profile_id: [] for profile_id in profile_ids}
    if not profile_ids:
        return out
    rows = await session.scalars(
        select(ShippingMethod)
        .where(ShippingMethod.profile_id.in_(profile_ids))
        .order_by(ShippingMethod.position, ShippingMethod.id)
    )
    for method in rows:
        out[method.profile_id].append(method)
    return out


def parcels(
    lines: Iterable[tuple[Listing, str]],
    profiles: Profiles,
    country: str,
    shop_items_total: int,
    chosen_ids: set[UUID],
) -> list[Parcel]:
    """One shop order's physical lines (listing, title) as parcels, each with its options
    for ``country`` and the one picked: the chosen id when it serves the country, else the
    cheapest. Checking the choice itself is ``check_choices``."""
    by_profile: dict[UUID, Parcel] = {}
    for listing, title in lines:
        if listing.kind == ListingKind.DIGITAL:
            continue
        profile, methods = profiles.of_listing(listing)
        parcel = by_profile.get(profile.id)
        if parcel is None:
            parcel = by_profile[profile.id] = Parcel(profile, methods)
        parcel.titles.append(title)
    for parcel in by_profile.values():
        for method in parcel.methods:
            amount = price_of(method, country, shop_items_total)
            if amount is not None:
                parcel.options.append((method, amount))
        # Cheapest first; equal prices keep the seller's order (sorted is stable).
        parcel.options.sort(key=lambda option: option[1])
        picked = [option for option in parcel.options if option[0].id in chosen_ids]
        parcel.chosen = picked[0] if picked else (parcel.options[0] if parcel.options else None)
    return list(by_profile.values())


def check_choices(cart_parcels: Sequence[Parcel], chosen_ids: Iterable[UUID], country: str) -> None:
    """Refuse a choice checkout cannot honour: a method that is not for what is in the cart
    (another shop's, a profile none of its lines uses), one that does not serve the country,
    or two methods for one parcel. ``cart_parcels``: every parcel of the cart."""
    owner = {method.id: parcel for parcel in cart_parcels for method in parcel.methods}
    per_parcel: dict[UUID, int] = defaultdict(int)
    for method_id in chosen_ids:
        parcel = owner.get(method_id)
        if parcel is None:
            raise ShippingMethodNotOffered(method_id=str(method_id))
        if all(method.id != method_id for method, _ in parcel.options):
            raise NoShippingToCountry(
                "That delivery method does not go to this country. Choose another.",
                country=country,
                method_id=str(method_id),
            )
        per_parcel[parcel.profile.id] += 1
        if per_parcel[parcel.profile.id] > 1:
            raise OneMethodPerParcel(profile_id=str(parcel.profile.id))


def require_served(shop_parcels: Iterable[Parcel], country: str, shop_handle: str) -> None:
    """Refuse a shop order some of which no method of its profile takes to the country."""
    for parcel in shop_parcels:
        if parcel.chosen is None:
            raise NoShippingToCountry(
                shop=shop_handle, country=country, profile=parcel.profile.name
            )


def shipping_total(shop_parcels: Iterable[Parcel]) -> int:
    return sum(parcel.chosen[1] for parcel in shop_parcels if parcel.chosen is not None)


def choices(shop_parcels: Iterable[Parcel]) -> list[schemas.ShippingChoice]:
    """What an order keeps of how it travels."""
    return [
        schemas.ShippingChoice(
            profile=parcel.profile.name,
            method=method.name,
            method_id=method.id,
            min_days=method.min_days,
            max_days=method.max_days,
            estimate=estimate(method.min_days, method.max_days),
            amount=amount,
        )
        for parcel in shop_parcels
        if parcel.chosen is not None
        for method, amount in [parcel.chosen]
    ]


def delivery_groups(shop_parcels: Iterable[Parcel]) -> list[schemas.DeliveryGroup]:
    """The parcels as a quote shows them."""
    return [
        schemas.DeliveryGroup(
            profile_id=parcel.profile.id,
            profile_name=parcel.profile.name,
            titles=parcel.titles,
            options=[
                schemas.DeliveryOption(
                    method_id=method.id,
                    name=method.name,
                    estimate=estimate(method.min_days, method.max_days),
                    amount=amount,
                    free_over=method.free_over,
                    chosen=parcel.chosen is not None and parcel.chosen[0].id == method.id,
                )
                for method, amount in parcel.options
            ],
        )
        for parcel in shop_parcels
    ]


def summary(shipping_choices: Sequence[dict[str, object]]) -> str | None:
    """An order's delivery in a few words: "Express (1–2 days)", several joined by " + "."""
    parts = []
    for choice in shipping_choices:
        when = choice.get("estimate")
        parts.append(f"{choice.get('method')}" + (f" ({when})" if when else ""))
    return " + ".join(parts) or None


# --- the seller's profiles --------------------------------------------------------------


async def _own_shop(uow: UnitOfWork, owner: User) -> Shop:
    from craftreel.shop.service import NoShop

    shop = await uow.session.scalar(select(Shop).where(Shop.owner_id == owner.id))
    if shop is None:
        raise NoShop()
    return shop


def _method(profile_id: UUID, body: schemas.ShippingMethodIn, position: int) -> ShippingMethod:
    return ShippingMethod(
        id=uuid7(),
        profile_id=profile_id,
        name=body.name,
        min_days=body.min_days,
        max_days=body.max_days,
        rates=dict(body.rates),
        free_over=body.free_over,
        position=position,
    )


async def add_flat_profile(
    session: AsyncSession, shop: Shop, rates: dict[str, int], free_over: int | None
) -> ShippingProfile:
    """Give a new shop its default profile: one "Standard" method with these rates (none
    at all: shipping is included everywhere)."""
    profile = ShippingProfile(id=uuid7(), shop_id=shop.id, name=DEFAULT_PROFILE, is_default=True)
    session.add(profile)
    await session.flush()
    body = schemas.ShippingMethodIn(
        name=DEFAULT_METHOD, rates=dict(rates) or {"*": 0}, free_over=free_over
    )
    session.add(_method(profile.id, body, 0))
    await session.flush()
    return profile


async def _profile_outs(
    session: AsyncSession, shop: Shop, rows: Sequence[ShippingProfile]
) -> list[schemas.ShippingProfileOut]:
    ids = [profile.id for profile in rows]
    methods = await _methods_of(session, ids)
    counts: dict[UUID | None, int] = {}
    if ids:
        counts = {
            profile_id: int(n)
            for profile_id, n in (
                await session.execute(
                    select(Listing.shipping_profile_id, func.count())
                    .where(Listing.shipping_profile_id.in_(ids))
                    .group_by(Listing.shipping_profile_id)
                )
            ).all()
        }
    return [
        schemas.ShippingProfileOut(
            id=profile.id,
            name=profile.name,
            is_default=profile.is_default,
            currency=shop.currency,
            methods=[
                schemas.ShippingMethodOut(
                    id=method.id,
                    name=method.name,
                    min_days=method.min_days,
                    max_days=method.max_days,
                    estimate=estimate(method.min_days, method.max_days),
                    rates=dict(method.rates),
                    free_over=method.free_over,
                )
                for method in methods[profile.id]
            ],
            listings=counts.get(profile.id, 0),
        )
        for profile in rows
    ]


async def methods_of_profile(
    uow: UnitOfWork, profile_id: UUID | None
) -> list[schemas.ShippingMethodOut]:
    """A listing's delivery methods as buyers see them on it (none for a download)."""
    if profile_id is None:
        return []
    profile = await uow.session.get(ShippingProfile, profile_id)
    shop = await uow.session.get(Shop, profile.shop_id) if profile else None
    if profile is None or shop is None:
        return []
    return (await _profile_outs(uow.session, shop, [profile]))[0].methods


async def my_profiles(uow: UnitOfWork, owner: User) -> list[schemas.ShippingProfileOut]:
    """The seller's profiles: the default first, then by name."""
    shop = await _own_shop(uow, owner)
    rows = (
        await uow.session.scalars(
            select(ShippingProfile)
            .where(ShippingProfile.shop_id == shop.id)
            .order_by(ShippingProfile.is_default.desc(), ShippingProfile.name, ShippingProfile.id)
        )
    ).all()
    return await _profile_outs(uow.session, shop, rows)


async def _own_profile(
    uow: UnitOfWork, owner: User, profile_id: UUID
) -> tuple[Shop, ShippingProfile]:
    shop = await _own_shop(uow, owner)
    profile = await uow.session.get(ShippingProfile, profile_id)
    if profile is None or profile.shop_id != shop.id:
        raise ShippingProfileNotFound()
    return shop, profile


async def my_profile(uow: UnitOfWork, owner: User, profile_id: UUID) -> schemas.ShippingProfileOut:
    shop, profile = await _own_profile(uow, owner, profile_id)
    return (await _profile_outs(uow.session, shop, [profile]))[0]


async def _name_free(session: AsyncSession, shop_id: UUID, name: str, but: UUID | None) -> None:
    query = select(ShippingProfile.id).where(
        ShippingProfile.shop_id == shop_id, func.lower(ShippingProfile.name) == name.lower()
    )
    if but is not None:
        query = query.where(ShippingProfile.id != but)
    if await session.scalar(query) is not None:
        raise ShippingProfileNameTaken(field="name")


async def _flush_named(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # a twin request took the name meanwhile
        raise ShippingProfileNameTaken(field="name") from exc


async def create_profile(
    uow: UnitOfWork, owner: User, body: schemas.ShippingProfileIn
) -> schemas.ShippingProfileOut:
    """A new profile in the seller's own shop (not the default: see ``make_default``)."""
    shop = await _own_shop(uow, owner)
    await _name_free(uow.session, shop.id, body.name, None)
    if any(method.id is not None for method in body.methods):
        raise UnknownShippingMethod(field="methods")
    profile = ShippingProfile(id=uuid7(), shop_id=shop.id, name=body.name, is_default=False)
    uow.session.add(profile)
    await _flush_named(uow.session)
    uow.session.add_all(_method(profile.id, m, n) for n, m in enumerate(body.methods))
    await uow.session.flush()
    return (await _profile_outs(uow.session, shop, [profile]))[0]


async def update_profile(
    uow: UnitOfWork, owner: User, profile_id: UUID, body: schemas.ShippingProfileIn
) -> schemas.ShippingProfileOut:
    """Rename a profile and set its methods: those with an id are changed, those without
    added, those left out removed. Orders placed already keep what they were charged."""
    shop, profile = await _own_profile(uow, owner, profile_id)
    await _name_free(uow.session, shop.id, body.name, profile.id)
    methods = (await _methods_of(uow.session, [profile.id]))[profile.id]
    current = {method.id: method for method in methods}
    kept = {method.id for method in body.methods if method.id is not None}
    if kept - current.keys():
        raise UnknownShippingMethod(field="methods")
    profile.name = body.name
    gone = current.keys() - kept
    if gone:
        await uow.session.execute(delete(ShippingMethod).where(ShippingMethod.id.in_(gone)))
    for position, edit in enumerate(body.methods):
        if edit.id is None:
            uow.session.add(_method(profile.id, edit, position))
            continue
        method = current[edit.id]
        method.name = edit.name
        method.min_days = edit.min_days
        method.max_days = edit.max_days
        method.rates = dict(edit.rates)
        method.free_over = edit.free_over
        method.position = position
    await _flush_named(uow.session)
    return (await _profile_outs(uow.session, shop, [profile]))[0]


async def make_default(
    uow: UnitOfWork, owner: User, profile_id: UUID
) -> schemas.ShippingProfileOut:
    """Make a profile the shop's default: the one new listings get unless told otherwise.
    Listings keep the profile they have."""
    shop, profile = await _own_profile(uow, owner, profile_id)
    # Two statements: the unique "one default per shop" index is checked row by row.
    await uow.session.execute(
        update(ShippingProfile)
        .where(ShippingProfile.shop_id == shop.id, ShippingProfile.is_default)
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
    await uow.session.execute(
        update(ShippingProfile)
        .where(ShippingProfile.id == profile.id)
        .values(is_default=True)
        .execution_options(synchronize_session=False)
    )
    await uow.session.refresh(profile)
    return (await _profile_outs(uow.session, shop, [profile]))[0]


async def delete_profile(uow: UnitOfWork, owner: User, profile_id: UUID) -> None:
    """Delete a profile no listing uses (never the default)."""
    _, profile = await _own_profile(uow, owner, profile_id)
    if profile.is_default:
        raise DefaultProfileKept()
    # Locked before counting: a listing being pointed at it meanwhile holds a share lock
    # on it (``profile_for_listing``), so one of the two waits and sees the other.
    await uow.session.execute(
        select(ShippingProfile.id).where(ShippingProfile.id == profile.id).with_for_update()
    )
    used = await uow.session.scalar(
        select(func.count()).where(Listing.shipping_profile_id == profile.id)
    )
    if used:
        raise ShippingProfileInUse(listings=int(used))
    await uow.session.delete(profile)
    await uow.session.flush()


async def profile_for_listing(
    session: AsyncSession, shop: Shop, kind: str, profile_id: UUID | None
) -> UUID | None:
    """The profile a listing of ``kind`` gets: the one asked for (of this shop), or the
    shop's default; a download gets none. The profile stays share-locked until commit so it
    cannot be deleted under the listing."""
    if kind == ListingKind.DIGITAL:
        return None
    query = select(ShippingProfile.id).where(ShippingProfile.shop_id == shop.id)
    if profile_id is None:
        query = query.where(ShippingProfile.is_default)
    else:
        query = query.where(ShippingProfile.id == profile_id)
    found = await session.scalar(query.with_for_update(read=True))
    if found is None and profile_id is not None:
        raise ShippingProfileNotFound(field="shipping_profile_id")
    return found
