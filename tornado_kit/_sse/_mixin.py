"""SSEMixin: serve a ``text/event-stream`` response (private).

The mixin keeps only its public methods (:meth:`~tornado_kit.SSEMixin.send_event`,
:meth:`~tornado_kit.SSEMixin.stream_topic`,
:attr:`~tornado_kit.SSEMixin.last_event_id`) and the Tornado hooks it
overrides; the stream's state and behaviour are an ``SSEStream``
(``_stream.py``), opened on first use.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tornado.concurrent import Future

from tornado_kit import _json
from tornado_kit._access import AccessHooks
from tornado_kit._broker import broker_for
from tornado_kit._checks import argument
from tornado_kit._errors import APIErrorHeadersMixin
from tornado_kit._sse._event import ServerSentEvent
from tornado_kit._sse._log import EventLog, check_event_log
from tornado_kit._sse._stream import SSEStream

__all__ = ["SSEMixin"]


class SSEMixin(APIErrorHeadersMixin, AccessHooks):
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

    _tk_sse: SSEStream | None = None

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
        await self._tk_stream().send(chunk)

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
            broker = check_event_log(log, argument("stream_topic", "log")).broker
        else:
            broker = broker_for(self.application)
        await self._tk_stream().follow(broker, topic, log)

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
            stream.close()
            self._tk_end_access()
        super().on_connection_close()

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Unregister the stream (and record ``sse_events``/``sse_end``), then finish."""
        if self._tk_sse is not None:
            self._tk_sse.unregister()
        return super().finish(chunk)

    def _tk_stream(self) -> SSEStream:
        """This response's stream, opened (headers set, registered) on first use."""
        stream = self._tk_sse
        if stream is None:
            stream = self._tk_sse = SSEStream.open(self)
        return stream
