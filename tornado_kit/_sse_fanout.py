"""Runtime machinery behind ``SSEMixin``: the stream registry, keepalive timer and topic hubs.

Everything hangs off ``state_for(app).resources`` (no module state):

* ``_Registry``: the open streams of one application; its shutdown callback
  (``PHASE_CONNECTIONS``) ends them all and waits until they finished.
* ``_KeepaliveGroup``: ONE ``PeriodicCallback`` per application and
  keepalive interval drives the keepalive comments of every stream.
* ``_TopicHub``: ONE broker subscription per (broker, topic) per
  application, fanned out to every stream of the topic by a plain loop that
  writes the event (encoded once) to each stream, like a hand-written
  broadcast. A stream that cannot take an event right away (its previous
  bytes are still queued for the client, or it is replaying from the event
  log) gets it in its own bounded ``pending`` queue instead.

The handler side of the protocol lives in ``tornado_kit._sse.SSEMixin``
(methods ``_tk_sse_deliver``, ``_tk_sse_sweep``, ``_tk_sse_end``,
``_tk_sse_stop``); ARCHITECTURE.md draws the races.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tornado.ioloop import PeriodicCallback

from tornado_kit._broker import SubscriptionClosed
from tornado_kit._lifecycle import PHASE_CONNECTIONS, state_for

_log = logging.getLogger("tornado_kit.sse")

RESOURCE_KEY = "tornado_kit.sse"
#: Bound of a hub's own broker subscription. The hub hands each message to
#: its streams synchronously, so it only falls behind while the event loop is
#: blocked; slow clients are bounded by their per-stream ``pending`` queues.
HUB_MAXSIZE = 10_000
_WIRE_CACHE_SIZE = 256

Wire = tuple[bytes, "str | None"]


class Stream:
    """Per-stream state, kept off the handler's ``__dict__``."""

    __slots__ = (
        "done",
        "ending",
        "events",
        "flushing",
        "gone",
        "group",
        "hub",
        "in_topic",
        "iostream",
        "last_write",
        "maxsize",
        "pending",
        "registered",
        "replayed",
        "replaying",
    )

    def __init__(self, group: KeepaliveGroup, iostream: Any) -> None:
        self.group = group
        self.iostream = iostream  # the connection's IOStream (HTTP/1)
        self.registered = True
        self.in_topic = False  # stream_topic() is running
        self.hub: TopicHub | None = None
        self.done: asyncio.Future[None] | None = None  # stream_topic() waits on it
        self.pending: deque[Wire] | None = None  # live events held back (backlog, replay)
        self.maxsize = 1000
        self.replaying = False
        self.replayed: set[str] | None = None  # ids sent by the replay
        self.flushing = False  # a coroutine awaits a flush: nobody else may write
        self.gone = False  # the client closed the connection
        self.ending: str | None = None  # why the stream ends (first reason wins)
        self.events = 0
        self.last_write = time.monotonic()


