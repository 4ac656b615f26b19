"""WebSocket mixins through a real server and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketClientConnection, WebSocketHandler

from tests._example_process import load_example
from tests._servers import eventually, open_stream
from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BroadcastMixin,
    HeartbeatMixin,
    JSONErrorMixin,
    JSONMessageMixin,
    LocalBroker,
    TimingMixin,
)
from tornado_kit._json import dumps_str, loads
from tornado_kit._lifecycle import shutdown, state_for
from tornado_kit._ws._rooms import STATE_KEY, WSState

Connect = Callable[..., Awaitable[WebSocketClientConnection]]


# ---------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------


class ChatHandler(JSONMessageMixin, BroadcastMixin, HeartbeatMixin, WebSocketHandler):
    def initialize(self, opened: list[WebSocketHandler]) -> None:
        self.opened = opened

    def open(self, room: str) -> None:
        self.room = room
        self.opened.append(self)
        self.join(room)

    async def on_json(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "say":
            await self.broadcast(
                self.room, {"text": data["text"]}, exclude_self=data.get("exclude", True)
            )
        elif kind == "raw":
            await self.broadcast(self.room, data["text"])
        elif kind == "bytes":
            await self.broadcast(self.room, data["text"].encode())
        elif kind == "flood":
            blob = "x" * data["size"]
            for _ in range(data["count"]):
                await self.broadcast(self.room, blob)
        elif kind == "echo":
            self.write_message({"echo": data})
        elif kind == "join":
            await self.join(data["room"])
            self.write_message({"joined": sorted(self.rooms)})
        elif kind == "leave":
            self.leave(data["room"])
            self.write_message({"left": sorted(self.rooms)})
        elif kind == "fail":
            raise APIError(409, "conflict")


class SyncJSONHandler(JSONMessageMixin, WebSocketHandler):
    def on_json(self, data: dict[str, Any]) -> None:
        if data.get("fail"):
            raise APIError(422, "bad field")
        self.write_message({"got": data})


class CompressedChat(ChatHandler):
    def get_compression_options(self) -> dict[str, Any]:
        return {}


class OriginHandler(AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = ("https://example.com", "https://*.example.org:8443", "http://localhost")

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class DefaultOriginHandler(AllowedOriginsMixin, WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class TimedChat(TimingMixin, ChatHandler):
    pass


def make_app(**settings: Any) -> Application:
    opened: list[WebSocketHandler] = []
    settings.setdefault("heartbeat_interval", 0.2)
    settings.setdefault("heartbeat_timeout", 1.0)  # generous: CI loops may stall
    app = Application(
        [
            (r"/chat/(\w+)", ChatHandler, {"opened": opened}),
            (r"/zchat/(\w+)", CompressedChat, {"opened": opened}),
            (r"/timed/(\w+)", TimedChat, {"opened": opened}),
            (r"/sync", SyncJSONHandler),
            (r"/origin", OriginHandler),
            (r"/default-origin", DefaultOriginHandler),
        ],
        **settings,
    )
    app.settings["opened"] = opened
    return app


@pytest.fixture
def app() -> Application:
    return make_app()


def ws_state(app: Application) -> WSState:
    ws: WSState = state_for(app).resources[STATE_KEY]
    return ws


def assert_registries_empty(app: Application) -> None:
    state = state_for(app)
    assert not state.connections
    ws: WSState | None = state.resources.get(STATE_KEY)
    if ws is None:
        return
    assert not ws.rooms
    assert not ws.members
    assert not ws.ids
    assert not ws.relays
    for hb in ws.heartbeats.values():
        assert not hb.conns
        assert not hb.running


@pytest_asyncio.fixture(autouse=True)
async def _registries_clean(app: Application) -> AsyncIterator[None]:
    """Set up before the server, checked after it stopped: nothing left registered."""
    yield
    assert_registries_empty(app)


async def read_json(conn: WebSocketClientConnection, timeout: float = 5.0) -> Any:
    message = await asyncio.wait_for(conn.read_message(), timeout)
    assert message is not None, f"connection closed ({conn.close_code})"
    return loads(message)


async def send_json(conn: WebSocketClientConnection, data: Any) -> None:
    await conn.write_message(dumps_str(data))


# ---------------------------------------------------------------------------
# A raw RFC 6455 client: it can ignore pings and stop reading
# ---------------------------------------------------------------------------


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        base_url: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
    ) -> tuple[RawClient | None, int, bytes]:
        port = int(base_url.rsplit(":", 1)[1])
        reader, writer = await open_stream("127.0.0.1", port, rcvbuf=rcvbuf, limit=1 << 20)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            body = await reader.read(65536)
            writer.close()
            await writer.wait_closed()
            return None, status, body
        return cls(reader, writer), status, b""

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def recv(self, timeout: float = 5.0) -> tuple[int, bytes]:
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "server frames are never masked"
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def abort(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# ---------------------------------------------------------------------------
# JSONMessageMixin
# ---------------------------------------------------------------------------


async def test_on_json_receives_objects(ws_connect: Connect) -> None:
    conn = await ws_connect("/chat/a")
    await send_json(conn, {"type": "echo", "n": 1})
    assert await read_json(conn) == {"echo": {"type": "echo", "n": 1}}


async def test_sync_on_json_and_api_error(ws_connect: Connect) -> None:
    conn = await ws_connect("/sync")
    await send_json(conn, {"a": [1, 2]})
    assert await read_json(conn) == {"got": {"a": [1, 2]}}
    await send_json(conn, {"fail": True})
    assert await read_json(conn) == {"error": {"status": 422, "detail": "bad field"}}
    await send_json(conn, {"a": 2})
    assert await read_json(conn) == {"got": {"a": 2}}


async def test_async_on_json_api_error_keeps_connection(ws_connect: Connect) -> None:
    conn = await ws_connect("/chat/a")
    await send_json(conn, {"type": "fail"})
    assert await read_json(conn) == {"error": {"status": 409, "detail": "conflict"}}
    await send_json(conn, {"type": "echo"})
    assert await read_json(conn) == {"echo": {"type": "echo"}}


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ("{not json", "message is not valid JSON"),
        ("", "message is not valid JSON"),
        ('{"a": 1} trailing', "message is not valid JSON"),
        ("[1, 2]", "message must be a JSON object"),
        ('"text"', "message must be a JSON object"),
        ("null", "message must be a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "message is nested too deeply"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "message is nested too deeply"),
        (b"\x00\x01binary", "binary messages are not accepted; send JSON text"),
        (b'{"type": "echo"}', "binary messages are not accepted; send JSON text"),
    ],
)
async def test_bad_messages_get_an_error_and_the_connection_stays_open(
    ws_connect: Connect, message: str | bytes, detail: str
) -> None:
    conn = await ws_connect("/chat/a")
    await conn.write_message(message, binary=isinstance(message, bytes))
    assert await read_json(conn) == {"error": {"status": 400, "detail": detail}}
    await send_json(conn, {"type": "echo"})
    assert await read_json(conn) == {"echo": {"type": "echo"}}


@pytest.mark.parametrize("app", [make_app(websocket_max_message_size=1024)], indirect=False)
async def test_oversized_message_closes_with_1009(ws_connect: Connect) -> None:
    conn = await ws_connect("/chat/a")
    await send_json(conn, {"type": "echo", "pad": "x" * 900})
    assert (await read_json(conn))["echo"]["pad"] == "x" * 900
    await conn.write_message(dumps_str({"type": "echo", "pad": "x" * 2000}))
    assert await asyncio.wait_for(conn.read_message(), 5) is None
    assert conn.close_code == 1009  # RFC 6455 §7.4.1 "Message Too Big"


# ---------------------------------------------------------------------------
# BroadcastMixin
# ---------------------------------------------------------------------------


async def test_broadcast_reaches_the_room_but_not_the_sender(
    app: Application, ws_connect: Connect
) -> None:
    a = await ws_connect("/chat/lobby")
    b = await ws_connect("/chat/lobby")
    other = await ws_connect("/chat/other")
    await eventually(lambda: len(ws_state(app).rooms.get("lobby", ())) == 2)
    await send_json(a, {"type": "say", "text": "hi"})
    assert await read_json(b) == {"text": "hi"}
    # exclude_self=False: the sender gets it too.
    await send_json(a, {"type": "say", "text": "all", "exclude": False})
    assert await read_json(a) == {"text": "all"}
    assert await read_json(b) == {"text": "all"}
    # The other room got nothing: its next message is the answer to its own echo.
    await send_json(other, {"type": "echo"})
    assert await read_json(other) == {"echo": {"type": "echo"}}


async def test_broadcast_str_is_text_and_bytes_is_binary(
    app: Application, ws_connect: Connect
) -> None:
    a = await ws_connect("/chat/r")
    b = await ws_connect("/chat/r")
    await eventually(lambda: len(ws_state(app).rooms.get("r", ())) == 2)
    await send_json(a, {"type": "raw", "text": "plain ü"})
    assert await asyncio.wait_for(b.read_message(), 5) == "plain ü"
    await send_json(a, {"type": "bytes", "text": "bin"})
    assert await asyncio.wait_for(b.read_message(), 5) == b"bin"


async def test_large_frames_use_extended_lengths(app: Application, ws_connect: Connect) -> None:
    a = await ws_connect("/chat/r")
    b = await ws_connect("/chat/r")
    await eventually(lambda: len(ws_state(app).rooms.get("r", ())) == 2)
    for size in (125, 126, 65535, 65536, 200_000):
        await send_json(a, {"type": "flood", "size": size, "count": 1})
        assert await asyncio.wait_for(b.read_message(), 5) == "x" * size


async def test_join_and_leave(app: Application, ws_connect: Connect) -> None:
    a = await ws_connect("/chat/one")
    await send_json(a, {"type": "join", "room": "two"})
    assert await read_json(a) == {"joined": ["one", "two"]}
    await send_json(a, {"type": "join", "room": "two"})  # idempotent
    assert await read_json(a) == {"joined": ["one", "two"]}
    assert set(ws_state(app).rooms) == {"one", "two"}
    await send_json(a, {"type": "leave", "room": "one"})
    assert await read_json(a) == {"left": ["two"]}
    await send_json(a, {"type": "leave", "room": "nope"})
    assert await read_json(a) == {"left": ["two"]}
    assert set(ws_state(app).rooms) == {"two"}


async def test_rooms_are_cleaned_when_connections_close(
    app: Application, ws_connect: Connect
) -> None:
    conns = [await ws_connect(f"/chat/room{i % 3}") for i in range(9)]
    await eventually(lambda: sum(len(r) for r in ws_state(app).rooms.values()) == 9)
    assert len(state_for(app).connections) == 9
    for conn in conns:
        conn.close()
    await eventually(lambda: not state_for(app).connections)
    assert_registries_empty(app)


async def test_compressed_connections_fall_back_to_write_message(
    app: Application, ws_connect: Connect
) -> None:
    plain = await ws_connect("/chat/mixed")
    compressed = await ws_connect("/zchat/mixed", compression_options={})
    sender = await ws_connect("/chat/mixed")
    await eventually(lambda: len(ws_state(app).rooms.get("mixed", ())) == 3)
    handlers = app.settings["opened"]
    assert any(h.ws_connection._compressor is not None for h in handlers)
    await send_json(sender, {"type": "say", "text": "z" * 1000})
    assert await read_json(plain) == {"text": "z" * 1000}
    assert await read_json(compressed) == {"text": "z" * 1000}


async def test_client_vanishing_mid_broadcast(
    app: Application, base_url: str, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    sender = await ws_connect("/chat/v")
    keep = [await ws_connect("/chat/v") for _ in range(5)]
    gone = []
    for _ in range(10):
        client, status, _ = await RawClient.connect(base_url, "/chat/v")
        assert client is not None
        assert status == 101
        gone.append(client)
    await eventually(lambda: len(ws_state(app).rooms.get("v", ())) == 16)
    caplog.set_level(logging.WARNING)
    for client in gone:
        client.abort()  # RST: the server learns it only when it writes or reads
    for i in range(20):
        await send_json(sender, {"type": "say", "text": str(i)})
    for conn in keep:
        for i in range(20):
            assert await read_json(conn) == {"text": str(i)}
    await eventually(lambda: len(ws_state(app).rooms.get("v", ())) == 6)
    await asyncio.sleep(0.05)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.parametrize("app", [make_app(max_pending_bytes=64 * 1024)], indirect=False)
async def test_client_that_stops_reading_is_closed_with_1013(
    app: Application, base_url: str, ws_connect: Connect
) -> None:
    sender = await ws_connect("/chat/slow")
    slow, status, _ = await RawClient.connect(base_url, "/chat/slow", rcvbuf=4096)
    assert slow is not None
    assert status == 101
    await eventually(lambda: len(ws_state(app).rooms.get("slow", ())) == 2)
    slow_handler = next(h for h in app.settings["opened"] if h is not app.settings["opened"][0])
    stream = slow_handler.ws_connection.stream
    # The slow client reads nothing: the kernel buffers fill, then Tornado's.
    await send_json(sender, {"type": "flood", "size": 16 * 1024, "count": 400})
    await send_json(sender, {"type": "echo"})
    assert await read_json(sender) == {"echo": {"type": "echo"}}
    # Memory stayed bounded: at most the limit plus the close frame is queued.
    assert len(stream._write_buffer) <= 64 * 1024 + 64
    assert slow_handler.ws_connection is None  # closing
    # Now read: data frames, then the close frame with 1013.
    frames = 0
    while True:
        opcode, payload = await slow.recv()
        if opcode == 0x8:
            break
        assert opcode == 0x1
        assert payload == b"x" * 16 * 1024
        frames += 1
    assert struct.unpack("!H", payload[:2])[0] == 1013  # RFC 6455 §7.4.1 "Try Again Later"
    assert 0 < frames < 400
    slow.send(0x8, payload[:2])
    await slow.close()
    await eventually(lambda: len(ws_state(app).rooms.get("slow", ())) == 1)


async def test_join_after_close_is_ignored(app: Application, ws_connect: Connect) -> None:
    conn = await ws_connect("/chat/x")
    await eventually(lambda: bool(app.settings["opened"]))
    handler = app.settings["opened"][0]
    conn.close()
    await eventually(lambda: not state_for(app).connections)
    await handler.join("late")
    assert "late" not in ws_state(app).rooms


class RelayBroker(LocalBroker):
    """A real in-process broker that is not a plain LocalBroker: rooms go through it."""


async def test_rooms_span_applications_through_the_broker(
    ws_connect: Connect,
) -> None:
    broker = RelayBroker()
    app_a = make_app(broker=broker)
    app_b = make_app(broker=broker)
    servers = []
    urls = []
    for app in (app_a, app_b):
        sock, port = bind_unused_port()
        server = HTTPServer(app)
        server.add_sockets([sock])
        servers.append(server)
        urls.append(f"ws://127.0.0.1:{port}")
    try:
        a1 = await ws_connect(urls[0] + "/chat/global")
        a2 = await ws_connect(urls[0] + "/chat/global")
        b1 = await ws_connect(urls[1] + "/chat/global")
        topic = "tk:room:global"
        # One subscription per room per application ("process"), not per connection.
        await eventually(lambda: broker.subscriber_count(topic) == 2)
        await ws_state(app_a).relays["global"].ready
        await send_json(a1, {"type": "say", "text": "across"})
        assert await read_json(b1) == {"text": "across"}
        assert await read_json(a2) == {"text": "across"}
        # exclude_self held across the relay: a1's next message is its echo.
        await send_json(a1, {"type": "echo"})
        assert await read_json(a1) == {"echo": {"type": "echo"}}
        await send_json(b1, {"type": "bytes", "text": "bin"})
        assert await asyncio.wait_for(a1.read_message(), 5) == b"bin"
        assert await asyncio.wait_for(a2.read_message(), 5) == b"bin"
        for conn in (a1, a2, b1):
            conn.close()
        await eventually(lambda: broker.subscriber_count() == 0)
        for app in (app_a, app_b):
            await eventually(lambda app=app: not state_for(app).connections)  # type: ignore[misc]
            assert_registries_empty(app)
    finally:
        for server, app in zip(servers, (app_a, app_b), strict=False):
            server.stop()
            await shutdown(app, timeout=5)
            await server.close_all_connections()
        await broker.close()


# ---------------------------------------------------------------------------
# HeartbeatMixin
# ---------------------------------------------------------------------------


async def test_heartbeat_measures_latency(app: Application, ws_connect: Connect) -> None:
    await ws_connect("/chat/hb")
    await eventually(lambda: bool(app.settings["opened"]))
    handler = app.settings["opened"][0]
    assert app.settings["opened"][0].latency is None  # no pong yet
    await eventually(lambda: handler.latency is not None)
    assert 0 <= handler.latency < 5
    assert handler.last_pong is not None
    first = handler.last_pong
    await eventually(lambda: handler.last_pong != first)  # pings keep going


async def test_one_timer_drives_every_connection(app: Application, ws_connect: Connect) -> None:
    conns = [await ws_connect("/chat/hb") for _ in range(5)]
    await eventually(lambda: len(app.settings["opened"]) == 5)
    ws = ws_state(app)
    assert len(ws.heartbeats) == 1
    (hb,) = ws.heartbeats.values()
    assert len(hb.conns) == 5
    assert hb.running
    handlers = app.settings["opened"]
    await eventually(lambda: all(h.latency is not None for h in handlers))
    for conn in conns:
        conn.close()
    await eventually(lambda: not hb.conns)
    assert not hb.running  # the timer stops with the last connection


async def test_client_that_never_answers_pings_is_closed_with_1011(
    app: Application, base_url: str
) -> None:
    client, status, _ = await RawClient.connect(base_url, "/chat/dead")
    assert client is not None
    assert status == 101
    pings = 0
    try:
        while True:
            opcode, payload = await client.recv()
            if opcode == 0x9:
                pings += 1  # never answered
            elif opcode == 0x8:
                break
        assert struct.unpack("!H", payload[:2])[0] == 1011
        # Closed after the first unanswered ping, i.e. within interval + timeout.
        assert pings == 1
        client.send(0x8, payload[:2])
    finally:
        await client.close()
    await eventually(lambda: not state_for(app).connections)


async def test_unsolicited_pong_proves_liveness_without_latency(
    app: Application, base_url: str
) -> None:
    client, _, _ = await RawClient.connect(base_url, "/chat/u")
    assert client is not None
    try:
        await eventually(lambda: bool(app.settings["opened"]))
        handler = app.settings["opened"][0]
        opcode, payload = await client.recv()
        assert opcode == 0x9
        assert payload == b"tk-hb"
        client.send(0xA, b"other")  # a pong with a foreign payload
        await eventually(lambda: handler.last_pong is not None)
        assert handler.latency is None
        opcode, payload = await client.recv()  # still alive: pinged again, not closed
        assert opcode == 0x9
        client.send(0xA, payload)
        await eventually(lambda: handler.latency is not None)
        client.send(0x8, struct.pack("!H", 1000))
        opcode, _ = await client.recv()
        while opcode != 0x8:
            opcode, _ = await client.recv()
    finally:
        await client.close()
    await eventually(lambda: not state_for(app).connections)


@pytest.mark.parametrize("app", [make_app(heartbeat_interval=0.3)], indirect=False)
async def test_class_attribute_wins_over_setting(app: Application) -> None:
    class Fast(HeartbeatMixin, WebSocketHandler):
        heartbeat_interval = 0.1

    handler = Fast.__new__(Fast)
    handler.application = app
    assert handler._tk_heartbeat().interval == 0.1
    assert handler._tk_heartbeat().timeout == 1.0


# ---------------------------------------------------------------------------
# Shutdown, access log, composition
# ---------------------------------------------------------------------------


async def test_shutdown_closes_every_websocket_with_1001(
    app: Application, ws_connect: Connect, http_client: Any, base_url: str
) -> None:
    conns = [await ws_connect(path) for path in ("/chat/a", "/chat/b", "/sync")]
    await eventually(lambda: len(state_for(app).connections) == 3)
    await shutdown(app, timeout=5)
    for conn in conns:
        assert await asyncio.wait_for(conn.read_message(), 5) is None
        assert conn.close_code == 1001  # RFC 6455 §7.4.1 "Going Away"
    assert_registries_empty(app)
    with pytest.raises(HTTPClientError) as info:
        await ws_connect("/chat/late")
    assert info.value.code == 503


async def test_access_record_logged_when_connection_ends(
    app: Application, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_kit.access")
    conn = await ws_connect("/timed/t")
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.name == "tornado_kit.access"]
    conn.close(1000)
    await eventually(lambda: not state_for(app).connections)
    records = [r for r in caplog.records if r.name == "tornado_kit.access"]
    assert len(records) == 1
    assert "101" in records[0].getMessage() or getattr(records[0], "status", None) == 101


MIXINS = (AllowedOriginsMixin, HeartbeatMixin, JSONMessageMixin, BroadcastMixin)


def _composed_app() -> Application:
    routes = []
    for i, order in enumerate(itertools.permutations(MIXINS)):

        class Composed(*order, WebSocketHandler):  # type: ignore[misc]
            allowed_origins = ("https://ok.example",)

            def open(self) -> None:
                self.join("all")

            async def on_json(self, data: dict[str, Any]) -> None:
                await self.broadcast("all", data, exclude_self=False)

        routes.append((f"/c{i}", Composed))
    return Application(routes, heartbeat_interval=0.2, heartbeat_timeout=1.0)


@pytest.mark.parametrize("app", [_composed_app()], indirect=False)
async def test_mixins_compose_in_any_order(app: Application, ws_connect: Connect) -> None:
    n = len(list(itertools.permutations(MIXINS)))
    for i in range(n):
        with pytest.raises(HTTPClientError) as info:
            await ws_connect(f"/c{i}", headers={"Origin": "https://evil.example"})
        assert info.value.code == 403
        conn = await ws_connect(f"/c{i}", headers={"Origin": "https://ok.example"})
        await send_json(conn, {"i": i})
        assert await read_json(conn) == {"i": i}
        await conn.write_message("nope")
        assert (await read_json(conn))["error"]["status"] == 400
        conn.close()
        await eventually(lambda: not state_for(app).connections)
    (hb,) = ws_state(app).heartbeats.values()
    assert not hb.running


# ---------------------------------------------------------------------------
# AllowedOriginsMixin
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "HTTPS://EXAMPLE.COM",
        "https://example.com:443",
        "https://a.example.org:8443",
        "https://a.b.c.example.org:8443",
        "http://localhost:80",
    ],
)
async def test_allowed_origins_accept(ws_connect: Connect, origin: str) -> None:
    conn = await ws_connect("/origin", headers={"Origin": origin})
    await conn.write_message("ping")
    assert await asyncio.wait_for(conn.read_message(), 5) == "ping"


@pytest.mark.parametrize(
    "origin",
    [
        "http://example.com",  # scheme must match
        "https://example.com:8443",  # port must match
        "https://sub.example.com",  # exact entry: no subdomains
        "https://example.org:8443",  # wildcard: not the bare domain
        "https://a.example.org",  # wildcard entry has port 8443
        "https://evil-example.org:8443",
        "https://a.example.org.evil.com:8443",
        "https://example.com.evil.com",
        "null",
        # malformed: 403, never 500
        "",
        "example.com",
        "https://",
        "https://example.com/path",
        "https://user@example.com",
        "https://example.com:99999",
        "https://example.com:abc",
        "https://[::1",
        "https://exa mple.com",
        "https://ex\u00e4mple.com",
        "ftp://example.com",
        "https://example.com:",
        "https://.example.com",
    ],
)
async def test_disallowed_and_malformed_origins_get_403(base_url: str, origin: str) -> None:
    client, status, body = await RawClient.connect(base_url, "/origin", headers={"Origin": origin})
    assert client is None
    assert status == 403, body


async def test_missing_origin_is_allowed(ws_connect: Connect) -> None:
    conn = await ws_connect("/origin")
    await conn.write_message("x")
    assert await asyncio.wait_for(conn.read_message(), 5) == "x"


async def test_same_host_origin_is_allowed(base_url: str, ws_connect: Connect) -> None:
    conn = await ws_connect("/origin", headers={"Origin": base_url})
    await conn.write_message("x")
    assert await asyncio.wait_for(conn.read_message(), 5) == "x"


@pytest.mark.parametrize("origin", ["https://[::1", "https://other.example", "null"])
async def test_without_allowed_origins_tornado_rule_applies(base_url: str, origin: str) -> None:
    client, status, _ = await RawClient.connect(
        base_url, "/default-origin", headers={"Origin": origin}
    )
    assert client is None
    assert status == 403


@pytest.mark.parametrize(
    "app", [make_app(allowed_origins=["https://from-settings.example"])], indirect=False
)
async def test_allowed_origins_from_settings(ws_connect: Connect) -> None:
    conn = await ws_connect("/default-origin", headers={"Origin": "https://from-settings.example"})
    conn.close()
    with pytest.raises(HTTPClientError) as info:
        await ws_connect("/default-origin", headers={"Origin": "https://nope.example"})
    assert info.value.code == 403


# ---------------------------------------------------------------------------
# examples/04_websocket_chat.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("app", [load_example("04_websocket_chat.py").make_app()], indirect=False)
async def test_example_chat(ws_connect: Connect, http_client: Any, base_url: str) -> None:
    page = await http_client.fetch(base_url + "/")
    assert b"new WebSocket" in page.body
    alice = await ws_connect("/chat/lobby", headers={"Origin": "https://chat.example.com"})
    bob = await ws_connect("/chat/lobby", headers={"Origin": "https://eu.app.example.com"})
    assert "welcome" in (await read_json(alice))["system"]
    assert "welcome" in (await read_json(bob))["system"]
    await send_json(alice, {"text": "hi bob"})
    for conn in (alice, bob):
        message = await read_json(conn)
        assert message["text"] == "hi bob"
        assert message["from"].startswith("guest-")
    await send_json(bob, {"text": ""})
    assert (await read_json(bob))["error"]["status"] == 400
    with pytest.raises(HTTPClientError) as info:
        await ws_connect("/chat/lobby", headers={"Origin": "https://example.com.evil.net"})
    assert info.value.code == 403


class FailingOpen(HeartbeatMixin, BroadcastMixin, WebSocketHandler):
    def open(self) -> None:
        self.join("doomed")
        raise RuntimeError("open failed")


class FailingMessage(HeartbeatMixin, BroadcastMixin, WebSocketHandler):
    def open(self) -> None:
        self.join("doomed")

    def on_message(self, message: str | bytes) -> None:
        raise RuntimeError("on_message failed")


@pytest.mark.parametrize(
    "app",
    [Application([("/open", FailingOpen), ("/message", FailingMessage)])],
    indirect=False,
)
async def test_handler_exceptions_leave_no_registry_entries(
    app: Application, ws_connect: Connect
) -> None:
    # Tornado aborts the connection and, after a failed open(), never calls on_close().
    conn = await ws_connect("/open")
    assert await asyncio.wait_for(conn.read_message(), 5) is None
    await eventually(lambda: not state_for(app).connections)
    assert_registries_empty(app)
    conn = await ws_connect("/message")
    await conn.write_message("x")
    assert await asyncio.wait_for(conn.read_message(), 5) is None
    await eventually(lambda: not state_for(app).connections)
    assert_registries_empty(app)


class ProblemOrigins(JSONErrorMixin, AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = ("https://ok.example",)


@pytest.mark.parametrize("app", [Application([("/p", ProblemOrigins)])], indirect=False)
async def test_refused_origin_is_a_problem_document_with_json_errors(base_url: str) -> None:
    client, status, body = await RawClient.connect(
        base_url, "/p", headers={"Origin": "https://evil.example"}
    )
    assert client is None
    assert status == 403
    problem = loads(body.split(b"\r\n\r\n")[-1] if b"\r\n\r\n" in body else body)
    assert problem["status"] == 403
    assert problem["detail"] == "cross-origin WebSocket not allowed"


async def raw_socket_client(base_url: str, path: str) -> socket.socket:
    """A bare non-blocking socket after a successful handshake (closable synchronously)."""
    loop = asyncio.get_running_loop()
    port = int(base_url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 4096)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


async def test_socket_reset_during_the_broadcast_loop(
    app: Application, base_url: str, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    keep = await ws_connect("/chat/rst")
    gone = [await raw_socket_client(base_url, "/chat/rst") for _ in range(5)]
    await eventually(lambda: len(ws_state(app).rooms.get("rst", ())) == 6)
    caplog.set_level(logging.WARNING)
    for sock in gone:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST, right now
    # No IOLoop iteration between the resets and the loop: the server learns
    # about them from send() itself (ECONNRESET / EPIPE) inside deliver().
    ws_state(app).deliver("rst", 0x1, b'{"n":1}', None)
    ws_state(app).deliver("rst", 0x1, b'{"n":2}', None)
    assert await read_json(keep) == {"n": 1}
    assert await read_json(keep) == {"n": 2}
    await eventually(lambda: len(ws_state(app).rooms.get("rst", ())) == 1)
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_foreign_messages_on_a_room_topic_are_logged_and_skipped(
    ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RelayBroker()
    app = make_app(broker=broker)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        a = await ws_connect(f"ws://127.0.0.1:{port}/chat/r")
        b = await ws_connect(f"ws://127.0.0.1:{port}/chat/r")
        await eventually(lambda: len(ws_state(app).rooms.get("r", ())) == 2)
        await ws_state(app).relays["r"].ready
        with caplog.at_level(logging.ERROR, logger="tornado_kit.websocket"):
            await broker.publish("tk:room:r", "not an envelope")
            await broker.publish("tk:room:r", "tk9|t||wrong version")
            await send_json(a, {"type": "say", "text": "still works"})
            assert await read_json(b) == {"text": "still works"}
        assert len([r for r in caplog.records if "relayed message" in r.getMessage()]) == 2
        a.close()
        b.close()
        await eventually(lambda: broker.subscriber_count() == 0)
        await eventually(lambda: not state_for(app).connections)
        assert_registries_empty(app)
    finally:
        server.stop()
        await shutdown(app, timeout=5)
        await server.close_all_connections()
        await broker.close()
