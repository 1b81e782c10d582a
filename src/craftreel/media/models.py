"""Media tables: an uploaded object (its upload, processing state and renditions) and its parts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7


class MediaKind(StrEnum):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"


class MediaStatus(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class MediaObject(Base):
    """One uploaded video, image or audio file, from its first byte to its renditions."""

    __tablename__ = "media_objects"
    __table_args__ = (
        Index("ix_media_objects_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_media_objects_status_upload_expires_at", "status", "upload_expires_at"),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    owner_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), default=MediaStatus.UPLOADING)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    declared_type: Mapped[str] = mapped_column(String(100), default="")
    # The tus upload: its declared length, the bytes acknowledged so far, and when it lapses.
    upload_length: Mapped[int] = mapped_column(BigInteger)
    upload_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_expires_at: Mapped[datetime | None]
    storage_upload_id: Mapped[str | None] = mapped_column(String(200))
    parts_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    source_key: Mapped[str] = mapped_column(String(200))
    # What processing found and made.
    mime: Mapped[str | None] = mapped_column(String(100))
    duration_s: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    playable: Mapped[bool] = mapped_column(default=False)
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    assets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_prefix: Mapped[str | None] = mapped_column(String(200))
    # Set by the feature that attaches the object to something published (posts, listings).
    is_public: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]

    @property
    def aspect(self) -> float | None:
        if self.width and self.height:
            return round(self.width / self.height, 4)
        return None


class UploadPart(Base):
    """A part already handed to storage (multipart), so a resumed upload knows what is safe."""

    __tablename__ = "upload_parts"

    media_id: Mapped[UUID] = mapped_column(
        ForeignKey("media_objects.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    etag: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
