"""RedisBroker and RedisEventLog against a real redis-server.

Two broker instances stand for two server processes: each has its own pub/sub
connection and its own command connection, exactly as after a fork.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._servers import RedisServer, free_port
from tornado_kit import RedisBroker, RedisEventLog
from tornado_kit._broker import Broker, LocalBroker, Subscription
from tornado_kit._sse import EventLog, EventLogGap, decode_broker_message, encode_broker_message

pytestmark = pytest.mark.redis

WAIT = 15.0  # generous upper bound for anything that should happen "soon"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll *check* until it is true; fail after *timeout* seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(0.02)


async def next_message(sub: Subscription, timeout: float = WAIT) -> str:
    return await asyncio.wait_for(sub.get(), timeout)


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at the server (PUBSUB NUMSUB, CLIENT LIST, keys)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def brokers(redis_url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    """Two brokers on one Redis: "process A" and "process B"."""
    a, b = RedisBroker(redis_url), RedisBroker(redis_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def numsub(client: aioredis.Redis, channel: str) -> int:
    counts = await client.pubsub_numsub(channel)
    return int(counts[0][1])


async def pubsub_clients(client: aioredis.Redis) -> int:
    """Number of connections subscribed to at least one channel."""
    return sum(1 for c in await client.client_list() if int(c["sub"]) > 0)


# -- construction, laziness, optional dependency --------------------------------


async def test_construction_connects_nothing_and_starts_no_task(
    redis_url: str, inspector: aioredis.Redis
) -> None:
    before = len(await inspector.client_list())
    tasks_before = asyncio.all_tasks()
    broker = RedisBroker(redis_url)
    log = RedisEventLog(broker=broker)
    assert asyncio.all_tasks() == tasks_before
    assert len(await inspector.client_list()) == before
    assert not broker.connected
    await log.close()
    await broker.close()  # closing a never-used broker is fine


def test_importing_tornado_kit_does_not_import_redis() -> None:
    code = (
        "import sys, tornado_kit; from tornado_kit import RedisBroker, RedisEventLog; "
        "assert 'redis' not in sys.modules, 'redis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'tornado-kit\[redis\]'"):
        RedisBroker("redis://127.0.0.1:1/0")
    with pytest.raises(ImportError, match=r"pip install 'tornado-kit\[redis\]'"):
        RedisEventLog("redis://127.0.0.1:1/0", broker=LocalBroker())


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisBroker(timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        RedisBroker(max_connections=0)
    with pytest.raises(ValueError, match="maxlen"):
        RedisEventLog("redis://127.0.0.1:1/0", broker=LocalBroker(), maxlen=0)
    with pytest.raises(ValueError, match="URL or client"):
        RedisEventLog(broker=LocalBroker())


async def test_implements_the_protocols(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    assert isinstance(broker, Broker)
    assert isinstance(RedisEventLog(broker=broker), EventLog)
    await broker.close()


# -- pub/sub across "processes" --------------------------------------------------


async def test_publish_reaches_subscribers_of_both_processes(
    brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    a, b = brokers
    sub_a = await a.subscribe("room")
    sub_b = await b.subscribe("room")
    await a.publish("room", "hello from A")
    assert await next_message(sub_b) == "hello from A"
    assert await next_message(sub_a) == "hello from A"
    await b.publish("room", "héllo ✓ from B")
    assert await next_message(sub_a) == "héllo ✓ from B"
    assert await next_message(sub_b) == "héllo ✓ from B"


async def test_order_is_preserved(brokers: tuple[RedisBroker, RedisBroker]) -> None:
    a, b = brokers
    sub = await b.subscribe("ordered")
    for i in range(300):
        await a.publish("ordered", str(i))
    received = [await next_message(sub) for _ in range(300)]
    assert received == [str(i) for i in range(300)]


async def test_many_topics_share_one_pubsub_connection(
    brokers: tuple[RedisBroker, RedisBroker], inspector: aioredis.Redis
) -> None:
    a, b = brokers
    topics = [f"topic-{i}" for i in range(60)]
    subs = {topic: await b.subscribe(topic) for topic in topics}
    # Two subscribers on one topic still use the same connection.
    extra = await b.subscribe("topic-0")
    assert await pubsub_clients(inspector) == 1
    for topic in reversed(topics):
        await a.publish(topic, f"for {topic}")
    for topic, sub in subs.items():
        assert await next_message(sub) == f"for {topic}"
        assert sub.qsize() == 0  # nothing from other topics
    assert await next_message(extra) == "for topic-0"
    assert b.subscriber_count() == 61
    assert b.subscriber_count("topic-0") == 2


async def test_channel_prefix_namespaces_topics(redis_url: str, inspector: aioredis.Redis) -> None:
    one = RedisBroker(redis_url, channel_prefix="app1:")
    two = RedisBroker(redis_url, channel_prefix="app2:")
    try:
        sub_one = await one.subscribe("news")
        sub_two = await two.subscribe("news")
        assert await numsub(inspector, "app1:news") == 1
        await one.publish("news", "one")
        assert await next_message(sub_one) == "one"
        await asyncio.sleep(0.1)
        assert sub_two.qsize() == 0
    finally:
        await one.close()
        await two.close()


async def test_unsubscribe_when_the_last_local_subscriber_leaves(
    brokers: tuple[RedisBroker, RedisBroker], inspector: aioredis.Redis
) -> None:
    a, _ = brokers
    first = await a.subscribe("leaving")
    second = await a.subscribe("leaving")
    assert await numsub(inspector, "tk:leaving") == 1  # one connection, one channel
    first.close()
    await asyncio.sleep(0.1)
    assert await numsub(inspector, "tk:leaving") == 1

    async def dropped() -> bool:
        return await numsub(inspector, "tk:leaving") == 0

    second.close()
    await eventually(dropped)
    assert a.subscriber_count() == 0


async def test_resubscribe_right_after_unsubscribe_receives(
    brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    """SUBSCRIBE/UNSUBSCRIBE/SUBSCRIBE in flight: the last subscribe() waits for its own reply."""
    a, b = brokers
    for i in range(20):
        sub = await a.subscribe("flap")
        sub.close()
        sub = await a.subscribe("flap")
        await b.publish("flap", f"m{i}")
        assert await next_message(sub) == f"m{i}"
        sub.close()


async def test_subscribe_while_the_subscribe_command_is_in_flight(
    brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    """A second subscriber that arrives after SUBSCRIBE was sent waits for that reply."""
    a, b = brokers
    first = asyncio.ensure_future(a.subscribe("inflight"))
    while b"tk:inflight" not in a._pubsub._sent:  # the writer has sent SUBSCRIBE
        await asyncio.sleep(0)
    second = await a.subscribe("inflight")
    await b.publish("inflight", "to both")
    assert await next_message(second) == "to both"
    assert await next_message(await first) == "to both"


async def test_concurrent_subscribers_are_all_active(
    brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    a, b = brokers
    subs = await asyncio.gather(*(a.subscribe(f"t{i % 5}") for i in range(50)))
    for i in range(5):
        await b.publish(f"t{i}", f"to t{i}")
    for i, sub in enumerate(subs):
        assert await next_message(sub) == f"to t{i % 5}"


async def test_publish_burst_queues_on_a_bounded_pool(
    redis_url: str, inspector: aioredis.Redis
) -> None:
    """Thousands of concurrent publishes wait for a pooled connection, none fails."""
    # The pool wait is bounded by `timeout`: generous here, so that a loaded
    # machine (3000 publishes through 4 connections) tests the queueing, not the clock.
    a = RedisBroker(redis_url, max_connections=4, timeout=60)
    b = RedisBroker(redis_url)
    try:
        sub = await b.subscribe("burst", maxsize=5000)
        await asyncio.gather(*(a.publish("burst", str(i)) for i in range(3000)))
        received = {await next_message(sub) for _ in range(3000)}
        assert received == {str(i) for i in range(3000)}
        # a: at most 4 command connections; b: its pub/sub connection; the inspector.
        assert len(await inspector.client_list()) <= 4 + 1 + 1
    finally:
        await a.close()
        await b.close()


async def test_slow_subscriber_overflows_without_hurting_others(
    brokers: tuple[RedisBroker, RedisBroker], inspector: aioredis.Redis
) -> None:
    a, b = brokers
    slow = await a.subscribe("burst", maxsize=3)
    fast = await a.subscribe("burst")
    for i in range(10):
        await b.publish("burst", str(i))
    got = [await next_message(fast) for _ in range(10)]
    assert got == [str(i) for i in range(10)]
    assert slow.overflowed
    assert slow.closed
    assert [m async for m in slow] == []
    assert a.subscriber_count("burst") == 1
    fast.close()

    async def dropped() -> bool:
        return await numsub(inspector, "tk:burst") == 0

    await eventually(dropped)


async def test_foreign_non_utf8_message_is_delivered_replaced(
    brokers: tuple[RedisBroker, RedisBroker], inspector: aioredis.Redis
) -> None:
    a, _ = brokers
    sub = await a.subscribe("bin")
    await inspector.publish("tk:bin", b"\xff\xfeok")
    assert await next_message(sub) == "\ufffd\ufffdok"
    await inspector.publish("tk:bin", b"after")
    assert await next_message(sub) == "after"


async def test_publish_rejects_non_text(brokers: tuple[RedisBroker, RedisBroker]) -> None:
    a, _ = brokers
    with pytest.raises(TypeError, match="str"):
        await a.publish("t", b"bytes")  # type: ignore[arg-type]


async def test_close_is_idempotent_and_ends_subscriptions(
    redis_url: str, inspector: aioredis.Redis
) -> None:
    broker = RedisBroker(redis_url)
    sub = await broker.subscribe("closing")
    waiting = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0.01)
    await broker.close()
    await broker.close()
    assert broker.closed
    assert sub.closed
    with pytest.raises(Exception, match="closing"):
        await waiting
    assert [m async for m in sub] == []
    with pytest.raises(RuntimeError, match="closed"):
        await broker.publish("closing", "x")
    with pytest.raises(RuntimeError, match="closed"):
        await broker.subscribe("closing")

    async def gone() -> bool:
        return await pubsub_clients(inspector) == 0

    await eventually(gone)


async def test_close_fails_a_pending_subscribe(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    pending = asyncio.ensure_future(broker.subscribe("never"))
    await asyncio.sleep(0)  # subscribe() is waiting for its confirmation
    await broker.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pending
    assert broker.subscriber_count() == 0


async def test_given_client_is_shared_and_left_open(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    broker = RedisBroker(client=client)
    other = RedisBroker(redis_url)
    try:
        sub = await other.subscribe("shared")
        await broker.publish("shared", "via the given client")
        assert await next_message(sub) == "via the given client"
        await broker.close()
        assert await client.ping()  # still usable: the broker did not close it
    finally:
        await other.close()
        await client.aclose()


async def test_unreachable_redis_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    try:
        with pytest.raises(ConnectionError, match=r"unavailable"):
            await asyncio.wait_for(broker.subscribe("t"), WAIT)
        with pytest.raises(ConnectionError, match=r"cannot publish on 't'"):
            await asyncio.wait_for(broker.publish("t", "x"), WAIT)
        assert broker.subscriber_count() == 0
    finally:
        await broker.close()


@pytest.mark.slow
async def test_redis_restart_subscribers_recover_publishers_fail_fast(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_kit.redis")
    a = RedisBroker(redis_server.url, timeout=2.0, reconnect_max_delay=0.3)
    b = RedisBroker(redis_server.url, timeout=2.0, reconnect_max_delay=0.3)
    try:
        sub = await a.subscribe("live")
        other = await a.subscribe("other")
        await b.publish("live", "before")
        assert await next_message(sub) == "before"

        redis_server.stop()

        async def down() -> bool:
            return not a.connected

        await eventually(down)
        # Publishers get a clear error, not a hang (the wait_for is only a guard).
        with pytest.raises(ConnectionError, match="unavailable"):
            await asyncio.wait_for(b.publish("live", "lost"), WAIT)
        with pytest.raises(ConnectionError, match="unavailable"):
            await asyncio.wait_for(a.subscribe("new"), WAIT)
        assert a.subscriber_count() == 2
        assert not sub.closed  # subscriptions survive the outage

        redis_server.start()
        client = aioredis.Redis.from_url(redis_server.url)
        try:

            async def resubscribed() -> bool:
                return (
                    a.connected
                    and await numsub(client, "tk:live") == 1
                    and await numsub(client, "tk:other") == 1
                )

            await eventually(resubscribed)
        finally:
            await client.aclose()
        await b.publish("live", "after")
        await b.publish("other", "after too")
        assert await next_message(sub) == "after"
        assert await next_message(other) == "after too"
        assert sub.qsize() == 0  # "lost" was never delivered

        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        infos = [r for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert len(infos) == 1
        assert "re-subscribing 2 channel(s)" in infos[0].getMessage()
    finally:
        await a.close()
        await b.close()


@pytest.mark.slow
async def test_unresponsive_redis_is_detected_and_publishers_time_out(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen Redis (half-open connection: no FIN, no replies) is caught by the PING check."""
    caplog.set_level(logging.INFO, logger="tornado_kit.redis")
    assert redis_server.proc is not None
    a = RedisBroker(
        redis_server.url, timeout=0.5, reconnect_max_delay=0.3, health_check_interval=0.3
    )
    b = RedisBroker(redis_server.url, timeout=0.5)
    try:
        sub = await a.subscribe("frozen")
        await asyncio.sleep(1.0)  # idle for several intervals: PINGs answered
        assert a.connected
        await b.publish("frozen", "before")
        assert await next_message(sub) == "before"

        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(ConnectionError, match="unavailable"):
                await asyncio.wait_for(b.publish("frozen", "lost"), WAIT)

            async def down() -> bool:
                return not a.connected

            await eventually(down)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)

        async def recovered() -> bool:
            return a.connected and a.subscriber_count("frozen") == 1

        await eventually(recovered)
        # A publish queued in the frozen server's socket may still arrive: read
        # until the message sent after the recovery.
        for _ in range(20):
            await b.publish("frozen", "after")
            try:
                message = await next_message(sub, timeout=0.5)
            except asyncio.TimeoutError:
                continue  # re-subscription not processed yet
            while message == "lost":
                message = await next_message(sub)
            assert message == "after"
            break
        else:
            raise AssertionError("no message after the recovery")
        messages = [r.getMessage() for r in caplog.records]
        assert any("no reply to PING" in m for m in messages), messages
        assert any("reachable again" in m for m in messages), messages
    finally:
        await a.close()
        await b.close()


