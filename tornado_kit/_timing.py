"""Request ids, ``Server-Timing`` spans and one structured access record per request (private).

``TimingMixin`` is exported by ``tornado_kit``. The access record is emitted
exactly once per request, from the hook that Tornado's ``finish()`` calls
(``_compat.handler.AccessLogHook``; it also replaces Tornado's own
``Application.log_request`` line for these handlers only), with
``on_finish`` as a fallback. WebSocket connections are logged when they
close and SSE streams when they end (the websocket and sse modules call
``self._tk_end_access()``, which is idempotent). The record itself is built
in ``_access``; the JSON-lines formatter and file handler are in ``_jsonlog``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from tornado.concurrent import Future

from tornado_kit._access import AccessHooks, access_log, emit_record
from tornado_kit._compat.handler import (
    AccessLogHook,
    finished,
    headers_written,
    pending_body,
    response_headers,
    status_code,
)
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import DEFAULT_SECRET_NAMES, class_secret_names, install

__all__ = ["REDACTED_QUERY_ARGUMENTS", "TimingMixin", "access_log"]

_log = logging.getLogger("tornado_kit.timing")

#: Query argument names (compared case-insensitively) whose values the access
#: record replaces with ``REDACTED``, in addition to the ``redact_query_arguments``
#: setting and class attribute and the ``auth_query_argument`` name. Lower
#: case. The one default list of tornado-kit (``tornado_kit._redact``).
REDACTED_QUERY_ARGUMENTS = DEFAULT_SECRET_NAMES

# DESIGN.md: 1 to 128 letters, digits, ".", "_", "-".
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# RFC 9110 §5.6.2 token characters; Server-Timing metric names are tokens
# (W3C Server Timing §3).
_NOT_TCHAR = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


def _metric_name(name: str) -> str:
    return _NOT_TCHAR.sub("_", name) or "_"


class _Span:
    """Context manager returned by :meth:`TimingMixin.timed` (sync or async)."""

    __slots__ = ("_handler", "_name", "_start")

    def __init__(self, handler: TimingMixin, name: str) -> None:
        self._handler = handler
        self._name = name
        self._start = 0.0

    def __enter__(self) -> _Span:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handler._tk_add_span(self._name, time.perf_counter() - self._start)

    async def __aenter__(self) -> _Span:
        return self.__enter__()

    async def __aexit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(typ, value, tb)


class TimingMixin(AccessLogHook, AccessHooks):
    """Request id, ``Server-Timing`` and one structured access record per request.

    ::

        class UserHandler(TimingMixin, RequestHandler):
            async def get(self, user_id: str) -> None:
                with self.timed("db"):
                    user = await load_user(user_id)
                self.write(user)

    **Request id.** ``self.request_id`` is the incoming ``X-Request-ID`` when
    it is 1 to 128 characters of letters, digits, ``.``, ``_`` and ``-``;
    anything else is replaced by a fresh id (32 hex digits) and never echoed.
    The id is computed on first use, so it is valid even when ``prepare()``
    never ran (a 405, an exception in another mixin's ``prepare``), and
    ``X-Request-ID`` is set again in :meth:`clear`, so every response
    carries it, error responses included.

    **Spans.** ``with self.timed("db"):`` (or ``async with``) measures a named
    span. Nested spans are reported independently (an outer span includes
    the inner one's time). A name used more than once is reported once,
    with the durations summed. Non-streamed responses get a
    ``Server-Timing`` header (W3C Server Timing) with ``total`` (time since
    the request was received) and every span, names reduced to token
    characters: ``Server-Timing: total;dur=1.52, db;dur=0.41``. A response
    whose headers were flushed before ``finish()`` (streaming, SSE) gets no
    header.

    **Access record.** When the request ends (a WebSocket: when the
    connection closes; SSE: when the stream ends) exactly one record is
    logged on the ``tornado_kit.access`` logger, at ``INFO`` below 400,
    ``WARNING`` below 500, ``ERROR`` otherwise, like Tornado's. It replaces
    Tornado's own access line (``Application.log_request``, and so a
    ``log_function`` setting) for handlers with this mixin; other handlers
    keep Tornado's logging. The record is the ``access`` attribute of the
    log record (a dict; :class:`JSONLinesFormatter` writes it as JSON)::

        {"method": "GET", "path": "/users/1?access_token=REDACTED",
         "status": 200, "duration_ms": 1.52, "request_id": "9f0c...",
         "user": "alice", "bytes": 57, "remote_ip": "127.0.0.1",
         "handler": "UserHandler", "spans": {"db": 0.41}}

    plus the fields other mixins add with
    :func:`~tornado_kit.add_access_field`. ``user`` is
    ``current_user["sub"]`` when the current user is a mapping (``None``
    otherwise); ``bytes`` counts the response body handed to the connection,
    before any content-encoding (``0`` for ``HEAD``). Query arguments named
    in the default secret names (``access_token``, ``token``, ``password``,
    ``secret``, ``api_key``, ``code``... the list is in the Timing docs
    page), in the ``redact_query_arguments``
    setting or class attribute, or by ``auth_query_argument``, have their
    values replaced by ``REDACTED`` (the names are added to the defaults,
    never replace them). The same names are redacted from Tornado's own log
    lines, for every handler of the application.

    **Metrics.** When the ``metrics`` setting (or class attribute) is a
    :class:`~tornado_kit.PrometheusMetrics`, the request duration is
    observed there too.

    Nothing here raises into the request: a failure while building the
    record is logged on ``tornado_kit.timing``. An exception raised by an
    ``on_finish`` override (after the response was sent) is logged there
    too, instead of reaching Tornado as an "uncaught exception".

    .. versionadded:: 0.1
    """

    #: A :class:`~tornado_kit.PrometheusMetrics` to observe request durations into.
    metrics: Any = None
    #: Extra query argument names to redact (added to the built-in list and
    #: to the ``redact_query_arguments`` setting).
    redact_query_arguments: Iterable[str] | None = None

    _tk_request_id: str | None = None
    _tk_spans: dict[str, float] | None = None
    _tk_bytes = 0
    _tk_logged = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The class's names reach Tornado's log lines before its first request
        # (an uncaught exception is logged before the access record is built).
        super().__init_subclass__(**kwargs)
        install(class_secret_names(cls))

    # -- request id ---------------------------------------------------------

    @property
    def request_id(self) -> str:
        """The request id (incoming ``X-Request-ID`` when valid, else generated)."""
        request_id = self._tk_request_id
        if request_id is None:
            # get_list, not get: no KeyError raised and caught for the usual
            # request without the header. Two X-Request-ID headers are not one
            # valid id (get() would join them with a comma, which is invalid).
            incoming = self.request.headers.get_list("X-Request-ID")
            if len(incoming) == 1 and _VALID_REQUEST_ID.fullmatch(incoming[0]):
                request_id = incoming[0]
            else:
                request_id = os.urandom(16).hex()
            self._tk_request_id = request_id
        return request_id

    def clear(self) -> None:
        """Reset the response, then set ``X-Request-ID`` again.

        Tornado calls ``clear()`` when the handler is created and again in
        ``send_error()``; re-applying the header here keeps it on errors.
        """
        super().clear()
        # The id is validated (or generated as hex): no need for set_header's
        # check for control characters on every request.
        response_headers(self)["X-Request-ID"] = self.request_id

    # -- spans --------------------------------------------------------------

    def timed(self, name: str) -> _Span:
        """Return a context manager that records a span named *name*.

        ::

            with self.timed("db"):
                rows = await fetch_rows()

        Works with ``with`` and ``async with``. Repeated names are summed;
        nested spans are reported independently.
        """
        return _Span(self, name)

    def _tk_add_span(self, name: str, seconds: float) -> None:
        spans = self._tk_spans
        if spans is None:
            spans = self._tk_spans = {}
        spans[name] = spans.get(name, 0.0) + seconds

    def _tk_server_timing(self) -> str:
        # W3C Server Timing §3: metric *( OWS ";" OWS param ), comma separated.
        total = "total;dur=%.2f" % (self.request.request_time() * 1000.0)
        spans = self._tk_spans
        if not spans:
            return total
        parts = [total]
        parts.extend(
            f"{_metric_name(name)};dur={seconds * 1000.0:.2f}" for name, seconds in spans.items()
        )
        return ", ".join(parts)

    # -- output hooks -------------------------------------------------------

    def flush(self, include_footers: bool = False) -> Future[None]:
        """Count body bytes; add ``Server-Timing`` to a non-streamed response.

        ``finish()`` calls ``flush(include_footers=True)``; when the headers
        have not gone out before that, this is the last moment to add
        ``Server-Timing`` with the complete ``total``.
        """
        if include_footers and not headers_written(self) and status_code(self) != 101:
            try:
                # Token names and numbers only (see _tk_server_timing): safe
                # without set_header's check.
                response_headers(self)["Server-Timing"] = self._tk_server_timing()
            except Exception:  # pragma: no cover - defensive, never fail a response
                _log.error("could not build Server-Timing", exc_info=True)
        chunks = pending_body(self)
        if chunks and self.request.method != "HEAD":
            self._tk_bytes += len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))
        return super().flush(include_footers)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Finish the response; an exception from ``on_finish`` is logged, not raised."""
        try:
            return super().finish(chunk)
        except Exception:
            if not finished(self):
                raise  # the response itself failed: Tornado's usual handling
            _log.error(
                "on_finish raised for %s %s (request_id=%s)",
                self.request.method,
                self.request.path,
                self.request_id,
                exc_info=True,
            )
            self._tk_end_access()
            done: Future[None] = Future()
            done.set_result(None)
            return done

    # -- access record ------------------------------------------------------

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log as the next class does, once the log filter knows the app's secret names.

        Tornado's lines about an exception (on ``tornado.general`` and
        ``tornado.application``, with the request URI) come before the access
        record, which otherwise is the first to make sure of them.
        """
        state_for(self.application)  # its creation installs the app's names
        super().log_exception(typ, value, tb)

    def _tk_log_request(self) -> None:
        # Tornado's finish() calls this (through AccessLogHook) right after the
        # response was handed to the connection, instead of its own
        # Application.log_request. We emit our record; a WebSocket upgrade (101)
        # is logged when the connection closes.
        if status_code(self) != 101:
            self._tk_end_access()

    def on_finish(self) -> None:
        """Emit the access record if the finish hook did not (it is emitted once)."""
        try:
            super().on_finish()
        finally:
            if status_code(self) != 101:
                self._tk_end_access()

    def on_connection_close(self) -> None:
        """Log a WebSocket connection (status 101) when it closes."""
        try:
            super().on_connection_close()
        finally:
            if status_code(self) == 101:
                self._tk_end_access()

    def _tk_end_access(self) -> None:
        """Emit this request's access record unless already emitted.

        Idempotent; never raises. The websocket and sse modules call it when a
        long-lived connection ends.
        """
        if self._tk_logged:
            return
        self._tk_logged = True
        try:
            emit_record(self, self.request_id, self._tk_bytes, self._tk_spans)
        except Exception:
            _log.error("could not emit the access record", exc_info=True)

    def _tk_request_id_if_any(self) -> str:
        """The request id (``TimingMixin`` always has one)."""
        return self.request_id
