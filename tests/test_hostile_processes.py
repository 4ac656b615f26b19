"""No process outlives ``serve()``: process pools, their forkserver and resource tracker.

Each test serves ``tests._hostile_app:make_app`` (a process-kind
``BoundedExecutor``) with ``python -m tornado_kit serve`` in a real
subprocess, runs a job in every serving process, collects every descendant
pid with psutil, then stops the server in a hostile way and waits (bounded)
until each collected pid is gone. A zombie counts as gone only while its
parent is this test process (which reaps it); a zombie of init means the
process was orphaned, and the wait goes on until init has reaped it.

On 0.1.0 a SIGTERM left the pool worker, the forkserver and the resource
tracker of every worker behind (reparented to init), and so did a SIGKILLed
worker or supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.test_server import Served, _wait_until

pytestmark = pytest.mark.slow

APP = "tests._hostile_app:make_app"
#: Bounded waits: a stop takes well under a second; init may take a few to reap.
GONE_TIMEOUT = 30.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start servers; at teardown kill whatever a failing test left behind."""
    started: list[Served] = []

    def start(*args: str) -> Served:
        server = Served(tmp_path, APP, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        leftovers = _descendants(server.proc.pid)
        server.close()
        _kill(leftovers + server.__dict__.get("collected", []))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(pids: list[int]) -> None:
    """Clean up after a failing test: kill what it left, but the resource trackers.

    A resource tracker exits by itself once the others are gone, and unlinks
    the semaphores they leaked on its way out.
    """
    for pid in set(pids):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if "resource_tracker" not in " ".join(proc.cmdline()):
                proc.kill()


def _run_job_everywhere(server: Served, pool: ThreadPoolExecutor) -> None:
    """Run a pool job in every worker (with one worker blocked, another answers)."""
    workers = {p.pid for p in server.workers()} or {server.proc.pid}
    seen: set[int] = set()
    for _ in range(50):
        if len(workers) > 1:
            before = len(server.marker("blocking"))
            blocked: Future[Any] = pool.submit(server.get, "/block?seconds=0.5")
            server.wait_marker("blocking", before + 1)
        answer = server.get_json("/job")
        assert answer["job"] != answer["worker"]  # it ran in a pool process
        seen.add(answer["worker"])
        if len(workers) > 1:
            assert blocked.result(timeout=20)[0] == 200
        if seen >= workers:
            return
    raise AssertionError(f"jobs ran in {seen} only, not in every worker {workers}")


def _collect(server: Served, workers: int) -> dict[int, list[int]]:
    """Every descendant of the server, by serving process: pool worker, forkserver, tracker."""
    serving = [p.pid for p in server.workers()] if workers > 1 else [server.proc.pid]
    tree = {pid: _descendants(pid) for pid in serving}
    for pid, descendants in tree.items():
        # the forkserver, its pool worker and the resource tracker, at least
        assert len(descendants) >= 3, (pid, descendants)
    collected: list[int] = server.__dict__.setdefault("collected", [])
    collected += _flatten(tree)
    return tree


def _flatten(tree: dict[int, list[int]]) -> list[int]:
    """The serving pids and all their descendants."""
    return [*tree, *(pid for pids in tree.values() for pid in pids)]


def _gone(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE and proc.ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return True


def _assert_all_gone(pids: list[int]) -> None:
    def describe() -> list[str]:
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if not _gone(pid):
                    alive.append(f"{pid} {proc.status()} ppid={proc.ppid()} {proc.cmdline()[-1:]}")
        return alive

    deadline = time.monotonic() + GONE_TIMEOUT
    while not all(_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes outlived serve(): {describe()}")
        time.sleep(0.05)


def _start(served: Callable[..., Served], pool: ThreadPoolExecutor, workers: int) -> Served:
    server = served("--processes", str(workers))
    server.wait_ready(workers=workers if workers > 1 else 0)
    if workers == 1:
        server.wait_marker("factory_calls")
    _run_job_everywhere(server, pool)
    return server


# ---------------------------------------------------------------------------
# several processes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_to_the_supervisor_leaves_no_pool_process_behind(
    served: Callable[..., Served], pool: ThreadPoolExecutor, signum: int
) -> None:
    server = _start(served, pool, 2)
    tree = _collect(server, 2)
    server.send(signum)
    assert server.wait() == 0
    _assert_all_gone(_flatten(tree))


def test_ctrl_c_to_the_process_group_leaves_no_pool_process_behind(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = _start(served, pool, 2)
    tree = _collect(server, 2)
    server.send_group(signal.SIGINT)  # what a terminal's Ctrl-C does
    assert server.wait() == 0
    _assert_all_gone(_flatten(tree))


def test_killed_worker_is_restarted_and_its_pool_processes_are_gone(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = _start(served, pool, 2)
    tree = _collect(server, 2)
    victim, survivor = list(tree)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int]:
        pids = {p.pid for p in server.workers()}
        return pids if len(pids) == 2 and victim not in pids else set()

    (new_worker,) = _wait_until(replaced, what="a replacement worker") - {survivor}
    _assert_all_gone([victim, *tree[victim]])  # while the server goes on
    assert server.proc.poll() is None
    # the replacement serves jobs on a pool of its own
    _run_job_everywhere(server, pool)
    new_tree = _collect(server, 2)
    assert set(new_tree[new_worker]).isdisjoint(tree[victim])
    server.send(signal.SIGTERM)
    assert server.wait() == 0
    _assert_all_gone(_flatten(new_tree))


def test_killed_supervisor_leaves_no_pool_process_behind(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = _start(served, pool, 2)
    tree = _collect(server, 2)
    server.proc.kill()
    server.wait()
    # the workers drain (PR_SET_PDEATHSIG) and take their pools down with them
    _assert_all_gone(_flatten(tree))


# ---------------------------------------------------------------------------
# one process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_single_process_stop_signal_leaves_no_pool_process_behind(
    served: Callable[..., Served], pool: ThreadPoolExecutor, signum: int
) -> None:
    server = _start(served, pool, 1)
    descendants = _collect(server, 1)[server.proc.pid]
    server.send(signum)
    assert server.wait() == 0
    _assert_all_gone(descendants)


def test_killed_single_process_server_leaves_no_pool_process_behind(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = _start(served, pool, 1)
    descendants = _collect(server, 1)[server.proc.pid]
    server.proc.kill()
    server.wait()
    # the pool workers notice their owner is gone; the forkserver and the
    # resource tracker then lose their last client and exit
    _assert_all_gone(descendants)


def test_ctrl_c_lets_a_running_pool_job_finish(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    # Ctrl-C reaches the whole foreground process group, pool workers
    # included: they leave the decision to their owner, whose graceful
    # shutdown waits for the job.
    server = _start(served, pool, 1)
    descendants = _collect(server, 1)[server.proc.pid]
    slow: Future[Any] = pool.submit(server.get, "/job?seconds=1.5")
    server.wait_marker("job-started")
    server.send_group(signal.SIGINT)
    status, body, _ = slow.result(timeout=30)
    assert status == 200, body
    assert server.wait() == 0
    assert "KeyboardInterrupt" not in server.log
    _assert_all_gone(descendants)
