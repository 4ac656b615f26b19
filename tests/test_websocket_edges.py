"""WebSocket edge cases through a real server: late broadcasts, relays, origins, bad knobs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from tests._servers import RedisServer, eventually
from tests.test_websocket import (
    Connect,
    RelayBroker,
    assert_registries_empty,
    read_json,
    ws_state,
)
from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BroadcastMixin,
    HeartbeatMixin,
    JSONMessageMixin,
    RedisBroker,
)
from tornado_kit._json import dumps_str
from tornado_kit._lifecycle import shutdown, state_for
from tornado_kit._ws._origins import parse_pattern
from tornado_kit._ws._rooms import envelope


class Chat(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    def open(self) -> None:
        self.join("room")

    async def on_json(self, data: dict[str, Any]) -> None:
        await self.broadcast("room", data)

    def on_close(self) -> None:
        # The usual "user left" notice, sent after the connection is gone.
        IOLoop.current().spawn_callback(self.broadcast, "room", {"left": True})


class Origins(AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = ("http://[::1]:8080", "https://[2001:DB8::1]", "https://*.ex.com")

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class AnyOrigin(AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = "*"

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class BadHeartbeat(HeartbeatMixin, WebSocketHandler):
    heartbeat_interval = 0.0


class Beating(HeartbeatMixin, BroadcastMixin, WebSocketHandler):
    heartbeat_interval = 0.05

    def open(self) -> None:
        self.join("r")


@pytest.fixture
def app() -> Application:
    return Application(
        [
            ("/chat", Chat),
            ("/origins", Origins),
            ("/any", AnyOrigin),
            ("/bad-hb", BadHeartbeat),
            ("/beat", Beating),
        ],
        broker=RelayBroker(),
    )


async def test_broadcast_after_close_reaches_the_room_and_leaks_nothing(
    app: Application, ws_connect: Connect
) -> None:
    broker: RelayBroker = app.settings["broker"]
    stay = await ws_connect("/chat")
    leave = await ws_connect("/chat")
    await eventually(lambda: len(ws_state(app).rooms.get("room", ())) == 2)
    await ws_state(app).relays["room"].ready
    await leave.write_message(dumps_str({"hello": 1}))
    assert await read_json(stay) == {"hello": 1}
    leave.close(1000)
    # on_close broadcast (exclude_self on a connection that is already gone).
    assert await read_json(stay) == {"left": True}
    ws = ws_state(app)
    assert len(state_for(app).connections) == 1
    assert len(ws.members) == 1, "the closed connection was registered again"
    assert len(ws.ids) <= 1
    stay.close(1000)
    await eventually(lambda: not state_for(app).connections)
    await eventually(lambda: broker.subscriber_count() == 0)
    assert not ws.members
    assert not ws.ids
    assert not ws.rooms
    assert not ws.relays
    await broker.close()


@pytest.mark.parametrize(
    "origin",
    ["http://[::1]:8080", "HTTP://[::1]:8080", "https://[2001:db8::1]:443", "https://a.b.EX.com"],
)
async def test_ipv6_and_case_normalised_origins_are_accepted(
    ws_connect: Connect, origin: str
) -> None:
    conn = await ws_connect("/origins", headers={"Origin": origin})
    await conn.write_message("x")
    assert await asyncio.wait_for(conn.read_message(), 5) == "x"


@pytest.mark.parametrize(
    "origin",
    [
        "http://[::1]",  # default port 80, the entry says 8080
        "https://[::1]:8080",  # scheme mismatch
        "http://[::2]:8080",
        "http://[::1x]:8080",  # not an IPv6 literal
        "https://ex.com",  # wildcard: never the bare domain
        "http://a.ex.com",  # wildcard entry is https
    ],
)
async def test_other_ipv6_and_wildcard_origins_are_refused(
    ws_connect: Connect, origin: str
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await ws_connect("/origins", headers={"Origin": origin})
    assert info.value.code == 403


async def test_star_allows_every_well_formed_origin_only(ws_connect: Connect) -> None:
    for origin in ("https://anything.example", "http://[::1]:1", "http://x"):
        conn = await ws_connect("/any", headers={"Origin": origin})
        conn.close()
    for origin in ("null", "https://a/b", "javascript:alert(1)"):
        with pytest.raises(HTTPClientError) as info:
            await ws_connect("/any", headers={"Origin": origin})
        assert info.value.code == 403


async def test_non_positive_heartbeat_knob_is_a_clear_server_error(
    app: Application, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(HTTPClientError) as info:
        await ws_connect("/bad-hb")
    assert info.value.code == 500  # a configuration error, not the client's
    assert "heartbeat_interval and heartbeat_timeout must be positive" in caplog.text
    assert not state_for(app).connections


@pytest.mark.parametrize("pattern", ["https://" + "ä" * 64 + ".com", "https://ä.com:99x"])
def test_unicode_patterns_that_idna_cannot_encode_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid allowed_origins entry"):
        parse_pattern(pattern)


async def test_room_joined_during_a_redis_outage_is_relayed_once_redis_is_back(
    redis_server: RedisServer, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(redis_server.url, timeout=0.3, reconnect_max_delay=0.2)
    app = Application([("/chat", Chat)], broker=broker)
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    redis_server.stop()
    try:
        with caplog.at_level(logging.ERROR, logger="tornado_kit.websocket"):
            a = await ws_connect(f"ws://127.0.0.1:{port}/chat")
            b = await ws_connect(f"ws://127.0.0.1:{port}/chat")
            relay = ws_state(app).relays["room"]
            await asyncio.wait_for(relay.ready, 5)  # ready (failed) rather than hanging
            assert relay.sub is None
            await eventually(lambda: "broker subscribe failed" in caplog.text)
        assert len(ws_state(app).relays) == 1  # one retrying relay, not one per member
        redis_server.start()
        await eventually(lambda: relay.sub is not None and not relay.sub.closed)
        await a.write_message(dumps_str({"back": True}))
        assert await read_json(b) == {"back": True}
        a.close(1000)
        b.close(1000)
        await eventually(lambda: not state_for(app).connections)
        await eventually(lambda: not ws_state(app).relays and broker.subscriber_count() == 0)
    finally:
        server.stop()
        await shutdown(app, timeout=5)
        await server.close_all_connections()
        await broker.close()


class Hopper(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    """Joins and leaves a room in one go, and talks to rooms it never joined."""

    def open(self) -> None:
        self.join("flash")  # the relay starts subscribing...
        self.leave("flash")  # ...and is stopped before it ran
        self.join("home")

    async def on_json(self, data: dict[str, Any]) -> None:
        await self.broadcast(data["room"], data)


class Shouter(BroadcastMixin, WebSocketHandler):
    """Never joins a room; broadcasts (excluding itself) what it receives."""

    async def on_message(self, message: str | bytes) -> None:
        await self.broadcast("home", message)


@pytest.fixture
def relay_app() -> Application:
    return Application([("/hop", Hopper), ("/shout", Shouter)], broker=RelayBroker())


async def test_relay_stopped_before_it_subscribed_and_rooms_not_joined(
    relay_app: Application, ws_connect: Connect
) -> None:
    app = relay_app
    broker: RelayBroker = app.settings["broker"]
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        a = await ws_connect(f"ws://127.0.0.1:{port}/hop")
        b = await ws_connect(f"ws://127.0.0.1:{port}/hop")
        await eventually(lambda: broker.subscriber_count("tk:room:home") == 1)
        await ws_state(app).relays["home"].ready
        assert "flash" not in ws_state(app).relays
        assert broker.subscriber_count("tk:room:flash") == 0
        # A sender outside the room reaches its members (and is not one of them).
        await a.write_message(dumps_str({"room": "home", "n": 1}))
        assert await read_json(b) == {"room": "home", "n": 1}
        await a.write_message(dumps_str({"room": "elsewhere"}))  # nobody there: no error
        shout = await ws_connect(f"ws://127.0.0.1:{port}/shout")
        await shout.write_message("from outside")
        assert await asyncio.wait_for(a.read_message(), 5) == "from outside"
        assert await asyncio.wait_for(b.read_message(), 5) == "from outside"
        a.close(1000)
        b.close(1000)
        shout.close(1000)
        await eventually(lambda: not state_for(app).connections)
        await eventually(lambda: broker.subscriber_count() == 0)
        assert not ws_state(app).members
        assert not ws_state(app).ids
    finally:
        server.stop()
        await shutdown(app, timeout=5)
        await server.close_all_connections()
        await broker.close()


async def test_relay_that_falls_behind_resubscribes_and_keeps_delivering(
    relay_app: Application, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    app = relay_app
    broker: RelayBroker = app.settings["broker"]
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        a = await ws_connect(f"ws://127.0.0.1:{port}/hop")
        relay = ws_state(app).relays["home"]
        await relay.ready
        first = relay.sub
        assert first is not None
        # More than the relay's queue holds, without yielding to it: overflow.
        with caplog.at_level(logging.WARNING, logger="tornado_kit.websocket"):
            for i in range(first.maxsize + 1):
                broker.publish_nowait("tk:room:home", envelope(0x1, "", str(i).encode()))
            assert first.overflowed
            await eventually(lambda: relay.sub is not first and relay.sub is not None)
        assert "relay fell behind and was resubscribed" in caplog.text
        broker.publish_nowait("tk:room:home", envelope(0x1, "", b"after"))
        while (message := await asyncio.wait_for(a.read_message(), 5)) != "after":
            assert message is not None
        a.close(1000)
        await eventually(lambda: broker.subscriber_count() == 0)
    finally:
        server.stop()
        await shutdown(app, timeout=5)
        await server.close_all_connections()
        await broker.close()


class SlowFailure(JSONMessageMixin, WebSocketHandler):
    """Answers with an error only after the client may have left."""

    async def on_json(self, data: dict[str, Any]) -> None:
        await asyncio.sleep(0.1)
        raise APIError(409, "too late")


@pytest.mark.parametrize("app", [Application([("/slow", SlowFailure)])], indirect=False)
async def test_error_answer_to_a_client_that_left_is_dropped_quietly(
    app: Application, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ws_connect("/slow")
    await conn.write_message(dumps_str({"x": 1}))
    conn.close(1000)
    await eventually(lambda: not state_for(app).connections)
    with caplog.at_level(logging.DEBUG):
        await asyncio.sleep(0.2)  # on_json raises now, with nobody to tell
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_check_origin_called_directly_refuses_what_tornado_cannot_parse() -> None:
    class Plain(AllowedOriginsMixin, WebSocketHandler):
        pass

    handler = Plain.__new__(Plain)
    handler.application = Application()
    handler.request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/ws", "HTTP/1.1"),
        headers=HTTPHeaders(Host="127.0.0.1:8888"),
    )
    # Without allowed_origins Tornado decides (6.5: same host; 6.6: trusted_origins).
    assert not handler.check_origin("https://elsewhere.example")
    assert not handler.check_origin("https://[::1")  # unparsable: refused, no ValueError


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),  # a plain GET: no Upgrade header
        ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400),
        (
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "99",
            },
            426,
        ),
    ],
)
async def test_handshakes_tornado_refuses_leave_nothing_registered(
    app: Application, base_url: str, http_client: Any, headers: dict[str, str], status: int
) -> None:
    response = await http_client.fetch(base_url + "/beat", headers=headers, raise_error=False)
    assert response.code == status
    # Refused before registration: no WebSocket state is even created.
    assert_registries_empty(app)
