"""Request ids, ``Server-Timing`` spans and one structured access record per request.

``TimingMixin`` is the module's public name; ``JSONLinesFormatter`` (a
``logging.Formatter``) is importable from here for logging set-ups::

    from tornado_kit.timing import JSONLinesFormatter

The access record is emitted exactly once per request, from the
``RequestHandler._log()`` hook that ``finish()`` calls (which also replaces
Tornado's own ``Application.log_request`` line for these handlers only), with
``on_finish`` as a fallback. WebSocket connections are logged when they close
and SSE streams when they end (the websocket and sse modules call
``_tk_log_access()``, which is idempotent).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

from tornado.concurrent import Future
from tornado.web import RequestHandler

from tornado_kit import _json
from tornado_kit._access import access_fields
from tornado_kit._settings import resolve

__all__ = ["REDACTED_QUERY_ARGUMENTS", "JSONLinesFormatter", "TimingMixin"]

access_log = logging.getLogger("tornado_kit.access")
_log = logging.getLogger("tornado_kit.timing")

#: Query argument names (compared case-insensitively) whose values the access
#: record replaces with ``REDACTED``, in addition to the ``auth_query_argument``
#: setting (``"access_token"`` by default).
REDACTED_QUERY_ARGUMENTS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "client_secret",
        "id_token",
        "key",
        "passwd",
        "password",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
_REDACTED = "REDACTED"

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


class TimingMixin(RequestHandler):
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
    ``tornado_kit._access.add_access_field``. ``user`` is
    ``current_user["sub"]`` when the current user is a mapping (``None``
    otherwise); ``bytes`` counts the response body handed to the connection,
    before any content-encoding (``0`` for ``HEAD``). Query arguments named
    in :data:`REDACTED_QUERY_ARGUMENTS`, or by the ``auth_query_argument``
    setting, have their values replaced by ``REDACTED``.

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
    #: Extra query argument names to redact (added to the built-in list).
    redact_query_arguments: Iterable[str] | None = None

    _tk_request_id: str | None = None
    _tk_spans: dict[str, float] | None = None
    _tk_bytes = 0
    _tk_logged = False

    # -- request id ---------------------------------------------------------

    @property
    def request_id(self) -> str:
        """The request id (incoming ``X-Request-ID`` when valid, else generated)."""
        request_id = self._tk_request_id
        if request_id is None:
            incoming = self.request.headers.get("X-Request-ID")
            if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
                request_id = incoming
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
        self.set_header("X-Request-ID", self.request_id)

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
        parts = ["total;dur=%.2f" % (self.request.request_time() * 1000.0)]
        if self._tk_spans:
            parts.extend(
                f"{_metric_name(name)};dur={seconds * 1000.0:.2f}"
                for name, seconds in self._tk_spans.items()
            )
        return ", ".join(parts)

    # -- output hooks -------------------------------------------------------

    def flush(self, include_footers: bool = False) -> Future[None]:
        """Count body bytes; add ``Server-Timing`` to a non-streamed response.

        ``finish()`` calls ``flush(include_footers=True)``; when the headers
        have not gone out before that, this is the last moment to add
        ``Server-Timing`` with the complete ``total``.
        """
        if not self._headers_written and include_footers and self._status_code != 101:
            try:
                self.set_header("Server-Timing", self._tk_server_timing())
            except Exception:  # pragma: no cover - defensive, never fail a response
                _log.error("could not build Server-Timing", exc_info=True)
        if self.request.method != "HEAD":
            for chunk in self._write_buffer:
                self._tk_bytes += len(chunk)
        return super().flush(include_footers)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Finish the response; an exception from ``on_finish`` is logged, not raised."""
        try:
            return super().finish(chunk)
        except Exception:
            if not self._finished:
                raise  # the response itself failed: Tornado's usual handling
            _log.error(
                "on_finish raised for %s %s (request_id=%s)",
                self.request.method,
                self.request.path,
                self.request_id,
                exc_info=True,
            )
            self._tk_log_access()
            done: Future[None] = Future()
            done.set_result(None)
            return done

    # -- access record ------------------------------------------------------

    def _log(self) -> None:
        # Tornado's finish() calls _log() (-> Application.log_request) right
        # after the response was handed to the connection. We emit our record
        # instead; a WebSocket upgrade (101) is logged when the connection closes.
        if self._status_code != 101:
            self._tk_log_access()

    def on_finish(self) -> None:
        """Emit the access record if ``_log()`` did not (it is emitted once)."""
        try:
            super().on_finish()
        finally:
            if self._status_code != 101:
                self._tk_log_access()

    def on_connection_close(self) -> None:
        """Log a WebSocket connection (status 101) when it closes."""
        try:
            super().on_connection_close()
        finally:
            if self._status_code == 101:
                self._tk_log_access()

    def _tk_log_access(self) -> None:
        """Emit this request's access record unless already emitted.

        Idempotent; never raises. The websocket and sse modules call it when a
        long-lived connection ends.
        """
        if self._tk_logged:
            return
        self._tk_logged = True
        try:
            self._tk_emit_access()
        except Exception:
            _log.error("could not emit the access record", exc_info=True)

    def _tk_emit_access(self) -> None:
        status = self._status_code
        seconds = self.request.request_time()
        metrics: Any = resolve(self, "metrics", None)
        if metrics is not None:
            metrics.observe_request(type(self).__name__, self.request.method or "", status, seconds)
        if status < 400:
            level = logging.INFO
        elif status < 500:
            level = logging.WARNING
        else:
            level = logging.ERROR
        if not access_log.isEnabledFor(level):
            return
        request = self.request
        path = request.path
        if request.query:
            path = path + "?" + self._tk_redacted_query(request.query)
        user = self.__dict__.get("_current_user")
        sub = user.get("sub") if isinstance(user, Mapping) else None
        duration_ms = round(seconds * 1000.0, 3)
        record: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": self.request_id,
            "user": sub,
            "bytes": self._tk_bytes,
            "remote_ip": request.remote_ip,
            "handler": type(self).__name__,
        }
        if self._tk_spans:
            record["spans"] = {
                name: round(value * 1000.0, 3) for name, value in self._tk_spans.items()
            }
        for name, value in access_fields(self).items():
            record.setdefault(name, value)  # the core fields cannot be overwritten
        # makeRecord + handle instead of log(): the caller's file and line are
        # meaningless for an access record, and finding them (walking the
        # stack) is a measurable part of the per-request cost.
        log_record = access_log.makeRecord(
            access_log.name,
            level,
            "(access)",
            0,
            "%d %s %s %.2fms %s",
            (status, request.method, path, duration_ms, record["request_id"]),
            None,
            extra={"access": record},
        )
        access_log.handle(log_record)

    def _tk_redacted_query(self, query: str) -> str:
        secret = {resolve(self, "auth_query_argument", "access_token").lower()}
        extra = self.redact_query_arguments
        if extra is not None:
            secret.update(name.lower() for name in extra)
        parts = []
        for part in query.split("&"):
            name = part.partition("=")[0]
            lowered = unquote_plus(name).lower()
            if lowered in REDACTED_QUERY_ARGUMENTS or lowered in secret:
                part = name + "=" + _REDACTED
            parts.append(part)
        return "&".join(parts)


