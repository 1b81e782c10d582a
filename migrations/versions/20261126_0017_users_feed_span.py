"""feed: each person's newest and oldest post that followers' feeds list

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26 07:20:00

``users.feed_newest_at/_id`` and ``feed_oldest_at/_id`` are the (published_at, id) keys of
the newest and the oldest of a person's published public or followers-only posts. Following
on PostgreSQL reads them instead of probing every followed person's posts for a page. The
upgrade fills them from the posts there are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("feed_newest_at", "feed_newest_id", "feed_oldest_at", "feed_oldest_id")


def _edge(column: str, order: str) -> str:
    return (
        f"(SELECT p.{column} FROM posts p WHERE p.author_id = users.id "
        "AND p.status = 'published' AND p.visibility IN ('public', 'followers') "
        f"ORDER BY p.published_at {order}, p.id {order} LIMIT 1)"
    )


def upgrade() -> None:
    op.add_column("users", sa.Column("feed_newest_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("feed_newest_id", sa.Uuid()))
    op.add_column("users", sa.Column("feed_oldest_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("feed_oldest_id", sa.Uuid()))
    op.execute(
        "UPDATE users SET "
        f"feed_newest_at = {_edge('published_at', 'DESC')}, "
        f"feed_newest_id = {_edge('id', 'DESC')}, "
        f"feed_oldest_at = {_edge('published_at', 'ASC')}, "
        f"feed_oldest_id = {_edge('id', 'ASC')}"
    )


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+ drops a column in place): a batch copy of users, which
    # the search triggers and many foreign keys point at, fails on SQLite ("table is locked").
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE users DROP COLUMN {column}")
