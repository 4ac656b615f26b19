"""WebSocket mixins: heartbeats, JSON messages, rooms with broadcast, origin allow-lists.

Mix them into your own :class:`~tornado.websocket.WebSocketHandler`, in any
order::

    class ChatHandler(AllowedOriginsMixin, HeartbeatMixin, JSONMessageMixin,
                      BroadcastMixin, WebSocketHandler):
        allowed_origins = ["https://chat.example.com", "https://*.example.com"]

        def open(self, room: str) -> None:
            self.room = room
            self.join(room)

        async def on_json(self, data: dict[str, Any]) -> None:
            await self.broadcast(self.room, {"text": data.get("text")})

Every handler that uses one of these mixins is registered in the
application's connection registry while it is open, so that the shutdown hook
(:func:`tornado_kit.shutdown`, called by ``serve()`` and the
testing plugin) closes it with code 1001 "Going Away" (RFC 6455 §7.4.1).
For each of them, a refused handshake is an RFC 9457 problem document, and
``max_pending_bytes`` bounds every write to the connection: a client that
stops reading is closed with 1013 "Try Again Later" (see
:class:`~tornado_kit._ws_base.TrackedWebSocket`).

Shared state (the heartbeat timer, the rooms, the relay subscriptions) lives
in the application's :class:`~tornado_kit._lifecycle.AppState`, never in
module globals, so applications and ``fork_processes`` children never share
it by accident.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection
from typing import Any

from tornado.ioloop import IOLoop

from tornado_kit import _json
from tornado_kit._broker import LocalBroker, broker_for
from tornado_kit._errors import APIError
from tornado_kit._lifecycle import state_for
from tornado_kit._origins import parse_origin, parse_pattern, same_host
from tornado_kit._settings import resolve
from tornado_kit._ws_base import TrackedWebSocket
from tornado_kit._ws_handshake import CROSS_ORIGIN_DETAIL
from tornado_kit._ws_runtime import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    PING_PAYLOAD,
    ROOM_TOPIC_PREFIX,
    STATE_KEY,
    Beat,
    Heartbeat,
    WSState,
    done_future,
    envelope,
    log,
    ws_state,
)

__all__ = [
    "AllowedOriginsMixin",
    "BroadcastMixin",
    "HeartbeatMixin",
    "JSONMessageMixin",
]

# ---------------------------------------------------------------------------
# Public mixins
# ---------------------------------------------------------------------------


class HeartbeatMixin(TrackedWebSocket):
    """Ping every connection regularly; close the ones that stop answering.

    One timer per application (per distinct ``heartbeat_interval`` /
    ``heartbeat_timeout`` pair) drives all connections: no task, future or
    ``PeriodicCallback`` per connection. A ping goes out every
    ``heartbeat_interval`` seconds (default 20); a connection that has not
    answered with a pong within ``heartbeat_timeout`` seconds (default 20) is
    closed with code 1011. The first ping goes out shortly after the
    handshake, so a dead peer is closed within ``interval + timeout``.

    Both knobs come from the class attribute, else the application setting of
    the same name, else the default. Unlike Tornado's own
    ``websocket_ping_interval`` (which closes with 1000 and says nothing about
    the round trip), this mixin exposes :attr:`latency` and :attr:`last_pong`.

    Example::

        class Feed(HeartbeatMixin, WebSocketHandler):
            heartbeat_interval = 10.0

            def on_pong(self, data: bytes) -> None:
                super().on_pong(data)
                print("round trip", self.latency)

    Subclasses that override :meth:`on_pong` must call ``super().on_pong(data)``.

    .. versionadded:: 0.1
    """

    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None

    def _tk_heartbeat(self) -> Heartbeat:
        interval = float(resolve(self, "heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL))
        timeout = float(resolve(self, "heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT))
        if not (interval > 0 and timeout > 0):
            raise ValueError("heartbeat_interval and heartbeat_timeout must be positive")
        ws = ws_state(self.application)
        key = (interval, timeout)
        hb = ws.heartbeats.get(key)
        if hb is None:
            hb = ws.heartbeats[key] = Heartbeat(interval, timeout)
        return hb

    def _tk_register(self) -> None:
        super()._tk_register()
        self._tk_heartbeat().add(self)

    def _tk_beat(self) -> Beat | None:
        ws: WSState | None = state_for(self.application).resources.get(STATE_KEY)
        if ws is None:
            return None
        for hb in ws.heartbeats.values():
            beat = hb.conns.get(self)
            if beat is not None:
                return beat
        return None

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered heartbeat ping, in seconds.

        ``None`` until the first pong (and after the connection closed).
        """
        beat = self._tk_beat()
        return None if beat is None else beat.latency

    @property
    def last_pong(self) -> float | None:
        """``IOLoop.time()`` when the last pong arrived, or ``None``."""
        beat = self._tk_beat()
        return None if beat is None else beat.last_pong

    def on_pong(self, data: bytes) -> None:
        """Record the pong (runs when a pong frame arrives); call ``super()`` when overriding.

        Any pong proves the peer alive (RFC 6455 §5.5.3 allows unsolicited
        pongs); only a pong that echoes our ping's payload measures latency.
        """
        super().on_pong(data)
        beat = self._tk_beat()
        if beat is None:
            return
        now = IOLoop.current().time()
        beat.last_pong = now
        if beat.waiting:
            beat.waiting = False
            if data == PING_PAYLOAD:
                beat.latency = now - beat.sent