# -- property: any topic and message text round-trips ---------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(topic=text, messages=st.lists(text, min_size=1, max_size=5))
def test_any_topic_and_text_round_trip(redis_url: str, topic: str, messages: list[str]) -> None:
    async def run() -> list[str]:
        a, b = RedisBroker(redis_url), RedisBroker(redis_url)
        try:
            sub = await b.subscribe(topic)
            for message in messages:
                await a.publish(topic, message)
            return [await next_message(sub) for _ in messages]
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(run()) == messages


# -- RedisEventLog ------------------------------------------------------------------


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_url)
    try:
        yield broker
    finally:
        await broker.close()


def stream_key(id_: str) -> tuple[int, int]:
    ms, seq = id_.split("-")
    return int(ms), int(seq)


async def test_append_stores_publishes_and_returns_increasing_ids(broker: RedisBroker) -> None:
    log = RedisEventLog(broker=broker)
    live = await broker.subscribe("feed")
    first = await log.append("feed", "plain text")
    second = await log.append("feed", {"n": 2, "ok": True}, event="update")
    assert (first.data, first.event) == ("plain text", None)
    assert (second.data, second.event) == ('{"n":2,"ok":true}', "update")
    assert first.id is not None
    assert second.id is not None
    assert stream_key(second.id) > stream_key(first.id)
    assert decode_broker_message(await next_message(live)) == first
    assert decode_broker_message(await next_message(live)) == second
    assert await log.since("feed", first.id) == [second]
    assert await log.since("feed", second.id) == []


