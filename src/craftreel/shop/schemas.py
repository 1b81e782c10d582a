"""Shop API shapes. Prices are integer minor units (pence, cents) with an ISO currency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from craftreel.shop.models import Category, ListingKind

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Minor = Annotated[int, Field(ge=0, le=100_000_000)]
#: A destination a shipping rate applies to: a country, or "*" for everywhere else.
Region = Annotated[str, StringConstraints(pattern=r"^([A-Z]{2}|\*)$")]
Days = Annotated[int, Field(ge=0, le=365)]
#: How many photos a listing may have.
MAX_PHOTOS = 8


class ShopCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    handle: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,39}$")]
    currency: Currency = "GBP"
    origin_country: Country = "GB"
    shipping_policy: str = Field(default="", max_length=4000)
    returns_policy: str = Field(default="", max_length=4000)
    #: The default shipping profile's one method ("Standard"): a price per country, "*" for
    #: everywhere else; none at all means shipping is included everywhere.
    shipping_rates: dict[Region, Minor] = Field(default_factory=dict, max_length=60)
    free_shipping_over: Minor | None = None


class ShopOut(BaseModel):
    id: UUID
    handle: str
    name: str
    currency: str
    origin_country: str
    shipping_policy: str
    returns_policy: str


class ShopProfile(ShopOut):
    """A shop as anyone sees it: with its rating from buyers' reviews."""

    rating: float | None
    review_count: int


class ShippingMethodIn(BaseModel):
    """A delivery method: with an ``id`` (in a profile edit) it changes that method, without
    one it is added. Rates are per country ("*": everywhere else), in the shop's currency."""

    model_config = ConfigDict(extra="forbid")

    id: UUID | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    min_days: Days | None = None
    max_days: Days | None = None
    rates: dict[Region, Minor] = Field(min_length=1, max_length=60)
    free_over: Minor | None = None

    @model_validator(mode="after")
    def _days_in_order(self) -> ShippingMethodIn:
        if None not in (self.min_days, self.max_days) and self.min_days > self.max_days:  # type: ignore[operator]
            raise ValueError("min_days is more than max_days")
        return self


class ShippingProfileIn(BaseModel):
    """A shipping profile as a seller writes it: a name and its methods, in order (methods
    left out of an edit are removed)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    methods: list[ShippingMethodIn] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _names_differ(self) -> ShippingProfileIn:
        names = [method.name.casefold() for method in self.methods]
        if len(set(names)) != len(names):
            raise ValueError("two methods have the same name")
        return self


class ShippingMethodOut(BaseModel):
    id: UUID
    name: str
    min_days: int | None
    max_days: int | None
    #: "3–5 days", or None when the seller gave no estimate.
    estimate: str | None
    rates: dict[str, int]
    free_over: int | None


class ShippingProfileOut(BaseModel):
    id: UUID
    name: str
    is_default: bool
    currency: str
    methods: list[ShippingMethodOut]
    #: How many of the shop's listings use it.
    listings: int


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    price_minor: Minor
    stock: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class ListingCreate(BaseModel):
    """What a seller may set. Status, shop and anything else a client sends are not accepted."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=140)]
    description: str = Field(default="", max_length=10_000)
    category: Category
    kind: ListingKind = ListingKind.PHYSICAL
    lead_time_days: Annotated[int, Field(ge=1, le=365)] | None = None
    #: One of the shop's shipping profiles (None: the shop's default); downloads have none.
    shipping_profile_id: UUID | None = None
    variants: list[VariantIn] = Field(min_length=1, max_length=50)


class VariantEdit(BaseModel):
    """A variant in a listing edit: with an ``id`` it changes that variant, without one it is
    added. ``stock_was`` is the stock the seller saw: when given, a new stock applies only if
    no sale changed it meanwhile (otherwise the edit is refused, nothing half-saved)."""

    model_config = ConfigDict(extra="forbid")

    id: UUID | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    price_minor: Minor
    stock: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    stock_was: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class ListingUpdate(BaseModel):
    """What a seller may change. The kind (physical, made to order, digital) stays as created;
    variants not listed stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=140)]
    description: str = Field(default="", max_length=10_000)
    category: Category
    lead_time_days: Annotated[int, Field(ge=1, le=365)] | None = None
    #: Another of the shop's shipping profiles (None: keep the one it has).
    shipping_profile_id: UUID | None = None
    variants: list[VariantEdit] = Field(min_length=1, max_length=50)


class VariantOut(BaseModel):
    id: UUID
    name: str
    price_minor: int
    currency: str
    stock: int | None
    available: bool


class ListingPhoto(BaseModel):
    """One of a listing's photos: the largest WebP copy, a small one for grids and carts,
    the picture's size (for its shape) and a blurhash to show while it loads."""

    id: UUID
    url: str
    thumb_url: str
    width: int | None
    height: int | None
    blurhash: str | None


