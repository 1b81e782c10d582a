"""Search: posts by words and #hashtags, people by handle and name.

The index lives in the database and follows every write by itself (migration 0008): FTS5
tables kept by triggers on SQLite, GIN expression indexes on PostgreSQL. This module turns a
person's text into a safe full-text query for either, and filters the hits with the same
visibility rules as every listed place (feeds, grids): private, followers-only (for
non-followers), unlisted, drafts, blocked-either-way and deleted authors never appear, nor do
people hidden from search.

Matching: case- and accent-insensitive whole words for posts, all words required; ``#tag``
is the word ``tag`` (a caption's ``#knitting`` holds the word ``knitting``), so "#knitting"
and "knitting" find the same posts. People match by word prefixes of handle or name ("kni"
finds @knitwit and "Knitting Nana"); an exact handle comes first.

Order and pages: best match first (bm25 on SQLite, ts_rank on PostgreSQL), then newest (posts)
or by handle (people). Pages use a keyset cursor over (score, tiebreak, id), so a page costs
the same however deep. Scores depend on the whole index, so a page fetched after many new
posts may repeat or skip a result near its edge; for search that is an acceptable price for
not counting offsets.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Float, Integer, Uuid, and_, case, column, func, literal_column, or_, select
from sqlalchemy import table as sql_table
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from craftreel.accounts import service as accounts
from craftreel.accounts.models import User
from craftreel.accounts.schemas import PersonSummary
from craftreel.context import AppContext
from craftreel.core.db import UnitOfWork
from craftreel.core.errors import InvalidInput
from craftreel.core.pagination import decode_cursor, encode_cursor
from craftreel.posts import repository as posts_repo
from craftreel.posts import service as posts_service
from craftreel.posts.models import Post
from craftreel.posts.schemas import PostOut

MAX_QUERY_LENGTH = 100
# What FTS5's unicode61 tokenizer and PostgreSQL's parser both call a word: letters and digits
# (underscores and every other character split words). Nothing else reaches a query.
_WORD = re.compile(r"[^\W_]+")
# An exact handle match outranks any score a full-text match can reach.
_EXACT_HANDLE_BONUS = 1000.0

# The database objects migration 0008 made outside the models (the schema-drift check and
# Alembic's autogenerate leave them alone).
FTS_TABLE_PREFIXES = ("posts_fts", "users_fts")
FTS_INDEX_NAMES = frozenset({"ix_posts_search", "ix_users_search"})


def is_search_index_object(name: str | None, type_: str) -> bool:
    """Whether a reflected table or index is part of the full-text search index."""
    if name is None:
        return False
    if type_ == "table":
        return name.startswith(FTS_TABLE_PREFIXES)
    return type_ == "index" and name in FTS_INDEX_NAMES


# --- reading a person's text ---------------------------------------------------------


@dataclass(frozen=True)
class SearchText:
    """What someone typed, checked: the text itself and its words (lower case)."""

    text: str
    words: tuple[str, ...]


def parse_query(raw: str) -> SearchText:
    """The words to look for; 400 ``invalid_input`` for nothing searchable or too much."""
    text = unicodedata.normalize("NFC", raw or "")
    # Control and format characters (a NUL above all: PostgreSQL refuses it) are not text.
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text).strip()
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"Search for at most {MAX_QUERY_LENGTH} characters.", field="q")
    words = tuple(dict.fromkeys(word.lower() for word in _WORD.findall(text)))
    if not words:
        raise InvalidInput("Type a word, a #tag or a name to search for.", field="q")
    return SearchText(text, words)


def _fts5_string(word: str) -> str:
    """``word`` as an FTS5 string: inside double quotes only '"' is special (doubled)."""
    return '"' + word.replace('"', '""') + '"'


def fts5_all_words(words: Sequence[str]) -> str:
    """An FTS5 query for documents holding every word (no operator can sneak in)."""
    return " ".join(_fts5_string(w) for w in words)


def fts5_all_prefixes(words: Sequence[str]) -> str:
    """An FTS5 query for documents with a word starting with each of ``words``."""
    return " ".join(_fts5_string(w) + "*" for w in words)


def tsquery_all_prefixes(words: Sequence[str]) -> str:
    """A ``to_tsquery`` text: each word (letters and digits only) quoted, as a prefix."""
    return " & ".join("'" + w.replace("'", "''").replace("\\", "\\\\") + "':*" for w in words)


# --- SQL -----------------------------------------------------------------------------
# Search reads the full-text tables migration 0008 keeps; they are not models, so they are
# named here as plain tables. PostgreSQL's expressions must match the indexes' exactly.

_posts_fts = sql_table("posts_fts", column("rowid", Integer))
_posts_fts_keys = sql_table("posts_fts_keys", column("id", Integer), column("post_id", Uuid))
_users_fts = sql_table("users_fts", column("rowid", Integer))
_users_fts_keys = sql_table("users_fts_keys", column("id", Integer), column("user_id", Uuid))

_PG_CONFIG = "'craftreel_search'::regconfig"
_PG_POST_DOCUMENT: ColumnClause[Any] = literal_column(f"to_tsvector({_PG_CONFIG}, posts.caption)")
_PG_PERSON_DOCUMENT: ColumnClause[Any] = literal_column(
    f"(setweight(to_tsvector({_PG_CONFIG}, replace(users.handle, '.', ' ')), 'A')"
    f" || to_tsvector({_PG_CONFIG}, users.display_name))"
)


def _post_hits(dialect: str, query: SearchText) -> Any:
    """A subquery of (post_id, score) for the posts matching ``query``; lower scores first."""
    if dialect == "postgresql":
        # Two readings of the text, either may match: as the parser reads it ("3.5mm",
        # "knitwit.com" stay whole) and word by word ("crochet-hat" → crochet, hat).
        words = " ".join(query.words)
        tsquery: ColumnElement[Any] = func.plainto_tsquery(literal_column(_PG_CONFIG), words)
        if query.text.lower() != words:
            tsquery = func.plainto_tsquery(literal_column(_PG_CONFIG), query.text).op("||")(tsquery)
        score = -func.ts_rank(_PG_POST_DOCUMENT, tsquery, 1).cast(Float)
        return (
            select(Post.id.label("post_id"), score.label("score"))
            .where(_PG_POST_DOCUMENT.op("@@")(tsquery))
            .subquery("hits")
        )
    return (
        select(
            _posts_fts_keys.c.post_id.label("post_id"),
            literal_column("bm25(posts_fts)", Float).label("score"),
        )
        .select_from(_posts_fts.join(_posts_fts_keys, _posts_fts_keys.c.id == _posts_fts.c.rowid))
        .where(
            sql_text("posts_fts MATCH :post_match").bindparams(
                post_match=fts5_all_words(query.words)
            )
        )
        .subquery("hits")
    )


def _people_hits(dialect: str, query: SearchText) -> Any:
    """A subquery of (user_id, score) for people whose handle or name words start with each
    word of ``query``; the handle counts more than the name."""
    if dialect == "postgresql":
        tsquery = func.to_tsquery(literal_column(_PG_CONFIG), tsquery_all_prefixes(query.words))
        score = -func.ts_rank(_PG_PERSON_DOCUMENT, tsquery).cast(Float)
        return (
            select(User.id.label("user_id"), score.label("score"))
            .where(_PG_PERSON_DOCUMENT.op("@@")(tsquery))
            .subquery("hits")
        )
    return (
        select(
            _users_fts_keys.c.user_id.label("user_id"),
            literal_column("bm25(users_fts, 4.0, 1.0)", Float).label("score"),
        )
        .select_from(_users_fts.join(_users_fts_keys, _users_fts_keys.c.id == _users_fts.c.rowid))
        .where(
            sql_text("users_fts MATCH :people_match").bindparams(
                people_match=fts5_all_prefixes(query.words)
            )
        )
        .subquery("hits")
    )


async def find_posts(
    session: AsyncSession,
    viewer_id: UUID | None,
    query: SearchText,
    after: tuple[float, datetime, UUID] | None,
    limit: int,
) -> Sequence[tuple[Post, float]]:
    """Posts the viewer may see in listed places matching ``query``, best first, then newest;
    ``limit + 1`` rows."""
    hits = _post_hits(session.get_bind().dialect.name, query)
    statement = (
        select(Post, hits.c.score)
        .join(hits, hits.c.post_id == Post.id)
        .join(User, User.id == Post.author_id)
        .where(posts_repo.visible_to(viewer_id, listed=True))
    )
    if after is not None:
        score, published_at, post_id = after
        statement = statement.where(
            or_(
                hits.c.score > score,
                and_(
                    hits.c.score == score,
                    or_(
                        Post.published_at < published_at,
                        and_(Post.published_at == published_at, Post.id < post_id),
                    ),
                ),
            )
        )
    rows = await session.execute(
        statement.order_by(hits.c.score, Post.published_at.desc(), Post.id.desc()).limit(limit + 1)
    )
    return [(post, float(score)) for post, score in rows.all()]


async def find_people(
    session: AsyncSession,
    viewer_id: UUID | None,
    query: SearchText,
    after: tuple[float, str, UUID] | None,
    limit: int,
) -> Sequence[tuple[User, float]]:
    """People matching ``query`` — never hidden from search, deleted, or blocked either way
    with the viewer — best first, then by handle; ``limit + 1`` rows."""
    hits = _people_hits(session.get_bind().dialect.name, query)
    exact = accounts.normalize_handle(query.text)
    score = hits.c.score - case((User.handle_normalized == exact, _EXACT_HANDLE_BONUS), else_=0.0)
    statement = (
        select(User, score)
        .join(hits, hits.c.user_id == User.id)
        .where(User.hide_from_search.is_(False), accounts.visible_people_clause(User))
    )
    if viewer_id is not None:
        statement = statement.where(accounts.not_blocked_clause(viewer_id, User.id))
    if after is not None:
        after_score, handle, user_id = after
        statement = statement.where(
            or_(
                score > after_score,
                and_(
                    score == after_score,
                    or_(
                        User.handle_normalized > handle,
                        and_(User.handle_normalized == handle, User.id > user_id),
                    ),
                ),
            )
        )
    rows = await session.execute(
        statement.order_by(score, User.handle_normalized, User.id).limit(limit + 1)
    )
    return [(person, float(value)) for person, value in rows.all()]


# --- cursors -------------------------------------------------------------------------
# A page cursor carries the last row's score and tiebreak in its sort value ("score|tiebreak");
# a score's repr turns back into the very same float.


def _cursor(score: float, tiebreak: str, row_id: UUID) -> str:
    return encode_cursor(f"{score!r}|{tiebreak}", row_id)


def _read_cursor(cursor: str) -> tuple[float, str, UUID]:
    value, row_id = decode_cursor(cursor)
    score_text, _, tiebreak = str(value).partition("|")
    try:
        score = float(score_text)
    except ValueError:
        score = math.nan
    if not math.isfinite(score) or not tiebreak:
        raise InvalidInput("That page cursor is not valid.", field="cursor")
    return score, tiebreak, row_id


def _read_post_cursor(cursor: str) -> tuple[float, datetime, UUID]:
    score, tiebreak, row_id = _read_cursor(cursor)
    try:
        published_at = datetime.fromisoformat(tiebreak)
    except ValueError as exc:
        raise InvalidInput("That page cursor is not valid.", field="cursor") from exc
    if published_at.tzinfo is None:
        raise InvalidInput("That page cursor is not valid.", field="cursor")
    return score, published_at, row_id


# --- the service ---------------------------------------------------------------------


async def search_posts(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    q: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[PostOut], str | None]:
    """Published posts the viewer may see whose caption holds every word of ``q``."""
    query = parse_query(q)
    after = _read_post_cursor(cursor) if cursor else None
    rows = await find_posts(uow.session, viewer.id if viewer else None, query, after, limit)
    page = list(rows[:limit])
    next_cursor = None
    if len(rows) > limit and page:
        last, score = page[-1]
        # Listed posts are published, so they have a publish time.
        published_at = last.published_at or last.created_at
        next_cursor = _cursor(score, published_at.isoformat(), last.id)
    posts = await posts_service.to_out(ctx, uow, viewer, [post for post, _ in page])
    return posts, next_cursor


async def search_people(
    ctx: AppContext,
    uow: UnitOfWork,
    viewer: User | None,
    q: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[PersonSummary], str | None]:
    """People whose handle or name has words starting with each word of ``q``."""
    query = parse_query(q.strip().lstrip("@"))
    after = _read_cursor(cursor) if cursor else None
    rows = await find_people(uow.session, viewer.id if viewer else None, query, after, limit)
    page = list(rows[:limit])
    next_cursor = None
    if len(rows) > limit and page:
        last, score = page[-1]
        next_cursor = _cursor(score, last.handle_normalized, last.id)
    return [accounts.summary(ctx, person) for person, _ in page], next_cursor
