"""posts: the per-author index ends with the id, so a feed reads a maker's posts in order

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 21:40:00

Hand-written. Following (a LATERAL per followee on PostgreSQL) and the profile grid order a
maker's posts by (published_at desc, id desc). Without ``id`` in the index PostgreSQL read
every older post of each followee under a deep cursor and sorted them; with it, an index scan
stops after the page.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_posts_author_id_status_published_at_id",
        "posts",
        ["author_id", "status", "published_at", "id"],
    )
    op.drop_index("ix_posts_author_id_status_published_at", table_name="posts")


def downgrade() -> None:
    op.create_index(
        "ix_posts_author_id_status_published_at",
        "posts",
        ["author_id", "status", "published_at"],
    )
    op.drop_index("ix_posts_author_id_status_published_at_id", table_name="posts")
