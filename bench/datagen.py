"""Feed benchmark data: people, makers, posts, likes and follows, written in bulk.

Fills a freshly migrated database (SQLite file or PostgreSQL) with rows the real app accepts
as its own: accounts (``bench0000@bench.example.org`` … share one known password, so the
benchmark can sign in as them), media objects as the pipeline leaves them (ready, playable,
renditions and assets), posts (published over the last ``--days`` days, ~90 % public,
videos, photo sets and audio, captions with #hashtags, chapters and materials), their
media and hashtag rows, likes (Zipf-like: a few posts are very popular), comments, saves,
follows (skewed towards popular makers) and a few blocks. Every counter on a post equals
its rows, and ``rank_score`` is ``posts.ranking.score`` of them.

Rows go in with ``COPY`` (asyncpg ``copy_records_to_table``) on PostgreSQL and
``executemany`` in one transaction per table on SQLite, never through the API. Values are
converted by SQLAlchemy's own bind processors for the app's column types, so they are
stored exactly as the app stores them. Foreign keys are checked on both databases.

The rows are a function of ``--seed`` and ``--anchor`` (the "now" the timeline ends at,
by default the start of the current hour), except for the argon2 hashes' random salts.

    .venv/bin/python bench/datagen.py --database-url sqlite+aiosqlite:///var/bench/feed.db \\
        --fresh
    .venv/bin/python bench/datagen.py --fresh \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/craftreel_bench_feed
    .venv/bin/python bench/datagen.py --database-url … --users 1000 --posts 5000 \\
        --likes 20000 --follows 10000              # a small set to try things on
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import numpy as np
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

import craftreel.models  # noqa: F401 - every table in the metadata
import report
from craftreel.config import Settings
from craftreel.core.db import Base
from craftreel.core.security import Passwords
from craftreel.posts import ranking, text
from craftreel.posts.repository import feed_span_update

ROOT = Path(__file__).resolve().parents[1]
BENCH_PASSWORD = "correct horse battery staple"  # noqa: S105 - throwaway bench accounts
DAY = 86_400.0
CHUNK = 50_000

Row = tuple[Any, ...]


def bench_email(n: int) -> str:
    """The email of bench account ``n`` (0-based); its password is BENCH_PASSWORD."""
    return f"bench{n:04d}@bench.example.org"


@dataclass(frozen=True)
class Sizes:
    users: int = 10_000
    posts: int = 100_000
    likes: int = 1_000_000
    follows: int = 200_000
    comments: int = 50_000
    saves: int = 100_000
    blocks: int = 1_000
    bench_users: int = 200
    makers: int = 2_000
    days: int = 60

    def check(self) -> None:
        if self.bench_users + self.makers > self.users:
            raise SystemExit("--bench-users + --makers must not exceed --users")
        if self.bench_users and self.makers < 20:
            raise SystemExit("bench accounts follow 20–200 makers: give at least 20 --makers")


# --- words ------------------------------------------------------------------------------

FIRST = [
    "Ada",
    "Amara",
    "Ana",
    "Bea",
    "Cleo",
    "Dara",
    "Eli",
    "Elin",
    "Ezra",
    "Fern",
    "Finn",
    "Gwen",
    "Hana",
    "Iris",
    "Ivo",
    "Jude",
    "Kai",
    "Kira",
    "Lea",
    "Leo",
    "Lina",
    "Mara",
    "Mika",
    "Nell",
    "Nia",
    "Noor",
    "Oda",
    "Omar",
    "Pia",
    "Quin",
    "Rafa",
    "Rhea",
    "Rosa",
    "Sami",
    "Sana",
    "Tess",
    "Theo",
    "Uma",
    "Vera",
    "Wren",
    "Yara",
    "Yusuf",
    "Zoe",
    "Ines",
    "Tomas",
    "Aiko",
    "Bram",
    "Cato",
    "Dev",
    "Esme",
]
LAST = [
    "Abara",
    "Berg",
    "Costa",
    "Dahl",
    "Eriksen",
    "Farah",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Laine",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zeller",
    "Hale",
    "Marsh",
    "Rowe",
    "Finch",
]
CRAFTS = [
    "knitting",
    "crochet",
    "pottery",
    "ceramics",
    "weaving",
    "embroidery",
    "woodworking",
    "woodturning",
    "quilting",
    "sewing",
    "macrame",
    "bookbinding",
    "calligraphy",
    "papercraft",
    "leatherwork",
    "jewelry",
    "silversmithing",
    "glassblowing",
    "stainedglass",
    "candlemaking",
    "soapmaking",
    "spinning",
    "dyeing",
    "felting",
    "basketry",
    "printmaking",
    "linocut",
    "screenprinting",
    "watercolor",
    "sashiko",
    "tatting",
    "lacemaking",
    "upholstery",
    "carving",
    "spooncarving",
    "whittling",
    "blacksmithing",
    "enamel",
    "mosaic",
    "origami",
    "kintsugi",
    "beading",
    "tapestry",
    "rugmaking",
    "punchneedle",
    "needlepoint",
    "crossstitch",
    "patchwork",
    "visiblemending",
]
TOPICS = [
    "tutorial",
    "beginner",
    "tips",
    "process",
    "wip",
    "handmade",
    "slowmade",
    "studio",
    "diy",
    "makersgonnamake",
    "naturaldye",
    "smallbatch",
    "giftideas",
    "upcycling",
    "tools",
]
#: Hashtag vocabulary, most common first (chosen with Zipf weights).
TAGS = [*CRAFTS, *TOPICS, *(f"{c}{t}" for t in TOPICS[:8] for c in CRAFTS)]
THINGS = [
    "a cabled hat",
    "a bud vase",
    "a tote bag",
    "a market basket",
    "a linen apron",
    "a spoon",
    "a mug",
    "a quilt block",
    "a tiny notebook",
    "a beaded bracelet",
    "a wall hanging",
    "a wooden bowl",
    "a pair of socks",
    "a tea bowl",
    "a leather wallet",
    "a candle holder",
    "a sashiko patch",
    "a pincushion",
    "a rug sample",
]
OPENINGS = [
    "How I make",
    "Start to finish:",
    "Slow Sunday making",
    "First try at",
    "Trying a new way to make",
    "The long version of",
    "A quick one:",
    "Made for a friend:",
    "Back in the studio with",
]
CLOSINGS = [
    "Questions welcome!",
    "Pattern in the materials list.",
    "Took me three evenings.",
    "Mind the tension on this step.",
    "Second attempt went much better.",
    "",
    "",
]
CHAPTERS = [
    "Prepare",
    "Cast on",
    "First rows",
    "Shaping",
    "Centre and open",
    "Pull the walls",
    "Trim",
    "Glaze",
    "Cut the pieces",
    "Assemble",
    "Sand",
    "Oil and finish",
    "Block it",
    "Weave in ends",
    "Final look",
]
MATERIALS = [
    "Merino wool 4 ply",
    "4 mm circular needles",
    "Stoneware clay 5 kg",
    "Cotton warp",
    "Linen thread",
    "Beeswax",
    "Walnut oil",
    "Birch blank",
    "Embroidery hoop 20 cm",
    "Stranded cotton",
    "Veg-tan leather",
    "Saddle stitch needles",
    "Soy wax",
    "Cotton wick",
    "Indigo dye",
    "Glass seed beads",
]
COMMENTS = [
    "This is beautiful!",
    "What yarn is that?",
    "Saving this for the weekend.",
    "The colour!",
    "How long did it take?",
    "Love the chapters, easy to follow.",
    "Mine came out wobbly, any tips?",
    "Ordered the kit!",
    "So calming to watch.",
]


# --- ids and time -----------------------------------------------------------------------


def uuid7_at(seconds: np.ndarray, rng: np.random.Generator) -> list[uuid.UUID]:
    """RFC 9562 version 7 UUIDs for these Unix times, their random bits from ``rng``."""
    ms = (seconds * 1000).astype(np.int64)
    rand_a = rng.integers(0, 1 << 12, size=len(ms), dtype=np.int64)
    rand_b = rng.integers(0, 1 << 62, size=len(ms), dtype=np.int64)
    out = []
    for m, a, b in zip(ms.tolist(), rand_a.tolist(), rand_b.tolist(), strict=True):
        value = (m & ((1 << 48) - 1)) << 80 | 0x7 << 76 | a << 64 | 0b10 << 62 | b
        out.append(uuid.UUID(int=value))
    return out


def stamps(seconds: np.ndarray) -> list[datetime]:
    """Aware UTC datetimes for Unix times (microsecond precision)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = (seconds * 1_000_000).astype(np.int64).tolist()
    return [epoch + timedelta(microseconds=m) for m in micros]


