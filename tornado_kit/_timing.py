"""Request ids, ``Server-Timing`` spans and one structured access record per request.

``TimingMixin`` is the module's public name; ``JSONLinesFormatter`` (a
``logging.Formatter``) is importable from here for logging set-ups::

    from tornado_kit import JSONLinesFormatter

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
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from tornado.concurrent import Future
from tornado.web import RequestHandler

from tornado_kit import _json
from tornado_kit._access import access_fields
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import (
    DEFAULT_SECRET_NAMES,
    class_secret_names,
    install,
    loggable_uri,
)
from tornado_kit._settings import resolve

__all__ = [
    "REDACTED_QUERY_ARGUMENTS",
    "JSONLinesFileHandler",
    "JSONLinesFormatter",
    "TimingMixin",
]

access_log = logging.getLogger("tornado_kit.access")
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
        self._headers["X-Request-ID"] = self.request_id

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
        if include_footers and not self._headers_written and self._status_code != 101:
            try:
                # Token names and numbers only (see _tk_server_timing): safe
                # without set_header's check.
                self._headers["Server-Timing"] = self._tk_server_timing()
            except Exception:  # pragma: no cover - defensive, never fail a response
                _log.error("could not build Server-Timing", exc_info=True)
        chunks = self._write_buffer
        if chunks and self.request.method != "HEAD":
            self._tk_bytes += len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))
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
        # The app's secret names reach the filter on Tornado's loggers when its
        # state is created: from here on for an app served without serve() or
        # the testing plugin (a dict lookup afterwards).
        state_for(self.application)
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
        path = loggable_uri(self)
        user = self.__dict__.get("_current_user")
        # dict first: its exact-type check is cheaper than the ABC's.
        sub = user.get("sub") if isinstance(user, (dict, Mapping)) else None
        duration_ms = round(seconds * 1000.0, 3)
        request_id = self.request_id
        record: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
            "user": sub,
            "bytes": self._tk_bytes,
            "remote_ip": request.remote_ip,
            "handler": type(self).__name__,
        }
        if self._tk_spans:
            record["spans"] = {
                name: round(value * 1000.0, 3) for name, value in self._tk_spans.items()
            }
        extra = access_fields(self)
        if extra:
            # Core fields first and winning: an extra field cannot overwrite them.
            record = {**record, **extra, **record}
        # makeRecord + handle instead of log(): the caller's file and line are
        # meaningless for an access record, and finding them (walking the
        # stack) is a measurable part of the per-request cost.
        log_record = access_log.makeRecord(
            access_log.name,
            level,
            "(access)",
            0,
            "%d %s %s %.2fms %s",
            (status, request.method, path, duration_ms, request_id),
            None,
        )
        # What extra={"access": record} would do, without its per-key checks
        # ("access" is not a LogRecord attribute).
        log_record.__dict__["access"] = record
        access_log.handle(log_record)


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
        from tornado_kit import JSONLinesFormatter

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
        if isinstance(access, dict) and access:
            # Keys in order (standard members, then the access fields), and
            # the standard members win over an access field of the same name.
            data = {**data, **access, **data}
        for key in attributes.keys() - _STANDARD_ATTRS:
            if not key.startswith("_"):
                data.setdefault(key, attributes[key])
        if record.exc_text:  # formatted already (and redacted by tornado-kit's filter)
            data["exc_info"] = record.exc_text
        elif record.exc_info:
            data["exc_info"] = "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            data["stack_info"] = record.stack_info
        try:
            return _json.dumps_str(data)
        except (TypeError, ValueError):
            return json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))


class JSONLinesFileHandler(logging.Handler):
    """Append log records to a file as JSON lines, written in batches.

    The production handler for the access log: each record is formatted
    (by a :class:`JSONLinesFormatter` unless you set another formatter) and
    kept in memory; the batch is written with one ``write`` call when
    *flush_interval* seconds have passed since the first record of the batch,
    when it reaches *buffer_size* bytes, when a record of *flush_level* or
    above arrives, on :meth:`flush` and on :meth:`close` (which
    :func:`logging.shutdown` calls at interpreter exit; ``serve()`` calls it
    on a forced exit too). A record that arrives after :meth:`close` is
    appended to the file at once. A ``logging.FileHandler``
    writes and flushes every record instead: per request, that is a system
    call and most of the cost of the file access log.

    ::

        import logging
        from tornado_kit import JSONLinesFileHandler

        access = logging.getLogger("tornado_kit.access")
        access.addHandler(JSONLinesFileHandler("access.jsonl"))
        access.setLevel(logging.INFO)
        access.propagate = False

    **Trade-off.** A clean shutdown loses nothing. A crash that kills the
    process without running Python's exit handlers (``SIGKILL``, the OOM
    killer, a segfault, ``os._exit`` without :func:`logging.shutdown`) loses
    the records of the last *flush_interval* seconds, at most *buffer_size*
    bytes. ``flush_interval=0`` writes every record at once (no loss, no
    batching).

    The file is opened in append mode, and a batch is written whole lines
    at a time, so several processes (``serve(processes=N)``) can share one
    file: on a local POSIX filesystem each ``write`` to a file opened with
    ``O_APPEND`` lands after the previous one, so lines are not cut. After a
    ``fork()`` the child drops the records it inherited (the parent still
    writes them) and starts its own timer thread. The timer thread is a
    daemon thread, started on the first record; it sleeps while nothing
    is buffered.

    A line that cannot be encoded as UTF-8 (a lone surrogate) is written
    with ``\\uXXXX``-style escapes instead of being dropped. A failed write
    is reported like any handler error (:meth:`logging.Handler.handleError`)
    and its batch is dropped.

    :param filename: the file to append to (created if absent).
    :param flush_interval: seconds a record may wait in memory (default 0.5).
    :param buffer_size: bytes that trigger a write at once (default 64 KiB).
    :param flush_level: records at this level or above are written at once,
        with everything buffered before them (default ``ERROR``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        flush_interval: float = 0.5,
        buffer_size: int = 64 * 1024,
        flush_level: int = logging.ERROR,
    ) -> None:
        if not (flush_interval >= 0 and flush_interval != float("inf")):
            raise ValueError("flush_interval must be a finite number of seconds >= 0")
        if buffer_size < 0:
            raise ValueError("buffer_size must be >= 0")
        super().__init__()
        self.baseFilename = os.path.abspath(os.fspath(filename))
        self.flush_interval = float(flush_interval)
        self.buffer_size = int(buffer_size)
        self.flush_level = flush_level
        self.setFormatter(JSONLinesFormatter())
        self._file: Any = open(self.baseFilename, "ab", buffering=0)  # noqa: SIM115
        self._buffer: list[bytes] = []
        self._size = 0
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):  # POSIX; a weak reference, so
            # that the registration (which cannot be undone) keeps no handler alive.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forked_in_child(ref))

    def emit(self, record: logging.LogRecord) -> None:
        """Format *record* and buffer it (called with the handler's lock held)."""
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if self._file is None:  # closed: no batching any more
                with open(self.baseFilename, "ab") as file:
                    file.write(line)
                return
            buffer = self._buffer
            buffer.append(line)
            self._size += len(line)
            if (
                self._size >= self.buffer_size
                or record.levelno >= self.flush_level
                or self.flush_interval == 0
            ):
                self._write()
            elif len(buffer) == 1:
                self._wake_flusher()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write the buffered records now."""
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def close(self) -> None:
        """Write the buffered records, stop the timer thread and close the file."""
        self.acquire()
        try:
            self._stop.set()
            self._pending.set()  # wake the thread so that it sees the stop
            try:
                self._write()
            finally:
                file, self._file = self._file, None
                if file is not None:
                    file.close()
        finally:
            self.release()
            super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.baseFilename} ({logging.getLevelName(self.level)})>"

    # -- internals (called with the lock held) --

    def _forked(self) -> None:
        # In a child just after fork(), before anything else runs. The parent
        # writes the records this process inherited; a thread does not
        # survive fork(), so the timer starts again on demand.
        self._buffer = []
        self._size = 0
        self._thread = None
        self._pending = threading.Event()
        self._stop = threading.Event()

    def _write(self) -> None:
        buffer = self._buffer
        if not buffer or self._file is None:
            return
        data = b"".join(buffer)
        self._buffer = []
        self._size = 0
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]

    def _wake_flusher(self) -> None:
        thread = self._thread
        if thread is None and not self._stop.is_set():
            thread = self._thread = threading.Thread(
                target=self._run,
                args=(self._pending,),
                name="tornado-kit-jsonl-flush",
                daemon=True,
            )
            thread.start()
        self._pending.set()

    def _run(self, pending: threading.Event) -> None:
        while not self._stop.is_set():
            pending.wait()
            if self._stop.wait(self.flush_interval):
                return
            pending.clear()
            try:
                self.flush()
            except Exception:
                # handleError needs a record; report as it would.
                if logging.raiseExceptions:
                    sys.stderr.write("--- tornado-kit: could not write buffered log records\n")
                    traceback.print_exc(file=sys.stderr)


def _forked_in_child(ref: weakref.ReferenceType[JSONLinesFileHandler]) -> None:
    handler = ref()
    if handler is not None:
        handler._forked()
