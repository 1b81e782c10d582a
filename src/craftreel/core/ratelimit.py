"""Fixed-window rate limits: in-process by default, Redis when configured."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from craftreel.core.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    """At most ``count`` hits per ``seconds`` window."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        count, seconds = text.split("/")
        return cls(int(count), int(seconds))


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> int:
        """Count one hit; return seconds to wait (0 when allowed)."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the hits on ``key`` (e.g. after a successful sign-in)."""
        ...


class MemoryRateLimiter:
    """For a single process: counters in a dict, swept as windows end."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = asyncio.Lock()

    async def hit(self, key: str, limit: Limit) -> int:
        now = time.monotonic()
        async with self._lock:
            if len(self._windows) > 100_000:
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            ends, count = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + limit.seconds, 0
            count += 1
            self._windows[key] = (ends, count)
        return 0 if count <= limit.count else max(1, int(ends - now))

    async def reset(self, key: str) -> None:
        async with self._lock:
            self._windows.pop(key, None)


class RedisRateLimiter:
    """Shared by every process: INCR with an expiry, one round trip."""

    def __init__(self, redis: Redis, prefix: str = "craftreel:rl:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, limit: Limit) -> int:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, limit.seconds, nx=True)
            pipe.ttl(name)
            count, _, ttl = await pipe.execute()
        return 0 if int(count) <= limit.count else max(1, int(ttl))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


async def enforce(limiter: RateLimiter, limit: Limit, *keys: str) -> None:
    """Count a hit on every key; refuse with 429 if any is over its limit."""
    waits = [await limiter.hit(key, limit) for key in keys]
    if any(waits):
        raise RateLimited(retry_after=max(waits))
