"""The supervisor behind ``serve(processes=N)``: fork, watch, restart, stop.

The parent binds the sockets (in :func:`tornado_kit.serve`), then
:class:`Supervisor` forks the workers and stays behind without an event loop:

* signals become bytes on a self-pipe (``signal.set_wakeup_fd``) read by a
  ``select`` loop, so no work happens inside a signal handler;
* SIGTERM/SIGINT: close the shared sockets, SIGTERM every worker, SIGKILL the
  ones still alive ``shutdown_timeout + 5`` s later; a second signal SIGKILLs
  at once and exits 128 + signal;
* a worker that crashes (non-zero status, or a signal we did not send) is
  forked again, with a doubling delay after the first crash in a minute and a
  cap of ``max_restarts`` per minute; a worker that fails to *start*
  (status :data:`EXIT_STARTUP_FAILED`) stops everything instead;
* each worker asks Linux for SIGTERM when the supervisor dies
  (``PR_SET_PDEATHSIG``), and checks ``getppid()`` itself on other systems;
* each worker runs in a process group of its own, and the supervisor sweeps
  what is left of it when the worker exits (see :mod:`tornado_kit._reaper`),
  so that no descendant of a worker (a process pool, its forkserver and
  resource tracker) outlives ``serve()``, even after a SIGKILLed worker.

Only with several processes: a ``processes=1`` server keeps the process group
it was started in, so that a terminal's job control (Ctrl-Z, ``fg``) keeps
working. A worker's own group means a terminal's Ctrl-C reaches the
supervisor only, which stops the workers itself (as it already did).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any, Protocol

from tornado_kit._reaper import (
    PR_SET_PDEATHSIG,
    SWEEP_POLL,
    GroupSweeper,
    exited,
    exited_in_group,
    kill_group,
    prctl,
    reap,
    set_child_subreaper,
)

log = logging.getLogger("tornado_kit.server")

#: A worker exits with this status when the app factory (or binding) failed:
#: the supervisor does not restart it, since it would fail the same way.
EXIT_STARTUP_FAILED = 3
#: Seconds the supervisor waits beyond ``shutdown_timeout`` before SIGKILL.
_KILL_MARGIN = 5.0
#: The window over which ``max_restarts`` is counted.
_RESTART_WINDOW = 60.0


class Worker(Protocol):
    """What the supervisor runs in each forked child."""

    def run(
        self,
        sockets: list[socket.socket] | None,
        *,
        parent_pid: int | None,
        bind: tuple[int, str] | None = None,
    ) -> int:
        """Serve until told to stop; return the exit status."""
        ...


def flush_logs() -> None:
    """Flush stdio and logging before ``os._exit`` (which skips both)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()


