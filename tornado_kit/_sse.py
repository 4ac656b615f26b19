"""Server-Sent Events: the wire format, event logs for resumption, and ``SSEMixin``.

The wire format is the WHATWG HTML Living Standard, section 9.2 "Server-sent
events" (https://html.spec.whatwg.org/multipage/server-sent-events.html).
An event is a block of ``field: value`` lines ended by a blank line.

Resumption: an :class:`EventLog` stores every event of a topic under a fresh,
increasing id and publishes it on the broker. A reconnecting ``EventSource``
sends the last id it saw in ``Last-Event-ID``; ``stream_topic()`` subscribes
first, replays :meth:`EventLog.since` and then follows the subscription live,
skipping live events whose id it has just replayed, so the client sees no gap
and no duplicate.

Example::

    event = ServerSentEvent("hello\\nworld", event="greeting", id="7")
    event.encode()
    # b'id: 7\\nevent: greeting\\ndata: hello\\ndata: world\\n\\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from tornado.concurrent import Future
from tornado.iostream import StreamClosedError
from tornado.web import GZipContentEncoding, RequestHandler

from tornado_kit import _json
from tornado_kit._access import add_access_field
from tornado_kit._broker import DEFAULT_MAXSIZE, LocalBroker, broker_for, check_broker
from tornado_kit._checks import argument, check_async_methods, check_int
from tornado_kit._errors import APIError, APIErrorHeadersMixin
from tornado_kit._lifecycle import state_for
from tornado_kit._settings import resolve
from tornado_kit._sse_fanout import Registry, Stream, registry_for

__all__ = [
    "EventLog",
    "EventLogGap",
    "MemoryEventLog",
    "SSEMixin",
    "ServerSentEvent",
    "decode_broker_message",
    "encode_broker_message",
]

_log = logging.getLogger("tornado_kit.sse")

# WHATWG 9.2.5: "Lines must be separated by either a U+000D CARRIAGE RETURN
# U+000A LINE FEED (CRLF) character pair, a single U+000A LINE FEED (LF)
# character, or a single U+000D CARRIAGE RETURN (CR) character." Nothing else
# ends a line (unlike ``str.splitlines``, which also splits on U+2028 etc.).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_field(name: str, value: str | None, *, nul: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"SSE {name} must be str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} must not contain CR or LF: {value!r}")
    # WHATWG 9.2.6: an id field whose value contains U+0000 NULL is ignored by
    # the client, so the server refuses to send one.
    if nul and "\0" in value:
        raise ValueError(f"SSE {name} must not contain NUL: {value!r}")


def _check_retry(retry: int | None) -> None:
    if retry is None:
        return
    # bool is an int subclass but "retry: True" is not what anyone means.
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise ValueError(f"SSE retry must be a non-negative integer, not {retry!r}")
    if retry < 0:
        raise ValueError(f"SSE retry must be a non-negative integer, not {retry!r}")


@dataclass(frozen=True)
class ServerSentEvent:
    """One server-sent event.

    ``data`` is the text of the event (it may contain line breaks: CR, LF and
    CRLF each start a new ``data:`` line). ``event`` is the event type
    (``None``: the client's default ``"message"``), ``id`` the id the client
    remembers and sends back as ``Last-Event-ID`` when it reconnects, and
    ``retry`` the reconnection delay in milliseconds.

    Construction validates the fields and raises :class:`ValueError` for CR or
    LF in ``event`` or ``id``, NUL in ``id``, or a ``retry`` that is not a
    non-negative integer (:class:`TypeError` for non-``str`` text fields).

    Example::

        ServerSentEvent("tick", event="clock", id="41", retry=5000).encode()
        # b'id: 41\\nevent: clock\\nretry: 5000\\ndata: tick\\n\\n'

    .. versionadded:: 0.1
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError(f"SSE data must be str, not {type(self.data).__name__}")
        _check_field("event", self.event)
        _check_field("id", self.id, nul=True)
        _check_retry(self.retry)

    def encode(self) -> bytes:
        """Return the event in the WHATWG wire format, UTF-8 encoded, blank line included.

        Every field is written as ``name: value`` (one space after the colon,
        which the client strips, so values that start with a space survive).
        Raises :class:`UnicodeEncodeError` (a :class:`ValueError`) when a
        field holds a lone surrogate, which UTF-8 cannot carry.
        """
        parts: list[str] = []
        if self.id is not None:
            parts.append(f"id: {self.id}\n" if self.id else "id\n")
        if self.event is not None:
            parts.append(f"event: {self.event}\n")
        if self.retry is not None:
            parts.append(f"retry: {self.retry}\n")
        for line in _LINE_BREAK.split(self.data):
            parts.append(f"data: {line}\n" if line else "data\n")
        parts.append("\n")
        return "".join(parts).encode("utf-8")


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


# Broker message format (shared by MemoryEventLog and RedisEventLog): one JSON
# object {"sse": 1, "data": str, "id"?: str, "event"?: str, "retry"?: int}.
# The "sse" marker tells an event published by a log from a plain text message
# published with ``broker.publish()``, which stream_topic() sends as data.
_MARKER = "sse"


def encode_broker_message(event: ServerSentEvent) -> str:
    """Encode *event* as the text an :class:`EventLog` publishes on the broker.

    Example::

        encode_broker_message(ServerSentEvent("hi", id="3"))
        # '{"sse":1,"data":"hi","id":"3"}'

    .. versionadded:: 0.1
    """
    message: dict[str, Any] = {_MARKER: 1, "data": event.data}
    if event.id is not None:
        message["id"] = event.id
    if event.event is not None:
        message["event"] = event.event
    if event.retry is not None:
        message["retry"] = event.retry
    return _json.dumps_str(message)


def decode_broker_message(message: str) -> ServerSentEvent:
    """Decode text made by :func:`encode_broker_message`.

    Raises :class:`ValueError` when *message* is not such text (for example a
    plain string published directly on the broker).

    .. versionadded:: 0.1
    """
    if not message.startswith("{"):
        raise ValueError("not an SSE broker message")
    try:
        obj = _json.loads(message)
    except ValueError:
        raise ValueError("not an SSE broker message") from None
    if not isinstance(obj, dict) or obj.get(_MARKER) != 1 or not isinstance(obj.get("data"), str):
        raise ValueError("not an SSE broker message")
    try:
        return ServerSentEvent(
            obj["data"], event=obj.get("event"), id=obj.get("id"), retry=obj.get("retry")
        )
    except TypeError as exc:
        raise ValueError(f"invalid SSE broker message: {exc}") from None


def _wire(message: str) -> tuple[bytes, str | None]:
    """Wire bytes and id of a broker message (plain text becomes the event data)."""
    try:
        event = decode_broker_message(message)
    except ValueError:
        event = ServerSentEvent(message)
    return event.encode(), event.id


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


def _check_event_log(value: Any, what: str) -> EventLog:
    """Return *value* when it is an :class:`EventLog` with a :class:`~tornado_kit.Broker`."""
    check_async_methods(value, what, "an EventLog", ("append", "since"))
    check_broker(getattr(value, "broker", None), f"the broker of {what}")
    return cast(EventLog, value)


_KEEPALIVE = b": keepalive\n\n"


def _registry_for(handler: RequestHandler) -> Registry:
    return registry_for(handler.application, _wire)


# -- the mixin ---------------------------------------------------------------


class SSEMixin(APIErrorHeadersMixin):
    """Serve a ``text/event-stream`` response (WHATWG server-sent events).

    Send events one by one with :meth:`send_event`, or follow a broker topic
    (with replay from an :class:`EventLog`) with :meth:`stream_topic`::

        class FeedHandler(SSEMixin, RequestHandler):
            async def get(self) -> None:
                await self.stream_topic("news", log=self.settings["event_log"])

        class ClockHandler(SSEMixin, RequestHandler):
            async def get(self) -> None:
                try:
                    while True:
                        await self.send_event(time.ctime(), event="tick")
                        await asyncio.sleep(1)
                except StreamClosedError:
                    return  # the client left (or the server is shutting down)

    The response carries ``Content-Type: text/event-stream; charset=utf-8``,
    ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` (nginx must not
    buffer it) and is never compressed. Headers go out with the first event
    (or, for :meth:`stream_topic`, as soon as the subscription is active),
    so an error raised before that still gets a normal error response.

    While the stream is open it is registered with the application: one timer
    per application and interval writes a ``: keepalive`` comment to every
    stream idle for ``sse_keepalive_interval`` seconds (class attribute or
    setting, default 15), and server shutdown ends every stream cleanly (the
    chunked response is terminated). When ``TimingMixin`` is mixed in, the
    access record is written when the stream ends, with the extra fields
    ``sse_events`` (events sent) and ``sse_end`` (``"done"``, ``"client"``,
    ``"overflow"``, ``"shutdown"``, ``"closed"`` or ``"unavailable"``).

    Hooks overridden (each calls ``super()``): ``on_connection_close`` (ends
    the stream at once when the client leaves) and ``finish`` (unregisters the
    stream). Once streaming, write to the response only through
    ``send_event`` / ``stream_topic``: Tornado keeps one write future per
    connection, and a direct ``self.flush()`` while one of them awaits its
    flush would leave that await hanging.

    .. versionadded:: 0.1
    """

    #: Seconds of silence after which a ``: keepalive`` comment is sent (default 15).
    sse_keepalive_interval: float | None = None
    #: Events :meth:`stream_topic` may hold back for a slow client (default
    #: 1000); a client that falls further behind is disconnected.
    sse_queue_size: int | None = None

    _tk_sse: Stream | None = None

    # -- public API ---------------------------------------------------------

    @property
    def last_event_id(self) -> str | None:
        """The id the client saw last: ``Last-Event-ID`` header, else ``lastEventId`` argument.

        ``None`` when neither is present or the value is empty. ``EventSource``
        sends the header when it reconnects (WHATWG 9.2.3); the query argument
        is for clients that cannot set headers on their first connection.
        """
        value = self.request.headers.get("Last-Event-ID")
        if value is None:
            value = self.get_query_argument("lastEventId", None, strip=False)
        elif not value.isascii():
            # HTTP headers reach Tornado as latin-1; EventSource sends UTF-8.
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                value = value.encode("latin-1").decode("utf-8")
        return value or None

    async def send_event(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Send one event and flush it.

        A ``str`` *data* is split on CR, LF and CRLF into ``data:`` lines;
        anything else is JSON-encoded. *event* sets the event type, *id* the
        id the client sends back as ``Last-Event-ID``, *retry* the client's
        reconnection delay in milliseconds. The first call sends the headers.

        Raises :class:`ValueError` (and writes nothing) for CR or LF in
        *event* or *id*, NUL in *id*, or a *retry* that is not a non-negative
        ``int``; :class:`TypeError` for *data* JSON cannot encode.
        Raises :class:`tornado.iostream.StreamClosedError` once the client is
        gone or the server ended the stream (shutdown): stop sending then.

        Example::

            await self.send_event({"price": 12.5}, event="quote", id="1042")
        """
        text = data if isinstance(data, str) else _json.dumps_str(data)
        chunk = ServerSentEvent(text, event=event, id=id, retry=retry).encode()
        await self._tk_sse_send(chunk)

    async def stream_topic(self, topic: str, log: EventLog | None = None) -> None:
        """Send every event published on broker *topic* until the stream ends.

        The subscription is made on ``log.broker`` when *log* is given, else
        on the application's broker (``broker`` setting, or the default
        :class:`~tornado_kit.LocalBroker`). Messages published by an
        :class:`EventLog` keep their id and type; plain text published with
        ``broker.publish()`` is sent as data.

        With *log* and a :attr:`last_event_id`, the events after that id are
        replayed first. The hand-over has no gap and no duplicate: the
        subscription is made *before* the log is read, and live events whose
        id was replayed are skipped. When the log cannot resume from the id
        (:class:`EventLogGap`: garbage, unknown, or older than the log's
        retention) the stream starts with a ``reset`` event, whose data is
        JSON ``{"reason": "malformed" | "unknown" | "expired",
        "last_event_id": "..."}``, followed by every event the log still
        holds; a client should drop what it derived from earlier events.

        All streams of a topic share one broker subscription per application
        (the subscriber count is the number of topics followed, not of
        clients); each event is encoded once and written to every stream in
        one loop. A stream whose client is slow gets events queued for it, up
        to ``sse_queue_size`` (default 1000); beyond that the client is
        disconnected and ``EventSource`` reconnects and resumes from the log.

        A *log* that is not an :class:`EventLog`, or a ``broker`` setting
        that is not a :class:`~tornado_kit.Broker`, raises ``TypeError``
        naming it before anything is sent (a 500 for the client).

        Returns when the stream has ended, with the response finished: the
        client left, the server shut down, the broker closed, or the client
        fell behind. The subscription is closed when its last stream ends.

        When the broker cannot subscribe (``ConnectionError``, e.g. Redis is
        down) nothing has been sent yet: the request fails with a 503
        :class:`~tornado_kit.APIError` carrying ``Retry-After``. When the log
        fails during the replay the stream ends (``sse_end`` is
        ``"unavailable"``) and the client reconnects with the same
        ``Last-Event-ID``, losing nothing.
        """
        if log is not None:
            broker = _check_event_log(log, argument("stream_topic", "log")).broker
        else:
            broker = broker_for(self.application)
        stream = self._tk_sse if self._tk_sse is not None else self._tk_sse_begin()
        if stream.in_topic:
            raise RuntimeError("stream_topic() is already running for this request")
        if stream.gone or self._finished:
            return
        stream.in_topic = True
        stream.maxsize = resolve(self, "sse_queue_size", DEFAULT_MAXSIZE)
        done = stream.done = asyncio.get_running_loop().create_future()
        if stream.ending is not None:  # e.g. the server is already shutting down
            done.set_result(None)
        last_id = self.last_event_id if log is not None else None
        if last_id is not None:
            # Live events wait in `pending` until the replay is written.
            stream.pending = deque()
            stream.replaying = True
        hub = stream.hub = _registry_for(self).hub(broker, topic)
        try:
            if not done.done():
                try:
                    await hub.attach(self)  # subscribed first, so nothing is missed
                except ConnectionError as exc:
                    # Nothing sent yet: a clear 503 rather than a 500 with a traceback.
                    _log.warning("SSE stream of %r refused: %s", topic, exc)
                    self._tk_sse_stop("unavailable")
                    raise APIError(
                        503, "event stream unavailable, retry later", headers={"Retry-After": "5"}
                    ) from None
            if not done.done():
                await self._tk_sse_send(b"")  # headers: EventSource fires "open"
            if log is not None and last_id is not None and not done.done():
                try:
                    stream.replayed = await self._tk_sse_replay(log, topic, last_id)
                except ConnectionError as exc:
                    # The log is down (e.g. Redis): end the stream; the client
                    # reconnects with the same Last-Event-ID and loses nothing.
                    _log.warning("SSE replay of %r failed, ending the stream: %s", topic, exc)
                    self._tk_sse_stop("unavailable")
                stream.replaying = False
                self._tk_sse_drain()  # live events queued meanwhile, minus the replayed
            await done
        except StreamClosedError:
            self._tk_sse_stop("client")
        finally:
            hub.detach(self)
            stream.hub = None
            stream.in_topic = False
            stream.pending = None
            stream.replaying = False
        if stream.ending == "overflow":
            _log.warning(
                "SSE client of %r fell more than %d events behind; disconnected",
                topic,
                stream.maxsize,
            )
        if not self._finished and not stream.gone:
            self.finish()

    # -- hooks ----------------------------------------------------------------

    def on_connection_close(self) -> None:
        """End the stream and unregister at once when the client leaves.

        Runs when Tornado notices the closed connection (a proxy may keep it
        open for a while after the browser left). ``stream_topic()`` returns
        and the topic subscription closes if this was its last stream. The
        access record, if ``TimingMixin`` is mixed in, is written now.
        """
        stream = self._tk_sse
        if stream is not None:
            stream.gone = True
            self._tk_sse_stop("client")
            self._tk_sse_unregister()
            log_access = getattr(self, "_tk_log_access", None)
            if log_access is not None:
                log_access()
        super().on_connection_close()

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Unregister the stream (and record ``sse_events``/``sse_end``), then finish."""
        if self._tk_sse is not None:
            self._tk_sse_unregister()
        return super().finish(chunk)

    # -- internals ------------------------------------------------------------

    def _tk_sse_begin(self) -> Stream:
        """Set the stream headers and register the stream (no I/O)."""
        interval = float(resolve(self, "sse_keepalive_interval", 15.0))
        if not interval > 0:
            raise ValueError(f"sse_keepalive_interval must be positive, not {interval!r}")
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        # Compression would hold events back in the compressor (and
        # text/event-stream is not on Tornado's list anyway): drop the gzip
        # transform for this response so nothing touches the stream.
        self._transforms = [t for t in self._transforms if not isinstance(t, GZipContentEncoding)]
        group = _registry_for(self).add(self, interval)
        stream = self._tk_sse = Stream(group, getattr(self.request.connection, "stream", None))
        state = state_for(self.application)
        state.connections.add(self)
        if state.shutting_down:
            stream.ending = "shutdown"
        return stream

    def _tk_sse_unregister(self) -> None:
        stream = self._tk_sse
        if stream is None or not stream.registered:
            return
        stream.registered = False
        add_access_field(self, "sse_events", stream.events)
        add_access_field(self, "sse_end", stream.ending or "done")
        stream.group.registry.discard(self, stream.group)
        state_for(self.application).connections.discard(self)

    def _tk_sse_stop(self, reason: str) -> None:
        """Record why the stream ends (the first reason wins) and wake ``stream_topic()``."""
        stream = self._tk_sse
        if stream is None:
            return
        if stream.ending is None:
            stream.ending = reason
        done = stream.done
        if done is not None and not done.done():
            done.set_result(None)

    def _tk_sse_push(self, chunk: bytes, count: int = 1) -> Future[None] | None:
        """Write and flush *chunk*; return the flush future only when it must be awaited.

        When the socket took every byte at once (the usual case) there is
        nothing to wait for, so callers skip an await (and a task wake-up per
        event); the future is returned only while bytes are still queued for
        a slow client.
        """
        stream = self._tk_sse
        if stream is None:
            stream = self._tk_sse_begin()
        if stream.gone or self._finished:
            raise StreamClosedError()
        if chunk:
            self.write(chunk)
            stream.events += count
        stream.last_write = time.monotonic()
        flushed = self.flush()
        iostream = stream.iostream
        if iostream is None or iostream.writing():
            return flushed
        if iostream.closed():
            raise StreamClosedError()
        return None

    async def _tk_sse_send(self, chunk: bytes) -> None:
        flushed = self._tk_sse_push(chunk)
        stream = self._tk_sse
        assert stream is not None
        if flushed is not None:
            # While this await is pending nothing else may write: Tornado's
            # HTTP1Connection keeps one write future, and a second write would
            # orphan ours. The hub, the keepalive sweep and shutdown check it.
            stream.flushing = True
            try:
                await flushed
            finally:
                stream.flushing = False
            if stream.pending is not None and not stream.replaying:
                self._tk_sse_drain()  # live events that arrived during the await
        if stream.ending and not stream.gone and not stream.in_topic and not self._finished:
            # Shutdown arrived while this event was being flushed.
            self.finish()

    def _tk_sse_deliver(self, chunk: bytes, event_id: str | None, now: float) -> None:
        """Called by the topic hub for each live event (never awaits).

        The common case (the client keeps up) is a plain ``write`` + ``flush``,
        the same work as a hand-written broadcast loop.
        """
        stream = self._tk_sse
        if stream is None or stream.ending is not None:
            return
        pending = stream.pending
        if pending is None:
            if stream.flushing:
                # A send_event() coroutine awaits its flush: do not write now.
                pending = stream.pending = deque()
            else:
                replayed = stream.replayed
                if replayed and event_id in replayed:
                    return
                if stream.gone or self._finished:
                    self._tk_sse_stop("client")
                    return
                self.write(chunk)
                stream.events += 1
                stream.last_write = now
                flushed = self.flush()
                iostream = stream.iostream
                if iostream is not None and not iostream.writing():
                    if iostream.closed():
                        self._tk_sse_stop("client")
                    return
                # The client did not take it all: hold further events back
                # until this write completes.
                stream.pending = deque()
                flushed.add_done_callback(self._tk_sse_drain)
                return
        if len(pending) >= stream.maxsize:
            self._tk_sse_overflow()
        else:
            pending.append((chunk, event_id))

    def _tk_sse_drain(self, _flushed: object = None) -> None:
        """Write the events held back (after a backlog or the replay), in one write."""
        stream = self._tk_sse
        if stream is None or stream.replaying or stream.flushing:
            return
        pending, stream.pending = stream.pending, None
        if stream.ending is not None or self._finished or not pending:
            return
        replayed = stream.replayed
        chunks = [chunk for chunk, eid in pending if not (replayed and eid in replayed)]
        if not chunks:
            return
        try:
            flushed = self._tk_sse_push(b"".join(chunks), len(chunks))
        except StreamClosedError:
            self._tk_sse_stop("client")
            return
        if flushed is not None:
            stream.pending = deque()
            flushed.add_done_callback(self._tk_sse_drain)

    def _tk_sse_overflow(self) -> None:
        """More than ``sse_queue_size`` events are held back: give up on this client."""
        stream = self._tk_sse
        assert stream is not None
        self._tk_sse_stop("overflow")
        stream.pending = None
        iostream = stream.iostream
        if iostream is not None and iostream.writing():
            # Bytes are stuck behind a client that does not read: no clean
            # end is possible, disconnect (on_connection_close follows).
            iostream.close()

    async def _tk_sse_replay(self, log: EventLog, topic: str, last_id: str) -> set[str]:
        stream = self._tk_sse
        assert stream is not None
        try:
            events = await log.since(topic, last_id)
        except EventLogGap as gap:
            _log.info("SSE resume of %r from %r impossible (%s): reset", topic, last_id, gap.reason)
            events = gap.events
            notice = {"reason": gap.reason, "last_event_id": last_id}
            await self._tk_sse_send(ServerSentEvent(_json.dumps_str(notice), "reset").encode())
        for event in events:
            if stream.ending is not None:
                break
            await self._tk_sse_send(event.encode())
        return {event.id for event in events if event.id is not None}

    def _tk_sse_sweep(self, threshold: float) -> None:
        """Keepalive timer tick for this stream (see ``KeepaliveGroup``)."""
        stream = self._tk_sse
        if stream is None or self._finished or stream.gone:
            return
        iostream = stream.iostream
        if iostream is None or iostream.closed():
            return
        if stream.flushing or stream.pending is not None or iostream.writing():
            return  # bytes are on their way: the stream is not idle
        if stream.last_write <= threshold:
            stream.last_write = time.monotonic()
            self.write(_KEEPALIVE)
            # Not awaited: nothing waits on this stream's writes right now
            # (checked above), and a closed stream's future is already failed
            # and marked retrieved by Tornado.
            self.flush()

    def _tk_sse_end(self, reason: str) -> None:
        """End the stream from outside its coroutine (server shutdown)."""
        stream = self._tk_sse
        if stream is None or stream.gone or self._finished:
            return
        self._tk_sse_stop(reason)
        iostream = stream.iostream
        if iostream is not None and iostream.writing():
            iostream.close()  # stuck behind a slow client: on_connection_close follows
            return
        if stream.in_topic:
            return  # stream_topic() wakes up and finishes the response
        if not stream.flushing:
            self.finish()
        # else: _tk_sse_send() finishes the response when its flush returns.
