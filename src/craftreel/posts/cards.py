"""Feed cards: a post as a feed shows it, rendered once and reused for a few seconds.

A card is a post's JSON (:class:`~craftreel.posts.schemas.PostOut`) without the two parts
that change all the time or differ per viewer — ``counts`` and ``viewer`` — which each page
adds fresh from the rows it read. Rendering a card (author, media URLs for every rendition,
the shop's product tags) costs three to six queries and most of a feed request's CPU;
reusing it is what makes a feed page cheap.

Who may see a post is never cached: a page's posts come from its own query, run every time
with the one visibility rule. A card only says how a post the query returned looks.

A card is reused while all of these hold:

- the post row is unchanged (its ``updated_at``, which every write to it moves, counters
  included);
- nothing a card shows from other tables — people, media, product tags, listings, their
  options and shops — was written by this process since it was rendered (the
  :data:`shown` generation, see :mod:`craftreel.core.changes`);
- it is younger than ``CRAFTREEL_FEED_CARD_SECONDS`` (less a random quarter at most, so
  that cards rendered together lapse apart; what another process, such as a
  ``craftreel worker`` finishing a rendition, changed shows within that time), and younger
  than a quarter of ``CRAFTREEL_PRIVATE_URL_SECONDS``, so a signed URL in it stays valid.

A card that has only grown old — its post and the tables above unchanged — is served once
more while it is rendered again in the background (stale-while-revalidate), if it lapsed
less than ``CRAFTREEL_FEED_CARD_SECONDS`` ago: the request that finds it old does not wait
for the render. Rendering a page's worth of cards inside requests was what made the slowest
feed requests twice as slow as the rest. So what another process changed shows within at
most two lifetimes, and a signed URL in a card is at most half its validity old.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from uuid import UUID

from craftreel.core.changes import Watch

#: Tables whose rows appear on a card (besides the post's own row, which is versioned by its
#: ``updated_at``). A committed write to any of them makes every card in this process stale.
SHOWN_TABLES = frozenset(
    {
        "users",
        "media_objects",
        "post_media",
        "post_product_tags",
        "kit_items",
        "listings",
        "variants",
        "shops",
    }
)

#: Moves when a transaction that wrote one of SHOWN_TABLES commits in this process.
shown = Watch("cards", SHOWN_TABLES)


#: A kept card: (body, the post's updated_at, generation, expires at). A plain tuple of
#: atoms, keyed by the id's integer: the garbage collector stops tracking such tuples, so a
#: full cache (tens of thousands of cards) adds nothing to each full collection's walk.
_Card = tuple[bytes, datetime, int, float]


class CardCache:
    """Rendered cards by post id, least recently used dropped first."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._cards: OrderedDict[int, _Card] = OrderedDict()
        #: Posts whose old cards are queued to be rendered again, or being rendered.
        self._refreshing: set[int] = set()
        self._queue: list[UUID] = []
        #: Seconds on a clock that only moves forward (a test may set its own).
        self.clock: Callable[[], float] = time.monotonic
        #: The background task rendering queued cards, while there are any.
        self.refresher: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 and self.size > 0

    def get(self, post_id: UUID, updated_at: datetime) -> tuple[bytes, bool] | None:
        """The card of this version of the post, if one is kept and may be shown, and whether
        it has grown old and is to be rendered again (:meth:`queue_refresh`)."""
        key = post_id.int
        card = self._cards.get(key) if self.enabled else None
        if card is None or card[1] != updated_at or card[2] != shown.generation:
            self.misses += 1
            return None
        late = self.clock() - card[3]
        if late > self.seconds:
            self.misses += 1
            return None
        self._cards.move_to_end(key)
        self.hits += 1
        return card[0], late > 0

    def queue_refresh(self, post_ids: Iterable[UUID]) -> None:
        """Queue these posts, whose cards were served old, to be rendered again (those not
        queued or being rendered already)."""
        for post_id in post_ids:
            if post_id.int not in self._refreshing:
                self._refreshing.add(post_id.int)
                self._queue.append(post_id)

    def take_refresh(self, limit: int) -> list[UUID]:
        """The next ``limit`` queued posts at most; they count as being rendered until
        :meth:`refreshed`."""
        taken, self._queue = self._queue[:limit], self._queue[limit:]
        return taken

    @property
    def refresh_queued(self) -> int:
        return len(self._queue)

    def refreshed(self, post_ids: Iterable[UUID]) -> None:
        """A refresh of these posts' cards ended (whether or not it put new ones)."""
        self._refreshing.difference_update(i.int for i in post_ids)

    def put(self, post_id: UUID, updated_at: datetime, body: bytes, generation: int) -> None:
        """Keep a card rendered at ``generation`` (read before the data it shows was)."""
        if not self.enabled:
            return
        # Each card lives a random 75–100 % of the time, so cards rendered together (a page's,
        # at start) do not all lapse at once and have every request render them again.
        lifetime = self.seconds * random.uniform(0.75, 1.0)  # noqa: S311 - not a secret
        key = post_id.int
        self._cards[key] = (body, updated_at, generation, self.clock() + lifetime)
        self._cards.move_to_end(key)
        while len(self._cards) > self.size:
            self._cards.popitem(last=False)

    def forget(self, post_ids: Iterable[UUID]) -> None:
        for post_id in post_ids:
            self._cards.pop(post_id.int, None)

    def clear(self) -> None:
        self._cards.clear()

    def __len__(self) -> int:
        return len(self._cards)


def without_live_parts(card_json: bytes) -> bytes:
    """A card's JSON object with the opening brace removed, ready to follow the live parts."""
    assert card_json[:1] == b"{" and card_json[-1:] == b"}"
    return card_json[1:]


def item(card_rest: bytes, counts: Sequence[int], viewer: tuple[bool, bool] | None) -> bytes:
    """One feed item: the live parts (``counts``, ``viewer``) then the rest of the card."""
    likes, comments, saves, shares, views = counts
    live = b'{"counts":{"likes":%d,"comments":%d,"saves":%d,"shares":%d,"views":%d},"viewer":' % (
        likes,
        comments,
        saves,
        shares,
        views,
    )
    if viewer is None:
        live += b"null,"
    else:
        live += b'{"liked":%s,"saved":%s},' % (
            b"true" if viewer[0] else b"false",
            b"true" if viewer[1] else b"false",
        )
    return live + card_rest


def page(items: Sequence[bytes], next_cursor: str | None) -> bytes:
    """``{"items": [...], "next_cursor": ...}`` from rendered items."""
    return (
        b'{"items":['
        + b",".join(items)
        + b'],"next_cursor":'
        + json.dumps(next_cursor).encode()
        + b"}"
    )
