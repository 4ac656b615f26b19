"""Heartbeats: ONE timer per application pings every connection (private).

:class:`~tornado_kit.HeartbeatMixin` registers each connection in the
``Heartbeat`` table of its ``(interval, timeout)`` pair (kept in the
application's WebSocket state); the table's one ``PeriodicCallback`` pings
the connections that are due, with a pre-built frame and no future per
ping, and closes the ones whose pong is overdue with 1011.
"""

from __future__ import annotations

import logging
import math

from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from tornado_kit._compat.stream import prebuilt_buffer, write_prebuilt
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import loggable_uri
from tornado_kit._settings import resolve
from tornado_kit._ws._base import TrackedWebSocket
from tornado_kit._ws._frames import CLOSE_INTERNAL_ERROR, server_frame
from tornado_kit._ws._rooms import STATE_KEY, WSState, ws_state

__all__ = ["Beat", "Heartbeat", "HeartbeatMixin"]

log = logging.getLogger("tornado_kit.websocket")

#: Payload of our heartbeat pings; pongs echo it (RFC 6455 §5.5.3).
PING_PAYLOAD = b"tk-hb"
PING_FRAME = server_frame(0x9, PING_PAYLOAD)

DEFAULT_HEARTBEAT_INTERVAL = 20.0
DEFAULT_HEARTBEAT_TIMEOUT = 20.0


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
