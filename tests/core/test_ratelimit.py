"""Rate limits, in-process and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from craftreel.core.errors import RateLimited
from craftreel.core.ids import uuid7
from craftreel.core.ratelimit import (
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    enforce,
)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    url = request.getfixturevalue("redis_url")
    redis = Redis.from_url(url)
    try:
        yield RedisRateLimiter(redis, prefix=f"test:{uuid7()}:")
    finally:
        await redis.aclose()


async def test_limit_allows_count_then_refuses(limiter: RateLimiter) -> None:
    limit = Limit(3, 60)
    waits = [await limiter.hit("k", limit) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 0 < waits[3] <= 60
    with pytest.raises(RateLimited) as caught:
        await enforce(limiter, limit, "k")
    assert caught.value.status_code == 429
    await limiter.reset("k")
    assert await limiter.hit("k", limit) == 0


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    limit = Limit(1, 60)
    assert await limiter.hit("a", limit) == 0
    assert await limiter.hit("b", limit) == 0
    assert await limiter.hit("a", limit) > 0