async def test_ids_increase_across_many_appends_and_instances(
    broker: RedisBroker, redis_url: str
) -> None:
    one = RedisEventLog(redis_url, broker=broker)
    two = RedisEventLog(redis_url, broker=broker)
    try:
        events = [await (one if i % 2 else two).append("t", str(i)) for i in range(200)]
        keys = [stream_key(e.id or "") for e in events]
        assert keys == sorted(keys)
        assert len(set(keys)) == 200
        assert await one.since("t", events[99].id or "") == events[100:]
    finally:
        await one.close()
        await two.close()


async def test_invalid_event_name_stores_nothing(
    broker: RedisBroker, inspector: aioredis.Redis
) -> None:
    log = RedisEventLog(broker=broker)
    with pytest.raises(ValueError, match="CR or LF"):
        await log.append("t", "x", event="bad\nname")
    assert await inspector.exists("tk:log:t") == 0


@pytest.fixture(params=["shared-client", "own-client"])
async def make_log(
    request: pytest.FixtureRequest, broker: RedisBroker, redis_url: str
) -> AsyncIterator[Callable[..., RedisEventLog]]:
    """Build logs that share the broker's client (atomic Lua append) or have their own."""
    logs: list[RedisEventLog] = []

    def make(**kwargs: Any) -> RedisEventLog:
        url = redis_url if request.param == "own-client" else None
        log = RedisEventLog(url, broker=broker, **kwargs)
        logs.append(log)
        return log

    try:
        yield make
    finally:
        for log in logs:
            await log.close()


