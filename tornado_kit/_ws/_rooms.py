"""Rooms: the per-application WebSocket state, memberships and the relays (private).

One :class:`WSState` per application, in ``state_for(app).resources``: the
heartbeat tables, the rooms and their members, the relay subscriptions that
carry rooms across processes, and the delivery loop that writes one
pre-built frame to every member without a future per connection. See
ARCHITECTURE.md, section "WebSocket", for the drawings.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream
from tornado.websocket import WebSocketHandler

from tornado_kit._broker import LocalBroker, Subscription, broker_for
from tornado_kit._compat.stream import write_prebuilt
from tornado_kit._lifecycle import PHASE_CONNECTIONS, AppState, state_for
from tornado_kit._redact import loggable_uri
from tornado_kit._settings import resolve
from tornado_kit._ws._frames import (
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN_LATER,
    DEFAULT_MAX_PENDING_BYTES,
    backlog,
    fast_path_buffer,
    server_frame,
    write_slow,
)

if TYPE_CHECKING:
    from tornado.web import Application

    from tornado_kit._ws._heartbeat import Heartbeat

__all__ = ["Member", "Relay", "WSState", "ws_state"]

log = logging.getLogger("tornado_kit.websocket")

STATE_KEY = "tornado_kit.websocket"
#: Prefix of the broker topic that carries a room across processes.
ROOM_TOPIC_PREFIX = "tk:room:"
#: Version tag of the relay envelope (see :func:`envelope`).
ENVELOPE_TAG = "tk1"


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


def ws_state(app: Application) -> WSState:
    """The :class:`WSState` of *app*, created on first use.

    Its shutdown callbacks: :meth:`WSState.close_connections` in
    ``PHASE_CONNECTIONS``, :meth:`WSState.release` in ``PHASE_RESOURCES``.
    """
    state = state_for(app)
    return state.resource(STATE_KEY, lambda: WSState(state), close=WSState.release)


def done_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


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