def set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (prctl(2))."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Supervisor:
    """The parent process: fork workers, replace crashed ones, stop them all.

    Signals are turned into bytes on a self-pipe (``signal.set_wakeup_fd``)
    and handled in a plain ``select`` loop, so the parent never runs an event
    loop and never does work inside a signal handler.
    """

    def __init__(
        self,
        worker: Worker,
        *,
        processes: int,
        sockets: list[socket.socket] | None,
        bind: tuple[int, str],
        shutdown_timeout: float,
        max_restarts: int,
    ) -> None:
        self.worker = worker
        self.processes = processes
        self.sockets = sockets
        self.bind = bind
        self.shutdown_timeout = shutdown_timeout
        self.max_restarts = max_restarts
        self.children: dict[int, int] = {}  # pid (= its process group) -> worker index
        self.sweeper = GroupSweeper()  # process groups of exited workers
        self.subreaper = False
        self.pending: dict[int, float] = {}  # worker index -> restart time
        self.restarts: deque[float] = deque()
        self.stopping = False
        self.stop_deadline = 0.0
        self.killed = False
        self.exit_code = 0

    def run(self) -> int:
        parent_pid = os.getpid()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        watched = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
        previous = {s: signal.signal(s, _noop_handler) for s in watched}
        old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        self.subreaper = set_child_subreaper(True)
        try:
            for index in range(self.processes):
                self._spawn(index, parent_pid, (rfd, wfd), previous)
            while self.children or self.sweeper or (self.pending and not self.stopping):
                with contextlib.suppress(InterruptedError):
                    select.select([rfd], [], [], self._select_timeout())
                for signum in _drain_signals(rfd):
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        self._on_stop_signal(signum)
                self._reap()
                now = time.monotonic()
                self.sweeper.check(now)
                if not self.stopping:
                    for index, when in list(self.pending.items()):
                        if when <= now:
                            del self.pending[index]
                            self._spawn(index, parent_pid, (rfd, wfd), previous)
                elif not self.killed and now >= self.stop_deadline:
                    log.warning(
                        "worker(s) still alive %.1f s after SIGTERM: SIGKILL",
                        self.shutdown_timeout + _KILL_MARGIN,
                    )
                    self._kill_children()
                    self.killed = True
            return self.exit_code
        finally:
            if self.subreaper:
                set_child_subreaper(False)
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(rfd)
            os.close(wfd)
            self._close_sockets()

    def _select_timeout(self) -> float:
        now = time.monotonic()
        if self.sweeper:
            return SWEEP_POLL
        if self.stopping:
            return max(0.0, min(1.0, self.stop_deadline - now)) if not self.killed else 1.0
        if self.pending:
            return max(0.0, min(self.pending.values()) - now)
        return 1.0

    def _spawn(
        self,
        index: int,
        parent_pid: int,
        pipe: tuple[int, int],
        handlers: dict[signal.Signals, Any],
    ) -> None:
        # Signals stay blocked across the fork until the child has reset the
        # supervisor's handlers and wakeup fd: a SIGTERM meant for the new
        # child must not be written into the supervisor's pipe (where it
        # would read as a signal to the supervisor itself).
        blocked = set(handlers)
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # the parent, also when fork() failed
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        if pid:
            # Also set by the child itself: whichever runs first, the group
            # exists before the supervisor may signal it.
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)
            self.children[pid] = index
            log.info("started worker %d (pid %d)", index, pid)
            return
        # In the child: never return into the caller's code.
        code = 1
        try:
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            os.close(pipe[0])
            os.close(pipe[1])
            for signum in handlers:
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor owns Ctrl-C
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            set_parent_death_signal()
            if os.getppid() != parent_pid:  # the parent died before prctl
                code = 0
            else:
                code = self.worker.run(self.sockets, parent_pid=parent_pid, bind=self.bind)
        except BaseException:
            log.exception("worker %d crashed", index)
        finally:
            flush_logs()
            os._exit(code)

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            log.warning("second %s: killing the workers and exiting at once", name)
            self._kill_children()
            self.killed = True
            self.exit_code = 128 + signum
            return
        log.info("%s: stopping %d worker(s)", name, len(self.children))
        self._begin_stop()

    def _begin_stop(self) -> None:
        self.stopping = True
        self.pending.clear()
        self.stop_deadline = time.monotonic() + self.shutdown_timeout + _KILL_MARGIN
        # Our copies of the listening sockets would keep the port accepting
        # into the backlog after every worker has stopped.
        self._close_sockets()
        self._signal_children(signal.SIGTERM)

    def _close_sockets(self) -> None:
        for sock in self.sockets or ():
            sock.close()

    def _kill_children(self) -> None:
        """SIGKILL every worker with its whole process group (a forced stop)."""
        for pid in self.children:
            kill_group(pid)

    def _signal_children(self, signum: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        """Reap the workers that exited, and the orphans that came back to us."""
        for worker in list(self.children):
            done, status = exited(worker)
            if done:
                self._worker_exited(worker, status)
        if not self.subreaper:
            return
        for pgid in [*self.children, *self.sweeper.groups]:
            while (orphan := exited_in_group(pgid)) is not None:
                if orphan in self.children:  # the worker itself, exited just now
                    self._worker_exited(orphan, None)
                elif not reap(orphan):
                    break

    def _worker_exited(self, pid: int, status: int | None) -> None:
        """Sweep the process group of worker *pid*, then reap it (*status*: reaped already)."""
        # Before reaping: the worker's zombie holds its process group id, so
        # the signal cannot reach a new group that reused the number.
        self.sweeper.sweep(pid)
        if status is None:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
        index = self.children.pop(pid)
        self._on_exit(index, pid, status)

    def _on_exit(self, index: int, pid: int, status: int) -> None:
        desc = _describe_status(status)
        if self.stopping:
            log.info("worker %d (pid %d) %s", index, pid, desc)
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            log.info("worker %d (pid %d) exited cleanly; not replaced", index, pid)
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_STARTUP_FAILED:
            log.error(
                "worker %d (pid %d) failed to start (see the error above); "
                "not restarting it, stopping",
                index,
                pid,
            )
            self.exit_code = 1
            self._begin_stop()
            return
        now = time.monotonic()
        while self.restarts and self.restarts[0] < now - _RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            log.error(
                "worker %d (pid %d) %s; %d restarts in the last %.0f s: giving up",
                index,
                pid,
                desc,
                len(self.restarts),
                _RESTART_WINDOW,
            )
            self.exit_code = 1
            self._begin_stop()
            return
        # The first crash in the window is replaced at once, later ones after
        # a doubling delay (capped), so a crash loop cannot spin the CPU.
        delay = 0.0 if not self.restarts else min(0.1 * 2 ** len(self.restarts), 10.0)
        self.restarts.append(now)
        log.warning("worker %d (pid %d) %s; restarting in %.1f s", index, pid, desc, delay)
        self.pending[index] = now + delay


def _noop_handler(signum: int, frame: object) -> None:
    """Installed so that the signal reaches the wakeup fd; the loop does the work."""


def _drain_signals(fd: int) -> list[int]:
    # Non-blocking: BlockingIOError once the pipe is empty (os.read retries
    # EINTR itself, PEP 475; b"" cannot happen, the write end stays open).
    signums: list[int] = []
    with contextlib.suppress(BlockingIOError):
        while data := os.read(fd, 512):
            signums.extend(data)
    return signums


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
