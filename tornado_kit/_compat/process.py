"""Process pool and multiprocessing internals, used by ``_process_pool`` (private).

Part of :mod:`tornado_kit._compat` (see its docstring for the rules): the
standard library offers no public way to list a ``ProcessPoolExecutor``'s
workers or to stop the forkserver and resource tracker it started.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures
    from multiprocessing.process import BaseProcess


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
