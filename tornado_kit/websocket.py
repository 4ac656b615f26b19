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
(:func:`tornado_kit._lifecycle.shutdown`, called by ``serve()`` and the
testing plugin) closes it with code 1001 "Going Away" (RFC 6455 §7.4.1).

Shared state (the heartbeat timer, the rooms, the relay subscriptions) lives
in the application's :class:`~tornado_kit._lifecycle.AppState`, never in
module globals, so applications and ``fork_processes`` children never share
it by accident.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import math
import secrets
import struct
import urllib.parse
from collections.abc import Awaitable, Collection, Coroutine
from typing import Any

from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from tornado_kit import _json
from tornado_kit._access import add_access_field
from tornado_kit._lifecycle import PHASE_CONNECTIONS, PHASE_RESOURCES, AppState, state_for
from tornado_kit._settings import resolve
from tornado_kit.broker import LocalBroker, Subscription, broker_for
from tornado_kit.errors import APIError

__all__ = [
    "AllowedOriginsMixin",
    "BroadcastMixin",
    "HeartbeatMixin",
    "JSONMessageMixin",
]

log = logging.getLogger("tornado_kit.websocket")

_STATE_KEY = "tornado_kit.websocket"
#: Payload of our heartbeat pings; pongs echo it (RFC 6455 §5.5.3).
_PING_PAYLOAD = b"tk-hb"
#: Prefix of the broker topic that carries a room across processes.
ROOM_TOPIC_PREFIX = "tk:room:"
#: Version tag of the relay envelope (see :func:`_envelope`).
_ENVELOPE_TAG = "tk1"

# RFC 6455 §7.4.1 close codes.
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

DEFAULT_HEARTBEAT_INTERVAL = 20.0
DEFAULT_HEARTBEAT_TIMEOUT = 20.0
DEFAULT_MAX_PENDING_BYTES = 1024 * 1024


# ---------------------------------------------------------------------------
# Per-application state
# ---------------------------------------------------------------------------


class _Beat:
    """Heartbeat bookkeeping of one connection (kept small: no dict, no futures)."""

    __slots__ = ("last_pong", "latency", "sent", "tick", "waiting")

    def __init__(self) -> None:
        self.tick = -(1 << 30)  # tick of the last ping (never: ping at the next tick)
        self.sent = 0.0  # IOLoop time of that ping (a float shared by all pinged then)
        self.waiting = False
        self.last_pong: float | None = None
        self.latency: float | None = None


class _Heartbeat:
    """One timer that pings every connection sharing an (interval, timeout) pair.

    The timer ticks every ``min(interval, timeout) / 2`` seconds. On a tick a
    connection is pinged when its last ping is ``interval`` old and closed
    with 1011 when a ping is ``timeout`` old without a pong. A new connection
    is pinged at the first tick after it registers, so a dead peer is closed
    within ``interval + timeout`` of the handshake. The timer runs only while
    connections are registered.
    """

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        period = min(interval, timeout) / 2
        self.ping_ticks = max(1, math.ceil(interval / period - 1e-9))
        self.timeout_ticks = max(1, math.ceil(timeout / period - 1e-9))
        self.period = period
        self.ticks = 0
        self.conns: dict[WebSocketHandler, _Beat] = {}
        self._timer: PeriodicCallback | None = None

    def add(self, handler: WebSocketHandler) -> None:
        if handler in self.conns:
            return
        self.conns[handler] = _Beat()
        if self._timer is None:
            self._timer = PeriodicCallback(self._tick, self.period * 1000)
            self._timer.start()

    def discard(self, handler: WebSocketHandler) -> None:
        self.conns.pop(handler, None)
        if not self.conns:
            self.stop()

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()

    @property
    def running(self) -> bool:
        return self._timer is not None

    def _tick(self) -> None:
        self.ticks += 1
        tick = self.ticks
        now = IOLoop.current().time()
        expired: list[WebSocketHandler] = []
        broken: list[tuple[IOStream, OSError]] = []
        for handler, beat in self.conns.items():
            proto = handler.ws_connection
            if proto is None or proto.stream is None or proto.is_closing():
                continue  # handshake not done yet, or already closing
            if beat.waiting:
                if tick - beat.tick >= self.timeout_ticks:
                    expired.append(handler)
                continue
            if tick - beat.tick >= self.ping_ticks:
                stream = proto.stream
                buffer = getattr(stream, "_write_buffer", None)
                if buffer is not None and type(proto) is WebSocketProtocol13:
                    # Pinging every connection at once: no future per ping.
                    error = _write_prebuilt(stream, buffer, _PING_FRAME)
                    if error is not None:
                        broken.append((stream, error))
                        continue
                else:
                    try:
                        proto.write_ping(_PING_PAYLOAD)
                    except (StreamClosedError, WebSocketClosedError):
                        continue
                beat.tick = tick
                beat.sent = now
                beat.waiting = True
        for stream, error in broken:
            stream.close(exc_info=error)
        for handler in expired:
            self.discard(handler)
            log.info("closing WebSocket %s: no pong within %ss", handler.request.uri, self.timeout)
            # RFC 6455 §7.4.1: 1011, the server cannot go on with this connection.
            handler.close(CLOSE_INTERNAL_ERROR, "heartbeat timeout")


