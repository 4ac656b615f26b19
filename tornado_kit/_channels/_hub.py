"""The per-application channel hub: one broker subscription per channel, typed members (private).

One :class:`ChannelHub` per application (``state_for(app).resource``) holds a
:class:`Channel` per ``(broker, name)`` followed in this process. A channel
has ONE broker subscription, whatever the number of its members, and a
reader task that turns each message into one
``Delivery`` (``_delivery.py``) and hands it to every
member in one plain loop: no task, future or queue per member.

A member is anything with the small :class:`Member` protocol. SSE streams
are the first kind; WebSocket rooms (``_ws/_rooms.py`` today) become the
second in the channels issue, with the same calls: ``hub.channel(broker,
name)``, ``await channel.join(member)``, ``channel.leave(member)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from tornado_kit._broker import Broker, Subscription, SubscriptionClosed
from tornado_kit._channels._delivery import Delivery, WireCache
from tornado_kit._lifecycle import state_for

if TYPE_CHECKING:
    from tornado.web import Application

__all__ = ["Channel", "ChannelHub", "Member", "hub_for"]

# The package logger (filtered by the redaction filter): shared by both transports.
_log = logging.getLogger("tornado_kit")

RESOURCE_KEY = "tornado_kit.channels"
#: Bound of a channel's own broker subscription. The channel hands each
#: message to its members synchronously, so it only falls behind while the
#: event loop is blocked; slow clients are bounded by their members' queues.
HUB_MAXSIZE = 10_000


class Member(Protocol):
    """One subscriber of a channel in this process (an SSE stream).

    ``conn_id`` is the connection id a publication may exclude (``""``: never
    excluded). ``deliver`` never awaits and never raises: it writes the
    delivery or queues it in the member's own bounded queue. ``channel_lost``
    says that the subscription ended without the member leaving: ``"closed"``
    (the broker closed it) or ``"overflow"`` (the channel fell
    :data:`HUB_MAXSIZE` messages behind).
    """

    conn_id: str

    def deliver(self, delivery: Delivery) -> None:
        """Take one live delivery (called by the channel's reader)."""

    def channel_lost(self, reason: str) -> None:
        """The channel's subscription ended for *reason*."""


class Channel:
    """One broker subscription shared by every member of a channel in this application."""

    def __init__(self, hub: ChannelHub, broker: Broker, name: str) -> None:
        self.hub = hub
        self.broker = broker
        self.name = name
        self.key = (id(broker), name)
        self.members: dict[Member, None] = {}  # insertion-ordered set
        self.sub: Subscription | None = None
        self.ready: asyncio.Future[None] | None = None  # the first member subscribes
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    async def join(self, member: Member) -> None:
        """Add *member*; return once the broker subscription is active.

        The first member subscribes; those that arrive meanwhile await the
        same ``ready`` future, so they share its outcome: the subscription,
        or the error (a ``ConnectionError`` when the broker is down), which
        every one of them re-raises. The member stays registered either way:
        call :meth:`leave` when done.
        """
        self.members[member] = None
        if self.sub is not None:
            return
        if self.ready is not None:
            await asyncio.shield(self.ready)
            return
        self.ready = ready = asyncio.get_running_loop().create_future()
        try:
            sub = await self.broker.subscribe(self.name, maxsize=HUB_MAXSIZE)
        except BaseException as exc:
            self._forget()
            ready.set_exception(exc)
            ready.exception()  # retrieved: every joiner re-raises it
            raise
        if self.closed:  # every member left while we subscribed
            sub.close()
            ready.set_result(None)
            return
        self.sub = sub
        self.task = asyncio.ensure_future(self._run(sub))
        ready.set_result(None)

    def leave(self, member: Member) -> None:
        """Remove *member*; the last one to leave closes the subscription."""
        self.members.pop(member, None)
        if not self.members:
            self._forget()
            if self.sub is not None:
                self.sub.close()  # _run() ends

    def _forget(self) -> None:
        self.closed = True
        channels = self.hub.channels
        if channels.get(self.key) is self:
            del channels[self.key]

    async def _run(self, sub: Subscription) -> None:
        """Hand every message to every member, in publication order."""
        delivery = self.hub.wire.delivery
        members = self.members
        while True:
            message = sub.get_nowait()
            if message is None:
                try:
                    message = await sub.get()
                except SubscriptionClosed:
                    break
            d = delivery(message, time.monotonic())
            for member in tuple(members):
                try:
                    member.deliver(d)
                except Exception:  # a broken member must not stop the others
                    _log.exception("delivery to %r on channel %r failed", member, self.name)
        # Closed by the last member leaving, by the broker, or by overflow.
        self._forget()
        if members:
            reason = "overflow" if sub.overflowed else "closed"
            if sub.overflowed:
                _log.warning("channel %r fell behind the broker; ending its members", self.name)
            for member in tuple(members):
                member.channel_lost(reason)

    def __repr__(self) -> str:
        state = "subscribed" if self.sub is not None else "closed" if self.closed else "opening"
        return f"<Channel {self.name!r} {state} members={len(self.members)}>"


class ChannelHub:
    """The channels of one application, keyed by ``(id(broker), name)``."""

    def __init__(self) -> None:
        self.channels: dict[tuple[int, str], Channel] = {}
        self.wire = WireCache()

    def channel(self, broker: Broker, name: str) -> Channel:
        """The channel *name* on *broker*, created on first use (not yet subscribed)."""
        key = (id(broker), name)
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = Channel(self, broker, name)
        return channel

    async def close(self) -> None:
        """Close the subscriptions still open and wait for their readers (shutdown).

        Members have normally left by then (connections close first); any
        left get ``channel_lost("closed")``.
        """
        channels = list(self.channels.values())
        for channel in channels:
            if channel.sub is not None:
                channel.sub.close()
        tasks = [c.task for c in channels if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def hub_for(app: Application) -> ChannelHub:
    """The :class:`ChannelHub` of *app*, created on first use, closed at shutdown."""
    return state_for(app).resource(RESOURCE_KEY, ChannelHub, close=ChannelHub.close)
