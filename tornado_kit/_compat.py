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
from typing import TYPE_CHECKING, Any

from tornado.http1connection import HTTP1Connection

if TYPE_CHECKING:
    import concurrent.futures
    from multiprocessing.process import BaseProcess

    from tornado import httputil

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
# and tornado_kit.server. Checked against CPython 3.10.13, 3.11.7, 3.12.1 and
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