class _Member:
    """Room membership of one connection (only for BroadcastMixin users)."""

    __slots__ = ("conn_id", "rooms")

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.conn_id: str | None = None


class _Relay:
    """The one broker subscription of this process for one room.

    It delivers every envelope published on the room's topic (by any process,
    this one included) to the room's local members.
    """

    def __init__(self, ws: _WSState, room: str, broker: Any) -> None:
        self.ws = ws
        self.room = room
        self.broker = broker
        self.sub: Subscription | None = None
        self.stopped = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.ensure_future(self._run())

    def _set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    async def _run(self) -> None:
        topic = ROOM_TOPIC_PREFIX + self.room
        delay = 0.1
        try:
            while not self.stopped:
                try:
                    sub = await self.broker.subscribe(topic)
                except Exception:
                    log.exception("room %r: broker subscribe failed; retrying", self.room)
                    self._set_ready()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.1
                self.sub = sub
                if self._stopped():  # stop() ran while subscribing
                    sub.close()
                    break
                self._set_ready()
                try:
                    async for raw in sub:
                        try:
                            self.ws.deliver_envelope(self.room, raw)
                        except Exception:
                            log.exception("room %r: cannot deliver a relayed message", self.room)
                finally:
                    sub.close()
                if not sub.overflowed:
                    break  # closed by stop() or by the broker's close()
                log.warning("room %r: relay fell behind and was resubscribed", self.room)
        finally:
            self._set_ready()

    def _stopped(self) -> bool:
        return self.stopped

    def stop(self) -> None:
        self.stopped = True
        if self.sub is not None:
            self.sub.close()
        else:
            self.task.cancel()


