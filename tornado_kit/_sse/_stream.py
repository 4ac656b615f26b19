"""SSEStream: one open event stream, its state AND its behaviour (private).

``SSEMixin`` opens one :class:`SSEStream` per response on first use and
delegates to it. The stream writes events (``send``), takes live deliveries
from its channel (``deliver``: a member of the channel hub), holds events
back for a slow client (``pending``, bounded by ``sse_queue_size``), hands
over from a log replay to live events (a ``Splice``), writes keepalives
(``sweep``, driven by its keepalive group) and ends: the client left
(``close``), the server shuts down (``end``), the channel was lost, the
client fell behind (``overflow``).

Tornado's ``HTTP1Connection`` keeps ONE write future per connection: a
second write while a coroutine awaits the first would orphan it. So only one
path writes at a time: ``send`` awaits its flush with ``flushing`` set, and
``deliver``, ``drain`` and ``sweep`` check ``flushing``, ``pending`` and
``IOStream.writing()`` before they write. ARCHITECTURE.md draws the races.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from tornado.concurrent import Future
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import GZipContentEncoding

from tornado_kit import _json
from tornado_kit._access import add_access_field
from tornado_kit._broker import DEFAULT_MAXSIZE, Broker
from tornado_kit._channels._hub import Channel, hub_for
from tornado_kit._channels._splice import Splice
from tornado_kit._compat.handler import finished, remove_transforms
from tornado_kit._errors import APIError
from tornado_kit._lifecycle import state_for
from tornado_kit._settings import resolve
from tornado_kit._sse._event import ServerSentEvent
from tornado_kit._sse._log import EventLog, EventLogGap
from tornado_kit._sse._registry import SSERegistry, registry_for

if TYPE_CHECKING:
    from tornado_kit._channels._delivery import Delivery
    from tornado_kit._channels._keepalive import KeepaliveGroup
    from tornado_kit._sse._mixin import SSEMixin

__all__ = ["SSEStream"]

_log = logging.getLogger("tornado_kit.sse")

_KEEPALIVE = b": keepalive\n\n"


class SSEStream:
    """The event stream of one ``SSEMixin`` response."""

    __slots__ = (
        "channel",
        "done",
        "ending",
        "events",
        "flushing",
        "gone",
        "group",
        "handler",
        "in_topic",
        "iostream",
        "last_write",
        "maxsize",
        "pending",
        "registered",
        "registry",
        "splice",
    )

    #: A channel member that publications never exclude (see ``Member``).
    conn_id = ""

    def __init__(self, handler: SSEMixin, registry: SSERegistry, interval: float) -> None:
        self.handler = handler
        self.registry = registry
        self.iostream: IOStream | None = getattr(handler.request.connection, "stream", None)
        self.registered = True
        self.in_topic = False  # follow() is running
        self.channel: Channel | None = None
        self.done: asyncio.Future[None] | None = None  # follow() waits on it
        self.pending: deque[Delivery] | None = None  # live events held back (backlog)
        self.splice: Splice | None = None  # the replay hand-over (Last-Event-ID)
        self.maxsize = 1000
        self.flushing = False  # a coroutine awaits a flush: nobody else may write
        self.gone = False  # the client closed the connection
        self.ending: str | None = None  # why the stream ends (first reason wins)
        self.events = 0
        self.last_write = time.monotonic()
        self.group: KeepaliveGroup = registry.add(self, interval)

    @classmethod
    def open(cls, handler: SSEMixin) -> SSEStream:
        """Set the stream headers and register a new stream (no I/O)."""
        interval = float(resolve(handler, "sse_keepalive_interval", 15.0))
        if not interval > 0:
            raise ValueError(f"sse_keepalive_interval must be positive, not {interval!r}")
        handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.set_header("Cache-Control", "no-cache")
        handler.set_header("X-Accel-Buffering", "no")
        # Compression would hold events back in the compressor (and
        # text/event-stream is not on Tornado's list anyway): drop the gzip
        # transform for this response so nothing touches the stream.
        remove_transforms(handler, GZipContentEncoding)
        stream = cls(handler, registry_for(handler.application), interval)
        state = state_for(handler.application)
        state.connections.add(handler)
        if state.shutting_down:
            stream.ending = "shutdown"
        return stream

    def __repr__(self) -> str:
        return f"<SSEStream {self.handler!r} events={self.events} ending={self.ending!r}>"

    # -- writing ----------------------------------------------------------------

    def push(self, chunk: bytes, count: int = 1) -> Future[None] | None:
        """Write and flush *chunk*; return the flush future only when it must be awaited.

        When the socket took every byte at once (the usual case) there is
        nothing to wait for, so callers skip an await (and a task wake-up per
        event); the future is returned only while bytes are still queued for
        a slow client.
        """
        handler = self.handler
        if self.gone or finished(handler):
            raise StreamClosedError()
        if chunk:
            handler.write(chunk)
            self.events += count
        self.last_write = time.monotonic()
        flushed = handler.flush()
        iostream = self.iostream
        if iostream is None or iostream.writing():
            return flushed
        if iostream.closed():
            raise StreamClosedError()
        return None

    async def send(self, chunk: bytes) -> None:
        """Write *chunk* and wait until the client took it (``send_event``, the replay)."""
        flushed = self.push(chunk)
        if flushed is not None:
            # While this await is pending nothing else may write: the channel,
            # the keepalive sweep and shutdown check `flushing`.
            self.flushing = True
            try:
                await flushed
            finally:
                self.flushing = False
            if self.pending is not None and not self.replaying:
                self.drain()  # live events that arrived during the await
        if self.ending and not self.gone and not self.in_topic and not finished(self.handler):
            # Shutdown arrived while this event was being flushed.
            self.handler.finish()

    @property
    def replaying(self) -> bool:
        """Whether a log replay is being written (live events wait in the splice)."""
        splice = self.splice
        return splice is not None and splice.active

    def deliver(self, delivery: Delivery) -> None:
        """Take one live event from the channel (never awaits, never raises).

        The common case (the client keeps up) is a plain ``write`` + ``flush``,
        the same work as a hand-written broadcast loop.
        """
        if self.ending is not None:
            return
        try:
            splice = self.splice
            if splice is not None:
                if splice.active:
                    if not splice.hold(delivery):
                        self.overflow()
                    return
                if splice.duplicate(delivery):
                    return  # its copy was replayed
            pending = self.pending
            if pending is None:
                if not self.flushing:
                    self._write_live(delivery)
                    return
                # A send_event() coroutine awaits its flush: do not write now.
                pending = self.pending = deque()
            if len(pending) >= self.maxsize:
                self.overflow()
            else:
                pending.append(delivery)
        except Exception:
            _log.exception("SSE delivery to %r failed", self.handler)

    def _write_live(self, delivery: Delivery) -> None:
        handler = self.handler
        if self.gone or finished(handler):
            self.stop("client")
            return
        handler.write(delivery.sse_chunk)
        self.events += 1
        self.last_write = delivery.at
        flushed = handler.flush()
        iostream = self.iostream
        if iostream is not None and not iostream.writing():
            if iostream.closed():
                self.stop("client")
            return
        # The client did not take it all: hold further events back until
        # this write completes.
        self.pending = deque()
        flushed.add_done_callback(self.drain)

    def drain(self, _flushed: object = None) -> None:
        """Write the events held back (after a backlog or the replay), in one write."""
        if self.replaying or self.flushing:
            return
        pending, self.pending = self.pending, None
        if self.ending is not None or finished(self.handler) or not pending:
            return
        try:
            flushed = self.push(b"".join(d.sse_chunk for d in pending), len(pending))
        except StreamClosedError:
            self.stop("client")
            return
        if flushed is not None:
            self.pending = deque()
            flushed.add_done_callback(self.drain)

    def overflow(self) -> None:
        """More than ``sse_queue_size`` events are held back: give up on this client."""
        self.stop("overflow")
        self.pending = None
        iostream = self.iostream
        if iostream is not None and iostream.writing():
            # Bytes are stuck behind a client that does not read: no clean
            # end is possible, disconnect (on_connection_close follows).
            iostream.close()

    def sweep(self, threshold: float) -> None:
        """Keepalive tick: write a comment when idle since *threshold* (never raises)."""
        try:
            handler = self.handler
            if finished(handler) or self.gone:
                return
            iostream = self.iostream
            if iostream is None or iostream.closed():
                return
            if self.flushing or self.pending is not None or self.replaying or iostream.writing():
                return  # bytes are on their way: the stream is not idle
            if self.last_write <= threshold:
                self.last_write = time.monotonic()
                handler.write(_KEEPALIVE)
                # Not awaited: nothing waits on this stream's writes right now
                # (checked above), and a closed stream's future is already
                # failed and marked retrieved by Tornado.
                handler.flush()
        except Exception:  # never let one stream stop the timer
            _log.exception("SSE keepalive failed for %r", self.handler)

    # -- following a topic ------------------------------------------------------

    async def follow(self, broker: Broker, topic: str, log: EventLog | None) -> None:
        """``SSEMixin.stream_topic``: the replay after ``Last-Event-ID`` (with *log*), then live."""
        if self.in_topic:
            raise RuntimeError("stream_topic() is already running for this request")
        handler = self.handler
        if self.gone or finished(handler):
            return
        self.in_topic = True
        self.maxsize = resolve(handler, "sse_queue_size", DEFAULT_MAXSIZE)
        done = self.done = asyncio.get_running_loop().create_future()
        if self.ending is not None:  # e.g. the server is already shutting down
            done.set_result(None)
        last_id = handler.last_event_id if log is not None else None
        if log is not None and last_id is not None:
            # Live events wait in the splice until the replay is written.
            self.splice = Splice(self.maxsize)
        channel = self.channel = hub_for(handler.application).channel(broker, topic)
        try:
            if not done.done():
                try:
                    await channel.join(self)  # subscribed first, so nothing is missed
                except ConnectionError as exc:
                    # Nothing sent yet: a clear 503 rather than a 500 with a traceback.
                    _log.warning("SSE stream of %r refused: %s", topic, exc)
                    self.stop("unavailable")
                    raise APIError(
                        503, "event stream unavailable, retry later", headers={"Retry-After": "5"}
                    ) from None
            if not done.done():
                await self.send(b"")  # headers: EventSource fires "open"
            if log is not None and last_id is not None and not done.done():
                await self._resume(log, topic, last_id)
            await done
        except StreamClosedError:
            self.stop("client")
        finally:
            channel.leave(self)
            self.channel = None
            self.in_topic = False
            self.pending = None
            self.splice = None
        if self.ending == "overflow":
            _log.warning(
                "SSE client of %r fell more than %d events behind; disconnected",
                topic,
                self.maxsize,
            )
        if not finished(handler) and not self.gone:
            handler.finish()

    async def _resume(self, log: EventLog, topic: str, last_id: str) -> None:
        """Write the replay, then the live events queued meanwhile minus the replayed ones."""
        replayed: set[str] = set()
        try:
            replayed = await self.replay(log, topic, last_id)
        except ConnectionError as exc:
            # The log is down (e.g. Redis): end the stream; the client
            # reconnects with the same Last-Event-ID and loses nothing.
            _log.warning("SSE replay of %r failed, ending the stream: %s", topic, exc)
            self.stop("unavailable")
        splice = self.splice
        assert splice is not None
        queued = splice.finish(replayed)
        if not replayed:
            self.splice = None  # no live event can be a duplicate
        if queued:  # ahead of any backlog (none is made while the splice is active)
            self.pending = deque([*queued, *(self.pending or ())])
        self.drain()

    async def replay(self, log: EventLog, topic: str, last_id: str) -> set[str]:
        """Send the events of *log* after *last_id* (a ``reset`` first on a gap); their ids."""
        try:
            events = await log.since(topic, last_id)
        except EventLogGap as gap:
            _log.info("SSE resume of %r from %r impossible (%s): reset", topic, last_id, gap.reason)
            events = gap.events
            notice = {"reason": gap.reason, "last_event_id": last_id}
            await self.send(ServerSentEvent(_json.dumps_str(notice), "reset").encode())
        for event in events:
            if self.ending is not None:
                break
            await self.send(event.encode())
        return {event.id for event in events if event.id is not None}

    # -- ending -----------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Record why the stream ends (the first reason wins) and wake ``follow()``."""
        if self.ending is None:
            self.ending = reason
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    def channel_lost(self, reason: str) -> None:
        """The channel's subscription ended (broker closed, overflow): end the stream."""
        self.stop(reason)

    def end(self, reason: str) -> None:
        """End the stream from outside its coroutine (server shutdown)."""
        handler = self.handler
        if self.gone or finished(handler):
            return
        self.stop(reason)
        iostream = self.iostream
        if iostream is not None and iostream.writing():
            iostream.close()  # stuck behind a slow client: on_connection_close follows
            return
        if self.in_topic:
            return  # follow() wakes up and finishes the response
        if not self.flushing:
            handler.finish()
        # else: send() finishes the response when its flush returns.

    def close(self) -> None:
        """The client left: end the stream and unregister at once."""
        self.gone = True
        self.stop("client")
        self.unregister()

    def unregister(self) -> None:
        """Leave the registry; record ``sse_events`` and ``sse_end`` (idempotent)."""
        if not self.registered:
            return
        self.registered = False
        handler = self.handler
        add_access_field(handler, "sse_events", self.events)
        add_access_field(handler, "sse_end", self.ending or "done")
        self.registry.discard(self, self.group)
        state_for(handler.application).connections.discard(handler)
