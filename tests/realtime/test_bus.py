"""The event bus, in-process and over Redis: fan-out by channel, order, and gaps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from craftreel.core.bus import (
    GAP,
    BusMessage,
    EventBus,
    InProcessBus,
    RedisBus,
    Subscription,
)
from craftreel.core.ids import uuid7
from tests.conftest import REDIS_URL
from tests.realtime.server import PATIENCE_SECONDS


@pytest.fixture(params=["inprocess", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "inprocess":
        bus: EventBus = InProcessBus()
        yield bus
        await bus.close()
        return
    if not REDIS_URL:
        pytest.skip("CRAFTREEL_TEST_REDIS_URL is not set")
    redis = Redis.from_url(REDIS_URL)
    bus = RedisBus(redis, prefix=f"test:{uuid7()}:")
    await bus.start()
    yield bus
    await bus.close()
    await redis.aclose()


async def heard(subscription: Subscription) -> BusMessage:
    message = await asyncio.wait_for(subscription.next(), PATIENCE_SECONDS)
    assert isinstance(message, BusMessage), message
    return message


async def test_a_message_reaches_every_listener_on_its_channel_in_order_and_no_one_else(
    bus: EventBus,
) -> None:
    async with (
        bus.subscribe("user:ada") as phone,
        bus.subscribe("user:ada") as laptop,
        bus.subscribe("user:bo") as other,
    ):
        for n in range(3):
            await bus.publish("user:ada", {"n": n})
        await bus.publish("user:bo", {"marker": True})

        for device in (phone, laptop):
            assert [(await heard(device)).data for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        # The first thing the other person hears is their own marker, not ada's messages.
        assert (await heard(other)) == BusMessage("user:bo", {"marker": True})


async def test_a_listener_that_left_hears_nothing_more(bus: EventBus) -> None:
    async with bus.subscribe("user:cy") as staying:
        async with bus.subscribe("user:cy") as leaving:
            await bus.publish("user:cy", {"n": 1})
            assert (await heard(leaving)).data == {"n": 1}
        await bus.publish("user:cy", {"n": 2})
        assert [(await heard(staying)).data for _ in range(2)] == [{"n": 1}, {"n": 2}]
    # Nobody listens now; publishing is still fine.
    await bus.publish("user:cy", {"n": 3})


async def test_a_listener_that_falls_behind_is_told_to_reread() -> None:
    subscription = Subscription(frozenset({"user:dee"}), limit=3)
    for n in range(4):
        subscription.deliver(BusMessage("user:dee", {"n": n}))
    assert await subscription.next() is GAP  # the queued ones are dropped, not half-kept
    subscription.deliver(BusMessage("user:dee", {"n": 9}))
    assert (await heard(subscription)).data == {"n": 9}


async def test_with_redis_a_message_crosses_to_another_process(redis_url: str) -> None:
    prefix = f"test:{uuid7()}:"
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    here, there = RedisBus(first, prefix=prefix), RedisBus(second, prefix=prefix)
    try:
        async with there.subscribe("user:eve") as listener:
            await here.publish("user:eve", {"from": "the other process"})
            assert (await heard(listener)).data == {"from": "the other process"}
    finally:
        for bus in (here, there):
            await bus.close()
        for client in (first, second):
            await client.aclose()
