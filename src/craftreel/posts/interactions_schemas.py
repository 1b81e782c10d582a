"""What viewers do with a post, as the API takes and gives it: likes, comments, saves and
collections, shares and views."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from craftreel.accounts.schemas import PersonSummary

MAX_COMMENT = 1000
MAX_COLLECTION_NAME = 60
# A day of playback: anything longer in one beacon is a broken or lying client.
MAX_WATCHED_MS = 24 * 3600 * 1000

ShareChannel = Literal["link", "web_share", "other"]


def clean_comment_body(body: str) -> str:
    """A comment as stored: trimmed, 1–1000 characters (line breaks kept)."""
    body = body.strip()
    if not body:
        raise ValueError("Write something first.")
    if len(body) > MAX_COMMENT:
        raise ValueError(f"A comment is at most {MAX_COMMENT} characters.")
    return body


def clean_collection_name(name: str) -> str:
    """A collection name as stored: spaces collapsed, 1–60 characters."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("Give the collection a name.")
    if len(name) > MAX_COLLECTION_NAME:
        raise ValueError(f"A collection name is at most {MAX_COLLECTION_NAME} characters.")
    return name


class LikeState(BaseModel):
    liked: bool
    likes: int


class CommentCreate(BaseModel):
    """A comment on a post, or (``parent_id``) a reply to one of its comments."""

    body: str = Field(max_length=4 * MAX_COMMENT)
    parent_id: UUID | None = None

    @field_validator("body")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_comment_body(value)


class CommentOut(BaseModel):
    id: UUID
    post_id: UUID
    author: PersonSummary
    body: str
    # The top-level comment this one replies to (replies are one level deep).
    parent_id: UUID | None
    reply_count: int
    created_at: datetime
    # Whether the person asking may delete it: its author, or the post's author.
    can_delete: bool


class SaveRequest(BaseModel):
    """Save into a collection of mine; ``null`` keeps it unfiled, omitted keeps it where it is."""

    collection_id: UUID | None = None


class SaveState(BaseModel):
    saved: bool
    saves: int
    collection_id: UUID | None


class CollectionCreate(BaseModel):
    name: str = Field(max_length=4 * MAX_COLLECTION_NAME)

    @field_validator("name")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_collection_name(value)


class CollectionUpdate(CollectionCreate):
    """A new name for a collection."""


class CollectionOut(BaseModel):
    id: UUID
    name: str
    # How many saved posts it holds (some may no longer be visible to its owner).
    saves: int
    created_at: datetime


class ShareCreate(BaseModel):
    channel: ShareChannel = "link"


class ShareOut(BaseModel):
    url: str
    shares: int
    # False when this address shared too often lately: the link works, the count stays.
    counted: bool


class ViewBeacon(BaseModel):
    """The player's report on a viewing session, sent as it goes and when it ends."""

    watched_ms: int = Field(ge=0, le=MAX_WATCHED_MS)
    # Where the playhead is; informational only. Completion is judged by time watched (or
    # the player's own "ended"), so seeking to the end completes nothing.
    position_s: float | None = Field(default=None, ge=0)
    completed: bool = False


class ViewOut(BaseModel):
    # Whether this viewer's view of the post counts today (after 3 s of playback).
    counted: bool
    # Whether this viewer's watch of the post counts as completed today.
    completed: bool
    views: int
