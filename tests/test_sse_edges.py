"""SSE edge cases: Redis outages at stream start and during the replay, field types, knobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

from tests._servers import RedisServer, eventually
from tests.test_sse import assert_registry_empty
from tornado_kit import (
    JSONErrorMixin,
    LocalBroker,
    MemoryEventLog,
    RedisBroker,
    RedisEventLog,
    ServerSentEvent,
    SSEMixin,
    TimingMixin,
)
from tornado_kit._broker import broker_for
from tornado_kit._channels._hub import RESOURCE_KEY
from tornado_kit._lifecycle import state_for
from tornado_kit._sse import EventLogGap, decode_broker_message
from tornado_kit.testing import read_sse


class Feed(TimingMixin, SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("news", log=self.settings.get("event_log"))


class ProblemFeed(JSONErrorMixin, SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("news")


class BadKeepalive(SSEMixin, RequestHandler):
    sse_keepalive_interval = 0.0

    async def get(self) -> None:
        await self.send_event("never")


def test_field_types_are_checked() -> None:
    with pytest.raises(TypeError, match="SSE data must be str"):
        ServerSentEvent(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SSE event must be str"):
        ServerSentEvent("x", event=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SSE id must be str"):
        ServerSentEvent("x", id=7)  # type: ignore[arg-type]


def test_broker_message_with_a_wrongly_typed_field_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid SSE broker message"):
        decode_broker_message('{"sse": 1, "data": "x", "id": 5}')


async def test_gap_and_log_describe_themselves() -> None:
    log = MemoryEventLog(maxlen=2)
    await log.append("t", "a")
    assert repr(log) == "<MemoryEventLog topics=1 maxlen=2>"
    with pytest.raises(EventLogGap) as info:
        await log.since("t", "garbage")
    assert str(info.value) == "cannot resume after id 'garbage' (malformed); 1 events retained"


@pytest_asyncio.fixture(autouse=True)
async def _registry_empty_after(app: Application) -> AsyncIterator[None]:
    yield
    await eventually(lambda: not state_for(app).connections)
    assert_registry_empty(app)


@pytest.fixture
def app() -> Application:
    return Application([("/feed", Feed), ("/problem", ProblemFeed), ("/bad", BadKeepalive)])


async def test_non_positive_keepalive_is_a_clear_server_error(
    base_url: str, http_client: AsyncHTTPClient, app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await http_client.fetch(base_url + "/bad", raise_error=False)
    assert response.code == 500  # a configuration error, not the client's
    assert "sse_keepalive_interval must be positive" in caplog.text
    assert not state_for(app).connections


async def test_broker_down_at_stream_start_is_a_503_not_a_500(
    redis_server: RedisServer,
    base_url: str,
    http_client: AsyncHTTPClient,
    app: Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RedisBroker(redis_server.url, timeout=0.3, reconnect_max_delay=0.2)
    app.settings["broker"] = broker
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING):
            plain = await http_client.fetch(base_url + "/feed", raise_error=False)
            problem = await http_client.fetch(base_url + "/problem", raise_error=False)
        assert plain.code == 503
        assert "text/event-stream" not in plain.headers.get("Content-Type", "")
        # the header survives send_error()'s clear() without JSONErrorMixin too
        assert plain.headers["Retry-After"] == "5"
        assert problem.code == 503
        assert problem.headers["Content-Type"] == "application/problem+json"
        assert problem.headers["Retry-After"] == "5"
        assert b"retry later" in problem.body
        assert "Uncaught exception" not in caplog.text
        assert "SSE stream of 'news' refused" in caplog.text
        access = [r.access for r in caplog.records if r.name == "tornado_kit.access"]  # type: ignore[attr-defined]
        assert [(a["status"], a["sse_end"]) for a in access] == [(503, "unavailable")]
        assert not state_for(app).connections
        redis_server.start()  # back: the same URL streams again
        await broker.publish("news", "warm-up")  # reconnects the command pool
        assert await read_sse(base_url + "/problem", count=0, timeout=5) == []
    finally:
        await broker.close()


async def test_log_down_during_the_replay_ends_the_stream_cleanly(
    redis_server: RedisServer,
    base_url: str,
    app: Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = LocalBroker()
    log = RedisEventLog(redis_server.url, broker=broker, timeout=0.5)
    app.settings["event_log"] = log
    try:
        first = await log.append("news", "one")
        await log.append("news", "two")
        assert first.id is not None
        # Redis up: the replay works.
        events = await read_sse(
            base_url + "/feed", count=1, timeout=5, headers={"Last-Event-ID": first.id}
        )
        assert [e.data for e in events] == ["two"]
        redis_server.stop()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            events = await read_sse(
                base_url + "/feed", count=1, timeout=5, headers={"Last-Event-ID": first.id}
            )
        # 200, then the stream ended (EventSource reconnects with the same id).
        assert events == []
        assert "SSE replay of 'news' failed" in caplog.text
        assert "Uncaught exception" not in caplog.text
        access: list[dict[str, Any]] = [
            r.access  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "tornado_kit.access"
        ]
        assert access[-1]["status"] == 200
        assert access[-1]["sse_end"] == "unavailable"
        assert not state_for(app).connections
        assert broker.subscriber_count() == 0
    finally:
        await log.close()
        await broker.close()


async def test_streams_arriving_while_the_hub_subscribes_share_its_outcome(
    redis_server: RedisServer, base_url: str, http_client: AsyncHTTPClient, app: Application
) -> None:
    broker = RedisBroker(redis_server.url, timeout=0.3, reconnect_max_delay=0.2)
    app.settings["broker"] = broker
    try:
        # Redis up: the first stream subscribes, the others wait for that one
        # subscription instead of making their own.
        readers = [
            asyncio.ensure_future(read_sse(base_url + "/problem", count=1, timeout=10))
            for _ in range(3)
        ]

        def attached() -> bool:
            hubs = state_for(app).resources.get(RESOURCE_KEY)
            hub = hubs.channels.get((id(broker), "news")) if hubs is not None else None
            return hub is not None and hub.sub is not None and len(hub.members) == 3

        await eventually(attached)
        assert broker.subscriber_count("news") == 1
        await broker.publish("news", "to all")
        for reader in readers:
            assert [e.data for e in await reader] == ["to all"]
        await eventually(lambda: broker.subscriber_count() == 0)

        # Redis down: every stream waiting on the failed subscription gets the 503.
        redis_server.stop()
        responses = await asyncio.gather(
            *(http_client.fetch(base_url + "/problem", raise_error=False) for _ in range(3))
        )
        assert [r.code for r in responses] == [503, 503, 503]
        assert not state_for(app).resources[RESOURCE_KEY].channels
        assert not state_for(app).connections
    finally:
        await broker.close()


class Fragile(SSEMixin, RequestHandler):
    """A handler whose own ``write`` override fails for some requests (a user bug)."""

    sse_keepalive_interval = 0.05

    async def get(self) -> None:
        await self.stream_topic("fragile")

    def write(self, chunk: str | bytes | dict[str, Any]) -> None:
        if chunk and self.get_query_argument("broken", None):
            raise RuntimeError("bug in a handler's write()")
        super().write(chunk)


@pytest.mark.parametrize("app", [Application([("/fragile", Fragile)])], indirect=False)
async def test_one_failing_stream_never_stops_the_others(
    base_url: str, app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    broker = broker_for(app)
    healthy = asyncio.ensure_future(read_sse(base_url + "/fragile", count=2, timeout=10))
    broken = asyncio.ensure_future(read_sse(base_url + "/fragile?broken=1", count=1, timeout=1))
    await eventually(lambda: broker.subscriber_count("fragile") == 1)
    await eventually(lambda: len(state_for(app).connections) == 2)
    with caplog.at_level(logging.ERROR, logger="tornado_kit.sse"):
        await broker.publish("fragile", "first")
        await eventually(lambda: "SSE keepalive failed" in caplog.text)  # timer hit the bug
        await asyncio.sleep(0.15)  # more ticks: the timer is still running
        await broker.publish("fragile", "second")
        assert [e.data for e in await healthy] == ["first", "second"]
    assert "SSE delivery to" in caplog.text
    with pytest.raises(TimeoutError):
        await broken  # it never got an event, and the client gave up
    await eventually(lambda: not state_for(app).connections)
    assert broker.subscriber_count() == 0


class TwoGateLog(MemoryEventLog):
    """since() waits before reading the log and again after, for the test to publish."""

    def __init__(self) -> None:
        super().__init__(LocalBroker(), maxlen=100)
        self.reading = asyncio.Event()
        self.before = asyncio.Event()
        self.after = asyncio.Event()

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        self.reading.set()
        await self.before.wait()
        events = await super().since(topic, last_id)
        await self.after.wait()
        return events


async def test_events_published_around_the_replay_arrive_once_in_order(
    base_url: str, app: Application
) -> None:
    log = TwoGateLog()
    app.settings["event_log"] = log
    try:
        first = await log.append("news", "0")
        assert first.id is not None
        reader = asyncio.ensure_future(
            read_sse(base_url + "/feed", count=4, timeout=10, headers={"Last-Event-ID": first.id})
        )
        await asyncio.wait_for(log.reading.wait(), 10)  # subscribed, replay not read yet
        await log.append("news", "a")  # live AND in the replay: sent once
        await log.append("news", "b")
        log.before.set()
        await asyncio.sleep(0.05)  # the replay has read the log
        await log.append("news", "c")  # live only, held back until the replay is out
        await log.append("news", "d")
        log.after.set()
        events = await reader
        assert [e.data for e in events] == ["a", "b", "c", "d"]
        ids = [int(e.id or "") for e in events]
        assert ids == sorted(ids)
        assert int(first.id) < ids[0]
    finally:
        await log.broker.close()
