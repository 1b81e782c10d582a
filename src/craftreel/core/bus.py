"""The event bus: JSON messages on named channels, fanned out to whoever listens.

Two backends, chosen by ``CRAFTREEL_BUS_BACKEND`` the way the job queue is: in-process (an
asyncio fan-out, for one ``serve`` process) and Redis pub/sub (for several). The bus only
carries news; the database holds what happened (``craftreel.realtime``), so a listener that
may have missed something is told so (``Gap``) and reads the table again rather than trusting
the bus to be lossless: a slow listener whose queue fills, or a Redis connection that broke.

Publishing happens after commit and never raises: a failed publish is logged, and listeners
catch up from the table when they next resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: How many messages a listener may leave unread before it is told it missed some.
QUEUE_LIMIT = 500
#: How long a subscriber waits for Redis to confirm a subscription.
SUBSCRIBE_TIMEOUT_SECONDS = 10.0


def user_channel(user_id: UUID) -> str:
    """Everything addressed to one person (every device they are connected from)."""
    return f"user:{user_id}"


def conversation_channel(conversation_id: UUID) -> str:
    """Everyone in one conversation (typing, presence)."""
    return f"conversation:{conversation_id}"


@dataclass(frozen=True)
class BusMessage:
    channel: str
    data: dict[str, Any]


class Gap:
    """Messages may have been lost since the last one: read the source of truth again."""


class Ended:
    """The bus is closing (the process is shutting down)."""


GAP = Gap()
ENDED = Ended()


class Subscription:
    """What one listener hears on its channels, in publish order."""

    def __init__(self, channels: frozenset[str], limit: int = QUEUE_LIMIT) -> None:
        self.channels = channels
        self._limit = limit
        self._queue: asyncio.Queue[BusMessage | Gap | Ended] = asyncio.Queue()

    def deliver(self, message: BusMessage) -> None:
        if self._queue.qsize() >= self._limit:
            self.lost()
            return
        self._queue.put_nowait(message)

    def lost(self) -> None:
        """Drop what is queued and say so: the listener rereads the table instead."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(GAP)

    def end(self) -> None:
        self._queue.put_nowait(ENDED)

    async def next(self) -> BusMessage | Gap | Ended:
        return await self._queue.get()


class EventBus(Protocol):
    async def start(self) -> None:
        """Connect (Redis); raise if the bus cannot work."""
        ...

    async def publish(self, channel: str, data: dict[str, Any]) -> None:
        """Send ``data`` (JSON-safe) to every listener on ``channel``; logs, never raises."""
        ...

    def subscribe(self, *channels: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Listen on ``channels`` until the block ends; nothing published after entering the
        block (once the backend confirmed the subscription) is missed."""
        ...

    async def close(self) -> None: ...


class _Fanout:
    """The listeners of this process, by channel."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[Subscription]] = defaultdict(set)

    def _dispatch(self, channel: str, data: dict[str, Any]) -> None:
        message = BusMessage(channel, data)
        for subscription in tuple(self._listeners.get(channel, ())):
            subscription.deliver(message)

    def _add(self, subscription: Subscription) -> list[str]:
        """Register; the channels nobody here listened to before."""
        new = [c for c in subscription.channels if not self._listeners.get(c)]
        for channel in subscription.channels:
            self._listeners[channel].add(subscription)
        return new

    def _remove(self, subscription: Subscription) -> list[str]:
        """Unregister; the channels nobody here listens to any more."""
        gone = []
        for channel in subscription.channels:
            listeners = self._listeners.get(channel)
            if listeners is None:
                continue
            listeners.discard(subscription)
            if not listeners:
                del self._listeners[channel]
                gone.append(channel)
        return gone

    def _end_all(self) -> None:
        for subscription in {s for group in self._listeners.values() for s in group}:
            subscription.end()


class InProcessBus(_Fanout):
    """One process: a publish reaches this process's listeners directly."""

    async def start(self) -> None:
        return None

    async def publish(self, channel: str, data: dict[str, Any]) -> None:
        # The same JSON round trip Redis makes, so both backends hand listeners equal data.
        self._dispatch(channel, json.loads(json.dumps(data)))

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(frozenset(channels))
        self._add(subscription)
        try:
            yield subscription
        finally:
            self._remove(subscription)

    async def close(self) -> None:
        self._end_all()


class RedisBus(_Fanout):
    """Many processes: publishes go through Redis; each process holds one pub/sub connection
    for all its listeners and fans messages out locally."""

    def __init__(self, redis: Redis, prefix: str = "craftreel:bus:") -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        # Futures waiting for Redis to confirm each SUBSCRIBE we sent, per channel, in order
        # (Redis answers one connection's commands in the order they were sent).
        self._confirming: dict[str, deque[asyncio.Future[None]]] = defaultdict(deque)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._redis.ping()

    async def publish(self, channel: str, data: dict[str, Any]) -> None:
        try:
            await self._redis.publish(self._prefix + channel, json.dumps(data))
        except RedisError:
            log.exception("bus publish failed", extra={"channel": channel})

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(frozenset(channels))
        try:
            async with self._lock:
                new = self._add(subscription)
                pending = [w for c in channels for w in self._confirming.get(c, ())]
                if new:
                    pending += await self._send_subscribe(new)
            if pending:
                await asyncio.wait_for(
                    asyncio.gather(*(asyncio.shield(w) for w in pending)),
                    SUBSCRIBE_TIMEOUT_SECONDS,
                )
            yield subscription
        finally:
            async with self._lock:
                gone = self._remove(subscription)
                if gone and self._pubsub is not None:
                    with contextlib.suppress(RedisError):
                        await self._pubsub.unsubscribe(*(self._prefix + c for c in gone))

    async def _send_subscribe(self, channels: list[str]) -> list[asyncio.Future[None]]:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        loop = asyncio.get_running_loop()
        waiting = []
        for channel in channels:
            future: asyncio.Future[None] = loop.create_future()
            self._confirming[channel].append(future)
            waiting.append(future)
        await self._pubsub.subscribe(*(self._prefix + c for c in channels))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(self._pubsub), name="bus-reader")
        return waiting

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                # The connection broke; redis-py reconnects on the next read and subscribes
                # again, and that confirmation tells listeners to reread what they missed.
                log.warning("bus connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        raw = message["channel"]
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not name.startswith(self._prefix):
            return
        channel = name[len(self._prefix) :]
        if kind == "message":
            try:
                data = json.loads(message["data"])
            except ValueError:
                log.warning("bus message is not JSON", extra={"channel": channel})
                return
            self._dispatch(channel, data)
        elif kind == "subscribe":
            waiting = self._confirming.get(channel)
            if waiting:
                future = waiting.popleft()
                if not waiting:
                    del self._confirming[channel]
                if not future.done():
                    future.set_result(None)
            else:
                # A subscription made again after a reconnect: whatever was published while
                # the connection was down never reached us.
                for subscription in tuple(self._listeners.get(channel, ())):
                    subscription.lost()

    async def close(self) -> None:
        self._end_all()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
