"""Posts tables: a post and its media, tags and mentions, and what viewers do with it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.clock import utcnow
from craftreel.core.db import Base
from craftreel.core.ids import uuid7


class PostKind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    PHOTOS = "photos"


class PostStatus(StrEnum):
    DRAFT = "draft"
    # "Publish when ready": goes public the moment its media can play.
    WAITING = "waiting"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"


class Visibility(StrEnum):
    PUBLIC = "public"
    FOLLOWERS = "followers"
    UNLISTED = "unlisted"
    PRIVATE = "private"


class Post(Base):
    """A maker's post: media, caption, chapters and materials, from draft to published.

    The counters change only through conditional atomic updates next to the row that
    justifies them (a like row, a comment row, …), so they stay exact under concurrency.
    ``rank_score`` orders Discover; it is set at publish time and refreshed by a periodic job.
    """

    __tablename__ = "posts"
    __table_args__ = (
        Index(
            "ix_posts_author_id_status_published_at_id",
            "author_id",
            "status",
            "published_at",
            "id",
        ),
        # Newest first across all makers; its INCLUDE columns let Following on PostgreSQL
        # scan it for followed makers' listed posts without reading the table (see
        # feed.repository._following_dense).
        Index(
            "ix_posts_status_published_at_id",
            "status",
            "published_at",
            "id",
            postgresql_include=["author_id", "visibility"],
        ),
        Index("ix_posts_status_rank_score", "status", "rank_score"),
        Index("ix_posts_status_scheduled_at", "status", "scheduled_at"),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    author_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default=PostStatus.DRAFT)
    caption: Mapped[str] = mapped_column(Text, default="")
    # [{"at": seconds (float), "title": str}], sorted by time.
    chapters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [str]: free text for now; the shop links listings to them.
    materials: Mapped[list[str]] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(10), default=Visibility.PUBLIC)
    comments_enabled: Mapped[bool] = mapped_column(default=True)
    scheduled_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    # Why a "publish when ready" or scheduled post could not go out (its media failed).
    publish_error: Mapped[str | None] = mapped_column(String(300))
    like_count: Mapped[int] = mapped_column(default=0)
    comment_count: Mapped[int] = mapped_column(default=0)
    save_count: Mapped[int] = mapped_column(default=0)
    share_count: Mapped[int] = mapped_column(default=0)
    view_count: Mapped[int] = mapped_column(default=0)
    completion_count: Mapped[int] = mapped_column(default=0)
    rank_score: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    edited_at: Mapped[datetime | None]


class PostMedia(Base):
    """The media of a post in order; a media object belongs to at most one post."""

    __tablename__ = "post_media"

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    media_id: Mapped[UUID] = mapped_column(ForeignKey("media_objects.id"), unique=True)


class PostHashtag(Base):
    """A #tag in a post's caption (lower case, without '#'); ``published_at`` copied from the
    post so a hashtag feed pages on one index."""

    __tablename__ = "post_hashtags"
    __table_args__ = (Index("ix_post_hashtags_tag_published_at", "tag", "published_at"),)

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(60), primary_key=True)
    published_at: Mapped[datetime | None]


class PostMention(Base):
    """An @handle in a caption that names a real person."""

    __tablename__ = "post_mentions"

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PostLike(Base):
    __tablename__ = "post_likes"
    __table_args__ = (Index("ix_post_likes_user_id_created_at", "user_id", "created_at"),)

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comment(Base):
    """A comment on a post, or a reply to one (one level: a reply's parent is top-level)."""

    __tablename__ = "post_comments"
    __table_args__ = (
        Index(
            "ix_post_comments_post_id_parent_id_created_at", "post_id", "parent_id", "created_at"
        ),
    )

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("post_comments.id", ondelete="CASCADE")
    )
    body: Mapped[str] = mapped_column(Text)
    reply_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Collection(Base):
    """A named set of saved posts."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    owner_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostSave(Base):
    """A post someone saved, optionally into one of their collections."""

    __tablename__ = "post_saves"
    __table_args__ = (Index("ix_post_saves_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    collection_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("collections.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostShare(Base):
    """One share of a post (copy link, the Web Share sheet, …)."""

    __tablename__ = "post_shares"

    id: Mapped[UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(20), default="link")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostView(Base):
    """A viewer's watching of a post on one day: counted once it passes 3 s of playback.

    ``viewer_key`` is ``u:<user id>`` for a signed-in viewer or ``a:<hash>`` for an anonymous
    browser's cookie; ``counted`` and ``completed`` flip once each, by conditional update."""

    __tablename__ = "post_views"

    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    viewer_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    watched_ms: Mapped[int] = mapped_column(default=0)
    counted: Mapped[bool] = mapped_column(default=False)
    completed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