class KeepaliveGroup:
    """Every open stream with one keepalive interval, driven by ONE timer.

    The timer ticks every ``interval / 2``; a stream that wrote nothing for
    ``0.75 * interval`` gets a comment, so an idle stream gets one every
    ``interval`` and is never silent for much longer than that.
    """

    def __init__(self, registry: Registry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self.streams: set[Any] = set()
        self.timer = PeriodicCallback(self.tick, interval * 500.0)

    def add(self, handler: Any) -> None:
        self.streams.add(handler)
        if not self.timer.is_running():
            self.timer.start()

    def discard(self, handler: Any) -> None:
        self.streams.discard(handler)
        if not self.streams:
            self.timer.stop()
            if self.registry.groups.get(self.interval) is self:
                del self.registry.groups[self.interval]

    def tick(self) -> None:
        threshold = time.monotonic() - self.interval * 0.75
        for handler in tuple(self.streams):
            try:
                handler._tk_sse_sweep(threshold)
            except Exception:  # never let one stream stop the timer
                _log.exception("SSE keepalive failed for %r", handler)


class TopicHub:
    """One broker subscription shared by every stream of a topic in this application."""

    def __init__(self, registry: Registry, broker: Any, topic: str) -> None:
        self.registry = registry
        self.broker = broker
        self.topic = topic
        self.key = (id(broker), topic)
        self.members: dict[Any, None] = {}  # insertion-ordered set
        self.sub: Any = None
        self.opening: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    async def attach(self, handler: Any) -> None:
        """Add *handler*; return once the broker subscription is active."""
        self.members[handler] = None
        if self.sub is not None:
            return
        if self.opening is not None:
            await asyncio.shield(self.opening)
            return
        self.opening = opening = asyncio.get_running_loop().create_future()
        try:
            sub = await self.broker.subscribe(self.topic, maxsize=HUB_MAXSIZE)
        except BaseException as exc:
            self._forget()
            opening.set_exception(exc)
            opening.exception()  # retrieved: every joiner re-raises it
            raise
        if self.closed:  # every member left while we subscribed
            sub.close()
            opening.set_result(None)
            return
        self.sub = sub
        self.task = asyncio.ensure_future(self.run(sub))
        opening.set_result(None)

    def detach(self, handler: Any) -> None:
        """Remove *handler*; the last one to leave closes the subscription."""
        self.members.pop(handler, None)
        if not self.members:
            self._forget()
            if self.sub is not None:
                self.sub.close()  # run() ends

    def _forget(self) -> None:
        self.closed = True
        if self.registry.hubs.get(self.key) is self:
            del self.registry.hubs[self.key]

    async def run(self, sub: Any) -> None:
        """Hand every message to every member, in publication order."""
        wire = self.registry.wire
        members = self.members
        while True:
            message = sub.get_nowait()
            if message is None:
                try:
                    message = await sub.get()
                except SubscriptionClosed:
                    break
            chunk, event_id = wire(message)
            now = time.monotonic()
            for handler in tuple(members):
                try:
                    handler._tk_sse_deliver(chunk, event_id, now)
                except Exception:
                    _log.exception("SSE delivery to %r failed", handler)
        # Closed by the last member leaving, by the broker, or by overflow.
        self._forget()
        if members:
            reason = "overflow" if sub.overflowed else "closed"
            if sub.overflowed:
                _log.warning("SSE hub of %r fell behind the broker; ending its streams", self.topic)
            for handler in tuple(members):
                handler._tk_sse_stop(reason)


class Registry:
    """Open SSE streams of one application (in ``state_for(app).resources``)."""

    def __init__(self, decode: Callable[[str], Wire]) -> None:
        self.streams: set[Any] = set()
        self.groups: dict[float, KeepaliveGroup] = {}
        self.hubs: dict[tuple[int, str], TopicHub] = {}
        self._decode = decode
        # Broker message -> (wire bytes, id): encoded once per message, not
        # once per stream (and a hub sees each message once anyway).
        self.wire_cache: dict[str, Wire] = {}
        self._drained: asyncio.Future[None] | None = None

    def group(self, interval: float) -> KeepaliveGroup:
        group = self.groups.get(interval)
        if group is None:
            group = self.groups[interval] = KeepaliveGroup(self, interval)
        return group

    def hub(self, broker: Any, topic: str) -> TopicHub:
        key = (id(broker), topic)
        hub = self.hubs.get(key)
        if hub is None:
            hub = self.hubs[key] = TopicHub(self, broker, topic)
        return hub

    def wire(self, message: str) -> Wire:
        hit = self.wire_cache.get(message)
        if hit is None:
            hit = self._decode(message)
            if len(self.wire_cache) >= _WIRE_CACHE_SIZE:
                self.wire_cache.clear()
            self.wire_cache[message] = hit
        return hit

    def add(self, handler: Any, interval: float) -> KeepaliveGroup:
        self.streams.add(handler)
        group = self.group(interval)
        group.add(handler)
        return group

    def discard(self, handler: Any, group: KeepaliveGroup) -> None:
        group.discard(handler)
        self.streams.discard(handler)
        if not self.streams and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def shutdown(self) -> None:
        """End every open stream, then wait until each has finished (PHASE_CONNECTIONS)."""
        for handler in tuple(self.streams):
            try:
                handler._tk_sse_end("shutdown")
            except Exception:
                _log.exception("could not end SSE stream %r", handler)
        if self.streams:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        for group in tuple(self.groups.values()):
            group.timer.stop()


def registry_for(app: Any, decode: Callable[[str], Wire]) -> Registry:
    """The :class:`Registry` of *app*, created (with its shutdown callback) on first use."""
    state = state_for(app)
    registry: Registry | None = state.resources.get(RESOURCE_KEY)
    if registry is None:
        registry = state.resources[RESOURCE_KEY] = Registry(decode)
        state.on_shutdown(registry.shutdown, PHASE_CONNECTIONS)
    return registry