async def test_published_message_is_the_sse_broker_format(
    make_log: Callable[..., RedisEventLog], broker: RedisBroker
) -> None:
    log = make_log()
    live = await broker.subscribe("fmt")
    for data, event in [("x", None), ('quote " "id":"0-0" \\', "ev"), ("line\nbreak", "")]:
        stored = await log.append("fmt", data, event=event)
        assert (stored.data, stored.event) == (data, event)
        assert await next_message(live) == encode_broker_message(stored)


async def test_concurrent_appenders_publish_in_id_order(
    broker: RedisBroker, redis_url: str
) -> None:
    """Two processes append to one topic at once; live subscribers see ids in order."""
    other = RedisBroker(redis_url)
    try:
        log_a, log_b = RedisEventLog(broker=broker), RedisEventLog(broker=other)
        live = await broker.subscribe("race")
        stored = await asyncio.gather(
            *(log_a.append("race", f"a{i}") for i in range(100)),
            *(log_b.append("race", f"b{i}") for i in range(100)),
        )
        received = [decode_broker_message(await next_message(live)) for _ in range(200)]
        ids = [stream_key(e.id or "") for e in received]
        assert ids == sorted(ids)
        assert sorted(received, key=lambda e: stream_key(e.id or "")) == sorted(
            stored, key=lambda e: stream_key(e.id or "")
        )
    finally:
        await other.close()


