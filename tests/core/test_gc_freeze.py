"""What a serving process keeps stays out of the garbage collector's walk: the warm-up freeze
(``FreezeWhenWarm``) and feed cards the collector does not track."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from craftreel.core.ids import uuid7
from craftreel.core.middleware import FreezeWhenWarm
from craftreel.posts.cards import CardCache


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give back to the collector whatever a test froze."""
    yield
    gc.unfreeze()


async def _call(app: Any, kind: str = "http") -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(_message: dict[str, Any]) -> None:
        return None

    await app({"type": kind}, receive, send)


async def test_the_freeze_happens_once_at_each_count_of_requests(unfrozen: None) -> None:
    served: list[str] = []

    async def inner(scope: dict[str, Any], _receive: Any, _send: Any) -> None:
        served.append(scope["type"])

    app = FreezeWhenWarm(inner, at=(3, 5))
    gc.unfreeze()
    for _ in range(2):
        await _call(app)
    await _call(app, "lifespan")  # not a request
    assert gc.get_freeze_count() == 0
    await _call(app)
    after_first = gc.get_freeze_count()
    assert after_first > 0
    # Made after the freeze: not frozen until the next one.
    kept = [[n] for n in range(100)]  # lists: always tracked
    await _call(app)
    assert gc.get_freeze_count() == after_first
    await _call(app)
    assert gc.get_freeze_count() >= after_first + len(kept)
    gc.unfreeze()
    for _ in range(10):
        await _call(app)
    assert gc.get_freeze_count() == 0, "no freeze after the last count"
    assert served.count("http") == 15 and served.count("lifespan") == 1


def test_kept_cards_are_not_tracked_by_the_collector() -> None:
    cache = CardCache(seconds=60, size=100)
    ids = [uuid7() for _ in range(50)]
    now = datetime.now(UTC)
    for post_id in ids:
        cache.put(post_id, now, b'"card"}', generation=1)
    gc.collect()
    kept = list(cache._cards.items())
    assert len(kept) == 50
    assert not any(gc.is_tracked(key) or gc.is_tracked(card) for key, card in kept)
