"""Process pools whose worker processes never outlive the process that owns them.

:func:`make_pool` is how a ``BoundedExecutor`` of kind ``"process"`` gets its
pool: never with the ``"fork"`` start method (see :func:`default_context`).

A ``ProcessPoolExecutor`` worker waits for its next job on a pipe whose write
end it holds too, so it never notices that its owner died. When the serving
process is SIGKILLed, or ends with ``os._exit`` before the pool's manager
thread has sent the shutdown sentinels (which is how a ``serve()`` worker
used to end), each pool worker waits forever, and keeps two more processes
alive: the multiprocessing forkserver (the worker holds its "alive" pipe) and
the resource tracker (the worker holds its pipe as well). This module closes
that gap from both ends:

* :func:`watch_owner` is the pool's initializer: in every worker it starts
  one thread that ends the worker as soon as the owner is gone (a pidfd on
  Linux, a one-second poll on other Unixes; not on Windows, where the poll's
  ``os.kill(pid, 0)`` would terminate the owner), and makes the worker
  ignore SIGINT.
  The owner decides when its workers stop: a terminal's Ctrl-C reaches the
  whole process group, and must not kill a job that the graceful shutdown is
  waiting for.
* :func:`close` shuts the pool down and waits, bounded, for its workers to
  exit; then it terminates, and at last kills, the ones still there.

The forkserver and the resource tracker are shared by every pool of a
process, so no pool stops them: :func:`stop_helpers` does, called by
``serve()`` once a serving process has shut its executors down, for the ones
started while it served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING

from tornado_kit._compat.process import (
    helper_pids,
    pool_manager_thread,
    pool_processes,
    release_forkserver,
    release_resource_tracker,
)

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

#: Seconds idle workers get to exit after the shutdown sentinel before SIGTERM.
EXIT_GRACE = 2.0
#: Seconds a terminated worker gets before SIGKILL (and a killed one to be reaped).
_STOP_GRACE = 0.5
#: Seconds the forkserver and the resource tracker each get to exit.
_HELPER_GRACE = 1.0
#: Polling interval of the bounded waits.
_POLL = 0.01
_HELPER_POLL = 0.002
#: Polling interval of the owner watch where there is no pidfd.
_OWNER_POLL = 1.0
#: Exit status of a worker whose owner is gone.
_ORPHANED = 1


def make_pool(
    max_workers: int, mp_context: BaseContext | str | None = None
) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool whose workers watch this process (see :func:`watch_owner`).

    *mp_context* is a multiprocessing context, a start method name, or None
    for :func:`default_context`.
    """
    if mp_context is None:
        mp_context = default_context()
    elif isinstance(mp_context, str):
        mp_context = multiprocessing.get_context(mp_context)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers,
        mp_context=mp_context,
        initializer=watch_owner,
        initargs=(os.getpid(),),
    )


def default_context() -> BaseContext:
    """``"forkserver"`` where the platform has it, else ``"spawn"``; never ``"fork"``.

    The serving process has a running event loop, helper threads (Tornado's
    resolver, other pools) and listening sockets. A forked worker would
    inherit all of them in whatever state they were in (locks held by other
    threads deadlock the child, the epoll fd and the listening socket are
    shared with the parent). ``"forkserver"`` forks workers from a small,
    clean, single-threaded server process; ``"spawn"`` starts fresh
    interpreters and is the portable fallback.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def watch_owner(owner: int) -> None:
    """Pool initializer: end this worker when process *owner* is gone; ignore SIGINT.

    Runs in the worker's main thread before its first job. It must not raise
    (a failing initializer breaks the pool), so a watch that cannot start is
    given up silently: the owner's :func:`close` still stops the worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = threading.Thread(
        target=_exit_when_gone, args=(owner,), name="tornado-kit-owner-watch", daemon=True
    )
    with contextlib.suppress(RuntimeError):  # cannot start a thread (interpreter exiting)
        watch.start()


def _exit_when_gone(owner: int) -> None:
    if os.name == "nt":  # os.kill(pid, 0) would *terminate* the owner there
        return
    pidfd_open = getattr(os, "pidfd_open", None)  # Linux 5.3+
    if pidfd_open is not None:
        try:
            fd = pidfd_open(owner)
        except ProcessLookupError:
            os._exit(_ORPHANED)  # already gone
        except OSError:  # kernel without pidfd: poll instead
            pass
        else:
            select.select([fd], [], [])  # readable once the process has exited
            os._exit(_ORPHANED)
    while True:
        time.sleep(_OWNER_POLL)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(_ORPHANED)
        except PermissionError:  # alive (another user's pid can only be a reused one)
            pass


async def close(pool: concurrent.futures.ProcessPoolExecutor, grace: float = EXIT_GRACE) -> None:
    """Shut *pool* down and leave none of its workers behind.

    Jobs still waiting are cancelled; idle workers get the shutdown sentinel
    and *grace* seconds to exit, after which (or when this coroutine is
    cancelled) the ones still alive are terminated, then killed. Every worker
    has been reaped when it returns.
    """
    processes = pool_processes(pool)  # before shutdown(), which forgets them
    manager = pool_manager_thread(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    exited = False
    try:
        exited = await _exited(processes, grace)
    finally:
        if not exited:
            stop(processes)
    # The manager thread joins the workers and closes the pool's queues: once
    # it is done, their semaphores are released (not left to the resource
    # tracker to unlink as "leaked").
    deadline = time.monotonic() + _STOP_GRACE
    while manager is not None and manager.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(_POLL)


async def _exited(processes: list[BaseProcess], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in processes):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


def stop(processes: list[BaseProcess]) -> None:
    """Terminate the processes still alive, then kill those that resist; reap them.

    Blocks for at most twice ``_STOP_GRACE`` seconds (only when a worker is
    still busy: an abandoned job, or a shutdown that ran out of time).
    """
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    _join(alive)
    alive = [p for p in alive if p.is_alive()]
    for process in alive:
        process.kill()
    _join(alive)


def _join(processes: list[BaseProcess]) -> None:
    deadline = time.monotonic() + _STOP_GRACE
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))


def stop_helpers(before: tuple[int | None, int | None]) -> None:
    """Stop the forkserver and resource tracker that were not running at *before*.

    *before* is what ``helper_pids()`` returned when
    serving began; helpers running then (the application's own, or
    inherited) are left alone. Call it once the pools are closed. The
    forkserver is terminated (its workers do not depend on it); the resource
    tracker is asked to exit and waited for, up to ``_HELPER_GRACE`` seconds,
    never killed: it unlinks what was left on its way out, and one still held
    open by a process this module does not know (a pool nobody closed) exits
    with that process.
    """
    forkserver, tracker = helper_pids()
    pids: list[int | None] = []
    if forkserver is not None and forkserver != before[0]:
        released = release_forkserver()
        if released is not None:
            # It would exit by itself now, but only after tearing down the
            # interpreter it imported the app into (~100 ms): it has nothing
            # to clean up, so SIGTERM (no handler: immediate).
            with contextlib.suppress(ProcessLookupError):
                os.kill(released, signal.SIGTERM)
            pids.append(released)
    if tracker is not None and tracker != before[1]:
        pids.append(release_resource_tracker())
    deadline = time.monotonic() + _HELPER_GRACE
    waiting = {pid for pid in pids if pid is not None}
    while waiting:
        waiting = {pid for pid in waiting if not _reaped(pid)}
        if not waiting or time.monotonic() >= deadline:
            return
        time.sleep(_HELPER_POLL)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, or reaped elsewhere
        return True
    return bool(done)