async def test_append_on_a_closed_broker_raises(broker: RedisBroker) -> None:
    log = RedisEventLog(broker=broker)
    await broker.close()
    with pytest.raises(RuntimeError, match="closed"):
        await log.append("t", "x")


async def test_exact_maxlen_retention_and_expired_ids(
    make_log: Callable[..., RedisEventLog],
) -> None:
    log = make_log(maxlen=5, approximate=False)
    events = [await log.append("r", f"e{i}") for i in range(12)]
    # The oldest retained id resumes exactly.
    assert await log.since("r", events[7].id or "") == events[8:]
    # Older ids: events after them were trimmed; everything retained is offered.
    with pytest.raises(EventLogGap) as info:
        await log.since("r", events[2].id or "")
    assert info.value.reason == "expired"
    assert info.value.events == events[7:]
    assert info.value.last_id == events[2].id


async def test_approximate_maxlen_keeps_at_least_maxlen(
    make_log: Callable[..., RedisEventLog], inspector: aioredis.Redis
) -> None:
    log = make_log(maxlen=50)
    events = [await log.append("a", str(i)) for i in range(400)]
    length = await inspector.xlen("tk:log:a")
    assert 50 <= length < 400
    assert await log.since("a", events[-50].id or "") == events[-49:]


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "12",
        "1-2-3",
        "-1-0",
        "1-",
        " 1-0",
        "1-0\n",
        "99999999999999999999-0",
        "\u0661-\u0662",
    ],
)
async def test_malformed_ids_get_everything_retained(broker: RedisBroker, garbage: str) -> None:
    log = RedisEventLog(broker=broker)
    events = [await log.append("g", str(i)) for i in range(3)]
    with pytest.raises(EventLogGap) as info:
        await log.since("g", garbage)
    assert info.value.reason == "malformed"
    assert info.value.events == events


async def test_unknown_ids(broker: RedisBroker) -> None:
    log = RedisEventLog(broker=broker)
    # Nothing stored at all (new or wiped stream).
    with pytest.raises(EventLogGap) as info:
        await log.since("u", "1-0")
    assert (info.value.reason, info.value.events) == ("unknown", [])
    events = [await log.append("u", str(i)) for i in range(3)]
    for newer in (
        "18446744073709551615-18446744073709551615",
        f"{stream_key(events[-1].id or '')[0] + 1}-0",
    ):
        with pytest.raises(EventLogGap) as info:
            await log.since("u", newer)
        assert (info.value.reason, info.value.events) == ("unknown", events)
    # "0-0" predates every entry: the log cannot tell what came before its first.
    with pytest.raises(EventLogGap) as info:
        await log.since("u", "0-0")
    assert (info.value.reason, info.value.events) == ("expired", events)


