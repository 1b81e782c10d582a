"""Feed pages as sent, kept for a reader who asks for the same page again.

A Following or Discover page (its JSON, as :func:`craftreel.posts.cards.page` made it) is kept
per reader, feed, cursor and size, and sent again without reading the database while all of
these hold:

- none of the stamps it was read under has moved since (:mod:`craftreel.core.stamps`):
  everyone's, the reader's, and for Discover the rank scores' (``"ranks"``). The reader's
  moves when they like, unlike, save or unsave a post, follow or unfollow someone, are
  approved or removed as a follower, block or are blocked, and when someone they follow
  publishes a post; everyone's when a published post is edited or deleted, a person changes
  their profile, avatar or privacy or deletes their account; the ranks' when a refresh
  changed a score. So what a reader may see and their own likes and saves are never older
  than the page's stamps, whichever process sharing the var dir made the change;
- nothing a card shows (people, media, product tags, listings, shops) was written by this
  process since (the cards' own :data:`craftreel.posts.cards.shown` generation). A page read
  again is made of cards, which show what another process changed in people, media or the
  shop within their own time (``CRAFTREEL_FEED_CARD_SECONDS``), as they did before pages
  were kept;
- it is younger than ``CRAFTREEL_FEED_PAGE_SECONDS``. Within that time a kept page does not
  show other people's new likes, comments and saves in its counts, nor Discover's newest
  posts, nor a change made on another host.

The pages of one process are bounded by their total size, ``CRAFTREEL_FEED_PAGE_MIB``; the
least recently used go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from uuid import UUID

from craftreel.core.stamps import Stamp, Stamps
from craftreel.posts.cards import shown

#: A page's key: (feed, the reader's id (None for anyone signed out), cursor, size).
PageKey = tuple[str, UUID | None, str | None, int]

#: What a kept page was read under: the stamps' values and the cards' generation.
Seen = tuple[int, ...]


class PageCache:
    """Sent feed pages by reader, feed, cursor and size."""

    def __init__(self, stamps: Stamps, seconds: float, max_bytes: int) -> None:
        self.stamps = stamps
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._pages: OrderedDict[PageKey, tuple[bytes, Seen, float]] = OrderedDict()
        self._bytes = 0
        #: Seconds on a clock that only moves forward (a test may set its own).
        self.clock: Callable[[], float] = time.monotonic
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 and self.max_bytes > 0

    def seen(self, feed: str, reader: UUID | None) -> Seen:
        """The stamps ``feed``'s page for ``reader`` depends on, and the cards' generation,
        now: read before the page's data is."""
        stamps: list[Stamp] = ["everyone"]
        if reader is not None:
            stamps.append(reader)
        if feed == "discover":
            stamps.append("ranks")
        return (*self.stamps.read(stamps), shown.generation)

    def get(self, key: PageKey, seen: Seen) -> bytes | None:
        """The kept page for ``key``, if it was read under ``seen`` and is young enough."""
        page = self._pages.get(key) if self.enabled else None
        if page is None or page[1] != seen or page[2] <= self.clock():
            self.misses += 1
            return None
        self._pages.move_to_end(key)
        self.hits += 1
        return page[0]

    def put(self, key: PageKey, seen: Seen, body: bytes) -> None:
        """Keep a page read under ``seen`` (see :meth:`seen`)."""
        if not self.enabled or len(body) > self.max_bytes:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._pages[key] = (body, seen, self.clock() + self.seconds)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (dropped, _, _) = self._pages.popitem(last=False)
            self._bytes -= len(dropped)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._pages.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pages)