class ListingOut(BaseModel):
    id: UUID
    shop_handle: str
    title: str
    description: str
    category: str
    kind: str
    lead_time_days: int | None
    status: str
    #: How it travels (None for a download).
    shipping_profile_id: UUID | None = None
    variants: list[VariantOut]
    #: In the seller's order; the first is the listing's picture everywhere.
    photos: list[ListingPhoto] = Field(default_factory=list)
    #: A digital listing whose file is attached (buyers can download once paid).
    has_file: bool = False
    created_at: datetime


class PhotoOrder(BaseModel):
    """A listing's photos in a new order: each of its photo ids, once."""

    model_config = ConfigDict(extra="forbid")

    ids: list[UUID] = Field(max_length=MAX_PHOTOS)


class CartLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant_id: UUID
    quantity: Annotated[int, Field(ge=1, le=99)] = 1


class CartLineOut(BaseModel):
    variant_id: UUID
    listing_id: UUID
    shop_handle: str
    shop_name: str = ""
    kind: str = ListingKind.PHYSICAL
    title: str
    unit_price: int
    currency: str
    quantity: int
    line_total: int
    #: Re-checked every time the cart is shown: "ok", "not_enough_stock", "unavailable".
    availability: str
    stock: int | None
    #: The listing's first photo, small (None without photos).
    thumb_url: str | None = None


class CartOut(BaseModel):
    lines: list[CartLineOut]
    items_total: dict[str, int]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    line2: str = Field(default="", max_length=200)
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    postcode: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
    country: Country


class DeliveryOption(BaseModel):
    """A delivery method that serves the destination, priced for this parcel."""

    method_id: UUID
    name: str
    estimate: str | None
    amount: int
    #: Free once the shop's items come to this much (None: never free).
    free_over: int | None
    chosen: bool


class DeliveryGroup(BaseModel):
    """What of one shop's order travels under one shipping profile, and how it may go
    (cheapest first). No options: the profile does not serve the country."""

    profile_id: UUID
    profile_name: str
    titles: list[str]
    options: list[DeliveryOption]


class QuoteShop(BaseModel):
    """One shop's part of a checkout before it is placed: what it would cost, delivered."""

    shop_handle: str
    shop_name: str
    items_total: int
    shipping_total: int
    tax_total: int
    total: int
    #: False when some of it cannot be sent to the country (the checkout would fail).
    ships_to_country: bool
    #: Only digital downloads: nothing to deliver, no shipping.
    digital_only: bool
    #: One per shipping profile among its lines; the chosen option of each is charged.
    delivery: list[DeliveryGroup] = Field(default_factory=list)


class CheckoutQuote(BaseModel):
    """The cart priced for a destination country, as checkout would price it; nothing held."""

    country: str
    currency: str | None
    shops: list[QuoteShop]
    items_total: int
    shipping_total: int
    tax_total: int
    total: int
    #: Why the cart cannot be checked out as it is (empty when it can).
    problems: list[str]


class CheckoutCreate(BaseModel):
    """Where to send it and, optionally, how: delivery method ids, at most one per shipping
    profile in the cart (any profile left out goes the cheapest way). Prices are never sent:
    the server works them out."""

    model_config = ConfigDict(extra="forbid")

    shipping_address: Address
    shipping_methods: list[UUID] = Field(default_factory=list, max_length=50)


class OrderLineOut(BaseModel):
    variant_id: UUID
    title: str
    unit_price: int
    quantity: int


class ShippingChoice(BaseModel):
    """How (part of) an order travels, as chosen at checkout and kept with the order."""

    profile: str
    method: str
    method_id: UUID | None = None
    min_days: int | None = None
    max_days: int | None = None
    estimate: str | None = None
    amount: int


class OrderOut(BaseModel):
    id: UUID
    shop_handle: str
    status: str
    currency: str
    items_total: int
    shipping_total: int
    tax_total: int
    total: int
    shipping: list[ShippingChoice] = Field(default_factory=list)
    lines: list[OrderLineOut]
    created_at: datetime


class CheckoutOut(BaseModel):
    id: UUID
    status: str
    currency: str
    items_total: int
    shipping_total: int
    tax_total: int
    total: int
    expires_at: datetime
    orders: list[OrderOut]
