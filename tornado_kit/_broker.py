"""Publish/subscribe brokers that share rooms and feeds between handlers.

A :class:`Broker` moves text messages from publishers to the subscribers of a
*topic*. :class:`LocalBroker` is the embedded default (one process);
:class:`~tornado_kit.RedisBroker` uses Redis pub/sub so that several server
processes behind a load balancer share rooms and feeds.

Brokers are created lazily inside the serving process (after ``fork()``),
never at import time: put a ready-made broker in ``Application.settings
["broker"]`` from your application factory, or leave the setting out and
tornado-kit creates one :class:`LocalBroker` per application on first use.

Each subscription owns a bounded queue. A subscriber that falls more than
``maxsize`` messages behind is *overflowed*: its subscription is closed and
iteration ends, so one stuck consumer never grows memory without bound (an SSE
client then reconnects and resumes from its event log).

Example::

    broker = LocalBroker()
    sub = await broker.subscribe("news")
    await broker.publish("news", "hello")
    async for message in sub:
        print(message)  # "hello"
        sub.close()
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tornado_kit._checks import check_async_methods, check_int, setting
from tornado_kit._lifecycle import state_for

if TYPE_CHECKING:
    from tornado.web import Application

__all__ = ["Broker", "LocalBroker", "Subscription", "SubscriptionClosed", "broker_for"]

DEFAULT_MAXSIZE = 1000


class SubscriptionClosed(Exception):
    """Raised by :meth:`Subscription.get` once the subscription is closed and drained."""


class Subscription:
    """An async iterator over the messages published on one topic.

    Iteration ends when the subscription is closed (by :meth:`close`, by its
    broker's ``close()``, or by overflow, in which case :attr:`overflowed` is
    true). Messages already queued when it is closed are discarded.

    Brokers create subscriptions; user code only iterates and closes them.
    """

    __slots__ = ("_closed", "_on_close", "_queue", "_waiters", "maxsize", "overflowed", "topic")

    def __init__(
        self,
        topic: str,
        maxsize: int = DEFAULT_MAXSIZE,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        check_int(maxsize, "maxsize", minimum=1)
        self.topic = topic
        self.maxsize = maxsize
        #: True when the subscription was closed because it fell ``maxsize`` messages behind.
        self.overflowed = False
        self._queue: deque[str] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True once the subscription no longer receives messages."""
        return self._closed

    def qsize(self) -> int:
        """Number of messages received and not yet consumed."""
        return len(self._queue)

    def deliver(self, message: str) -> None:
        """Queue *message* (called by the broker; never blocks, never raises)."""
        if self._closed:
            return
        if len(self._queue) >= self.maxsize:
            self.overflowed = True
            self.close()
            return
        self._queue.append(message)
        if self._waiters:
            self._wake()

    async def get(self) -> str:
        """Return the next message; raise :class:`SubscriptionClosed` once closed."""
        while True:
            if self._closed:
                raise SubscriptionClosed(self.topic)
            if self._queue:
                return self._queue.popleft()
            # One future per waiting consumer: a delivery or close() wakes
            # them all (each then takes a message or waits again), and
            # cancelling one consumer leaves the others waiting.
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter.cancelled() and waiter in self._waiters:
                    self._waiters.remove(waiter)  # this consumer was cancelled

    def get_nowait(self) -> str | None:
        """Return the next queued message, or ``None`` when none is queued."""
        if self._queue and not self._closed:
            return self._queue.popleft()
        return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> str:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving messages and wake any waiting consumer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wake()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    def __repr__(self) -> str:
        state = "overflowed" if self.overflowed else "closed" if self._closed else "open"
        return f"<Subscription topic={self.topic!r} {state} queued={len(self._queue)}>"


@runtime_checkable
class Broker(Protocol):
    """What tornado-kit needs of a pub/sub broker.

    ``publish`` delivers a text message to every current subscriber of the
    topic, in every process that shares the broker. ``subscribe`` returns once
    the subscription is active: a message published after it returns is
    received. ``close`` ends every subscription and releases connections.
    """

    async def publish(self, topic: str, message: str) -> None:
        """Publish *message* on *topic*."""
        ...

    async def subscribe(self, topic: str, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to *topic*; the returned subscription is already active."""
        ...

    async def close(self) -> None:
        """Close every subscription and release resources. Idempotent."""
        ...


class LocalBroker:
    """In-process broker: delivery is a direct, synchronous queue append.

    The default when the ``broker`` setting is absent. It reaches only the
    subscribers of the same process; use :class:`~tornado_kit.RedisBroker`
    when several processes must share topics.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._topics: dict[str, set[Subscription]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def subscriber_count(self, topic: str | None = None) -> int:
        """Number of open subscriptions (on *topic*, or on every topic)."""
        if topic is not None:
            return len(self._topics.get(topic, ()))
        return sum(len(subs) for subs in self._topics.values())

    async def publish(self, topic: str, message: str) -> None:
        """Deliver *message* to every subscriber of *topic* in this process."""
        self.publish_nowait(topic, message)

    def publish_nowait(self, topic: str, message: str) -> None:
        """Synchronous :meth:`publish` (the delivery never blocks)."""
        if self._closed:
            raise RuntimeError("LocalBroker is closed")
        if not isinstance(message, str):
            raise TypeError(f"broker messages are str, not {type(message).__name__}")
        subs = self._topics.get(topic)
        if subs:
            # A copy: deliver() may close an overflowed subscription, which
            # removes it from the set.
            for sub in tuple(subs):
                sub.deliver(message)

    async def subscribe(self, topic: str, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to *topic*; active as soon as this returns."""
        if self._closed:
            raise RuntimeError("LocalBroker is closed")
        sub = Subscription(topic, maxsize, self._remove)
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]

    async def close(self) -> None:
        """Close every subscription. Idempotent."""
        self._closed = True
        for subs in list(self._topics.values()):
            for sub in list(subs):
                sub.close()
        self._topics.clear()

    def __repr__(self) -> str:
        return f"<LocalBroker topics={len(self._topics)} subscriptions={self.subscriber_count()}>"


def check_broker(value: Any, what: str) -> Any:
    """Return *value* when it is a :class:`Broker` instance; ``TypeError`` naming *what* otherwise.

    A broker has ``async`` ``publish``, ``subscribe`` and ``close`` methods
    (a class, a URL string or a plain ``def`` method is refused).
    """
    if type(value) is LocalBroker:
        return value
    return check_async_methods(value, what, "a Broker", _BROKER_METHODS)


_BROKER_METHODS = ("publish", "subscribe", "close")
#: Where the default broker of an application is kept (``AppState.resource``).
_DEFAULT_KEY = "tornado_kit.broker"


def broker_for(app: Application) -> Any:
    """Return the broker of *app*: ``settings["broker"]``, else a per-app :class:`LocalBroker`.

    The default broker is created on first use (inside the serving process)
    and closed by the shutdown hook.

    :raises TypeError: when the ``broker`` setting is not a :class:`Broker`.
    """
    broker = app.settings.get("broker")
    if broker is not None:
        return check_broker(broker, setting("broker"))
    return state_for(app).resource(_DEFAULT_KEY, LocalBroker, close=LocalBroker.close)