# ---------------------------------------------------------------------------
# JSON-lines logging
# ---------------------------------------------------------------------------

# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "access",  # merged at the top level instead
}


class JSONLinesFormatter(logging.Formatter):
    """Format each log record as one JSON object on one line.

    Members: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message``, then the fields of the record's ``access`` attribute (the
    access record of :class:`TimingMixin`) at the top level, then any other
    ``extra=`` attributes, then ``exc_info`` (the formatted traceback) when
    there is one. Values JSON cannot represent are written as ``str()``.
    Newlines in values are escaped by JSON, so one record is always one line.

    ::

        import logging
        from tornado_kit.timing import JSONLinesFormatter

        handler = logging.FileHandler("access.jsonl")
        handler.setFormatter(JSONLinesFormatter())
        access = logging.getLogger("tornado_kit.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False

    .. versionadded:: 0.1
    """

    _stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* as a single line of JSON."""
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:  # one strftime per second, not per record
            stamp = self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        data: dict[str, Any] = {
            "time": f"{stamp[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        access = attributes.get("access")
        if isinstance(access, dict):
            for key, value in access.items():
                data.setdefault(key, value)
        for key in attributes.keys() - _STANDARD_ATTRS:
            if not key.startswith("_"):
                data.setdefault(key, attributes[key])
        if record.exc_info:
            data["exc_info"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = record.stack_info
        try:
            return _json.dumps_str(data)
        except (TypeError, ValueError):
            return json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))
