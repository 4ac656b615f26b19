"""SSEMixin, MemoryEventLog and the SSE data model, through a real server and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.iostream import StreamClosedError
from tornado.web import Application, HTTPError, RequestHandler

from tests._example_process import load_example
from tests._servers import eventually, open_stream
from tests._threaded_server import ThreadedServer
from tornado_kit import LocalBroker, MemoryEventLog, ServerSentEvent, SSEMixin, TimingMixin
from tornado_kit._channels._hub import RESOURCE_KEY as HUB_KEY
from tornado_kit._lifecycle import shutdown, state_for
from tornado_kit._sse import (
    EventLog,
    EventLogGap,
    decode_broker_message,
    encode_broker_message,
)
from tornado_kit._sse._registry import RESOURCE_KEY
from tornado_kit.testing import parse_sse, read_sse

# -- a raw HTTP/1.1 client that can stop reading, see the chunked terminator --


class RawStream:
    """One SSE request over a plain socket; dechunks the body by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.ended = False  # saw the terminating zero-length chunk

    @classmethod
    async def open(
        cls,
        base_url: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        rcvbuf: int | None = None,
    ) -> RawStream:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await open_stream(host, int(port), rcvbuf=rcvbuf)
        self = cls(reader, writer)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        return self

    async def read_head(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        first, *rest = head.decode("latin-1").split("\r\n")
        self.status = int(first.split()[1])
        for line in rest:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()

    async def read_chunk(self) -> bytes | None:
        """Next body chunk; None after the terminator or when the connection closed."""
        try:
            size_line = await self.reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            await self.reader.readuntil(b"\r\n")
            self.ended = True
            return None
        try:
            data = await self.reader.readexactly(size + 2)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # Cut off mid-chunk: keep what arrived (parse_sse drops a partial event).
            if isinstance(exc, asyncio.IncompleteReadError):
                self.body += exc.partial
            return None
        self.body += data[:-2]
        return data[:-2]

    async def read_events(self, count: int, timeout: float = 10) -> list[ServerSentEvent]:
        async def run() -> list[ServerSentEvent]:
            while len(parse_sse(self.body.decode())) < count:
                if await self.read_chunk() is None:
                    break
            return parse_sse(self.body.decode())

        if not self.status:
            await self.read_head()
        return await asyncio.wait_for(run(), timeout)

    async def read_to_end(self, timeout: float = 10) -> list[ServerSentEvent]:
        async def run() -> None:
            while await self.read_chunk() is not None:
                pass

        if not self.status:
            await self.read_head()
        await asyncio.wait_for(run(), timeout)
        return parse_sse(self.body.decode())

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw(base_url: str) -> AsyncIterator[Any]:
    """``await raw("/path", headers)`` opens a RawStream, closed at teardown."""
    streams: list[RawStream] = []

    async def opener(path: str, headers: dict[str, str] | None = None, **kw: Any) -> RawStream:
        stream = await RawStream.open(base_url, path, headers, **kw)
        streams.append(stream)
        return stream

    yield opener
    for stream in streams:
        await stream.close()


# -- the application under test ---------------------------------------------


class Seen:
    """Handlers record what happened to them here (in the app settings)."""

    def __init__(self) -> None:
        self.handlers: list[Any] = []
        self.errors: list[BaseException] = []
        self.done: list[str] = []


class TopicHandler(SSEMixin, RequestHandler):
    sse_keepalive_interval = 30.0

    async def get(self, topic: str) -> None:
        self.settings["seen"].handlers.append(self)
        use_log = self.get_query_argument("log", "1") == "1"
        await self.stream_topic(topic, log=self.settings["event_log"] if use_log else None)
        stream = self._tk_sse
        self.settings["seen"].done.append((stream.ending or "done") if stream else "?")


class SmallQueueHandler(TopicHandler):
    sse_queue_size = 4
    sse_keepalive_interval = 0.1


class BusyHandler(TopicHandler):
    sse_keepalive_interval = 0.5


class KeepaliveHandler(SSEMixin, RequestHandler):
    sse_keepalive_interval = 0.1

    async def get(self) -> None:
        self.settings["seen"].handlers.append(self)
        await self.send_event("hello")
        await self.stream_topic("never")


class SendHandler(SSEMixin, RequestHandler):
    """POST a JSON list of events; send each; an invalid one is answered 400 if first."""

    async def post(self) -> None:
        specs = json.loads(self.request.body)
        for spec in specs:
            try:
                await self.send_event(
                    spec["data"],
                    event=spec.get("event"),
                    id=spec.get("id"),
                    retry=spec.get("retry"),
                )
            except (ValueError, TypeError) as exc:
                self.settings["seen"].errors.append(exc)
                if not self._headers_written:
                    raise HTTPError(400, str(exc)) from None


class LoopHandler(SSEMixin, RequestHandler):
    sse_keepalive_interval = 30.0

    async def get(self) -> None:
        self.settings["seen"].handlers.append(self)
        n = 0
        try:
            while True:
                await self.send_event(str(n), id=str(n))
                n += 1
                await asyncio.sleep(0.01)
        except StreamClosedError as exc:
            self.settings["seen"].errors.append(exc)


class FloodHandler(SSEMixin, RequestHandler):
    """Sends 16 KiB events as fast as send_event() returns."""

    sse_keepalive_interval = 0.1

    async def get(self) -> None:
        self.settings["seen"].handlers.append(self)
        self.request.connection.stream.socket.setsockopt(  # type: ignore[union-attr]
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        try:
            while True:
                await self.send_event("y" * 16384)
        except StreamClosedError as exc:
            self.settings["seen"].errors.append(exc)


class IdHandler(SSEMixin, RequestHandler):
    def get(self) -> None:
        self.write({"last_event_id": self.last_event_id})


class TimedFirst(TimingMixin, SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("timed")


class TimedLast(SSEMixin, TimingMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic("timed")


def make_app(**settings: Any) -> Application:
    broker = LocalBroker()
    settings.setdefault("event_log", MemoryEventLog(broker, maxlen=50))
    return Application(
        [
            (r"/topic/(\w+)", TopicHandler),
            (r"/small/(\w+)", SmallQueueHandler),
            (r"/busy/(\w+)", BusyHandler),
            (r"/keepalive", KeepaliveHandler),
            (r"/send", SendHandler),
            (r"/loop", LoopHandler),
            (r"/flood", FloodHandler),
            (r"/id", IdHandler),
            (r"/timed-first", TimedFirst),
            (r"/timed-last", TimedLast),
        ],
        broker=broker,
        seen=Seen(),
        **settings,
    )


@pytest.fixture
def app() -> Application:
    return make_app()


@pytest.fixture
def log(app: Application) -> MemoryEventLog:
    result: MemoryEventLog = app.settings["event_log"]
    return result


@pytest.fixture
def broker(app: Application) -> LocalBroker:
    result: LocalBroker = app.settings["broker"]
    return result


@pytest.fixture(autouse=True)
async def _no_leaked_streams(app: Application) -> AsyncIterator[None]:
    """After each test: no subscription, no registered stream (checked before teardown)."""
    yield
    await eventually(lambda: app.settings["broker"].subscriber_count() == 0)
    await eventually(lambda: not state_for(app).connections)
    assert_registry_empty(app)


def assert_registry_empty(app: Application) -> None:
    """No stream, topic hub or running keepalive timer is left in the app's SSE registry."""
    hub = state_for(app).resources.get(HUB_KEY)
    assert hub is None or not hub.channels
    registry = state_for(app).resources.get(RESOURCE_KEY)
    if registry is None:
        return
    assert not registry.streams
    assert not [g for g in registry.groups.values() if g.streams or g.timer.is_running()]


# -- the data model ------------------------------------------------------------


def test_encode_is_the_whatwg_wire_format() -> None:
    event = ServerSentEvent("a\r\nb\rc\nd", event="update", id="42", retry=1500)
    assert event.encode() == (
        b"id: 42\nevent: update\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert ServerSentEvent("").encode() == b"data\n\n"
    assert ServerSentEvent(" x", id="").encode() == b"id\ndata:  x\n\n"
    # Only CR, LF and CRLF break lines; U+2028 and U+0085 are data.
    assert ServerSentEvent("a\u2028b\x85c").encode() == "data: a\u2028b\x85c\n\n".encode()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"event": "a\rb"},
        {"id": "1\n"},
        {"id": "\r1"},
        {"id": "1\x002"},
        {"retry": -1},
        {"retry": 1.5},
        {"retry": "10"},
        {"retry": True},
    ],
)
def test_invalid_fields_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerSentEvent("x", **kwargs)


def test_broker_message_round_trip_and_plain_text_is_rejected() -> None:
    event = ServerSentEvent("line1\nline2", event="e", id="9", retry=3)
    assert decode_broker_message(encode_broker_message(event)) == event
    minimal = ServerSentEvent("x")
    assert decode_broker_message(encode_broker_message(minimal)) == minimal
    for text in ["hello", '{"data": "x"}', "{", "[1]", '{"sse": 1, "data": 5}', '{"sse":1}']:
        with pytest.raises(ValueError):
            decode_broker_message(text)
    with pytest.raises(ValueError):
        decode_broker_message('{"sse": 1, "data": "x", "id": "a\\nb"}')


async def test_memory_event_log_ids_since_and_gaps() -> None:
    log = MemoryEventLog(maxlen=3)
    assert isinstance(log, EventLog)
    events = [await log.append("t", {"n": n}) for n in range(5)]
    assert [e.data for e in events] == [f'{{"n":{n}}}' for n in range(5)]
    ids = [int(e.id or "") for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    # Retained: the last three. Resuming from the id just before them is complete.
    assert [e.data for e in await log.since("t", str(ids[1]))] == [e.data for e in events[2:]]
    assert await log.since("t", str(ids[4])) == []
    with pytest.raises(EventLogGap) as gap:
        await log.since("t", str(ids[0]))
    assert gap.value.reason == "expired"
    assert gap.value.events == events[2:]
    with pytest.raises(EventLogGap) as gap:
        await log.since("t", str(ids[4] + 1))
    assert gap.value.reason == "unknown"
    for garbage in ["", "abc", "-1", "1.5", "١٢", "9" * 40]:
        with pytest.raises(EventLogGap) as gap:
            await log.since("t", garbage)
        assert gap.value.reason == "malformed"
    # An id from an earlier run of the process (smaller than this log's start).
    with pytest.raises(EventLogGap) as gap:
        await log.since("t", "5")
    assert gap.value.reason == "expired"
    # A topic that never had events: nothing is missing after a current id.
    assert await log.since("other", str(ids[4])) == []
    with pytest.raises(ValueError):
        await log.append("t", "x", event="bad\nevent")
    assert len(await log.since("t", str(ids[1]))) == 3  # nothing stored by the failure
    with pytest.raises(ValueError):
        MemoryEventLog(maxlen=0)


# -- headers, encoding, send_event -------------------------------------------------


async def test_headers_and_no_compression(base_url: str, raw: Any, app: Application) -> None:
    app.settings["compress_response"] = True
    stream = await raw("/keepalive", {"Accept-Encoding": "gzip"})
    events = await stream.read_events(1)
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in stream.headers
    assert stream.headers["transfer-encoding"] == "chunked"
    assert events == [ServerSentEvent("hello")]


async def test_send_event_wire_bytes(base_url: str, http_client: Any) -> None:
    specs = [
        {"data": "one\r\ntwo\rthree\nfour"},
        {"data": {"k": [1, 2]}, "event": "obj", "id": "7"},
        {"data": "", "retry": 2500},
        {"data": "ünï", "event": "ü", "id": "é"},
    ]
    response = await http_client.fetch(base_url + "/send", method="POST", body=json.dumps(specs))
    assert response.body == (
        b"data: one\ndata: two\ndata: three\ndata: four\n\n"
        b'id: 7\nevent: obj\ndata: {"k":[1,2]}\n\n'
        b"retry: 2500\ndata\n\n" + "id: é\nevent: ü\ndata: ünï\n\n".encode()
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"data": "x", "event": "a\nb"},
        {"data": "x", "event": "a\r"},
        {"data": "x", "id": "1\r\n2"},
        {"data": "x", "id": "1\x00"},
        {"data": "x", "retry": -5},
        {"data": "x", "retry": "soon"},
        {"data": "x", "retry": 2.5},
    ],
)
async def test_bad_fields_raise_value_error_and_write_nothing(
    base_url: str, http_client: Any, app: Application, bad: dict[str, Any]
) -> None:
    good = {"data": "ok", "id": "1"}
    # Mid-stream: the bad event vanishes, the stream goes on.
    response = await http_client.fetch(
        base_url + "/send", method="POST", body=json.dumps([good, bad, good])
    )
    assert response.body == b"id: 1\ndata: ok\n\n" * 2
    # First event: nothing was written, so a normal 400 is still possible.
    response = await http_client.fetch(
        base_url + "/send", method="POST", body=json.dumps([bad]), raise_error=False
    )
    assert response.code == 400
    errors = app.settings["seen"].errors
    assert len(errors) == 2
    assert all(isinstance(e, ValueError) for e in errors)


async def test_unencodable_data_raises_type_error() -> None:
    class Odd(SSEMixin, RequestHandler):
        async def get(self) -> None:
            with pytest.raises(TypeError):
                await self.send_event({1, 2})
            assert not self._headers_written
            await self.send_event("after")

    app = Application([("/odd", Odd)])
    with ThreadedServer(app) as server:
        response = await asyncio.to_thread(server.request, "GET", "/odd")
    assert response.body == b"data: after\n\n"


async def test_last_event_id_from_header_or_query(base_url: str, http_client: Any) -> None:
    async def ask(path: str, headers: dict[str, str] | None = None) -> Any:
        response = await http_client.fetch(base_url + path, headers=headers)
        return json.loads(response.body)["last_event_id"]

    assert await ask("/id") is None
    assert await ask("/id", {"Last-Event-ID": "17"}) == "17"
    assert await ask("/id?lastEventId=23") == "23"
    assert await ask("/id?lastEventId=23", {"Last-Event-ID": "17"}) == "17"  # header wins
    assert await ask("/id", {"Last-Event-ID": ""}) is None


async def test_last_event_id_utf8_header(raw: Any) -> None:
    # EventSource sends the id as UTF-8 bytes; Tornado decodes headers as latin-1.
    stream = await raw("/id", {"Last-Event-ID": "é9"})
    await stream.read_head()
    length = int(stream.headers["content-length"])
    body = await asyncio.wait_for(stream.reader.readexactly(length), 10)
    assert json.loads(body) == {"last_event_id": "é9"}


async def test_send_event_raises_stream_closed_once_client_is_gone(
    raw: Any, app: Application
) -> None:
    seen = app.settings["seen"]
    stream = await raw("/loop")
    assert [e.data for e in await stream.read_events(3)][:3] == ["0", "1", "2"]
    assert len(state_for(app).connections) == 1
    await stream.close()
    await eventually(lambda: seen.errors)
    assert isinstance(seen.errors[0], StreamClosedError)
    await eventually(lambda: not state_for(app).connections)


# -- keepalive -------------------------------------------------------------------


async def test_keepalive_comments_from_one_timer(raw: Any, app: Application) -> None:
    streams = [await raw("/keepalive") for _ in range(4)]
    for stream in streams:
        await stream.read_events(1)

    async def keepalives(stream: RawStream, n: int) -> None:
        while stream.body.count(b": keepalive\n\n") < n:
            assert await stream.read_chunk() is not None

    await asyncio.wait_for(asyncio.gather(*(keepalives(s, 3) for s in streams)), 10)
    for stream in streams:
        assert parse_sse(stream.body.decode()) == [ServerSentEvent("hello")]
    # One timer for the whole application, whatever the number of streams.
    registry = state_for(app).resources["tornado_kit.sse"]
    assert list(registry.groups) == [0.1]
    assert len(registry.groups[0.1].streams) == 4
    assert registry.groups[0.1].timer.is_running()
    for stream in streams:
        await stream.close()
    await eventually(lambda: not registry.groups)  # the timer stops with the last stream


async def test_keepalive_interval_from_settings() -> None:
    class Plain(SSEMixin, RequestHandler):
        async def get(self) -> None:
            await self.send_event("x")
            await asyncio.sleep(0.35)

    app = Application([("/p", Plain)], sse_keepalive_interval=0.1)
    with ThreadedServer(app) as server:
        response = await asyncio.to_thread(server.request, "GET", "/p")
    assert response.body.startswith(b"data: x\n\n: keepalive\n\n")
    assert response.body.count(b": keepalive\n\n") >= 2


async def test_busy_stream_gets_no_keepalive(raw: Any, log: MemoryEventLog) -> None:
    stream = await raw("/busy/busy?log=0")  # keepalive interval 0.5 s
    await stream.read_events(0)
    for n in range(15):
        await log.broker.publish("busy", str(n))
        await asyncio.sleep(0.04)  # far more often than the interval
    events = await stream.read_events(15)
    assert [e.data for e in events] == [str(n) for n in range(15)]
    assert b"keepalive" not in stream.body
    # Once idle, the keepalive comes.
    while b": keepalive\n\n" not in stream.body:
        assert await asyncio.wait_for(stream.read_chunk(), 10) is not None


# -- stream_topic: live, replay, hand-over ------------------------------------


async def test_live_only_without_last_event_id(sse: Any, log: MemoryEventLog) -> None:
    await log.append("news", "old")

    async def publish() -> None:
        await eventually(lambda: log.broker.subscriber_count("news") == 1)
        await log.append("news", "fresh", event="story")
        await log.broker.publish("news", "plain\ntext")

    task = asyncio.ensure_future(publish())
    events = await sse("/topic/news", count=2)
    await task
    assert [(e.data, e.event) for e in events] == [("fresh", "story"), ("plain\ntext", None)]
    assert events[0].id is not None


async def test_replay_then_live(sse: Any, log: MemoryEventLog) -> None:
    first = await log.append("news", "a")
    await log.append("news", "b")
    await log.append("news", {"c": 3})

    async def publish() -> None:
        await eventually(lambda: log.broker.subscriber_count("news") == 1)
        await log.append("news", "d")

    task = asyncio.ensure_future(publish())
    events = await sse("/topic/news", count=3, headers={"Last-Event-ID": first.id or ""})
    await task
    assert [e.data for e in events] == ["b", '{"c":3}', "d"]
    ids = [int(e.id or "") for e in events]
    assert ids == sorted(ids)
    assert ids[0] > int(first.id or "")
    # The query argument works the same (for a first connection).
    events = await sse(f"/topic/news?lastEventId={first.id}", count=3)
    assert [e.data for e in events] == ["b", '{"c":3}', "d"]


class SlowPublishBroker(LocalBroker):
    """Delivers a published message one loop iteration late (like a network hop)."""

    async def publish(self, topic: str, message: str) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.publish_nowait(topic, message)


class SlowReadLog(MemoryEventLog):
    """since() reads, then lets other tasks run before returning (like a network hop)."""

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        events = await super().since(topic, last_id)
        for _ in range(3):
            await asyncio.sleep(0)
        return events


async def test_handover_no_gap_no_duplicate_with_concurrent_publisher(
    base_url: str, app: Application
) -> None:
    log = SlowReadLog(SlowPublishBroker(), maxlen=1000)
    app.settings["event_log"] = log
    first = await log.append("race", "0")
    base = int(first.id or "")
    total = 300
    published: list[int] = [base]

    async def publisher() -> None:
        for n in range(1, total):
            event = await log.append("race", str(n))
            published.append(int(event.id or ""))
            if n % 3 == 0:
                await asyncio.sleep(0.001)

    async def client(delay: float) -> tuple[int, list[ServerSentEvent]]:
        await asyncio.sleep(delay)
        last = published[-1]  # an id the client "saw"
        events = await read_sse(
            f"{base_url}/topic/race", base + total - 1 - last, 20, {"Last-Event-ID": str(last)}
        )
        return last, events

    results = await asyncio.gather(publisher(), *(client(0.003 * i) for i in range(12)))
    assert published == list(range(base, base + total))  # the log's ids are consecutive
    for last, events in results[1:]:  # type: ignore[misc]
        assert [int(e.id or "") for e in events] == list(range(last + 1, base + total))
        assert [e.data for e in events] == [str(n - base) for n in range(last + 1, base + total)]


@pytest.mark.parametrize(
    ("last_id", "reason"),
    [
        ("garbage", "malformed"),
        ("-3", "malformed"),
        ("١٢", "malformed"),
        ("99999999999999999999", "unknown"),
    ],
)
async def test_bad_last_event_id_resets_and_replays_everything(
    sse: Any, log: MemoryEventLog, last_id: str, reason: str
) -> None:
    await log.append("news", "a")
    await log.append("news", "b")
    events = await sse("/topic/news", count=3, headers={"Last-Event-ID": last_id})
    assert events[0].event == "reset"
    assert json.loads(events[0].data) == {"reason": reason, "last_event_id": last_id}
    assert [e.data for e in events[1:]] == ["a", "b"]


async def test_last_event_id_older_than_the_log(sse: Any, log: MemoryEventLog) -> None:
    first = await log.append("news", "0")
    for n in range(1, 60):  # maxlen is 50: the first ten are gone
        await log.append("news", str(n))
    events = await sse("/topic/news", count=51, headers={"Last-Event-ID": first.id or ""})
    assert events[0].event == "reset"
    assert json.loads(events[0].data)["reason"] == "expired"
    assert [e.data for e in events[1:]] == [str(n) for n in range(10, 60)]


async def test_reset_on_an_empty_log_then_live(sse: Any, log: MemoryEventLog) -> None:
    async def publish() -> None:
        await eventually(lambda: log.broker.subscriber_count("empty") == 1)
        await log.append("empty", "live")

    task = asyncio.ensure_future(publish())
    events = await sse("/topic/empty", count=2, headers={"Last-Event-ID": "nonsense"})
    await task
    assert [e.event for e in events] == ["reset", None]
    assert events[1].data == "live"


# -- disconnects, overflow, shutdown ---------------------------------------------


async def test_client_vanishing_mid_stream_cleans_up_at_once(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    seen = app.settings["seen"]
    stream = await raw("/topic/news")
    await stream.read_events(0)
    await log.append("news", "one")
    assert [e.data for e in await stream.read_events(1)] == ["one"]
    assert log.broker.subscriber_count("news") == 1
    assert state_for(app).connections == set(seen.handlers)
    await stream.close()
    await eventually(lambda: log.broker.subscriber_count() == 0)
    await eventually(lambda: seen.done == ["client"])
    assert not state_for(app).connections
    registry = state_for(app).resources["tornado_kit.sse"]
    assert not registry.streams
    # Publishing after the client left reaches nobody and raises nothing.
    await log.append("news", "two")


async def test_streams_of_a_topic_share_one_subscription(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    streams = [await raw("/topic/shared") for _ in range(5)]
    for stream in streams:
        await stream.read_events(0)
    await eventually(lambda: len(state_for(app).connections) == 5)
    assert log.broker.subscriber_count() == 1
    await log.append("shared", "to all")
    for stream in streams:
        assert [e.data for e in await stream.read_events(1)] == ["to all"]
    for stream in streams[:4]:
        await stream.close()
    await eventually(lambda: len(state_for(app).connections) == 1)
    assert log.broker.subscriber_count() == 1  # the last stream still follows it
    await log.append("shared", "to one")
    assert [e.data for e in await streams[4].read_events(2)] == ["to all", "to one"]


async def test_burst_larger_than_the_queue_reaches_a_reading_client(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    stream = await raw("/small/burst")  # sse_queue_size = 4
    await stream.read_events(0)
    await eventually(lambda: log.broker.subscriber_count("burst") == 1)
    for n in range(20):  # without yielding to the loop
        await log.append("burst", str(n))
    events = await stream.read_events(20)
    assert [e.data for e in events] == [str(n) for n in range(20)]
    assert app.settings["seen"].done == []  # still open


async def test_slow_client_overflow_disconnects_and_resume_loses_nothing(
    raw: Any, app: Application, log: MemoryEventLog, sse: Any
) -> None:
    seen = app.settings["seen"]
    stream = await raw("/small/slow", rcvbuf=4096)  # sse_queue_size = 4, not reading
    await stream.read_head()
    await eventually(lambda: log.broker.subscriber_count("slow") == 1)
    first = await log.append("slow", "first")
    # Keep the server's socket buffer small so the backlog builds up quickly.
    server_socket = seen.handlers[0].request.connection.stream.socket
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = "x" * 16384
    sent = 0
    while state_for(app).connections and sent < 40:  # maxlen of the log is 50
        await log.append("slow", f"{sent}:{big}")
        sent += 1
        await asyncio.sleep(0.005)
    # More than 4 events held back: the client is disconnected, not buffered for.
    await eventually(lambda: not state_for(app).connections)
    assert seen.done == ["overflow"]
    assert sent < 40
    assert log.broker.subscriber_count() == 0
    # The client reads what reached it, then resumes from the last id it saw.
    received = await stream.read_to_end()
    assert not stream.ended  # cut off, not a clean end
    last_id = received[-1].id if received else first.id
    resumed = await sse(
        "/small/slow", count=sent + 1 - len(received), headers={"Last-Event-ID": last_id or ""}
    )
    data = [e.data.split(":")[0] for e in received + resumed]
    assert data == ["first", *[str(n) for n in range(sent)]]


class GatedLog(MemoryEventLog):
    """since() reads the log, then waits for the test to open the gate."""

    def __init__(self, broker: LocalBroker) -> None:
        super().__init__(broker, maxlen=100)
        self.gate = asyncio.Event()

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        events = await super().since(topic, last_id)
        await self.gate.wait()
        return events


async def test_overflow_during_replay_ends_stream_and_resume_completes(
    raw: Any, app: Application, sse: Any
) -> None:
    log = GatedLog(LocalBroker())
    app.settings["event_log"] = log
    first = await log.append("replay", "0")
    stream = await raw("/small/replay", {"Last-Event-ID": first.id or ""})  # queue of 4
    await stream.read_head()
    await eventually(lambda: log.broker.subscriber_count("replay") == 1)
    for n in range(1, 11):  # held back during the replay: more than 4
        await log.append("replay", str(n))
    log.gate.set()
    assert await stream.read_to_end() == []
    assert stream.ended  # a clean end: nothing was stuck in the socket
    assert app.settings["seen"].done == ["overflow"]
    resumed = await sse("/small/replay", count=10, headers={"Last-Event-ID": first.id or ""})
    assert [e.data for e in resumed] == [str(n) for n in range(1, 11)]


async def test_stream_opened_during_shutdown_ends_at_once(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    # No tornado-kit handler has run yet: the shutdown must still be seen.
    await shutdown(app, timeout=5)
    stream = await raw("/topic/late")
    await stream.read_head()
    # An empty 200, not a 503: EventSource reconnects after it (a rolling
    # restart), while an error status would make it give up for good.
    assert stream.status == 200
    assert stream.headers["content-length"] == "0"
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert app.settings["seen"].done == ["shutdown"]
    assert log.broker.subscriber_count() == 0


async def test_shutdown_ends_every_stream_cleanly(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    topic_stream = await raw("/topic/news")
    loop_stream = await raw("/loop")
    await topic_stream.read_events(0)
    await loop_stream.read_events(2)
    await log.append("news", "before")
    assert [e.data for e in await topic_stream.read_events(1)] == ["before"]
    assert len(state_for(app).connections) == 2
    await shutdown(app, timeout=5)
    assert not state_for(app).connections
    assert (await topic_stream.read_to_end())[-1].data == "before"
    await loop_stream.read_to_end()
    assert topic_stream.ended  # the terminating chunk, not a reset
    assert loop_stream.ended
    assert "shutdown" in app.settings["seen"].done
    assert log.broker.subscriber_count() == 0
    # The custom loop's next send_event() raises: it stops on its own.
    await eventually(lambda: app.settings["seen"].errors)
    assert isinstance(app.settings["seen"].errors[0], StreamClosedError)


async def test_shutdown_disconnects_a_stream_stuck_behind_its_client(
    raw: Any, app: Application, log: MemoryEventLog
) -> None:
    seen = app.settings["seen"]
    stream = await raw("/topic/stuck?log=0", rcvbuf=4096)  # never reads
    await stream.read_head()
    await eventually(lambda: log.broker.subscriber_count("stuck") == 1)
    iostream = seen.handlers[0].request.connection.stream
    iostream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    while not iostream.writing():
        await log.broker.publish("stuck", "x" * 16384)
        await asyncio.sleep(0.005)
    await shutdown(app, timeout=5)  # returns: no clean end possible, so disconnected
    assert iostream.closed()
    assert not state_for(app).connections
    await eventually(lambda: seen.done == ["shutdown"])


async def test_send_event_waits_for_a_slow_client_and_shutdown_frees_it(
    raw: Any, app: Application
) -> None:
    seen = app.settings["seen"]
    stream = await raw("/flood", rcvbuf=4096)  # never reads
    await stream.read_head()
    await eventually(lambda: seen.handlers and seen.handlers[0]._tk_sse.flushing)
    handler = seen.handlers[0]
    # The kernel's buffers fill up, then send_event() blocks for good:
    # back-pressure, not unbounded buffering in the server.
    sent = -1
    for _ in range(50):
        if handler._tk_sse.events == sent:
            break
        sent = handler._tk_sse.events
        await asyncio.sleep(0.3)  # several keepalive ticks: none may write meanwhile
    assert handler._tk_sse.events == sent
    assert handler._tk_sse.flushing
    assert not handler._finished
    await shutdown(app, timeout=5)
    assert handler.request.connection.stream.closed()
    await eventually(lambda: seen.errors)
    assert isinstance(seen.errors[0], StreamClosedError)


async def test_broker_closing_ends_streams_cleanly(
    raw: Any, app: Application, broker: LocalBroker
) -> None:
    streams = [await raw("/topic/news?log=0") for _ in range(3)]
    for stream in streams:
        await stream.read_head()
    await eventually(lambda: len(state_for(app).connections) == 3)
    await broker.close()
    for stream in streams:
        assert await stream.read_to_end() == []
        assert stream.ended
    await eventually(lambda: app.settings["seen"].done == ["closed"] * 3)


async def test_hub_falling_behind_the_broker_ends_its_streams(
    raw: Any, app: Application, broker: LocalBroker
) -> None:
    from tornado_kit._channels._hub import HUB_MAXSIZE

    stream = await raw("/topic/flood?log=0")
    await stream.read_head()
    await eventually(lambda: broker.subscriber_count("flood") == 1)
    for n in range(HUB_MAXSIZE + 1):  # the loop is blocked the whole time
        broker.publish_nowait("flood", str(n))
    assert await stream.read_to_end() == []
    assert stream.ended  # the client reconnects and resumes from its log
    await eventually(lambda: app.settings["seen"].done == ["overflow"])


@pytest.mark.parametrize("path", ["/timed-first", "/timed-last"])
async def test_access_record_when_the_stream_ends(
    raw: Any, app: Application, broker: LocalBroker, caplog: Any, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_kit.access")
    stream = await raw(path)
    await stream.read_events(0)
    await eventually(lambda: broker.subscriber_count("timed") == 1)
    assert not [r for r in caplog.records if r.name == "tornado_kit.access"]  # not at start
    await broker.publish("timed", "a")
    await broker.publish("timed", "b")
    await stream.read_events(2)
    await stream.close()
    await eventually(lambda: not state_for(app).connections)
    await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "tornado_kit.access"]
    assert len(records) == 1
    access = records[0].access
    assert access["sse_events"] == 2
    assert access["sse_end"] == "client"
    assert access["status"] == 200


async def test_stream_topic_twice_is_an_error() -> None:
    class Twice(SSEMixin, RequestHandler):
        async def get(self) -> None:
            task = asyncio.ensure_future(self.stream_topic("a"))
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError):
                await self.stream_topic("b")
            broker_ = self.application.settings["broker"]
            await broker_.publish("a", "only")
            await asyncio.sleep(0.05)
            await broker_.close()
            await task

    app = Application([("/t", Twice)], broker=LocalBroker())
    with ThreadedServer(app) as server:
        response = await asyncio.to_thread(server.request, "GET", "/t")
    assert parse_sse(response.body.decode()) == [ServerSentEvent("only")]


# -- property: send_event -> wire -> parse_sse ------------------------------------

_text = st.text(max_size=40)
_specs = st.lists(
    st.fixed_dictionaries(
        {"data": _text},
        optional={
            "event": _text,
            "id": _text,
            "retry": st.integers(min_value=0, max_value=10**6),
        },
    ),
    min_size=1,
    max_size=4,
)


def _valid(spec: dict[str, Any]) -> bool:
    try:
        ServerSentEvent(**spec)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def threaded_send_server() -> Any:
    with ThreadedServer(make_app()) as server:
        yield server


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=_specs)
def test_round_trip_property(
    threaded_send_server: ThreadedServer, specs: list[dict[str, Any]]
) -> None:
    response = threaded_send_server.request("POST", "/send", body=json.dumps(specs).encode())
    sent = [spec for spec in specs if _valid(spec)]
    if specs and not _valid(specs[0]):
        assert response.status == 400  # invalid first event: nothing was written
        return
    assert response.status == 200
    events = parse_sse(response.body.decode("utf-8"))
    assert len(events) == len(sent)
    last_id: str | None = None
    for spec, event in zip(sent, events, strict=True):
        if "id" in spec:
            last_id = spec["id"] or None
        expected_data = spec["data"].replace("\r\n", "\n").replace("\r", "\n")
        assert event.data == expected_data
        assert event.event == (spec.get("event") or None)
        assert event.id == last_id
        assert event.retry == spec.get("retry")


# -- examples/05_sse_feed.py ---------------------------------------------------------


@pytest.mark.parametrize("app", [load_example("05_sse_feed.py").make_app()], indirect=False)
async def test_example_feed(sse: Any, http_client: Any, base_url: str, app: Application) -> None:
    page = await http_client.fetch(base_url + "/")
    assert b"new EventSource" in page.body

    async def post(body: Any) -> Any:
        return await http_client.fetch(
            base_url + "/stories",
            method="POST",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
            raise_error=False,
        )

    first = json.loads((await post({"headline": "one"})).body)["id"]
    await post({"headline": "two"})
    bad = await post({"headline": ""})
    assert bad.code == 422
    assert bad.headers["Content-Type"].startswith("application/problem+json")

    async def publish_later() -> None:
        await eventually(lambda: state_for(app).connections)
        await post({"headline": "three"})

    task = asyncio.ensure_future(publish_later())
    events = await sse("/feed", count=2, headers={"Last-Event-ID": first})
    await task
    assert [(e.event, json.loads(e.data)["headline"]) for e in events] == [
        ("story", "two"),
        ("story", "three"),
    ]
    reset = await sse("/feed", count=4, headers={"Last-Event-ID": "junk"})
    assert [e.event for e in reset] == ["reset", "story", "story", "story"]
