"""RedisBroker edge cases with a real redis-server: cancelled subscribes, a second event loop."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests._servers import RedisServer, eventually
from tornado_kit import LocalBroker, RedisBroker, RedisEventLog


async def test_cancelled_subscribe_leaves_no_subscription(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, timeout=2.0, reconnect_max_delay=0.2)
    assert redis_server.proc is not None
    try:
        warm = await broker.subscribe("warm")  # the pub/sub connection is up
        # Redis freezes: the next SUBSCRIBE waits for a confirmation that does not come.
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            pending = asyncio.ensure_future(broker.subscribe("t"))
            await eventually(lambda: broker.subscriber_count("t") == 1)
            pending.cancel()  # e.g. the client that asked for it went away
            with pytest.raises(asyncio.CancelledError):
                await pending
            assert broker.subscriber_count("t") == 0
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        sub = await asyncio.wait_for(broker.subscribe("t"), 15)  # a fresh one works
        await broker.publish("t", "hello")
        assert await asyncio.wait_for(sub.get(), 15) == "hello"
        assert broker.subscriber_count() == 2
        assert not warm.closed
    finally:
        await broker.close()


def test_a_broker_is_bound_to_the_loop_it_started_on(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        sub = first.run_until_complete(broker.subscribe("t"))
        with pytest.raises(RuntimeError, match="bound to the event loop"):
            second.run_until_complete(broker.subscribe("t"))
        assert broker.subscriber_count() == 1
        first.run_until_complete(broker.close())
        assert sub.closed
    finally:
        second.close()
        first.close()


async def test_event_log_describes_itself(redis_url: str) -> None:
    local = LocalBroker()
    log = RedisEventLog(redis_url, broker=local, maxlen=7, key_prefix="app:")
    assert repr(log) == "<RedisEventLog 'app:' maxlen=7>"
    await log.close()
    await local.close()
