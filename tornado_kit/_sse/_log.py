"""Event logs, so that a reconnecting client resumes: protocol, gap, memory log (private).

An :class:`~tornado_kit.EventLog` stores every event of a topic under a
fresh, increasing id and publishes it on the broker. A reconnecting
``EventSource`` sends the last id it saw in ``Last-Event-ID``;
``SSEMixin.stream_topic()`` subscribes first, replays
:meth:`EventLog.since` and then follows the subscription live, skipping live
events whose id it has just replayed, so the client sees no gap and no
duplicate.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol, cast, runtime_checkable

from tornado_kit import _json
from tornado_kit._broker import LocalBroker, check_broker
from tornado_kit._checks import argument, check_async_methods, check_int
from tornado_kit._sse._event import ServerSentEvent
from tornado_kit._sse._message import encode_broker_message

__all__ = ["EventLog", "EventLogGap", "MemoryEventLog"]


class EventLogGap(LookupError):
    """Raised by :meth:`EventLog.since` when it cannot prove the replay is complete.

    ``reason`` says why:

    ``"malformed"``
        the last id is not an id this kind of log ever issues (garbage);
    ``"unknown"``
        the id is well formed but newer than anything the log issued (for
        example it comes from another deployment, or the log was wiped);
    ``"expired"``
        events after the id have already been trimmed by the log's retention
        (``maxlen``), or the id predates the log (a restart of an in-memory log).

    ``events`` holds every event the log still has for the topic, oldest
    first: what a client that lost track should receive. ``SSEMixin`` sends
    an ``event: reset`` first (see :meth:`SSEMixin.stream_topic`), then these.

    .. versionadded:: 0.1
    """

    def __init__(self, reason: str, events: list[ServerSentEvent], last_id: str = "") -> None:
        super().__init__(reason, last_id)
        self.reason = reason
        self.events = events
        self.last_id = last_id

    def __str__(self) -> str:
        return (
            f"cannot resume after id {self.last_id!r} ({self.reason}); "
            f"{len(self.events)} events retained"
        )


@runtime_checkable
class EventLog(Protocol):
    """Storage of recent events per topic, so that clients can resume.

    ``append(topic, data, *, event=None)`` stores the event under a fresh id
    that is greater than every id the log issued before for that topic,
    publishes it on :attr:`broker` (as the broker message text that
    ``stream_topic()`` decodes), and
    returns it. ``data`` that is not a ``str`` is JSON-encoded.

    ``since(topic, last_id)`` returns the stored events of *topic* that come
    after *last_id*, oldest first (an empty list when *last_id* is the newest).
    When the log cannot guarantee that list is complete it raises
    :class:`EventLogGap` instead, whose ``events`` hold everything still
    retained and whose ``reason`` is ``"malformed"`` (garbage id),
    ``"unknown"`` (well formed, never issued: newer than the log's newest id)
    or ``"expired"`` (older than the log's retention). It never raises for
    bad client input otherwise.

    ``broker`` is the broker ``append`` publishes on; ``stream_topic()``
    subscribes there.

    Example::

        log = MemoryEventLog(maxlen=100)
        first = await log.append("news", {"title": "hello"})
        await log.append("news", "second")
        [e.data for e in await log.since("news", first.id)]  # ["second"]

    .. versionadded:: 0.1
    """

    @property
    def broker(self) -> Any:
        """The broker on which :meth:`append` publishes."""
        ...

    async def append(self, topic: str, data: Any, *, event: str | None = None) -> ServerSentEvent:
        """Store and publish an event; return it with its new id."""
        ...

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        """Return the events after *last_id*; raise :class:`EventLogGap` when incomplete."""
        ...


class _TopicLog:
    __slots__ = ("events", "floor")

    def __init__(self, floor: int) -> None:
        self.events: deque[tuple[int, ServerSentEvent]] = deque()
        # Every event of the topic with an id <= floor is gone (or predates the log).
        self.floor = floor


class MemoryEventLog:
    """An in-process :class:`EventLog` keeping the last *maxlen* events of each topic.

    Ids are decimal integers, increasing across topics. The first id is above
    the wall clock in microseconds when the log was created, so an id handed
    out by a previous run of the process (before a restart) is recognised as
    older than the log (``EventLogGap("expired")``) instead of being confused
    with a current one.

    :param broker: where :meth:`append` publishes; ``SSEMixin.stream_topic``
        subscribes on the same broker. ``None`` creates a private
        :class:`~tornado_kit.LocalBroker` (fine for one process; pass the
        application's ``broker`` setting to share it with other publishers).
    :param maxlen: events kept per topic.
    :raises TypeError: when *broker* is not a :class:`~tornado_kit.Broker`
        or *maxlen* not an ``int``.
    :raises ValueError: when *maxlen* is below 1.

    The log lives in one process: behind a load balancer use
    :class:`~tornado_kit.RedisEventLog`.

    Example::

        broker = LocalBroker()
        log = MemoryEventLog(broker, maxlen=500)
        app = Application(routes, broker=broker)
        ...
        await log.append("news", {"title": "hello"}, event="story")

    .. versionadded:: 0.1
    """

    def __init__(self, broker: Any = None, maxlen: int = 1000) -> None:
        self.maxlen = check_int(maxlen, argument("MemoryEventLog", "maxlen"), minimum=1)
        if broker is None:
            broker = LocalBroker()
        self._broker = check_broker(broker, argument("MemoryEventLog", "broker"))
        self._base = time.time_ns() // 1000
        self._last = self._base
        self._topics: dict[str, _TopicLog] = {}

    @property
    def broker(self) -> Any:
        """The broker on which :meth:`append` publishes."""
        return self._broker

    async def append(self, topic: str, data: Any, *, event: str | None = None) -> ServerSentEvent:
        """Store an event under a fresh id, publish it on the broker and return it.

        ``data`` that is not a ``str`` is JSON-encoded. An invalid ``event``
        raises :class:`ValueError` before anything is stored or published.
        """
        text = data if isinstance(data, str) else _json.dumps_str(data)
        number = self._last + 1
        stored = ServerSentEvent(text, event=event, id=str(number))  # validates
        self._last = number
        log = self._topics.get(topic)
        if log is None:
            log = self._topics[topic] = _TopicLog(self._base)
        if len(log.events) >= self.maxlen:
            dropped, _ = log.events.popleft()
            log.floor = dropped
        log.events.append((number, stored))
        await self._broker.publish(topic, encode_broker_message(stored))
        return stored

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        """Return the events of *topic* after *last_id*, oldest first.

        :raises EventLogGap: ``"malformed"`` when *last_id* is not a decimal
            id, ``"unknown"`` when it is newer than every id issued,
            ``"expired"`` when events after it were already dropped (or it
            predates this log).
        """
        log = self._topics.get(topic)
        retained = log.events if log is not None else deque()
        if not (0 < len(last_id) <= 30 and last_id.isascii() and last_id.isdigit()):
            raise EventLogGap("malformed", [e for _, e in retained], last_id)
        number = int(last_id)
        if number > self._last:
            raise EventLogGap("unknown", [e for _, e in retained], last_id)
        floor = log.floor if log is not None else self._base
        if number < floor:
            raise EventLogGap("expired", [e for _, e in retained], last_id)
        after: list[ServerSentEvent] = []
        for n, e in reversed(retained):
            if n <= number:
                break
            after.append(e)
        after.reverse()
        return after

    def __repr__(self) -> str:
        return f"<MemoryEventLog topics={len(self._topics)} maxlen={self.maxlen}>"


def check_event_log(value: Any, what: str) -> EventLog:
    """Return *value* when it is an :class:`EventLog` with a :class:`~tornado_kit.Broker`."""
    check_async_methods(value, what, "an EventLog", ("append", "since"))
    check_broker(getattr(value, "broker", None), f"the broker of {what}")
    return cast(EventLog, value)
