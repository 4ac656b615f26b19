"""Runtime state behind the WebSocket mixins (private).

One :class:`WSState` per application, in ``state_for(app).resources``: the
heartbeat tables and their timers, the rooms and their members, the relay
subscriptions that carry rooms across processes, and the frame writer that
broadcasts a pre-built frame without a future per connection. See
ARCHITECTURE.md, section "WebSocket", for the drawings.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import math
import secrets
import struct
from typing import Any

from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import (
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
)

from tornado_kit._broker import LocalBroker, Subscription, broker_for
from tornado_kit._compat.stream import (
    compresses,
    pending_write_bytes,
    prebuilt_buffer,
    queued_writes,
    write_prebuilt,
)
from tornado_kit._lifecycle import PHASE_CONNECTIONS, PHASE_RESOURCES, AppState, state_for
from tornado_kit._redact import loggable_uri
from tornado_kit._settings import resolve

log = logging.getLogger("tornado_kit.websocket")

STATE_KEY = "tornado_kit.websocket"
#: Payload of our heartbeat pings; pongs echo it (RFC 6455 §5.5.3).
PING_PAYLOAD = b"tk-hb"
#: Prefix of the broker topic that carries a room across processes.
ROOM_TOPIC_PREFIX = "tk:room:"
#: Version tag of the relay envelope (see :func:`envelope`).
ENVELOPE_TAG = "tk1"

# RFC 6455 §7.4.1 close codes.
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013

DEFAULT_HEARTBEAT_INTERVAL = 20.0
DEFAULT_HEARTBEAT_TIMEOUT = 20.0
DEFAULT_MAX_PENDING_BYTES = 1024 * 1024
#: What Tornado keeps for each queued ``write_message`` besides its bytes (a
#: future, a task and its coroutine, callback handles): 1.5 to 1.7 KiB on
#: CPython 3.11 with Tornado 6.6, measured with tracemalloc. Counting it
#: keeps a flood of tiny messages from hiding megabytes behind a few bytes.
QUEUED_WRITE_COST = 1536

# ---------------------------------------------------------------------------
# Per-application state
# ---------------------------------------------------------------------------


class Beat:
    """Heartbeat bookkeeping of one connection (kept small: no dict, no futures)."""

    __slots__ = ("last_pong", "latency", "sent", "tick", "waiting")

    def __init__(self) -> None:
        self.tick = -(1 << 30)  # tick of the last ping (never: ping at the next tick)
        self.sent = 0.0  # IOLoop time of that ping (a float shared by all pinged then)
        self.waiting = False
        self.last_pong: float | None = None
        self.latency: float | None = None


class Heartbeat:
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
        self.conns: dict[WebSocketHandler, Beat] = {}
        self._timer: PeriodicCallback | None = None

    def add(self, handler: WebSocketHandler) -> None:
        """Register a connection (once, from its handshake)."""
        self.conns[handler] = Beat()
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
                buffer = prebuilt_buffer(stream)
                if buffer is not None and type(proto) is WebSocketProtocol13:
                    # Pinging every connection at once: no future per ping.
                    error = write_prebuilt(stream, buffer, PING_FRAME)
                    if error is not None:
                        broken.append((stream, error))
                        continue
                else:
                    try:
                        proto.write_ping(PING_PAYLOAD)
                    except (StreamClosedError, WebSocketClosedError):
                        continue
                beat.tick = tick
                beat.sent = now
                beat.waiting = True
        for stream, error in broken:
            stream.close(exc_info=error)
        for handler in expired:
            self.discard(handler)
            log.info(
                "closing WebSocket %s: no pong within %ss", loggable_uri(handler), self.timeout
            )
            # RFC 6455 §7.4.1: 1011, the server cannot go on with this connection.
            handler.close(CLOSE_INTERNAL_ERROR, "heartbeat timeout")


class Member:
    """Room membership of one connection (only for BroadcastMixin users)."""

    __slots__ = ("conn_id", "rooms")

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.conn_id: str | None = None


class Relay:
    """The one broker subscription of this process for one room.

    It delivers every envelope published on the room's topic (by any process,
    this one included) to the room's local members.
    """

    def __init__(self, ws: WSState, room: str, broker: Any) -> None:
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


class WSState:
    """Everything this module keeps per application."""

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state
        self.heartbeats: dict[tuple[float, float], Heartbeat] = {}
        self.rooms: dict[str, set[WebSocketHandler]] = {}
        self.members: dict[WebSocketHandler, Member] = {}
        self.ids: dict[str, WebSocketHandler] = {}
        self.relays: dict[str, Relay] = {}
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
            member = self.members[handler] = Member()
        member.rooms.add(room)
        conns = self.rooms.get(room)
        if conns is None:
            conns = self.rooms[room] = set()
        conns.add(handler)
        broker = broker_for(handler.application)
        if type(broker) is not LocalBroker:
            relay = self.relays.get(room)
            if relay is None:
                relay = self.relays[room] = Relay(self, room, broker)
            return relay.ready
        return done_future()

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
        """The relay id of *handler* (for ``exclude_self``); ``""`` once it has closed.

        A closed connection receives nothing anyway, and registering it again
        (e.g. a broadcast from ``on_close``) would leak its entry.
        """
        if handler not in self.app_state.connections:
            return ""
        member = self.members.get(handler)
        if member is None:
            member = self.members[handler] = Member()
        if member.conn_id is None:
            member.conn_id = f"{self.token}.{next(self._seq)}"
            self.ids[member.conn_id] = handler
        return member.conn_id

    def deliver_envelope(self, room: str, raw: str) -> None:
        opcode, origin, payload = open_envelope(raw)
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
        frame = server_frame(opcode, payload)
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
            if backlog(stream) + size > limit:
                overfull.append(conn)
                continue
            buffer = fast_path_buffer(proto)
            if buffer is None:
                write_slow(conn, opcode, payload)
                continue
            error = write_prebuilt(stream, buffer, frame)
            if error is not None:
                broken.append((stream, error))
        for stream, error in broken:
            stream.close(exc_info=error)
        for conn in overfull:
            log.warning(
                "closing WebSocket %s: more than %d bytes unsent (client not reading)",
                loggable_uri(conn),
                limits.get(type(conn), DEFAULT_MAX_PENDING_BYTES),
            )
            # RFC 6455 §7.4.1: 1013, try again later (the server is overloaded).
            conn.close(CLOSE_TRY_AGAIN_LATER, "client too slow")


def ws_state(app: Any) -> WSState:
    state = state_for(app)
    ws: WSState | None = state.resources.get(STATE_KEY)
    if ws is None:
        ws = WSState(state)
        state.resources[STATE_KEY] = ws
    return ws


def backlog(stream: IOStream | None) -> int:
    """What the unsent data of a connection holds, as ``max_pending_bytes`` counts it.

    The bytes its stream has not handed to the kernel, plus
    :data:`QUEUED_WRITE_COST` for each write still waiting with a future
    (pre-built frames have none).
    """
    return pending_write_bytes(stream) + queued_writes(stream) * QUEUED_WRITE_COST


def fast_path_buffer(proto: WebSocketProtocol) -> Any:
    """The buffer to write pre-built frames of *proto* into, or ``None`` (use ``write_message``).

    Only plain RFC 6455 connections qualify: permessage-deflate compresses
    per connection, and an unknown stream lacks the internals.
    """
    stream = proto.stream
    if stream is None or type(proto) is not WebSocketProtocol13 or compresses(proto):
        return None
    return prebuilt_buffer(stream)


def done_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def server_frame(opcode: int, payload: bytes) -> bytes:
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


PING_FRAME = server_frame(0x9, PING_PAYLOAD)


def retrieve(future: asyncio.Future[Any]) -> None:
    # A connection that closes while a message is written fails this future;
    # fetching the exception keeps "exception was never retrieved" quiet.
    if not future.cancelled():
        future.exception()


def write_slow(conn: WebSocketHandler, opcode: int, payload: bytes) -> None:
    """Fallback write through ``write_message`` (compression, unknown streams)."""
    message: str | bytes = payload if opcode == 0x2 else payload.decode("utf-8")
    try:
        future = conn.write_message(message, binary=opcode == 0x2)
    except (WebSocketClosedError, StreamClosedError):
        return
    future.add_done_callback(retrieve)


def envelope(opcode: int, origin: str, payload: bytes) -> str:
    """Encode a room message for the broker: ``tk1|t|<origin>|<text>``.

    ``t`` carries UTF-8 text as is, ``b`` carries binary data in base64.
    *origin* is the sender's connection id (``<process token>.<n>``) when it
    asked to be excluded, else empty.
    """
    if opcode == 0x2:
        return f"{ENVELOPE_TAG}|b|{origin}|{base64.b64encode(payload).decode('ascii')}"
    return f"{ENVELOPE_TAG}|t|{origin}|{payload.decode('utf-8')}"


def open_envelope(raw: str) -> tuple[int, str, bytes]:
    tag, kind, origin, body = raw.split("|", 3)
    if tag != ENVELOPE_TAG or kind not in ("t", "b"):
        raise ValueError(f"not a tornado-kit room envelope: {raw[:40]!r}")
    if kind == "b":
        return 0x2, origin, base64.b64decode(body)
    return 0x1, origin, body.encode("utf-8")
