"""What is left of an exited worker: its process group, swept and reaped.

Each ``serve()`` worker runs in a process group of its own (set up in
:mod:`tornado_kit._supervisor`), which its descendants inherit: a process
pool, the multiprocessing forkserver and resource tracker behind it,
subprocesses. When a worker exits, for whatever reason, :class:`GroupSweeper`
sends SIGTERM to what is left of its group, and SIGKILL ``SWEEP_GRACE``
seconds later. The resource tracker ignores SIGTERM on purpose: it exits by
itself once every other process of the group is gone, after unlinking the
semaphores they left, which a SIGKILL would leak.

The signal goes to the group before the worker is reaped: its zombie still
holds the group id then (the exit is seen with ``waitid(WNOWAIT)``), so the
signal cannot reach an unrelated group that reused the number.

On Linux the supervisor is also a child subreaper (``PR_SET_CHILD_SUBREAPER``,
:func:`set_child_subreaper`): the orphans of a dead worker are reparented to
it rather than to init, and :func:`exited_in_group` finds them to be reaped.
Only the supervisor's own children in its workers' groups are reaped, never a
child of the application's that the supervisor process had before
``serve()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time

log = logging.getLogger("tornado_kit.server")

#: Seconds what is left of an exited worker's process group gets after SIGTERM
#: before SIGKILL (and after SIGKILL before the sweep gives up on it).
SWEEP_GRACE = 2.0
#: How often the supervisor checks the groups it sweeps (the last process of
#: one may not be its child, so no SIGCHLD tells it).
SWEEP_POLL = 0.05
#: prctl(2) options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class GroupSweeper:
    """The process groups of exited workers, until they are empty.

    ``groups`` maps a group id to the time of its next step and whether it
    was SIGKILLed already.
    """

    def __init__(self) -> None:
        self.groups: dict[int, tuple[float, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self.groups)

    def sweep(self, pgid: int) -> None:
        """SIGTERM what is left of group *pgid* (an exited worker's); SIGKILL it later."""
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):  # empty, or not a group of ours
            return
        self.groups[pgid] = (time.monotonic() + SWEEP_GRACE, False)

    def check(self, now: float) -> None:
        """Forget the groups that are empty; SIGKILL those past their grace."""
        for pgid, (deadline, killed) in list(self.groups.items()):
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                del self.groups[pgid]  # the group is empty
                continue
            if now < deadline:
                continue
            if killed:
                log.warning("processes of worker group %d survive SIGKILL: giving up", pgid)
                del self.groups[pgid]
                continue
            log.warning(
                "processes of exited worker %d still alive %.1f s after SIGTERM: SIGKILL",
                pgid,
                SWEEP_GRACE,
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            self.groups[pgid] = (now + SWEEP_GRACE, True)


def kill_group(pid: int) -> None:
    """SIGKILL worker *pid* with its whole process group (the worker alone without one)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not a group of its own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def exited(pid: int) -> tuple[bool, int | None]:
    """Whether child *pid* has exited, without reaping it where ``waitid`` can.

    ``(True, None)``: exited, still a zombie; ``(True, status)``: exited and
    reaped (no ``os.waitid``, e.g. macOS, or the child is not ours any more).
    """
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        try:
            info = waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True, 0
        return info is not None, None
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True, 0
    return bool(done), status


def exited_in_group(pgid: int) -> int | None:
    """The pid of an exited child of ours in process group *pgid*, not reaped yet."""
    try:
        info = os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # no child of ours in that group
        return None
    return None if info is None else info.si_pid


def reap(pid: int) -> bool:
    """Reap child *pid* if it has exited; False when there was nothing to reap."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return bool(done)


def set_child_subreaper(enabled: bool) -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True if it is."""
    return prctl(_PR_SET_CHILD_SUBREAPER, int(enabled))


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` through libc on Linux; False elsewhere or when it fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(option, value, 0, 0, 0) != 0:
            log.debug("prctl(%d, %d) failed: errno %d", option, value, ctypes.get_errno())
            return False
    except (OSError, AttributeError):  # no libc symbol: the fallbacks remain
        log.debug("prctl(%d) unavailable", option, exc_info=True)
        return False
    return True