class JSONMessageMixin(TrackedWebSocket):
    """Decode every text message as a JSON object and hand it to :meth:`on_json`.

    A message that is not valid JSON, is nested too deeply, is not an object,
    or arrives in a binary frame is answered with an error message and the
    connection stays open::

        {"error": {"status": 400, "detail": "message is not valid JSON"}}

    An :class:`~tornado_kit.APIError` raised by :meth:`on_json` is answered the
    same way with its status and detail. Messages larger than Tornado's
    ``websocket_max_message_size`` setting never reach this mixin: Tornado
    closes the connection with 1009 "Message Too Big" (RFC 6455 §7.4.1).

    Example::

        class Echo(JSONMessageMixin, WebSocketHandler):
            def on_json(self, data: dict[str, Any]) -> None:
                self.write_message({"echo": data})

    .. versionadded:: 0.1
    """

    def on_json(self, data: dict[str, Any]) -> Awaitable[None] | None:
        """Handle one decoded JSON object. Override it; it may be a coroutine.

        Like ``on_message``, the next message is not processed until a
        coroutine ``on_json`` has finished.
        """
        raise NotImplementedError

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Decode *message* and call :meth:`on_json` (runs for every data frame)."""
        if isinstance(message, bytes):
            self.send_json_error(400, "binary messages are not accepted; send JSON text")
            return None
        try:
            data = _json.loads(message)
        except _json.LoneSurrogateError:
            self.send_json_error(400, "message contains a lone surrogate (invalid Unicode)")
            return None
        except ValueError as exc:
            detail = "message is not valid JSON"
            if "deep" in str(exc) or "recursion" in str(exc).lower():
                detail = "message is nested too deeply"
            self.send_json_error(400, detail)
            return None
        if not isinstance(data, dict):
            self.send_json_error(400, "message must be a JSON object")
            return None
        try:
            result = self.on_json(data)
        except APIError as exc:
            self.send_json_error(exc.status_code, exc.detail)
            return None
        if result is None:
            return None
        return self._tk_await_json(result)

    async def _tk_await_json(self, result: Awaitable[None]) -> None:
        try:
            await result
        except APIError as exc:
            self.send_json_error(exc.status_code, exc.detail)

    def send_json_error(self, status: int, detail: str | None) -> None:
        """Send ``{"error": {"status": status, "detail": detail}}``; never raises.

        Does nothing when the connection is already closing, or closes it
        (1013) when the client is not reading (see ``max_pending_bytes``).
        A *detail* that JSON cannot carry is logged and left out.
        """
        try:
            message = _json.dumps({"error": {"status": status, "detail": detail}})
        except (TypeError, ValueError):
            log.error("cannot encode the error detail for status %s; sent without it", status)
            message = _json.dumps({"error": {"status": status}})
        self._tk_send_text(message)


class BroadcastMixin(TrackedWebSocket):
    """Rooms: :meth:`join`, :meth:`leave` and :meth:`broadcast` to every member.

    :meth:`broadcast` encodes the message once (``str`` as text, ``bytes`` as
    a binary frame, anything else as JSON), builds the WebSocket frame once and
    writes it to every member's socket without a task or future per
    connection. Members that are closing are skipped silently. A member whose
    unsent data would exceed ``max_pending_bytes`` (default 1 MiB; class
    attribute or setting; it bounds every other write too) is closed with
    1013 "Try Again Later" instead of buffering without bound. Memberships
    end when the connection closes.

    Rooms span processes when the ``broker`` setting is a shared broker such
    as :class:`~tornado_kit.RedisBroker`: each process subscribes once per
    room to the topic ``"tk:room:<room>"`` and delivers what arrives to its
    own members. With the default :class:`~tornado_kit.LocalBroker` delivery
    is direct (no broker round trip) and rooms are per application.

    Example::

        class Chat(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
            def open(self) -> None:
                self.join("lobby")

            async def on_json(self, data: dict[str, Any]) -> None:
                await self.broadcast("lobby", {"text": data["text"]})

    .. versionadded:: 0.1
    """

    def join(self, room: str) -> asyncio.Future[None]:
        """Add this connection to *room*. Idempotent.

        Returns a future that resolves once the room's broker subscription is
        active (immediately with a ``LocalBroker``); awaiting it is optional.
        A connection that has already closed is not added.
        """
        if self._on_close_called:
            return done_future()
        return ws_state(self.application).join(self, room)

    def leave(self, room: str) -> None:
        """Remove this connection from *room* (no error when not a member)."""
        ws_state(self.application).leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection has joined."""
        member = ws_state(self.application).members.get(self)
        return frozenset(member.rooms) if member is not None else frozenset()

    async def broadcast(self, room: str, message: Any, exclude_self: bool = True) -> None:
        """Send *message* to every connection in *room* (in every process).

        ``str`` is sent as a text frame, ``bytes`` as a binary frame, any
        other value is JSON-encoded once. With ``exclude_self`` (the default)
        this connection does not receive its own message. Never raises for a
        closed or closing recipient. A string holding a lone surrogate (not
        Unicode text) raises ``ValueError`` before anything is sent.
        """
        if isinstance(message, str):
            opcode, payload = 0x1, _json.encode_utf8(message, "the broadcast message")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = 0x2, bytes(message)
        else:
            opcode, payload = 0x1, _json.dumps(message)
        ws = ws_state(self.application)
        broker = broker_for(self.application)
        if type(broker) is LocalBroker:
            ws.deliver(room, opcode, payload, self if exclude_self else None)
            return
        origin = ws.conn_id(self) if exclude_self else ""
        await broker.publish(ROOM_TOPIC_PREFIX + room, envelope(opcode, origin, payload))


class AllowedOriginsMixin(TrackedWebSocket):
    """Accept WebSocket handshakes only from listed origins.

    ``allowed_origins`` (class attribute or application setting) holds exact
    origins (``"https://app.example.com"``) and wildcard patterns
    (``"https://*.example.com"``: any depth of subdomain, not the bare
    domain). Origins are compared after normalising case and default ports
    (``:80`` for http, ``:443`` for https); the scheme must match. ``"*"``
    allows every well-formed origin. Tornado's same-host rule still applies
    (an ``Origin`` equal to the ``Host`` is accepted), and a request without
    an ``Origin`` header (a non-browser client) is accepted, as in Tornado.

    A refused or malformed ``Origin`` gets a 403 problem document at the
    handshake (with or without :class:`~tornado_kit.JSONErrorMixin`), never
    a 500. ``"null"`` (an opaque
    origin) is never accepted by a pattern. Without ``allowed_origins``,
    Tornado's rule applies unchanged.

    Example::

        class Live(AllowedOriginsMixin, WebSocketHandler):
            allowed_origins = ["https://example.com", "https://*.example.com"]

    .. versionadded:: 0.1
    """

    allowed_origins: Collection[str] | None = None

    def _tk_origin_rules(self) -> list[tuple[str, str, int, bool]] | None:
        patterns: Collection[str] | None = resolve(self, "allowed_origins", None)
        if patterns is None:
            return None
        if isinstance(patterns, str):
            patterns = [patterns]
        return [parse_pattern(p) for p in patterns]

    def _tk_origin_refusal(self) -> APIError | None:
        rules = self._tk_origin_rules()
        origin = self.request.headers.get("Origin")
        if rules is not None and origin is not None and not self._tk_origin_ok(origin, rules):
            return APIError(403, CROSS_ORIGIN_DETAIL)
        # Then Tornado's rule, which calls check_origin (below) and guards
        # against an Origin it cannot parse.
        return super()._tk_origin_refusal()

    def check_origin(self, origin: str) -> bool:
        """Return whether *origin* may open a WebSocket (runs at the handshake)."""
        rules = self._tk_origin_rules()
        if rules is None:
            try:
                return super().check_origin(origin)
            except ValueError:  # Tornado 6.5 parses the origin unguarded
                return False
        return self._tk_origin_ok(origin, rules)

    def _tk_origin_ok(self, origin: str, rules: list[tuple[str, str, int, bool]]) -> bool:
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed
        if same_host(origin, self.request.headers.get("Host", "")):
            return True
        for r_scheme, r_host, r_port, wildcard in rules:
            if r_scheme == "*":
                return True
            if r_scheme != scheme or r_port != port:
                continue
            if wildcard:
                if host.endswith("." + r_host):
                    return True
            elif host == r_host:
                return True
        return False
