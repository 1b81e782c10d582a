"""Shop tables: shops, their shipping profiles, listings and their variants (price, stock),
carts, checkouts with stock reservations, orders, and idempotency keys. Money is integer minor
units + currency."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7


class ListingStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SOLD_OUT = "sold_out"
    ARCHIVED = "archived"


class ListingKind(StrEnum):
    PHYSICAL = "physical"
    MADE_TO_ORDER = "made_to_order"
    DIGITAL = "digital"


class Category(StrEnum):
    KNITTING = "knitting"
    CROCHET = "crochet"
    SEWING = "sewing"
    EMBROIDERY = "embroidery"
    WEAVING = "weaving"
    POTTERY = "pottery"
    WOODWORK = "woodwork"
    JEWELLERY = "jewellery"
    PAPER = "paper"
    LEATHER = "leather"
    GLASS = "glass"
    OTHER = "other"


class CheckoutStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    owner_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    handle: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    origin_country: Mapped[str] = mapped_column(String(2))
    shipping_policy: Mapped[str] = mapped_column(Text, default="")
    returns_policy: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShippingProfile(Base):
    """A named way a shop sends one kind of thing ("Small parcel", "Furniture"): its delivery
    methods. Each physical listing points at one; each shop has exactly one default."""

    __tablename__ = "shipping_profiles"
    __table_args__ = (
        UniqueConstraint("shop_id", "name"),
        Index(
            "uq_shipping_profiles_default",
            "shop_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShippingMethod(Base):
    """One delivery method of a profile ("Standard", 3-5 days): a price per destination
    country (``"*"`` for everywhere else; a country not listed, with no ``"*"``, is not
    served) and, optionally, free over an amount of items. Shop currency, minor units."""

    __tablename__ = "shipping_methods"
    __table_args__ = (CheckConstraint("free_over IS NULL OR free_over >= 0", name="free_over"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    profile_id: Mapped[UUID] = mapped_column(
        ForeignKey("shipping_profiles.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(60))
    min_days: Mapped[int | None]
    max_days: Mapped[int | None]
    #: {"GB": 395, "*": 1200}
    rates: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    free_over: Mapped[int | None]
    position: Mapped[int] = mapped_column(default=0)


class Listing(Base):
    __tablename__ = "listings"
    __table_args__ = (Index("ix_listings_shop_id_status", "shop_id", "status"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(140))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(16), default=ListingKind.PHYSICAL)
    lead_time_days: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(10), default=ListingStatus.DRAFT)
    # Photos: media object ids (images through the media pipeline), in order.
    photo_media_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A digital listing's file: a private storage key, served only by a signed link to buyers.
    digital_file_key: Mapped[str | None] = mapped_column(String(200))
    digital_file_name: Mapped[str | None] = mapped_column(String(200))
    # How it travels (None for a digital listing, which has nothing to send). No foreign key:
    # SQLite could not drop the column again (see migration 0012); ``shop.shipping`` keeps
    # it pointing at one of the shop's own profiles. Loaded only by the queries that need it
    # (``repository.WITH_SHIPPING``), so other features' reads of listings never depend on it.
    shipping_profile_id: Mapped[UUID | None] = mapped_column(
        Uuid, index=True, deferred=True, deferred_raiseload=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PostProductTag(Base):
    """A listing shown in a post while a time range plays (or for a whole chapter).

    ``end_s`` None means "to the end of the video"; a chapter tag copies the chapter's range
    when it is made, so the player needs only the times."""

    __tablename__ = "post_product_tags"
    __table_args__ = (Index("ix_post_product_tags_post_id_start_s", "post_id", "start_s"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    listing_id: Mapped[UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), index=True
    )
    start_s: Mapped[float] = mapped_column(default=0.0)
    end_s: Mapped[float | None]
    chapter_index: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KitItem(Base):
    """Get the kit: one of a post's materials linked to a listing variant."""

    __tablename__ = "kit_items"

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    material_index: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), index=True
    )
    variant_id: Mapped[UUID | None] = mapped_column(ForeignKey("variants.id", ondelete="SET NULL"))
    quantity: Mapped[int] = mapped_column(default=1)


class Variant(Base):
    """What a buyer actually buys: its own price and stock (None: made to order or digital)."""

    __tablename__ = "variants"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    listing_id: Mapped[UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(80))
    price_minor: Mapped[int]
    stock: Mapped[int | None]
    position: Mapped[int] = mapped_column(default=0)


class CartLine(Base):
    __tablename__ = "cart_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    buyer_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[UUID] = mapped_column(
        ForeignKey("variants.id", ondelete="CASCADE"), primary_key=True
    )
    quantity: Mapped[int]
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkout(Base):
    __tablename__ = "checkouts"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    buyer_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(10), default=CheckoutStatus.OPEN)
    currency: Mapped[str] = mapped_column(String(3))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSON)
    items_total: Mapped[int]
    shipping_total: Mapped[int]
    tax_total: Mapped[int]
    total: Mapped[int]
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reservation(Base):
    """Stock held for a checkout until it is paid or lapses (then given back, once)."""

    __tablename__ = "reservations"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    checkout_id: Mapped[UUID] = mapped_column(
        ForeignKey("checkouts.id", ondelete="CASCADE"), index=True
    )
    variant_id: Mapped[UUID] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    quantity: Mapped[int]
    released_at: Mapped[datetime | None]


class Order(Base):
    """One shop's part of a checkout."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_shop_id_created_at", "shop_id", "created_at"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    checkout_id: Mapped[UUID] = mapped_column(ForeignKey("checkouts.id"), index=True)
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id"))
    buyer_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default=OrderStatus.PLACED)
    currency: Mapped[str] = mapped_column(String(3))
    items_total: Mapped[int]
    shipping_total: Mapped[int]
    tax_total: Mapped[int]
    total: Mapped[int]
    #: How it is sent, as chosen at checkout (copied, so later edits to the shop's profiles
    #: change nothing): one entry per shipping profile of its lines, see ``shop.shipping``.
    shipping_choices: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Shipment(Base):
    """How an order travels: carrier and tracking number, set when the seller ships."""

    __tablename__ = "shipments"

    order_id: Mapped[UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    carrier: Mapped[str] = mapped_column(String(60))
    tracking_number: Mapped[str] = mapped_column(String(80))
    shipped_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class Review(Base):
    """A buyer's review of one delivered order line (once), with the seller's one reply."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),
        Index("ix_reviews_shop_id_created_at", "shop_id", "created_at"),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_line_id: Mapped[UUID] = mapped_column(
        ForeignKey("order_lines.id", ondelete="CASCADE"), unique=True
    )
    shop_id: Mapped[UUID] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    author_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    stars: Mapped[int]
    text: Mapped[str] = mapped_column(Text, default="")
    photo_media_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("media_objects.id", ondelete="SET NULL")
    )
    reply: Mapped[str | None] = mapped_column(Text)
    replied_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[UUID] = mapped_column(ForeignKey("variants.id"))
    title: Mapped[str] = mapped_column(String(240))
    unit_price: Mapped[int]
    quantity: Mapped[int]
