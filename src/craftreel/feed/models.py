"""The Following timeline: each follower's entries for the posts of the people they follow.

Written by the database itself (triggers, migration 0014), never by the code: a post that
becomes listed to followers (published, public or followers-only) gets an entry for each
approved follower; a follow that becomes approved gets entries for all such posts of the
person followed; an unfollow, a post leaving that state and a deleted post take them away.
So every way rows reach ``posts`` and ``follows`` — the services, the demo, bench data —
keeps it in step, in the same transaction.

A Following page then reads one index range, ``(user_id, published_at desc, post_id desc)``
from its cursor, however many people are followed and however deep the page. The read still
applies the visibility rule to what it finds (``feed.repository.following``), so an entry
can only ever be one too many, never show what the rule hides.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import ForeignKey, Index, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from craftreel.core.db import Base


class TimelineEntry(Base):
    __tablename__ = "timeline_entries"
    __table_args__ = (Index("ix_timeline_entries_post_id", "post_id"),)

    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    published_at: Mapped[datetime] = mapped_column(primary_key=True)
    post_id: Mapped[UUID] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    author_id: Mapped[UUID] = mapped_column(Uuid)
