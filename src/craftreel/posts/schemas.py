"""Posts as the API takes and gives them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from craftreel.accounts.schemas import PersonSummary
from craftreel.media.schemas import Media
from craftreel.posts.models import Visibility

MAX_CAPTION = 2200
MAX_CHAPTERS = 50
MAX_MATERIALS = 40


class Chapter(BaseModel):
    """A step of the tutorial: where it starts (seconds) and what it is called."""

    at: float = Field(ge=0, le=24 * 3600)
    title: str = Field(min_length=1, max_length=80)

    @field_validator("title")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("A chapter needs a title.")
        return value


def _check_chapters(chapters: list[Chapter] | None) -> list[Chapter] | None:
    if chapters is None:
        return None
    ordered = sorted(chapters, key=lambda c: c.at)
    times = [round(c.at, 1) for c in ordered]
    if len(set(times)) != len(times):
        raise ValueError("Two chapters start at the same time.")
    return ordered


def _check_materials(materials: list[str] | None) -> list[str] | None:
    if materials is None:
        return None
    cleaned = [" ".join(m.split()) for m in materials]
    if any(len(m) > 200 for m in cleaned):
        raise ValueError("A material is at most 200 characters.")
    return [m for m in cleaned if m]


class PostEdit(BaseModel):
    """What can change on a post (a draft or a published one); omitted fields stay."""

    caption: str | None = Field(default=None, max_length=MAX_CAPTION)
    chapters: list[Chapter] | None = Field(default=None, max_length=MAX_CHAPTERS)
    materials: list[str] | None = Field(default=None, max_length=MAX_MATERIALS)
    visibility: Visibility | None = None
    comments_enabled: bool | None = None

    _chapters = field_validator("chapters")(_check_chapters)
    _materials = field_validator("materials")(_check_materials)


class PostCreate(PostEdit):
    """A new draft from uploaded media: one video, one audio piece, or 1–10 photos."""

    media_ids: list[UUID] = Field(min_length=1, max_length=10)


class Publish(BaseModel):
    """Publish now, or (``when_ready``) the moment the media can play."""

    when_ready: bool = False


class Schedule(BaseModel):
    at: datetime


class Counts(BaseModel):
    likes: int
    comments: int
    saves: int
    shares: int
    views: int


class ViewerState(BaseModel):
    liked: bool
    saved: bool


class ProductTagOut(BaseModel):
    """A listing shown while a time range of the video plays (filled by the shop)."""

    id: UUID
    listing_id: UUID
    #: What "Add to cart" on the chip adds: the listing's first option in stock (or its first).
    variant_id: UUID
    available: bool
    title: str
    price_minor: int
    currency: str
    image_url: str | None
    start_s: float
    end_s: float | None
    chapter_index: int | None = None
    url: str


class PostOut(BaseModel):
    id: UUID
    author: PersonSummary
    kind: str
    status: str
    caption: str
    hashtags: list[str]
    mentions: list[str]
    chapters: list[Chapter]
    materials: list[str]
    visibility: Visibility
    comments_enabled: bool
    media: list[Media]
    counts: Counts
    viewer: ViewerState | None
    products: list[ProductTagOut] = Field(default_factory=list)
    share_url: str
    publish_error: str | None
    scheduled_at: datetime | None
    published_at: datetime | None
    edited_at: datetime | None
    created_at: datetime