async def test_id_between_retained_entries_resumes_after_it(broker: RedisBroker) -> None:
    log = RedisEventLog(broker=broker)
    events = [await log.append("b", str(i)) for i in range(4)]
    ms, seq = stream_key(events[1].id or "")
    between = f"{ms}-{seq + 1}" if (ms, seq + 1) < stream_key(events[2].id or "") else events[1].id
    assert await log.since("b", between or "") == events[2:]


async def test_resume_across_two_log_instances(redis_url: str) -> None:
    """Process A appends, process B (its own broker, log and client) resumes."""
    broker_a, broker_b = RedisBroker(redis_url), RedisBroker(redis_url)
    log_a = RedisEventLog(redis_url, broker=broker_a)
    log_b = RedisEventLog(broker=broker_b)
    try:
        live_b = await broker_b.subscribe("chat")
        seen = [await log_a.append("chat", f"m{i}") for i in range(5)]
        missed = [await log_a.append("chat", f"m{i}") for i in range(5, 9)]
        assert await log_b.since("chat", seen[-1].id or "") == missed
        # B's live subscribers got every event, in the same format.
        live = [decode_broker_message(await next_message(live_b)) for _ in range(9)]
        assert live == seen + missed
    finally:
        await log_a.close()
        await log_b.close()
        await broker_a.close()
        await broker_b.close()


async def test_topics_are_separate_streams(broker: RedisBroker) -> None:
    log = RedisEventLog(broker=broker)
    x = await log.append("x", "for x")
    await log.append("y", "for y")
    with pytest.raises(EventLogGap) as info:
        await log.since("y", "garbage")
    assert [e.data for e in info.value.events] == ["for y"]
    assert await log.since("x", x.id or "") == []


async def test_log_with_local_broker_and_decoding_client(redis_url: str) -> None:
    """Any broker works; a client with decode_responses=True works too."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    local = LocalBroker()
    log = RedisEventLog(client, broker=local)
    try:
        sub = await local.subscribe("t")
        event = await log.append("t", "hi", event="greet")
        assert decode_broker_message(await next_message(sub)) == event
        await log.append("t", "again")
        assert [e.data for e in await log.since("t", event.id or "")] == ["again"]
    finally:
        await log.close()  # not ours: stays open
        assert await client.ping()
        await client.aclose()
        await local.close()


@pytest.mark.slow
async def test_log_during_outage_raises_connection_error(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, timeout=2.0, reconnect_max_delay=0.3)
    log = RedisEventLog(broker=broker)
    try:
        first = await log.append("o", "before")
        redis_server.stop()
        with pytest.raises(ConnectionError, match="unavailable"):
            await asyncio.wait_for(log.append("o", "lost"), WAIT)
        with pytest.raises(ConnectionError, match="unavailable"):
            await asyncio.wait_for(log.since("o", first.id or ""), WAIT)
        redis_server.start()  # no persistence: the stream is gone
        with pytest.raises(EventLogGap) as info:
            await log.since("o", first.id or "")
        assert info.value.reason == "unknown"
        second = await log.append("o", "after")
        assert await log.since("o", second.id or "") == []
    finally:
        await broker.close()


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(last_id=st.text(max_size=40))
def test_any_last_id_never_crashes(redis_url: str, last_id: str) -> None:
    topic = uuid.uuid4().hex

    async def run() -> None:
        broker = RedisBroker(redis_url)
        log = RedisEventLog(broker=broker)
        try:
            events = [await log.append(topic, "a"), await log.append(topic, "b")]
            gap: EventLogGap | None = None
            try:
                replay = await log.since(topic, last_id)
            except EventLogGap as exc:
                gap = exc
            if gap is not None:
                assert gap.reason in {"malformed", "unknown", "expired"}
                assert set(gap.events) <= set(events)
            else:
                assert replay in (events, events[1:], [])
        finally:
            await broker.close()

    asyncio.run(run())


# -- the docs page ------------------------------------------------------------------


def test_docs_redis_snippet_prints_what_the_page_says(redis_url: str) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "brokers.md").read_text()
    blocks = re.findall(r"```(python|text)\n(.*?)```", page, re.S)
    at = next(i for i, (kind, code) in enumerate(blocks) if "RedisBroker(REDIS_URL)" in code)
    snippet, (kind, expected) = blocks[at][1], blocks[at + 1]
    assert kind == "text"
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        env=dict(os.environ, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
