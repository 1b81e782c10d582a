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


async def test_two_app_processes_share_sign_in_limits_through_redis(
    settings: object, redis_url: str
) -> None:
    """Two app instances (as two processes would be) count against one Redis limit."""
    import httpx

    from craftreel.app import create_app
    from craftreel.config import Settings
    from craftreel.context import build_context

    assert isinstance(settings, Settings)
    shared = settings.model_copy(update={"redis_url": redis_url, "rate_limit_signin": "3/60"})
    email = f"shared-{uuid7().hex}@example.org"
    # A fresh client address per run, so earlier runs' counts in Redis do not matter.
    address = (f"client-{uuid7().hex}", 50000)
    codes: list[int] = []
    for _ in range(2):
        ctx = build_context(shared)
        app = create_app(shared, ctx)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app, client=address)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    ready = await c.get("/readyz")
                    assert ready.json()["checks"]["redis"] == "ok"
                    for _ in range(2):
                        r = await c.post(
                            "/api/v1/auth/signin",
                            json={"email": email, "password": "wrong password!"},
                        )
                        codes.append(r.status_code)
        finally:
            await ctx.close()
    assert codes == [401, 401, 401, 429]