class _WSState:
    """Everything this module keeps per application."""

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state
        self.heartbeats: dict[tuple[float, float], _Heartbeat] = {}
        self.rooms: dict[str, set[WebSocketHandler]] = {}
        self.members: dict[WebSocketHandler, _Member] = {}
        self.ids: dict[str, WebSocketHandler] = {}
        self.relays: dict[str, _Relay] = {}
        self.token = secrets.token_hex(6)
        self._seq = itertools.count(1)
        app_state.on_shutdown(self.close_connections, PHASE_CONNECTIONS)
        app_state.on_shutdown(self.release, PHASE_RESOURCES)

    # -- connections -------------------------------------------------------

    async def close_connections(self) -> None:
        """Shutdown phase 1: close every open WebSocket with 1001 and wait briefly."""
        closing = [
            c
            for c in self.app_state.connections
            if isinstance(c, WebSocketHandler) and c.ws_connection is not None
        ]
        for conn in closing:
            try:
                # RFC 6455 §7.4.1: 1001, the server is going away.
                conn.close(CLOSE_GOING_AWAY, "server shutting down")
            except Exception:
                log.exception("cannot close WebSocket %r", conn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        conns = self.app_state.connections
        while any(c in conns for c in closing) and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def release(self) -> None:
        """Shutdown phase 2: stop the timers and the relay subscriptions."""
        for hb in self.heartbeats.values():
            hb.stop()
        relays = list(self.relays.values())
        self.relays.clear()
        for relay in relays:
            relay.stop()
        if relays:
            await asyncio.gather(*(r.task for r in relays), return_exceptions=True)

    def unregister(self, handler: WebSocketHandler) -> bool:
        """Forget *handler* everywhere; return whether it was registered."""
        was_open = handler in self.app_state.connections
        self.app_state.connections.discard(handler)
        for hb in self.heartbeats.values():
            if handler in hb.conns:
                hb.discard(handler)
        member = self.members.pop(handler, None)
        if member is not None:
            if member.conn_id is not None:
                self.ids.pop(member.conn_id, None)
            for room in member.rooms:
                self._remove_from_room(room, handler)
        return was_open

    # -- rooms ---------------------------------------------------------------

    def join(self, handler: WebSocketHandler, room: str) -> asyncio.Future[None]:
        member = self.members.get(handler)
        if member is None:
            member = self.members[handler] = _Member()
        member.rooms.add(room)
        conns = self.rooms.get(room)
        if conns is None:
            conns = self.rooms[room] = set()
        conns.add(handler)
        broker = broker_for(handler.application)
        if type(broker) is not LocalBroker:
            relay = self.relays.get(room)
            if relay is None:
                relay = self.relays[room] = _Relay(self, room, broker)
            return relay.ready
        return _done_future()

    def leave(self, handler: WebSocketHandler, room: str) -> None:
        member = self.members.get(handler)
        if member is None or room not in member.rooms:
            return
        member.rooms.discard(room)
        self._remove_from_room(room, handler)

    def _remove_from_room(self, room: str, handler: WebSocketHandler) -> None:
        conns = self.rooms.get(room)
        if conns is None:
            return
        conns.discard(handler)
        if not conns:
            del self.rooms[room]
            relay = self.relays.pop(room, None)
            if relay is not None:
                relay.stop()

    def conn_id(self, handler: WebSocketHandler) -> str:
        member = self.members.get(handler)
        if member is None:
            member = self.members[handler] = _Member()
        if member.conn_id is None:
            member.conn_id = f"{self.token}.{next(self._seq)}"
            self.ids[member.conn_id] = handler
        return member.conn_id

    def deliver_envelope(self, room: str, raw: str) -> None:
        opcode, origin, payload = _open_envelope(raw)
        exclude = self.ids.get(origin) if origin else None
        self.deliver(room, opcode, payload, exclude)

    def deliver(
        self,
        room: str,
        opcode: int,
        payload: bytes,
        exclude: WebSocketHandler | None,
    ) -> None:
        """Write one message to every local member of *room* (but *exclude*).

        The frame is built once. For each connection without compression it
        is written straight to the socket (or appended to the stream's buffer
        when earlier data is still queued): no future, task or copy per
        connection. Connections with permessage-deflate go through
        ``write_message``. Closing connections are skipped; connections whose
        unsent data would exceed ``max_pending_bytes`` are closed with 1013.
        """
        conns = self.rooms.get(room)
        if not conns:
            return
        frame = _server_frame(opcode, payload)
        size = len(frame)
        limits: dict[type, int] = {}
        overfull: list[WebSocketHandler] = []
        broken: list[tuple[IOStream, OSError]] = []
        for conn in tuple(conns):
            if conn is exclude:
                continue
            proto = conn.ws_connection
            if proto is None or proto.server_terminated or proto.client_terminated:
                continue
            stream = proto.stream
            if stream is None or stream.closed():
                continue
            cls = type(conn)
            limit = limits.get(cls)
            if limit is None:
                limit = limits[cls] = int(
                    resolve(conn, "max_pending_bytes", DEFAULT_MAX_PENDING_BYTES)
                )
            buffer = getattr(stream, "_write_buffer", None)
            pending = 0 if buffer is None else len(buffer)
            if pending + size > limit:
                overfull.append(conn)
                continue
            if (
                buffer is None
                or type(proto) is not WebSocketProtocol13
                or getattr(proto, "_compressor", None) is not None
            ):
                _write_slow(conn, opcode, payload)
                continue
            error = _write_prebuilt(stream, buffer, frame)
            if error is not None:
                broken.append((stream, error))
        for stream, error in broken:
            stream.close(exc_info=error)
        for conn in overfull:
            log.warning(
                "closing WebSocket %s: more than %d bytes unsent (client not reading)",
                conn.request.uri,
                limits.get(type(conn), DEFAULT_MAX_PENDING_BYTES),
            )
            # RFC 6455 §7.4.1: 1013, try again later (the server is overloaded).
            conn.close(CLOSE_TRY_AGAIN_LATER, "client too slow")


def _ws_state(app: Any) -> _WSState:
    state = state_for(app)
    ws: _WSState | None = state.resources.get(_STATE_KEY)
    if ws is None:
        ws = _WSState(state)
        state.resources[_STATE_KEY] = ws
    return ws


def _done_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _server_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked server frame (RFC 6455 §5.2; servers never mask)."""
    n = len(payload)
    first = 0x80 | opcode  # FIN + opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n <= 0xFFFF:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


_PING_FRAME = _server_frame(0x9, _PING_PAYLOAD)


def _write_prebuilt(stream: IOStream, buffer: Any, frame: bytes) -> OSError | None:
    """Write a ready frame to *stream* without a future (Tornado's ``write()`` makes one).

    *buffer* is the stream's write buffer. When it holds earlier data the
    frame is queued behind it (order matters; the IOLoop's write handler is
    already registered). Otherwise the frame goes straight to the socket and
    only an unsent tail is queued, with the write handler registered, exactly
    as ``IOStream.write`` would. Returns the error of a broken connection,
    for the caller to close the stream after its loop.
    """
    size = len(frame)
    if len(buffer):
        buffer.append(frame)
        stream._total_write_index += size
        return None
    try:
        sent = stream.write_to_fd(frame)  # type: ignore[arg-type]
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        return exc
    if sent < size:
        buffer.append(frame[sent:])
        stream._total_write_index += size - sent
        stream._add_io_state(IOLoop.WRITE)
    return None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A connection that closes while a message is written fails this future;
    # fetching the exception keeps "exception was never retrieved" quiet.
    if not future.cancelled():
        future.exception()


def _write_slow(conn: WebSocketHandler, opcode: int, payload: bytes) -> None:
    """Fallback write through ``write_message`` (compression, unknown streams)."""
    message: str | bytes = payload if opcode == 0x2 else payload.decode("utf-8")
    try:
        future = conn.write_message(message, binary=opcode == 0x2)
    except (WebSocketClosedError, StreamClosedError):
        return
    future.add_done_callback(_retrieve)


def _envelope(opcode: int, origin: str, payload: bytes) -> str:
    """Encode a room message for the broker: ``tk1|t|<origin>|<text>``.

    ``t`` carries UTF-8 text as is, ``b`` carries binary data in base64.
    *origin* is the sender's connection id (``<process token>.<n>``) when it
    asked to be excluded, else empty.
    """
    if opcode == 0x2:
        return f"{_ENVELOPE_TAG}|b|{origin}|{base64.b64encode(payload).decode('ascii')}"
    return f"{_ENVELOPE_TAG}|t|{origin}|{payload.decode('utf-8')}"


def _open_envelope(raw: str) -> tuple[int, str, bytes]:
    tag, kind, origin, body = raw.split("|", 3)
    if tag != _ENVELOPE_TAG or kind not in ("t", "b"):
        raise ValueError(f"not a tornado-kit room envelope: {raw[:40]!r}")
    if kind == "b":
        return 0x2, origin, base64.b64decode(body)
    return 0x1, origin, body.encode("utf-8")


# ---------------------------------------------------------------------------
# The shared base: registration for shutdown and cleanup
# ---------------------------------------------------------------------------


class _TrackedWebSocket(WebSocketHandler):
    """Registers the handler in the app's connection registry while it is open.

    Hooks that users do not normally override are used (``get``,
    ``on_connection_close``, ``on_finish``), so a subclass's ``open`` and
    ``on_close`` need not call ``super()``.
    """

    def get(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        # Not a coroutine itself: returning the parent's coroutine adds no
        # frame per open connection.
        state = state_for(self.application)
        if state.shutting_down:
            raise APIError(503, "server shutting down")
        _ws_state(self.application)
        state.connections.add(self)
        self._tk_register()
        return super().get(*args, **kwargs)

    def _tk_register(self) -> None:
        """Called from the handshake: mixins hook per-connection setup here."""

    def on_connection_close(self) -> None:
        if self.get_status() == 101 and self.close_code is not None:
            # Before super(): TimingMixin may emit the access record there.
            add_access_field(self, "ws_close_code", self.close_code)
        try:
            super().on_connection_close()
        finally:
            self._tk_cleanup()

    def on_finish(self) -> None:
        super().on_finish()
        if self.get_status() != 101:
            # The handshake was refused (or failed): no connection to track.
            self._tk_cleanup()

    def _tk_cleanup(self) -> None:
        ws: _WSState | None = state_for(self.application).resources.get(_STATE_KEY)
        if ws is None or not ws.unregister(self):
            return
        if self.get_status() == 101:
            # TimingMixin (when present) logs the connection when it ends.
            log_access = getattr(self, "_tk_log_access", None)
            if log_access is not None:
                log_access()


# ---------------------------------------------------------------------------
# Public mixins
# ---------------------------------------------------------------------------


class HeartbeatMixin(_TrackedWebSocket):
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

    def _tk_heartbeat(self) -> _Heartbeat:
        interval = float(resolve(self, "heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL))
        timeout = float(resolve(self, "heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT))
        if not (interval > 0 and timeout > 0):
            raise ValueError("heartbeat_interval and heartbeat_timeout must be positive")
        ws = _ws_state(self.application)
        key = (interval, timeout)
        hb = ws.heartbeats.get(key)
        if hb is None:
            hb = ws.heartbeats[key] = _Heartbeat(interval, timeout)
        return hb

    def _tk_register(self) -> None:
        super()._tk_register()
        self._tk_heartbeat().add(self)

    def _tk_beat(self) -> _Beat | None:
        ws: _WSState | None = state_for(self.application).resources.get(_STATE_KEY)
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
            if data == _PING_PAYLOAD:
                beat.latency = now - beat.sent


class JSONMessageMixin(_TrackedWebSocket):
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

        Does nothing when the connection is already closing.
        """
        message = _json.dumps_str({"error": {"status": status, "detail": detail}})
        try:
            future = self.write_message(message)
        except (WebSocketClosedError, StreamClosedError):
            return
        future.add_done_callback(_retrieve)


class BroadcastMixin(_TrackedWebSocket):
    """Rooms: :meth:`join`, :meth:`leave` and :meth:`broadcast` to every member.

    :meth:`broadcast` encodes the message once (``str`` as text, ``bytes`` as
    a binary frame, anything else as JSON), builds the WebSocket frame once and
    writes it to every member's socket without a task or future per
    connection. Members that are closing are skipped silently. A member whose
    unsent data would exceed ``max_pending_bytes`` (default 1 MiB; class
    attribute or setting) is closed with 1013 "Try Again Later" instead of
    buffering without bound. Memberships end when the connection closes.

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

    max_pending_bytes: int | None = None

    def join(self, room: str) -> asyncio.Future[None]:
        """Add this connection to *room*. Idempotent.

        Returns a future that resolves once the room's broker subscription is
        active (immediately with a ``LocalBroker``); awaiting it is optional.
        A connection that has already closed is not added.
        """
        if self._on_close_called:
            return _done_future()
        return _ws_state(self.application).join(self, room)

    def leave(self, room: str) -> None:
        """Remove this connection from *room* (no error when not a member)."""
        _ws_state(self.application).leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection has joined."""
        member = _ws_state(self.application).members.get(self)
        return frozenset(member.rooms) if member is not None else frozenset()

    async def broadcast(self, room: str, message: Any, exclude_self: bool = True) -> None:
        """Send *message* to every connection in *room* (in every process).

        ``str`` is sent as a text frame, ``bytes`` as a binary frame, any
        other value is JSON-encoded once. With ``exclude_self`` (the default)
        this connection does not receive its own message. Never raises for a
        closed or closing recipient.
        """
        if isinstance(message, str):
            opcode, payload = 0x1, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = 0x2, bytes(message)
        else:
            opcode, payload = 0x1, _json.dumps(message)
        ws = _ws_state(self.application)
        broker = broker_for(self.application)
        if type(broker) is LocalBroker:
            ws.deliver(room, opcode, payload, self if exclude_self else None)
            return
        origin = ws.conn_id(self) if exclude_self else ""
        await broker.publish(ROOM_TOPIC_PREFIX + room, _envelope(opcode, origin, payload))


class AllowedOriginsMixin(_TrackedWebSocket):
    """Accept WebSocket handshakes only from listed origins.

    ``allowed_origins`` (class attribute or application setting) holds exact
    origins (``"https://app.example.com"``) and wildcard patterns
    (``"https://*.example.com"``: any depth of subdomain, not the bare
    domain). Origins are compared after normalising case and default ports
    (``:80`` for http, ``:443`` for https); the scheme must match. ``"*"``
    allows every well-formed origin. Tornado's same-host rule still applies
    (an ``Origin`` equal to the ``Host`` is accepted), and a request without
    an ``Origin`` header (a non-browser client) is accepted, as in Tornado.

    A refused or malformed ``Origin`` gets a 403 at the handshake (an
    :class:`~tornado_kit.APIError`, rendered as problem details by
    :class:`~tornado_kit.JSONErrorMixin`), never a 500. ``"null"`` (an opaque
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
        return [_parse_pattern(p) for p in patterns]

    def get(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, None]:
        rules = self._tk_origin_rules()
        origin = self.request.headers.get("Origin")
        if origin is not None:
            if rules is None:
                # Tornado's own check parses the origin unguarded (a 500 for
                # e.g. "https://[::1"): refuse what it cannot parse.
                try:
                    urllib.parse.urlsplit(origin)
                except ValueError:
                    raise APIError(403, "malformed Origin header") from None
            elif not self._tk_origin_ok(origin, rules):
                raise APIError(403, "cross-origin WebSocket not allowed")
        return super().get(*args, **kwargs)

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
        parsed = _parse_origin(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed
        if _same_host(origin, self.request.headers.get("Host", "")):
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


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def _split_origin(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` -> (scheme, host, port), lower-case, default port filled."""
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 for c in value):
        return None
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not rest:
        return None
    if any(c in rest for c in "/?#@\\"):
        return None  # RFC 6454 §6.1: an origin has no path, query or userinfo
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    if rest.endswith(":"):
        return None
    if host.startswith("[") or ":" in host:
        ip = host.strip("[]")
        if not all(c in "0123456789abcdef:." for c in ip):
            return None
        host = f"[{ip}]"
    elif not set(host) <= _HOST_CHARS or ".." in host or host.startswith("."):
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    """Normalised (scheme, host, port) of an ``Origin`` header, ``None`` if malformed."""
    return _split_origin(origin.strip())


def _parse_pattern(pattern: str) -> tuple[str, str, int, bool]:
    """(scheme, host, port, wildcard) of an ``allowed_origins`` entry."""
    if pattern == "*":
        return "*", "", 0, False
    wildcard = "://*." in pattern
    text = pattern.replace("://*.", "://", 1) if wildcard else pattern
    scheme, sep, rest = text.partition("://")
    if sep and not rest.isascii():
        try:
            host, colon, port = rest.partition(":")
            rest = host.encode("idna").decode("ascii") + colon + port
        except UnicodeError:
            pass
    parsed = _split_origin(f"{scheme}{sep}{rest}")
    if parsed is None or "*" in text:
        raise ValueError(
            f"invalid allowed_origins entry {pattern!r}: use 'https://host[:port]' "
            "or 'https://*.domain'"
        )
    return parsed[0], parsed[1], parsed[2], wildcard


def _same_host(origin: str, host_header: str) -> bool:
    """Tornado's rule: the origin's host[:port] equals the ``Host`` header."""
    try:
        netloc = urllib.parse.urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and netloc == host_header.lower()
