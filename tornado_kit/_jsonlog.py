"""One JSON object per log line: a formatter and a batching file handler (private).

:class:`JSONLinesFormatter` writes each log record (the access record of
``TimingMixin`` at the top level) as one JSON object on one line;
:class:`JSONLinesFileHandler` appends such lines to a file in batches.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from typing import Any

from tornado_kit import _json

__all__ = ["JSONLinesFileHandler", "JSONLinesFormatter"]

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
