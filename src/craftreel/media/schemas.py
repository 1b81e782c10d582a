"""Media API shapes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel


class Failure(BaseModel):
    code: str
    message: str


class UploadProgress(BaseModel):
    length: int
    offset: int
    expires_at: datetime | None


class Rendition(BaseModel):
    name: str
    width: int
    height: int
    bandwidth: int
    url: str


class ImageVariant(BaseModel):
    width: int
    height: int
    format: str
    url: str


class Media(BaseModel):
    id: UUID
    kind: str
    status: str
    failure: Failure | None
    upload: UploadProgress
    duration_s: float | None
    width: int | None
    height: int | None
    aspect: float | None
    playable: bool
    playback_url: str | None
    poster_url: str | None
    thumbnails_url: str | None
    waveform_url: str | None
    blurhash: str | None
    renditions: list[Rendition]
    variants: list[ImageVariant]
    created_at: datetime
