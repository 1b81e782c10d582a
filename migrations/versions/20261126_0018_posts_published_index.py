"""posts: the newest-first index carries id, and on PostgreSQL the author and visibility

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26 16:00:00

``ix_posts_status_published_at`` becomes ``ix_posts_status_published_at_id`` (status,
published_at, id), which a keyset cursor seeks in exactly; on PostgreSQL it also INCLUDEs
author_id and visibility, so that Following can scan it newest first for the followed
makers' listed posts as an index-only scan.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_posts_status_published_at_id",
        "posts",
        ["status", "published_at", "id"],
        postgresql_include=["author_id", "visibility"],
    )
    op.drop_index("ix_posts_status_published_at", table_name="posts")


def downgrade() -> None:
    op.create_index("ix_posts_status_published_at", "posts", ["status", "published_at"])
    op.drop_index("ix_posts_status_published_at_id", table_name="posts")
