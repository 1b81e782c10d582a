"""timeline: each follower's Following entries, kept by the database

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 01:10:00

Hand-written. ``timeline_entries`` holds, for each approved follower, an entry per post of the
person they follow that is listed to followers (published; public or followers-only), keyed
``(user_id, published_at, post_id)`` so that a Following page is one index range. Triggers on
``posts`` and ``follows`` keep it in step with every write, whoever makes it (see
``craftreel.feed.models``); deleting a post or a person removes entries by foreign key.
Existing follows and posts are copied in.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A post listed to followers (the state ``posts.repository.listed_to_followers`` reads).
NEW_LISTED = (
    "NEW.status = 'published' AND NEW.visibility IN ('public', 'followers') "
    "AND NEW.published_at IS NOT NULL"
)
POST_CHANGED = (
    "OLD.status IS NOT NEW.status OR OLD.visibility IS NOT NEW.visibility "
    "OR OLD.published_at IS NOT NEW.published_at"
)
COLUMNS = "timeline_entries (user_id, published_at, post_id, author_id)"
#: Entries of the post NEW for each approved follower of its author.
TO_FOLLOWERS = """SELECT follower_id, NEW.published_at, NEW.id, NEW.author_id FROM follows
        WHERE followee_id = NEW.author_id AND status = 'active'"""
#: Entries for the follower of NEW (a follow) of every listed post of the person followed.
FROM_FOLLOWEE = """SELECT NEW.follower_id, p.published_at, p.id, p.author_id FROM posts AS p
        WHERE p.author_id = NEW.followee_id AND p.status = 'published'
            AND p.visibility IN ('public', 'followers') AND p.published_at IS NOT NULL"""
FORGET_FOLLOW = (
    "DELETE FROM timeline_entries WHERE user_id = OLD.follower_id AND author_id = OLD.followee_id"
)

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER timeline_post_insert AFTER INSERT ON posts WHEN {NEW_LISTED} BEGIN
        INSERT OR IGNORE INTO {COLUMNS} {TO_FOLLOWERS};
    END""",
    f"""CREATE TRIGGER timeline_post_update AFTER UPDATE OF status, visibility, published_at
    ON posts WHEN {POST_CHANGED} BEGIN
        DELETE FROM timeline_entries WHERE post_id = OLD.id;
        INSERT OR IGNORE INTO {COLUMNS} {TO_FOLLOWERS} AND {NEW_LISTED};
    END""",
    f"""CREATE TRIGGER timeline_follow_insert AFTER INSERT ON follows
    WHEN NEW.status = 'active' BEGIN
        INSERT OR IGNORE INTO {COLUMNS} {FROM_FOLLOWEE};
    END""",
    f"""CREATE TRIGGER timeline_follow_update AFTER UPDATE OF status ON follows
    WHEN OLD.status IS NOT NEW.status BEGIN
        {FORGET_FOLLOW} AND OLD.status = 'active';
        INSERT OR IGNORE INTO {COLUMNS} {FROM_FOLLOWEE} AND NEW.status = 'active';
    END""",
    f"""CREATE TRIGGER timeline_follow_delete AFTER DELETE ON follows
    WHEN OLD.status = 'active' BEGIN
        {FORGET_FOLLOW};
    END""",
]

POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION timeline_post_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            IF NOT ({POST_CHANGED.replace("IS NOT", "IS DISTINCT FROM")}) THEN
                RETURN NULL;
            END IF;
            DELETE FROM timeline_entries WHERE post_id = OLD.id;
        END IF;
        IF {NEW_LISTED} THEN
            INSERT INTO {COLUMNS} {TO_FOLLOWERS} ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER timeline_post AFTER INSERT OR UPDATE OF status, visibility, published_at
    ON posts FOR EACH ROW EXECUTE FUNCTION timeline_post_changed()""",
    f"""CREATE FUNCTION timeline_follow_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.status = 'active'
            AND (TG_OP = 'DELETE' OR NEW.status <> 'active') THEN
            {FORGET_FOLLOW};
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.status = 'active'
            AND (TG_OP = 'INSERT' OR OLD.status <> 'active') THEN
            INSERT INTO {COLUMNS} {FROM_FOLLOWEE} ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER timeline_follow AFTER INSERT OR UPDATE OF status OR DELETE
    ON follows FOR EACH ROW EXECUTE FUNCTION timeline_follow_changed()""",
]

BACKFILL = f"""INSERT INTO {COLUMNS}
    SELECT f.follower_id, p.published_at, p.id, p.author_id
    FROM follows AS f JOIN posts AS p ON p.author_id = f.followee_id
    WHERE f.status = 'active' AND p.status = 'published'
        AND p.visibility IN ('public', 'followers') AND p.published_at IS NOT NULL"""


def upgrade() -> None:
    op.create_table(
        "timeline_entries",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_timeline_entries_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_timeline_entries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "published_at", "post_id", name=op.f("pk_timeline_entries")
        ),
    )
    op.create_index("ix_timeline_entries_post_id", "timeline_entries", ["post_id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS timeline_follow ON follows")
        op.execute("DROP TRIGGER IF EXISTS timeline_post ON posts")
        op.execute("DROP FUNCTION IF EXISTS timeline_follow_changed()")
        op.execute("DROP FUNCTION IF EXISTS timeline_post_changed()")
    else:
        for name in (
            "timeline_post_insert",
            "timeline_post_update",
            "timeline_follow_insert",
            "timeline_follow_update",
            "timeline_follow_delete",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("ix_timeline_entries_post_id", table_name="timeline_entries")
    op.drop_table("timeline_entries")
