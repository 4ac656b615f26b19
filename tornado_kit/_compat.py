"""Private internals of Tornado and of the standard library, in one place.

tornado-kit needs a few things that neither Tornado nor the standard library
offers publicly. Each is read or changed here only, in a small typed function
whose docstring says which versions it was checked against and what it does
when the internal is missing, so that a release that changes one breaks one
function (and its test in ``tests/test_compat*.py``), not a feature.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.web import RequestHandler
from tornado.websocket import WebSocketProtocol

if TYPE_CHECKING:
    import concurrent.futures
    from multiprocessing.process import BaseProcess

    from tornado import httputil

# ---------------------------------------------------------------------------
# IOStream and WebSocket internals, used by the WebSocket mixins


def pending_write_bytes(stream: IOStream | None) -> int:
    """How many bytes *stream* holds that the kernel has not accepted yet.

    ``IOStream.write`` appends to ``_write_buffer`` (a ``_StreamBuffer`` with
    ``__len__``) and hands as much as the socket takes to the kernel at once,
    so its length is the data queued in this process. Checked on Tornado 6.5
    and 6.6. Falls back to ``0`` (nothing known to be queued, so no bound is
    enforced) when the attribute is absent or, as after ``close()``, ``None``,
    and when there is no stream yet.
    """
    buffer = getattr(stream, "_write_buffer", None)
    if buffer is None:
        return 0
    try:
        return len(buffer)
    except TypeError:  # not a sized buffer: an IOStream this module does not know
        return 0


def queued_writes(stream: IOStream | None) -> int:
    """How many ``IOStream.write`` calls of *stream* wait for their data to be sent.

    Each holds a future in ``_write_futures`` (a deque of ``(index,
    future)``) until the kernel has taken its data; a WebSocket
    ``write_message`` adds a task for it too. Checked on Tornado 6.5 and
    6.6. Falls back to ``0`` when the attribute is absent (or there is no
    stream).
    """
    futures = getattr(stream, "_write_futures", None)
    if futures is None:
        return 0
    try:
        return len(futures)
    except TypeError:
        return 0


def prebuilt_buffer(stream: IOStream) -> Any:
    """The write buffer of *stream* if :func:`write_prebuilt` can use it, else ``None``.

    The fast path relies on ``IOStream`` internals that Tornado 6.5 and 6.6
    share (``_write_buffer``, ``_total_write_index``, ``_add_io_state``,
    ``write_to_fd``). A stream without them returns ``None``: the caller
    then uses ordinary ``write_message`` calls instead.
    """
    buffer = getattr(stream, "_write_buffer", None)
    if buffer is None or not hasattr(stream, "_total_write_index"):
        return None
    if not hasattr(stream, "_add_io_state") or not hasattr(stream, "write_to_fd"):
        return None
    return buffer


def write_prebuilt(stream: IOStream, buffer: Any, frame: bytes) -> OSError | None:
    """Write a ready frame to *stream* without a future (Tornado's ``write()`` makes one).

    *buffer* is the stream's write buffer from :func:`prebuilt_buffer`. When
    it holds earlier data the frame is queued behind it (order matters; the
    IOLoop's write handler is already registered). Otherwise the frame goes
    straight to the socket and only an unsent tail is queued, with the write
    handler registered, exactly as ``IOStream.write`` does in Tornado 6.5
    and 6.6. Returns the error of a broken connection, for the caller to
    close the stream after its loop.
    """
    size = len(frame)
    if len(buffer):
        buffer.append(frame)
        stream._total_write_index += size
        return None
    try:
        sent = stream.write_to_fd(frame)  # type: ignore[arg-type]
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        return exc
    if sent < size:
        buffer.append(frame[sent:])
        stream._total_write_index += size - sent
        stream._add_io_state(IOLoop.WRITE)
    return None


def compresses(proto: WebSocketProtocol) -> bool:
    """Whether *proto* negotiated permessage-deflate (RFC 7692) for what it sends.

    Reads ``WebSocketProtocol13._compressor`` (Tornado 6.5 and 6.6). Falls
    back to ``True`` when the attribute is absent, so that callers take the
    path that works for every connection (``write_message``).
    """
    return getattr(proto, "_compressor", True) is not None


def cross_origin_refusal(handler: RequestHandler, check: Callable[[str], bool]) -> str | None:
    """Why the WebSocket handshake of *handler* is cross-origin and refused, or ``None``.

    Tornado 6.6 decides in ``RequestHandler._check_cross_origin(check)``
    (``Sec-Fetch-Site``, then an ``Origin`` equal to the ``Host``, then
    *check*); this returns its answer. Tornado 6.5 and earlier have no such
    method; the fallback is their ``WebSocketHandler.get`` rule: the
    ``Origin`` (else ``Sec-Websocket-Origin``) header, when present, must
    pass *check* (there the default ``check_origin`` compares it with the
    ``Host`` itself).
    Either may raise ``ValueError`` for an origin ``urlsplit`` cannot parse
    (Tornado's own comparison with the ``Host`` does not guard it).
    """
    decide = getattr(handler, "_check_cross_origin", None)
    if decide is not None:
        answer: str | None = decide(check)
        return answer
    headers = handler.request.headers
    origin = headers.get("Origin", headers.get("Sec-Websocket-Origin"))
    if origin is None:
        return None
    return None if check(origin) else f"Origin {origin!r} not allowed"


# ---------------------------------------------------------------------------
# HTTP/1 connections (tornado.http1connection), used by tornado_kit._draining


def connection_max_body_size(conn: httputil.HTTPConnection) -> int | None:
    """The body size limit in force for the request on *conn*, or ``None`` if unknown.

    ``HTTP1Connection`` keeps it in ``_max_body_size``: the server's
    ``max_body_size`` (else its ``max_buffer_size``), or what a handler set
    for this request with ``request.connection.set_max_body_size()``.
    Checked against Tornado 6.2, 6.4 and 6.6. ``None`` for any other
    connection class or when the attribute is missing: the caller then leaves
    the limit to Tornado (a bare 400).
    """
    if not isinstance(conn, HTTP1Connection):
        return None
    value = getattr(conn, "_max_body_size", None)
    return value if isinstance(value, int) else None


def response_started(conn: httputil.HTTPConnection) -> bool | None:
    """Whether a response's headers were already written on *conn* (``None``: unknown).

    ``HTTP1Connection.write_headers`` stores the status line in
    ``_response_start_line`` (``None`` until then). Checked against Tornado
    6.2, 6.4 and 6.6. ``None`` when the attribute is missing.
    """
    if not isinstance(conn, HTTP1Connection) or not hasattr(conn, "_response_start_line"):
        return None
    return conn._response_start_line is not None


def disconnect_after_response(conn: httputil.HTTPConnection) -> None:
    """Make *conn* answer ``Connection: close`` and close once its response is written.

    ``HTTP1Connection`` decides this when it reads the request headers and
    keeps the decision in ``_disconnect_on_finish``. Checked against Tornado
    6.2, 6.4 and 6.6. When the attribute is missing, nothing is changed (a
    draining server still closes the connection when its next request would
    start).
    """
    if isinstance(conn, HTTP1Connection) and hasattr(conn, "_disconnect_on_finish"):
        conn._disconnect_on_finish = True


# ---------------------------------------------------------------------------
# Process pools and multiprocessing helpers, used by tornado_kit._process_pool
# and tornado_kit._server. Checked against CPython 3.10.13, 3.11.7, 3.12.1 and
# 3.13.0.


def pool_processes(pool: concurrent.futures.ProcessPoolExecutor) -> list[BaseProcess]:
    """The worker processes of *pool* (copied: ``shutdown()`` forgets them).

    ``ProcessPoolExecutor`` keeps them in ``_processes``, a dict pid ->
    ``Process`` (``None`` once shut down), on every CPython from 3.8 to 3.14.
    Falls back to an empty list: the workers then end on the shutdown
    sentinel, or by their owner watch (:mod:`tornado_kit._process_pool`).
    """
    processes = getattr(pool, "_processes", None)
    return list(processes.values()) if isinstance(processes, dict) else []


def pool_manager_thread(pool: concurrent.futures.ProcessPoolExecutor) -> threading.Thread | None:
    """The thread that feeds *pool* and joins its workers (read it before ``shutdown()``).

    ``ProcessPoolExecutor._executor_manager_thread`` on CPython 3.9 to 3.14
    (``None`` before the first job and after ``shutdown()``). Once it ended,
    the pool's queues and the semaphores behind them are released. Falls back
    to ``None``: the caller then does not wait for it.
    """
    thread = getattr(pool, "_executor_manager_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


def helper_pids() -> tuple[int | None, int | None]:
    """Pids of this process's multiprocessing forkserver and resource tracker.

    ``(forkserver, resource tracker)``, each ``None`` when not running (or
    when the module keeps it elsewhere). They are per-process singletons,
    ``multiprocessing.forkserver._forkserver._forkserver_pid`` and
    ``multiprocessing.resource_tracker._resource_tracker._pid``.
    """
    forkserver, tracker = _forkserver(), _resource_tracker()
    return (
        _int_attr(forkserver, "_forkserver_pid"),
        _int_attr(tracker, "_pid"),
    )


def release_forkserver() -> int | None:
    """Ask this process's forkserver to exit, as ``ForkServer._stop()`` does; its pid.

    Closing the "alive" pipe makes the forkserver exit once no worker it
    forked holds that pipe any more. ``_stop()`` then waits for it without
    limit; this returns the pid instead (``None``: none was running), for
    the caller to wait for, bounded. The state is reset, so multiprocessing
    starts a new forkserver when it needs one again. Does nothing (``None``)
    when the attributes are missing.
    """
    server = _forkserver()
    address = getattr(server, "_forkserver_address", None)
    pid = _release(server, "_forkserver_pid", "_forkserver_alive_fd", "_forkserver_address")
    if pid is not None and isinstance(address, str) and not address.startswith("\0"):
        with contextlib.suppress(OSError):  # its socket file (not an abstract address)
            os.unlink(address)
    return pid


def release_resource_tracker() -> int | None:
    """Let this process's resource tracker exit, as ``ResourceTracker._stop()`` does; its pid.

    Closing our end of its pipe lets it exit once every process sharing the
    pipe is gone; on its way out it unlinks the semaphores and shared memory
    nobody released (so it must not be killed: they would leak). Returns the
    pid to wait for (``None``: none was running); the state is reset. Does
    nothing (``None``) when the attributes are missing.
    """
    return _release(_resource_tracker(), "_pid", "_fd")


def _release(helper: Any, pid_attr: str, fd_attr: str, *more: str) -> int | None:
    """Under *helper*'s lock, close its pipe *fd_attr* and reset its state; return its pid."""
    lock = getattr(helper, "_lock", None)
    if helper is None or lock is None:
        return None
    with lock:
        pid, fd = _int_attr(helper, pid_attr), _int_attr(helper, fd_attr)
        if pid is None or fd is None:
            return None
        with contextlib.suppress(OSError):
            os.close(fd)
        for name in (pid_attr, fd_attr, *more):
            setattr(helper, name, None)
        return pid


def _forkserver() -> Any:
    try:
        from multiprocessing import forkserver
    except ImportError:  # a platform without it (Windows)
        return None
    return getattr(forkserver, "_forkserver", None)


def _resource_tracker() -> Any:
    try:
        from multiprocessing import resource_tracker
    except ImportError:
        return None
    return getattr(resource_tracker, "_resource_tracker", None)


def _int_attr(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