def zipf_weights(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights 1/rank^exponent handed out in a random order, summing to 1."""
    ranks = rng.permutation(count) + 1
    weights = 1.0 / ranks.astype(np.float64) ** exponent
    return weights / weights.sum()


def exact_split(total: int, weights: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights``, each at most ``cap``, summing to ``total``."""
    counts = np.minimum(np.floor(weights / weights.sum() * total).astype(np.int64), cap)
    order = np.argsort(-weights, kind="stable")
    while (short := total - int(counts.sum())) > 0:
        room = order[counts[order] < cap[order]]
        if len(room) == 0:
            raise SystemExit("not enough room for that many rows; raise --users or --makers")
        counts[room[:short]] += 1
    return counts


def unique_pairs(
    count: int,
    left_p: np.ndarray,
    right_p: np.ndarray,
    rng: np.random.Generator,
    forbid: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct (left, right) index pairs, each side drawn with its weights."""
    width = len(right_p)
    keys = np.empty(0, dtype=np.int64)
    for _ in range(50):
        need = count - len(keys)
        if need <= 0:
            break
        draw = int(need * 1.3) + 1000
        left = rng.choice(len(left_p), size=draw, p=left_p)
        right = rng.choice(width, size=draw, p=right_p)
        if forbid is not None:
            keep = ~forbid(left, right)
            left, right = left[keep], right[keep]
        keys = np.unique(np.concatenate([keys, left.astype(np.int64) * width + right]))
    if len(keys) < count:
        raise SystemExit("could not draw that many distinct pairs; fewer rows, or more users")
    keys = np.sort(rng.choice(keys, size=count, replace=False))
    return keys // width, keys % width


# --- the plan ---------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything drawn, as arrays, before any row is written."""

    sizes: Sizes
    anchor: float
    user_ids: list[uuid.UUID]
    user_created: np.ndarray
    user_private: np.ndarray
    makers: np.ndarray
    popularity: np.ndarray
    follow_pairs: tuple[np.ndarray, np.ndarray]
    block_pairs: tuple[np.ndarray, np.ndarray]
    post_ids: list[uuid.UUID]
    post_author: np.ndarray
    post_kind: np.ndarray
    post_visibility: np.ndarray
    post_published: np.ndarray  # Unix seconds; NaN for drafts
    post_created: np.ndarray
    like_pairs: tuple[np.ndarray, np.ndarray]
    comment_pairs: tuple[np.ndarray, np.ndarray]
    save_pairs: tuple[np.ndarray, np.ndarray]
    likes_per_post: np.ndarray
    comments_per_post: np.ndarray
    saves_per_post: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


KINDS = np.array(["video", "photos", "audio"])
VISIBILITIES = np.array(["public", "followers", "unlisted", "private"])


def plan(sizes: Sizes, seed: int, anchor: datetime) -> Plan:
    """Draw who exists, who follows and blocks whom, the posts, and who liked what."""
    rng = np.random.default_rng(seed)
    n, bench, makers_n = sizes.users, sizes.bench_users, sizes.makers
    now = anchor.timestamp()
    window = sizes.days * DAY

    # People: bench accounts first, then makers, then everyone else; all older than the
    # oldest post.
    user_created = now - window - rng.uniform(1, 400, n) * DAY
    user_ids = uuid7_at(user_created, rng)
    makers = np.arange(bench, bench + makers_n)
    user_private = rng.random(n) < 0.03
    user_private[:bench] = False
    popularity = np.zeros(n)
    popularity[makers] = zipf_weights(makers_n, 1.0, rng)

    # Follows: the bench accounts follow 20–200 makers each; everyone else a lognormal
    # number of people, mostly popular makers.
    per_follower = np.zeros(n, dtype=np.int64)
    if bench:
        per_follower[:bench] = rng.integers(20, min(200, makers_n) + 1, size=bench)
    rest = sizes.follows - int(per_follower.sum())
    if rest < 0:
        raise SystemExit("--follows is smaller than what the bench accounts follow")
    cap = np.full(n - bench, min(n - 1, 2_000), dtype=np.int64)
    per_follower[bench:] = exact_split(rest, rng.lognormal(0, 1.0, n - bench), cap)
    followee_p = 0.9 * popularity + 0.1 / n
    followee_p /= followee_p.sum()
    followers, followees = [], []
    log_p = np.log(followee_p)
    log_maker_p = np.full(n, -np.inf)
    log_maker_p[makers] = np.log(popularity[makers])
    batch = 256
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        base = np.where((rows < bench)[:, None], log_maker_p[None, :], log_p[None, :])
        # Gumbel top-k: k distinct followees per follower, drawn with their weights.
        keys = base + rng.gumbel(size=base.shape)
        keys[np.arange(len(rows)), rows] = -np.inf
        k_max = int(per_follower[rows].max())
        if k_max == 0:
            continue
        top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
        ordered = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1
        )
        for i, row in enumerate(rows.tolist()):
            k = int(per_follower[row])
            followers.append(np.full(k, row))
            followees.append(ordered[i, :k])
    follow_pairs = (np.concatenate(followers), np.concatenate(followees))
    follow_keys = set((follow_pairs[0] * n + follow_pairs[1]).tolist())

    # Blocks: never between two people who follow each other either way.
    def blocked_or_self(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        pairs = zip((left * n + right).tolist(), (right * n + left).tolist(), strict=True)
        bad = np.array([a in follow_keys or b in follow_keys for a, b in pairs], dtype=bool)
        return bad | (left == right)

    block_pairs = unique_pairs(
        sizes.blocks, np.full(n, 1.0 / n), popularity, rng, forbid=blocked_or_self
    )

    # Posts: popular makers post more; published over the window, 2 % still drafts.
    posts_per_maker = rng.multinomial(
        sizes.posts, _norm(popularity[makers] ** 0.5 * rng.lognormal(0, 0.5, makers_n))
    )
    post_author = rng.permutation(np.repeat(makers, posts_per_maker))
    post_published = now - rng.uniform(60, window, sizes.posts)
    draft = rng.random(sizes.posts) < 0.02
    post_created = post_published - rng.uniform(60, 2 * DAY, sizes.posts)
    post_published[draft] = np.nan
    order = np.argsort(post_created)
    post_author, post_published, post_created = (
        post_author[order],
        post_published[order],
        post_created[order],
    )
    draft = draft[order]
    post_ids = uuid7_at(post_created, rng)
    post_kind = rng.choice(KINDS, size=sizes.posts, p=[0.80, 0.15, 0.05])
    post_visibility = rng.choice(VISIBILITIES, size=sizes.posts, p=[0.90, 0.06, 0.02, 0.02])

    # Engagement only where anyone may see it: published public posts of public accounts.
    # Weight: the maker's pull, a heavy-tailed per-post luck, and time to gather it.
    open_post = (~draft) & (post_visibility == "public") & (~user_private[post_author])
    age_days = np.nan_to_num((now - post_published) / DAY, nan=0.0)
    post_p = (
        popularity[post_author] ** 0.35 * rng.lognormal(0, 1.3, sizes.posts) * (1 + age_days) ** 0.3
    )
    post_p = _norm(np.where(open_post, post_p, 0.0))
    activity = _norm(rng.lognormal(0, 1.0, n))

    def own(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return post_author[left] == right

    like_pairs = unique_pairs(sizes.likes, post_p, activity, rng, forbid=own)
    save_pairs = unique_pairs(sizes.saves, post_p, activity, rng, forbid=own)
    comment_pairs = (
        rng.choice(sizes.posts, size=sizes.comments, p=post_p),
        rng.choice(n, size=sizes.comments, p=activity),
    )
    return Plan(
        sizes=sizes,
        anchor=now,
        user_ids=user_ids,
        user_created=user_created,
        user_private=user_private,
        makers=makers,
        popularity=popularity,
        follow_pairs=follow_pairs,
        block_pairs=block_pairs,
        post_ids=post_ids,
        post_author=post_author,
        post_kind=post_kind,
        post_visibility=post_visibility,
        post_published=post_published,
        post_created=post_created,
        like_pairs=like_pairs,
        comment_pairs=comment_pairs,
        save_pairs=save_pairs,
        likes_per_post=np.bincount(like_pairs[0], minlength=sizes.posts),
        comments_per_post=np.bincount(comment_pairs[0], minlength=sizes.posts),
        saves_per_post=np.bincount(save_pairs[0], minlength=sizes.posts),
    )


def _norm(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


# --- rows -------------------------------------------------------------------------------


@dataclass
class TableRows:
    """One table's rows: its column names and the rows in chunks."""

    table: str
    columns: Sequence[str]
    chunks: Iterable[list[Row]]


def _chunked(rows: Iterable[Row], size: int = CHUNK) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _after(start: np.ndarray, end: float, rng: np.random.Generator) -> np.ndarray:
    """A moment between each ``start`` and ``end``."""
    return start + rng.random(len(start)) * np.maximum(end - start, 1.0)


def user_rows(p: Plan, rng: np.random.Generator, hashes: tuple[str, str]) -> TableRows:
    bench_hash, other_hash = hashes
    n, bench = p.sizes.users, p.sizes.bench_users
    created = stamps(p.user_created)
    is_maker = np.zeros(n, dtype=bool)
    is_maker[p.makers] = True
    hidden = rng.random(n) < 0.01
    verified = rng.random(n) < 0.9
    first = rng.integers(0, len(FIRST), n).tolist()
    last = rng.integers(0, len(LAST), n).tolist()
    craft = rng.integers(0, len(CRAFTS), n).tolist()

    def rows() -> Iterator[Row]:
        for i in range(n):
            if i < bench:
                handle = f"bench{i:04d}"
                email = bench_email(i)
            else:
                handle = f"{FIRST[first[i]].lower()}.{CRAFTS[craft[i]][:10]}{i}"
                email = f"{handle}@example.org"
            maker = bool(is_maker[i])
            yield (
                p.user_ids[i],
                email,
                email,
                handle,
                handle,
                bench_hash if i < bench else other_hash,
                created[i] + timedelta(hours=1) if verified[i] else None,
                f"{FIRST[first[i]]} {LAST[last[i]]}",
                f"Making {CRAFTS[craft[i]]} things, slowly." if maker else "",
                [f"https://example.org/{handle}"] if maker else [],
                None,
                maker,
                False,
                bool(p.user_private[i]),
                "everyone",
                bool(hidden[i]),
                created[i],
                created[i],
                None,
            )

    columns = [
        "id",
        "email",
        "email_normalized",
        "handle",
        "handle_normalized",
        "password_hash",
        "email_verified_at",
        "display_name",
        "bio",
        "links",
        "avatar_key",
        "is_maker",
        "is_admin",
        "is_private",
        "message_policy",
        "hide_from_search",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
    return TableRows("users", columns, _chunked(rows()))


def pair_rows(
    p: Plan,
    rng: np.random.Generator,
    name: str,
    pairs: tuple[np.ndarray, np.ndarray],
    columns: Sequence[str],
    extra: Callable[[int, int], tuple[Any, ...]] = lambda _l, _r: (),
) -> TableRows:
    """follows and blocks: (user, user, …, created_at after both existed)."""
    left, right = pairs
    created = stamps(_after(np.maximum(p.user_created[left], p.user_created[right]), p.anchor, rng))
    ids = p.user_ids

    def rows() -> Iterator[Row]:
        for i, (a, b) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
            yield (ids[a], ids[b], *extra(a, b), created[i])

    return TableRows(name, columns, _chunked(rows()))


def _video_media(prefix: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    renditions = [
        {
            "name": f"{h}p",
            "width": h,
            "height": h * 16 // 9,
            "bandwidth": bw,
            "playlist": f"{prefix}/{h}p/index.m3u8",
        }
        for h, bw in ((360, 900_000), (720, 2_800_000), (1080, 5_500_000))
    ]
    assets = {
        "master": f"{prefix}/master.m3u8",
        "poster": f"{prefix}/poster.jpg",
        "thumbnails": f"{prefix}/thumbs/thumbs.vtt",
        "sprite": f"{prefix}/thumbs/sprite.jpg",
    }
    return renditions, assets


def _audio_media(prefix: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    renditions = [
        {
            "name": "audio",
            "width": 0,
            "height": 0,
            "bandwidth": 160_000,
            "playlist": f"{prefix}/audio/index.m3u8",
        }
    ]
    return renditions, {"master": f"{prefix}/master.m3u8", "waveform": f"{prefix}/waveform.json"}


def _image_assets(prefix: str) -> dict[str, Any]:
    variants = [
        {"width": w, "height": w * 5 // 4, "format": fmt, "key": f"{prefix}/{w}.{fmt}"}
        for w in (320, 640, 1280)
        for fmt in ("webp", "jpeg")
    ]
    return {
        "variants": variants,
        "blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        "poster": f"{prefix}/1280.jpeg",
    }


def post_rows(p: Plan, rng: np.random.Generator) -> tuple[TableRows, ...]:
    """media_objects, posts, post_media and post_hashtags."""
    count = p.sizes.posts
    tag_p = zipf_weights(len(TAGS), 1.0, rng)
    tag_p = np.sort(tag_p)[::-1]  # the vocabulary's order is its popularity
    photo_count = rng.integers(1, 5, count)
    media_per_post = np.where(p.post_kind == "photos", photo_count, 1)
    media_created = np.repeat(p.post_created, media_per_post) - rng.uniform(
        60, 3600, int(media_per_post.sum())
    )
    media_ids = uuid7_at(media_created, rng)
    media_stamps = stamps(media_created)
    durations = np.round(rng.uniform(15, 300, count), 1)
    created = stamps(p.post_created)
    published_s = p.post_published
    published = [
        None if math.isnan(s) else d
        for s, d in zip(published_s, stamps(np.nan_to_num(published_s)), strict=True)
    ]
    n_tags = rng.integers(0, 5, count).tolist()
    tag_draws = rng.choice(len(TAGS), size=(count, 4), p=tag_p).tolist()
    opening = rng.integers(0, len(OPENINGS), count).tolist()
    thing = rng.integers(0, len(THINGS), count).tolist()
    closing = rng.integers(0, len(CLOSINGS), count).tolist()
    n_chapters = rng.integers(0, 5, count).tolist()
    chapter_at = np.sort(rng.random((count, 4)), axis=1)
    chapter_first = rng.integers(0, len(CHAPTERS), count).tolist()
    n_materials = rng.integers(0, 6, count).tolist()
    material = [rng.permutation(len(MATERIALS))[:5].tolist() for _ in range(count)]
    comments_on = (rng.random(count) < 0.95).tolist()
    sizes_bytes = rng.integers(200_000, 400_000_000, int(media_per_post.sum())).tolist()

    captions: list[str] = []
    chapters: list[list[dict[str, Any]]] = []
    scores: list[float] = []
    for i in range(count):
        tags = " ".join(f"#{TAGS[t]}" for t in dict.fromkeys(tag_draws[i][: n_tags[i]]))
        caption = f"{OPENINGS[opening[i]]} {THINGS[thing[i]]}. {CLOSINGS[closing[i]]} {tags}"
        captions.append(" ".join(caption.split()))
        if p.post_kind[i] == "photos" or n_chapters[i] == 0:
            chapters.append([])
        else:
            # The first step starts at 0:00; the others spread over the duration.
            ats = [0.0, *(round(float(a) * durations[i] * 0.9, 1) for a in chapter_at[i, 1:])]
            chapters.append(
                [
                    {"at": at, "title": CHAPTERS[(chapter_first[i] + j) % len(CHAPTERS)]}
                    for j, at in enumerate(sorted(set(ats))[: n_chapters[i]])
                ]
            )
        pub = published[i]
        scores.append(
            0.0
            if pub is None
            else ranking.score(
                pub,
                int(p.likes_per_post[i]),
                int(p.comments_per_post[i]),
                int(p.saves_per_post[i]),
                0,
                0,
            )
        )
    author = p.post_author.tolist()

    def media() -> Iterator[Row]:
        m = 0
        for i in range(count):
            kind = p.post_kind[i]
            public = published[i] is not None and p.post_visibility[i] in ("public", "unlisted")
            for _ in range(int(media_per_post[i])):
                media_id = media_ids[m]
                prefix = f"media/{media_id}/r1"
                if kind == "video":
                    renditions, assets = _video_media(prefix)
                    mkind, mime, dur, w, h = "video", "video/mp4", float(durations[i]), 1080, 1920
                elif kind == "audio":
                    renditions, assets = _audio_media(prefix)
                    mkind, mime, dur, w, h = "audio", "audio/mp4", float(durations[i]), None, None
                else:
                    renditions, assets = [], _image_assets(prefix)
                    mkind, mime, dur, w, h = "image", "image/jpeg", None, 2560, 3200
                size = sizes_bytes[m]
                yield (
                    media_id,
                    p.user_ids[author[i]],
                    mkind,
                    "ready",
                    None,
                    None,
                    mime,
                    size,
                    size,
                    None,
                    None,
                    0,
                    f"media/{media_id}/source",
                    mime,
                    dur,
                    w,
                    h,
                    True,
                    renditions,
                    assets,
                    prefix,
                    public,
                    media_stamps[m],
                    created[i],
                    media_stamps[m],
                    created[i],
                )
                m += 1

    def posts() -> Iterator[Row]:
        for i in range(count):
            pub = published[i]
            yield (
                p.post_ids[i],
                p.user_ids[author[i]],
                str(p.post_kind[i]),
                "draft" if pub is None else "published",
                captions[i],
                chapters[i],
                [MATERIALS[k] for k in material[i][: n_materials[i]]],
                str(p.post_visibility[i]),
                comments_on[i],
                None,
                pub,
                None,
                int(p.likes_per_post[i]),
                int(p.comments_per_post[i]),
                int(p.saves_per_post[i]),
                0,
                0,
                0,
                scores[i],
                created[i],
                pub or created[i],
                None,
            )

    def post_media() -> Iterator[Row]:
        m = 0
        for i in range(count):
            for position in range(int(media_per_post[i])):
                yield (p.post_ids[i], position, media_ids[m])
                m += 1

    def hashtags() -> Iterator[Row]:
        for i in range(count):
            for tag in text.hashtags(captions[i]):
                yield (p.post_ids[i], tag, published[i])

    media_columns = [
        "id",
        "owner_id",
        "kind",
        "status",
        "failure_code",
        "failure_message",
        "declared_type",
        "upload_length",
        "upload_offset",
        "upload_expires_at",
        "storage_upload_id",
        "parts_bytes",
        "source_key",
        "mime",
        "duration_s",
        "width",
        "height",
        "playable",
        "renditions",
        "assets",
        "output_prefix",
        "is_public",
        "created_at",
        "updated_at",
        "completed_at",
        "processed_at",
    ]
    post_columns = [
        "id",
        "author_id",
        "kind",
        "status",
        "caption",
        "chapters",
        "materials",
        "visibility",
        "comments_enabled",
        "scheduled_at",
        "published_at",
        "publish_error",
        "like_count",
        "comment_count",
        "save_count",
        "share_count",
        "view_count",
        "completion_count",
        "rank_score",
        "created_at",
        "updated_at",
        "edited_at",
    ]
    return (
        TableRows("media_objects", media_columns, _chunked(media())),
        TableRows("posts", post_columns, _chunked(posts())),
        TableRows("post_media", ["post_id", "position", "media_id"], _chunked(post_media())),
        TableRows("post_hashtags", ["post_id", "tag", "published_at"], _chunked(hashtags())),
    )


def engagement_rows(p: Plan, rng: np.random.Generator) -> tuple[TableRows, ...]:
    """post_likes, post_comments and post_saves, each after its post was published."""
    published = np.nan_to_num(p.post_published)

    def timed(
        name: str, pairs: tuple[np.ndarray, np.ndarray], columns: Sequence[str], ids: bool
    ) -> TableRows:
        posts_i, users_i = pairs
        when = _after(published[posts_i], p.anchor, rng)
        row_ids = uuid7_at(when, rng) if ids else None
        bodies = rng.integers(0, len(COMMENTS), len(posts_i)).tolist()

        def rows() -> Iterator[Row]:
            created = stamps(when)
            for i, (post, user) in enumerate(zip(posts_i.tolist(), users_i.tolist(), strict=True)):
                if name == "post_likes":
                    yield (p.post_ids[post], p.user_ids[user], created[i])
                elif name == "post_saves":
                    yield (p.user_ids[user], p.post_ids[post], None, created[i])
                else:
                    assert row_ids is not None
                    yield (
                        row_ids[i],
                        p.post_ids[post],
                        p.user_ids[user],
                        None,
                        COMMENTS[bodies[i]],
                        0,
                        created[i],
                    )

        return TableRows(name, columns, _chunked(rows()))

    return (
        timed("post_likes", p.like_pairs, ["post_id", "user_id", "created_at"], False),
        timed(
            "post_comments",
            p.comment_pairs,
            ["id", "post_id", "author_id", "parent_id", "body", "reply_count", "created_at"],
            True,
        ),
        timed(
            "post_saves", p.save_pairs, ["user_id", "post_id", "collection_id", "created_at"], False
        ),
    )


# --- writing ----------------------------------------------------------------------------


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def check_columns(table: Table, columns: Sequence[str]) -> None:
    """Fail loudly when the schema moved: an unknown column, or a required one not given."""
    unknown = [c for c in columns if c not in table.c]
    missing = [
        c.name
        for c in table.c
        if c.name not in columns and not c.nullable and c.server_default is None
    ]
    if unknown or missing:
        raise SystemExit(
            f"datagen does not match the {table.name} table: unknown {unknown}, missing {missing}"
        )


class Sink(Protocol):
    async def write(self, rows: TableRows) -> int: ...

    async def run(self, statement: Any) -> None:
        """One SQL statement with no parameters (literal values only)."""

    async def finish(self) -> None: ...

    async def close(self) -> None: ...


class SqliteSink:
    """executemany in one transaction per table, values as SQLAlchemy's SQLite dialect binds.
    Foreign keys are checked once at the end (``PRAGMA foreign_key_check``), not row by row;
    triggers (the search index) fire as usual."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-262144")
        self.dialect = sqlite_dialect.dialect()

    async def write(self, rows: TableRows) -> int:
        table = _table(rows.table)
        check_columns(table, rows.columns)
        processors = [
            table.c[name].type.dialect_impl(self.dialect).bind_processor(self.dialect)
            for name in rows.columns
        ]
        converting = [(i, f) for i, f in enumerate(processors) if f is not None]
        names = ", ".join(f'"{c}"' for c in rows.columns)
        marks = ", ".join("?" for _ in rows.columns)
        sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'  # noqa: S608
        written = 0
        self.conn.execute("BEGIN")
        try:
            for chunk in rows.chunks:
                converted = []
                for row in chunk:
                    values = list(row)
                    for i, process in converting:
                        values[i] = process(values[i])
                    converted.append(values)
                self.conn.executemany(sql, converted)
                written += len(chunk)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return written

    async def run(self, statement: Any) -> None:
        sql = statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
        self.conn.execute(str(sql))

    async def finish(self) -> None:
        broken = self.conn.execute("PRAGMA foreign_key_check").fetchmany(5)
        if broken:
            raise SystemExit(f"rows whose foreign key points nowhere: {broken}")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        self.conn.close()


class PostgresSink:
    """COPY (binary, asyncpg) in one transaction per table; JSON columns sent as text.

    When the tables have no triggers of their own, the load runs with
    ``session_replication_role = replica``, which skips the per-row foreign-key triggers
    (three quarters of the time of a 1M-row COPY); every foreign key is then checked once,
    with one anti-join per constraint, before the load counts as done."""

    def __init__(self, conn: asyncpg.Connection, deferred_fk_check: bool) -> None:
        self.conn = conn
        self.deferred_fk_check = deferred_fk_check
        self.tables: list[str] = []

    @classmethod
    async def connect(cls, dsn: str) -> PostgresSink:
        conn = await asyncpg.connect(dsn, timeout=10)
        own_triggers = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid = ANY(SELECT to_regclass(t) FROM unnest($1::text[]) AS t)",
            TABLES,
        )
        deferred = False
        if own_triggers == 0:
            try:
                await conn.execute("SET session_replication_role = replica")
                deferred = True
            except asyncpg.InsufficientPrivilegeError:
                pass  # not a superuser: foreign keys are checked row by row
        return cls(conn, deferred)

    async def write(self, rows: TableRows) -> int:
        table = _table(rows.table)
        check_columns(table, rows.columns)
        as_json = [i for i, name in enumerate(rows.columns) if isinstance(table.c[name].type, JSON)]
        written = 0
        async with self.conn.transaction():
            for chunk in rows.chunks:
                if as_json:
                    records = []
                    for row in chunk:
                        values = list(row)
                        for i in as_json:
                            values[i] = json.dumps(values[i])
                        records.append(values)
                else:
                    records = chunk  # type: ignore[assignment]
                await self.conn.copy_records_to_table(
                    table.name, records=records, columns=list(rows.columns)
                )
                written += len(chunk)
        self.tables.append(table.name)
        return written

    async def run(self, statement: Any) -> None:
        sql = statement.compile(
            dialect=pg_dialect.dialect(), compile_kwargs={"literal_binds": True}
        )
        await self.conn.execute(str(sql))

    async def finish(self) -> None:
        if self.deferred_fk_check:
            await self.conn.execute("SET session_replication_role = origin")
            for name in self.tables:
                for fk in _table(name).foreign_key_constraints:
                    parent = fk.referred_table.name
                    pairs = [(c.parent.name, c.column.name) for c in fk.elements]
                    matches = " AND ".join(f'p."{pc}" = c."{cc}"' for cc, pc in pairs)
                    present = " AND ".join(f'c."{cc}" IS NOT NULL' for cc, _ in pairs)
                    broken = await self.conn.fetchval(
                        f'SELECT count(*) FROM "{name}" c WHERE {present} '  # noqa: S608
                        f'AND NOT EXISTS (SELECT 1 FROM "{parent}" p WHERE {matches})'
                    )
                    if broken:
                        raise SystemExit(f"{broken} {name} rows break {fk.name}")
        # What autovacuum would do soon after a bulk load: statistics and visibility maps.
        await self.conn.execute("VACUUM ANALYZE")

    async def close(self) -> None:
        await self.conn.close()


# --- the database -----------------------------------------------------------------------


def backend_of(url: str) -> str:
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite"
    if url.startswith("postgresql+asyncpg://"):
        return "postgres"
    raise SystemExit("--database-url must be sqlite+aiosqlite://… or postgresql+asyncpg://…")


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise SystemExit("a SQLite benchmark database must be a file")
    return Path(database)


def pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def remove_sqlite(path: Path) -> None:
    """Remove a SQLite database file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


async def recreate(url: str) -> None:
    """An empty database at ``url``: the SQLite file removed, or the PostgreSQL one recreated."""
    if backend_of(url) == "sqlite":
        remove_sqlite(sqlite_path(url))
        return
    name = make_url(url).database
    conn = await asyncpg.connect(pg_dsn(url, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def migrate(url: str) -> None:
    """``craftreel migrate`` against ``url``, as an operator would run it."""
    with tempfile.TemporaryDirectory(prefix="craftreel-datagen-") as var:
        env = {
            **os.environ,
            "CRAFTREEL_DEMO_MODE": "true",
            "CRAFTREEL_DATABASE_URL": url,
            "CRAFTREEL_VAR_DIR": var,
            "CRAFTREEL_LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [sys.executable, "-m", "craftreel.cli_main", "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )


async def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one read-only query, on either database (for the benchmark's bookkeeping)."""
    if backend_of(url) == "sqlite":
        with contextlib.closing(sqlite3.connect(sqlite_path(url))) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    conn = await asyncpg.connect(pg_dsn(url), timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def row_counts(url: str, tables: Sequence[str]) -> dict[str, int]:
    """How many rows each table holds (an empty dict when the schema is not there yet)."""
    counts: dict[str, int] = {}
    if backend_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists():
            return counts
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for name in tables:
                try:
                    counts[name] = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608
                except sqlite3.OperationalError:
                    return {}
        return counts
    try:
        conn = await asyncpg.connect(pg_dsn(url), timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return counts
    try:
        for name in tables:
            try:
                counts[name] = await conn.fetchval(f'SELECT count(*) FROM "{name}"')  # noqa: S608
            except asyncpg.UndefinedTableError:
                return {}
    finally:
        await conn.close()
    return counts


COUNTER_CHECKS = {
    # posts whose counter differs from its rows; must be 0
    "like_count": "SELECT count(*) FROM posts p WHERE p.like_count <> "
    "(SELECT count(*) FROM post_likes l WHERE l.post_id = p.id)",
    "comment_count": "SELECT count(*) FROM posts p WHERE p.comment_count <> "
    "(SELECT count(*) FROM post_comments c WHERE c.post_id = p.id)",
    "save_count": "SELECT count(*) FROM posts p WHERE p.save_count <> "
    "(SELECT count(*) FROM post_saves s WHERE s.post_id = p.id)",
}


async def check_counters(url: str) -> dict[str, int]:
    """Posts whose counters disagree with their rows, per counter (all should be 0)."""
    return {name: (await fetch(url, sql))[0][0] for name, sql in COUNTER_CHECKS.items()}


TABLES = [
    "users",
    "follows",
    "blocks",
    "media_objects",
    "posts",
    "post_media",
    "post_hashtags",
    "post_likes",
    "post_comments",
    "post_saves",
]


def password_hashes() -> tuple[str, str]:
    """One argon2 hash of the bench password (shared by every bench account) and one of a
    secret nobody knows (everyone else), at the app's default cost."""
    defaults = Settings.model_fields
    passwords = Passwords(
        defaults["argon2_memory_kib"].default,
        defaults["argon2_time_cost"].default,
        defaults["argon2_parallelism"].default,
    )
    return passwords.hash(BENCH_PASSWORD), passwords.hash(os.urandom(16).hex())


def default_anchor() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


async def generate(
    url: str,
    sizes: Sizes = Sizes(),
    *,
    seed: int = 1,
    anchor: datetime | None = None,
    fresh: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any]:
    """Fill the database at ``url`` (migrating it first); the figures of how long it took."""
    sizes.check()
    backend = backend_of(url)
    anchor = anchor or default_anchor()
    loadavg = os.getloadavg()
    began = time.perf_counter()
    if fresh:
        await recreate(url)
    migrate(url)
    existing = await row_counts(url, ["users", "posts"])
    if any(existing.values()):
        raise SystemExit(f"{url} already holds data ({existing}); pass --fresh to replace it")

    drawn = time.perf_counter()
    hashes = await asyncio.to_thread(password_hashes)
    p = plan(sizes, seed, anchor)
    rng = np.random.default_rng(seed + 1)
    plan_s = time.perf_counter() - drawn
    log(f"[datagen {backend}] plan drawn in {plan_s:.1f} s")

    sink: Sink
    if backend == "sqlite":
        sink = SqliteSink(sqlite_path(url))
    else:
        sink = await PostgresSink.connect(pg_dsn(url))
    n = sizes.users
    tables: list[dict[str, Any]] = []
    try:
        producers: list[Callable[[], Iterable[TableRows]]] = [
            lambda: [user_rows(p, rng, hashes)],
            lambda: [
                pair_rows(
                    p,
                    rng,
                    "follows",
                    p.follow_pairs,
                    ["follower_id", "followee_id", "status", "created_at"],
                    lambda _a, _b: ("active",),
                )
            ],
            lambda: [
                pair_rows(
                    p, rng, "blocks", p.block_pairs, ["blocker_id", "blocked_id", "created_at"]
                )
            ],
            lambda: post_rows(p, rng),
            lambda: engagement_rows(p, rng),
        ]
        for produce in producers:
            for rows in produce():
                started = time.perf_counter()
                written = await sink.write(rows)
                seconds = time.perf_counter() - started
                tables.append(
                    {
                        "table": rows.table,
                        "rows": written,
                        "seconds": round(seconds, 2),
                        "rows_per_s": round(written / seconds) if seconds else None,
                    }
                )
                log(
                    f"[datagen {backend}] {rows.table:14} {written:>9,} rows "
                    f"{seconds:6.1f} s  {written / max(seconds, 1e-9):>9,.0f} rows/s"
                )
        # What publishing keeps in the app: each person's feed span (users.feed_newest_at …).
        await sink.run(feed_span_update())
        finishing = time.perf_counter()
        await sink.finish()
        finish_s = time.perf_counter() - finishing
    finally:
        await sink.close()
    total_rows = sum(t["rows"] for t in tables)
    write_s = sum(t["seconds"] for t in tables)
    mismatched = await check_counters(url)
    if any(mismatched.values()):
        raise SystemExit(f"counters disagree with their rows: {mismatched}")
    likes = p.likes_per_post[p.likes_per_post > 0]
    follows_bench = np.bincount(p.follow_pairs[0], minlength=n)[: sizes.bench_users]
    figures = {
        "backend": backend,
        "sizes": asdict(sizes),
        "seed": seed,
        "anchor": anchor.isoformat(),
        "loadavg_start": [round(x, 2) for x in loadavg],
        "tables": tables,
        "rows": total_rows,
        "plan_s": round(plan_s, 1),
        "write_s": round(write_s, 1),
        "rows_per_s": round(total_rows / write_s) if write_s else None,
        "finish_s": round(finish_s, 1),
        "finish": (
            "foreign-key check, VACUUM ANALYZE"
            if backend == "postgres"
            else "foreign-key check, wal_checkpoint"
        ),
        "total_s": round(time.perf_counter() - began, 1),
        "shape": {
            "posts_published": int(np.count_nonzero(~np.isnan(p.post_published))),
            "likes_max_per_post": int(p.likes_per_post.max()),
            "likes_p99_per_post": int(np.percentile(likes, 99)) if len(likes) else 0,
            "likes_median_per_liked_post": int(np.median(likes)) if len(likes) else 0,
            "posts_with_likes": len(likes),
            "followers_max": int(np.bincount(p.follow_pairs[1], minlength=n).max()),
            "bench_follows_min_max": [int(follows_bench.min()), int(follows_bench.max())]
            if sizes.bench_users
            else None,
        },
        "counters_consistent": True,
    }
    log(
        f"[datagen {backend}] {total_rows:,} rows in {write_s:.1f} s of writing "
        f"({figures['rows_per_s']:,} rows/s), {figures['total_s']} s in all"
    )
    return figures


def record(figures: dict[str, Any]) -> Path:
    """Keep these figures in bench/results/datagen.json, next to the other backend's."""
    path = report.RESULTS / "datagen.json"
    try:
        runs = json.loads(path.read_text()).get("runs", {})
    except (OSError, ValueError):
        runs = {}
    runs[figures["backend"]] = {"machine": report.machine(), **figures}
    return report.write("datagen", {"runs": runs})


def sizes_from(args: argparse.Namespace) -> Sizes:
    return Sizes(**{f: getattr(args, f) for f in Sizes.__dataclass_fields__})


def add_size_options(parser: argparse.ArgumentParser) -> None:
    for name, default in asdict(Sizes()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, dest=name)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--anchor",
        type=datetime.fromisoformat,
        help="the timeline's 'now' (ISO 8601 with a zone); default: the start of this hour",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument(
        "--fresh", action="store_true", help="drop and recreate the database (or file) first"
    )
    add_size_options(parser)
    args = parser.parse_args()
    if args.anchor is not None and args.anchor.tzinfo is None:
        parser.error("--anchor needs a time zone, e.g. 2026-11-25T17:00:00+00:00")
    figures = asyncio.run(
        generate(
            args.database_url,
            sizes_from(args),
            seed=args.seed,
            anchor=args.anchor,
            fresh=args.fresh,
        )
    )
    print(
        report.table(
            ["table", "rows", "seconds", "rows/s"],
            [[t["table"], t["rows"], t["seconds"], t["rows_per_s"]] for t in figures["tables"]],
        )
    )
    print(
        f"\n{figures['rows']:,} rows, {figures['rows_per_s']:,} rows/s while writing; "
        f"{figures['total_s']} s in all (migrate, plan, write, {figures['finish']})"
    )
    print(f"written to {record(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
