"""search: full-text indexes over post captions and people's handles and names

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 21:00:00

Hand-written: the database keeps the index in step with the rows by itself, so no service has
to remember to.

- SQLite: FTS5 tables ``posts_fts`` (caption) and ``users_fts`` (handle, display_name), with the
  ``unicode61 remove_diacritics 2`` tokenizer (case- and accent-insensitive; '#', '_' and '.'
  split words). Their rowids come from ``posts_fts_keys`` / ``users_fts_keys``, which map each
  UUID id to a stable integer (a table's own rowid may change on VACUUM), so triggers find a
  row's index entry by key, never by scanning. Triggers on ``posts`` and ``users`` keep them in
  step (a cascaded delete fires them too).
- PostgreSQL: GIN expression indexes over ``to_tsvector('craftreel_search', …)``, a text
  search configuration copied from ``simple`` (no stemming: craft words come in many
  languages) that also strips accents when the ``unaccent`` extension can be had. Expression
  indexes follow every write without triggers and are invisible to the models.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import exc, text

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UPGRADE = [
    # --- posts -------------------------------------------------------------------------
    "CREATE TABLE posts_fts_keys (id INTEGER PRIMARY KEY, post_id CHAR(32) NOT NULL UNIQUE)",
    """CREATE VIRTUAL TABLE posts_fts USING fts5(
        caption, tokenize = 'unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER posts_fts_after_insert AFTER INSERT ON posts BEGIN
        INSERT INTO posts_fts_keys (post_id) VALUES (NEW.id);
        INSERT INTO posts_fts (rowid, caption)
            VALUES ((SELECT id FROM posts_fts_keys WHERE post_id = NEW.id), NEW.caption);
    END""",
    """CREATE TRIGGER posts_fts_after_update AFTER UPDATE OF caption ON posts
    WHEN OLD.caption IS NOT NEW.caption BEGIN
        UPDATE posts_fts SET caption = NEW.caption
            WHERE rowid = (SELECT id FROM posts_fts_keys WHERE post_id = NEW.id);
    END""",
    """CREATE TRIGGER posts_fts_after_delete AFTER DELETE ON posts BEGIN
        DELETE FROM posts_fts
            WHERE rowid = (SELECT id FROM posts_fts_keys WHERE post_id = OLD.id);
        DELETE FROM posts_fts_keys WHERE post_id = OLD.id;
    END""",
    "INSERT INTO posts_fts_keys (post_id) SELECT id FROM posts",
    """INSERT INTO posts_fts (rowid, caption)
        SELECT k.id, p.caption FROM posts AS p JOIN posts_fts_keys AS k ON k.post_id = p.id""",
    # --- people ------------------------------------------------------------------------
    "CREATE TABLE users_fts_keys (id INTEGER PRIMARY KEY, user_id CHAR(32) NOT NULL UNIQUE)",
    # Prefix indexes make "kn"*, "kni"* (search as you type) cheap.
    """CREATE VIRTUAL TABLE users_fts USING fts5(
        handle, display_name, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
    )""",
    """CREATE TRIGGER users_fts_after_insert AFTER INSERT ON users BEGIN
        INSERT INTO users_fts_keys (user_id) VALUES (NEW.id);
        INSERT INTO users_fts (rowid, handle, display_name)
            VALUES ((SELECT id FROM users_fts_keys WHERE user_id = NEW.id),
                    NEW.handle, NEW.display_name);
    END""",
    """CREATE TRIGGER users_fts_after_update AFTER UPDATE OF handle, display_name ON users
    WHEN OLD.handle IS NOT NEW.handle OR OLD.display_name IS NOT NEW.display_name BEGIN
        UPDATE users_fts SET handle = NEW.handle, display_name = NEW.display_name
            WHERE rowid = (SELECT id FROM users_fts_keys WHERE user_id = NEW.id);
    END""",
    """CREATE TRIGGER users_fts_after_delete AFTER DELETE ON users BEGIN
        DELETE FROM users_fts
            WHERE rowid = (SELECT id FROM users_fts_keys WHERE user_id = OLD.id);
        DELETE FROM users_fts_keys WHERE user_id = OLD.id;
    END""",
    "INSERT INTO users_fts_keys (user_id) SELECT id FROM users",
    """INSERT INTO users_fts (rowid, handle, display_name)
        SELECT k.id, u.handle, u.display_name
        FROM users AS u JOIN users_fts_keys AS k ON k.user_id = u.id""",
]

SQLITE_DOWNGRADE = [
    "DROP TRIGGER IF EXISTS users_fts_after_delete",
    "DROP TRIGGER IF EXISTS users_fts_after_update",
    "DROP TRIGGER IF EXISTS users_fts_after_insert",
    "DROP TABLE IF EXISTS users_fts",
    "DROP TABLE IF EXISTS users_fts_keys",
    "DROP TRIGGER IF EXISTS posts_fts_after_delete",
    "DROP TRIGGER IF EXISTS posts_fts_after_update",
    "DROP TRIGGER IF EXISTS posts_fts_after_insert",
    "DROP TABLE IF EXISTS posts_fts",
    "DROP TABLE IF EXISTS posts_fts_keys",
]

# The expressions craftreel.feed.search queries with; they must stay the same for the planner
# to use the indexes. A handle's dots split words ("knit.wit" is found by "wit"), as on SQLite.
PG_INDEXES = [
    """CREATE INDEX ix_posts_search ON posts
        USING gin (to_tsvector('craftreel_search'::regconfig, caption))""",
    """CREATE INDEX ix_users_search ON users USING gin ((
        setweight(to_tsvector('craftreel_search'::regconfig, replace(handle, '.', ' ')), 'A')
        || to_tsvector('craftreel_search'::regconfig, display_name)
    ))""",
]


def _postgresql_upgrade() -> None:
    bind = op.get_bind()
    accents = False
    if bind.scalar(text("SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent'")):
        try:
            with bind.begin_nested():
                bind.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
            accents = True
        except exc.DBAPIError:  # not allowed to create it here: search stays accent-sensitive
            accents = False
    op.execute("CREATE TEXT SEARCH CONFIGURATION craftreel_search (COPY = pg_catalog.simple)")
    if accents:
        op.execute(
            "ALTER TEXT SEARCH CONFIGURATION craftreel_search "
            "ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple"
        )
    for statement in PG_INDEXES:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_upgrade()
        return
    for statement in SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_users_search")
        op.execute("DROP INDEX IF EXISTS ix_posts_search")
        op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS craftreel_search")
        # Only this migration uses it; without CASCADE, anything else relying on it stops this.
        op.execute("DROP EXTENSION IF EXISTS unaccent")
        return
    for statement in SQLITE_DOWNGRADE:
        op.execute(statement)
