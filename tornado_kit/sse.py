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

import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tornado_kit import _json

__all__ = [
    "EventLog",
    "EventLogGap",
    "ServerSentEvent",
    "decode_broker_message",
    "encode_broker_message",
]

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
    publishes it on :attr:`broker` as :func:`encode_broker_message` text, and
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
