"""serve() and ``python -m tornado_kit serve``: real processes, signals and sockets.

Every test starts the CLI in a subprocess (its own session, so that a test can
signal the whole process group like a terminal's Ctrl-C), talks to it over
loopback and checks exit statuses and surviving pids with psutil. The apps
live in ``tests/_serve_app.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler, stream_request_body
from tornado.websocket import websocket_connect

from tests._servers import free_port, wait_for_port
from tornado_kit import serve
from tornado_kit.__main__ import FactoryPathError, load_factory
from tornado_kit._draining import DrainingHTTPServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


async def _async_until(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.05)


class Served:
    """``python -m tornado_kit serve FACTORY`` in a subprocess on a free port."""

    def __init__(
        self,
        tmp_path: Path,
        factory: str,
        *args: str,
        argv: list[str] | None = None,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.log_path = tmp_path / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in close())
        if argv is None:
            argv = [sys.executable, "-m", "tornado_kit", "serve", factory]
            argv += ["--port", "{port}", "--address", "127.0.0.1", *args]
        # "{port}" in argv or env values stands for the free port
        env = {k: v.format(port=self.port) for k, v in (env or {}).items()}
        try:
            self.proc = subprocess.Popen(
                [arg.format(port=self.port) for arg in argv],
                cwd=cwd,
                env={**os.environ, "SERVE_TEST_DIR": str(tmp_path), **env},
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise
        self.parent = psutil.Process(self.proc.pid)

    # -- observing -------------------------------------------------------
    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def marker(self, name: str) -> list[str]:
        return _lines(self.dir / name)

    def wait_marker(self, name: str, count: int = 1) -> list[str]:
        return _wait_until(
            lambda: len(self.marker(name)) >= count and self.marker(name), what=f"marker {name}"
        )

    def workers(self) -> list[psutil.Process]:
        try:
            return self.parent.children()
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, workers: int = 0) -> None:
        """Port accepting, and (with workers) that many apps built."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            if not workers:
                try:
                    wait_for_port(self.port, timeout=0.1)
                except TimeoutError:
                    return False
                return True
            return len(self.marker("factory_calls")) >= workers and len(self.workers()) == workers

        _wait_until(ready, what=f"the server ({workers} workers)")

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 20
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response.headers
        finally:
            conn.close()

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        status, body, _ = self.get(path, headers)
        assert status == 200, body
        data: dict[str, Any] = json.loads(body)
        return data

    def pids_while_one_blocks(self, pool: ThreadPoolExecutor) -> tuple[int, dict[str, Any]]:
        """Block whichever worker takes a /block request, then ask /pid.

        With shared sockets the blocked worker cannot accept, so the answer
        comes from another one. Returns (blocked pid, /pid answer).
        """
        before = len(self.marker("blocking"))
        blocked: Future[Any] = pool.submit(self.get, "/block?seconds=1")
        blocker = int(self.wait_marker("blocking", before + 1)[before])
        answer = self.get_json("/pid")
        assert blocked.result(timeout=20)[0] == 200
        return blocker, answer

    # -- controlling -----------------------------------------------------
    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def send_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        survivors = self.workers()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for proc in survivors:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self._log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(factory: str, *args: str, **kwargs: Any) -> Served:
        server = Served(tmp_path, factory, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _run_script(script: str, marker_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script`` from the repo root to its end; markers go to *marker_dir*."""
    env = dict(os.environ)
    if marker_dir is not None:
        env["SERVE_TEST_DIR"] = str(marker_dir)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _gone(pids: list[int], timeout: float = 20) -> None:
    """Assert that every pid exits (is reaped or disappears) within *timeout*."""

    def all_gone() -> bool:
        alive = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return not alive

    _wait_until(all_gone, timeout, what=f"processes {pids} to exit")


# ---------------------------------------------------------------------------
# multi-process serving


def test_two_workers_answer_and_the_app_is_built_after_the_fork(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    blocker, answer = server.pids_while_one_blocks(pool)
    pids = {blocker, answer["pid"]}
    assert len(pids) == 2
    assert server.proc.pid not in pids
    assert answer["ppid"] == server.proc.pid
    # the factory ran in the worker itself, not in the parent before the fork
    assert answer["factory_pid"] == answer["pid"]
    assert sorted(int(p) for p in server.marker("factory_calls")) == sorted(pids)


def test_sigterm_to_the_parent_stops_every_worker_and_exits_0(
    served: Callable[..., Served],
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    pids = [p.pid for p in server.workers()]
    server.send(signal.SIGTERM)
    assert server.wait() == 0
    _gone(pids)
    with pytest.raises(ConnectionRefusedError):
        server.get("/pid")
    # each worker ran the app's shutdown callbacks (executors, brokers...)
    assert sorted(int(p) for p in server.marker("released")) == sorted(pids)


def test_processes_0_forks_one_worker_per_cpu(served: Callable[..., Served]) -> None:
    cpus = os.cpu_count() or 1
    server = served("tests._serve_app:make_app", "--processes", "0")
    if cpus == 1:  # one per CPU is one process: served without forking
        server.wait_ready()
        assert server.get_json("/pid")["pid"] == server.proc.pid
    else:
        server.wait_ready(workers=cpus)
        assert len(server.workers()) == cpus
    server.send(signal.SIGTERM)
    assert server.wait() == 0


def test_in_flight_request_completes_after_sigterm_and_new_connections_are_refused(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    slow: Future[Any] = pool.submit(server.get, "/slow?seconds=2")
    (busy,) = server.wait_marker("started-slow")
    server.send(signal.SIGTERM)

    def refused() -> bool:
        try:
            server.get("/pid", timeout=2)
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        return False

    # the listening sockets close at once, while the slow request still runs
    _wait_until(refused, what="connections refused")
    assert not slow.done()
    status, body, headers = slow.result(timeout=20)
    assert (status, body) == (200, b"done after 2.0")
    # the client is told not to reuse the connection (RFC 9112 section 9.6)
    assert headers["Connection"] == "close"
    assert server.wait() == 0
    # shared resources (executors, brokers) are released only after the
    # in-flight request finished, never while it may still use them
    order = server.marker("order")
    assert order.index(f"{busy}:finished-slow") < order.index(f"{busy}:released")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_whole_process_group_drains(
    served: Callable[..., Served], pool: ThreadPoolExecutor, signum: int
) -> None:
    # A terminal's Ctrl-C (SIGINT), `kill -- -PGID` and systemd's default
    # KillMode=control-group (SIGTERM) signal every process at once: a worker
    # must not count the supervisor's forwarded SIGTERM as a second signal.
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    slow: Future[Any] = pool.submit(server.get, "/slow?seconds=1")
    server.wait_marker("started-slow")
    server.send_group(signum)
    assert slow.result(timeout=20)[:2] == (200, b"done after 1.0")
    assert server.wait() == 0


def test_worker_signalled_directly_and_by_the_supervisor_still_drains(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    # The deterministic form of a group-wide SIGTERM: the worker gets one
    # SIGTERM of its own, then the one the supervisor forwards.
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    slow: Future[Any] = pool.submit(server.get, "/slow?seconds=1.5")
    (busy,) = server.wait_marker("started-slow")
    os.kill(int(busy), signal.SIGTERM)
    _wait_until(lambda: f"{busy} INFO tornado_kit.server: SIGTERM" in server.log, what="drain")
    server.send(signal.SIGTERM)
    assert slow.result(timeout=20)[:2] == (200, b"done after 1.5")
    assert server.wait() == 0
    assert f"(pid {busy}) exited with status 0" in server.log


def test_second_signal_to_the_supervisor_kills_at_once(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2", "--shutdown-timeout", "60")
    server.wait_ready(workers=2)
    pids = [p.pid for p in server.workers()]
    slow: Future[Any] = pool.submit(server.get, "/slow?seconds=60")
    server.wait_marker("started-slow")
    server.send_group(signal.SIGINT)
    _wait_until(lambda: "SIGINT: stopping" in server.log, what="first SIGINT handled")
    server.send_group(signal.SIGINT)
    assert server.wait() == 128 + signal.SIGINT
    _gone(pids)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        slow.result(timeout=20)


def test_worker_killed_with_sigkill_is_restarted(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    victim = server.workers()[0]
    survivor = server.workers()[1].pid
    victim.kill()

    def replaced() -> bool:
        pids = {p.pid for p in server.workers()}
        return len(pids) == 2 and victim.pid not in pids

    _wait_until(replaced, what="a replacement worker")
    (new_pid,) = {p.pid for p in server.workers()} - {survivor}
    assert server.wait_marker("factory_calls", 3)[-1] == str(new_pid)
    assert "was killed by SIGKILL; restarting" in server.log
    # the port keeps serving, and the new worker takes its share
    blocker, answer = server.pids_while_one_blocks(pool)
    pids_seen = {blocker, answer["pid"]}
    assert new_pid in pids_seen
    server.send(signal.SIGTERM)
    assert server.wait() == 0


def test_worker_stopped_cleanly_is_not_replaced_and_the_last_one_ends_the_supervisor(
    served: Callable[..., Served],
) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    first, second = server.workers()
    first.send_signal(signal.SIGTERM)  # an operator stops one worker on purpose
    _wait_until(lambda: "exited cleanly; not replaced" in server.log, what="clean exit")
    assert [p.pid for p in server.workers()] == [second.pid]
    assert server.get_json("/pid")["pid"] == second.pid
    second.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert len(server.marker("factory_calls")) == 2


def test_worker_stuck_in_blocking_code_is_killed_after_the_grace_period(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    # A worker whose event loop is blocked never sees its SIGTERM: the
    # supervisor SIGKILLs it shutdown_timeout + 5 s after the SIGTERM.
    server = served("tests._serve_app:make_app", "--processes", "2", "--shutdown-timeout", "0.5")
    server.wait_ready(workers=2)
    pids = [p.pid for p in server.workers()]
    stuck: Future[Any] = pool.submit(server.get, "/block?seconds=60")
    (blocked,) = server.wait_marker("blocking")
    server.send(signal.SIGTERM)
    assert server.wait() == 0
    _gone(pids)
    assert "worker(s) still alive 5.5 s after SIGTERM: SIGKILL" in server.log
    assert f"(pid {blocked}) was killed by SIGKILL" in server.log
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        stuck.result(timeout=20)


def test_exit_statuses_are_described_also_for_unnamed_signals() -> None:
    from tornado_kit._supervisor import _describe_status

    assert _describe_status(signal.SIGKILL) == "was killed by SIGKILL"  # wait status
    assert _describe_status(40) == "was killed by 40"  # a real-time signal has no name
    assert _describe_status(3 << 8) == "exited with status 3"


def test_parent_killed_with_sigkill_leaves_no_orphan(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2")
    server.wait_ready(workers=2)
    pids = [p.pid for p in server.workers()]
    server.proc.kill()
    server.wait()
    # PR_SET_PDEATHSIG (or the getppid check) makes each worker shut down
    _gone(pids)


def test_worker_whose_supervisor_is_gone_stops_by_itself(tmp_path: Path) -> None:
    # The portable fallback of PR_SET_PDEATHSIG: a worker checks getppid()
    # every second. Here it is told a supervisor pid that is not its parent.
    port = free_port()
    script = (
        "import logging, sys; from tornado_kit._worker import ServingWorker as _Worker;"
        "from tests._serve_app import make_app; logging.basicConfig(level=logging.INFO);"
        "worker = _Worker(make_app, {}, 5.0, 'asyncio');"
        f"sys.exit(worker.run(None, parent_pid=2**22 + 7, bind=({port}, '127.0.0.1')))"
    )
    result = _run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"supervisor {2**22 + 7} is gone: shutting down" in result.stderr
    assert _lines(tmp_path / "released")  # and it ran the shutdown hooks


def test_crash_loop_is_rate_limited(tmp_path: Path) -> None:
    script = (
        "import logging; from tornado_kit import serve; from tests._serve_app import crashing_app;"
        "logging.basicConfig(level=logging.INFO);"
        f"serve(crashing_app, port={free_port()}, address='127.0.0.1', processes=2, max_restarts=2)"
    )
    result = _run_script(script, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "giving up" in result.stderr
    # two workers plus at most two restarts, not a restart storm
    calls = (tmp_path / "factory_calls").read_text().split()
    assert 2 <= len(calls) <= 4


def test_on_shutdown_runs_in_every_worker_with_its_app(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "from tornado_kit import serve; from tests._serve_app import make_app, on_shutdown;"
        f"serve(make_app, port={port}, address='127.0.0.1', processes=2, on_shutdown=on_shutdown)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "SERVE_TEST_DIR": str(tmp_path)},
    )
    try:
        _wait_until(lambda: len(_lines(tmp_path / "factory_calls")) == 2, what="2 workers")
        wait_for_port(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    calls = _lines(tmp_path / "factory_calls")
    hooks = _lines(tmp_path / "on_shutdown")
    # pid:factory_pid - each hook ran in its own worker, on the app built there
    assert sorted(hooks) == sorted(f"{pid}:{pid}" for pid in calls)


# ---------------------------------------------------------------------------
# one process (no fork)


def _roundtrip(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


def test_single_process_drains_and_does_not_wait_for_idle_keep_alive(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--shutdown-timeout", "60")
    server.wait_ready()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        assert json.loads(_roundtrip(idle, "/pid"))["pid"] == server.proc.pid
        slow: Future[Any] = pool.submit(server.get, "/slow?seconds=1")
        server.wait_marker("started-slow")
        server.send(signal.SIGTERM)
        assert slow.result(timeout=20)[:2] == (200, b"done after 1.0")
        # shutdown_timeout is 60 s: exiting before the 30 s wait below shows
        # that the idle keep-alive connection was closed, not waited for
        assert server.wait(timeout=30) == 0
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _roundtrip(idle, "/pid")
    finally:
        idle.close()


def test_request_outliving_shutdown_timeout_is_cut(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--shutdown-timeout", "0.5")
    server.wait_ready()
    slow: Future[Any] = pool.submit(server.get, "/slow?seconds=60")
    server.wait_marker("started-slow")
    server.send(signal.SIGTERM)
    assert server.wait() == 0
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        slow.result(timeout=20)
    assert "1 request(s) still running after 0.5 s" in server.log


def test_second_sigterm_in_single_process_exits_at_once(
    served: Callable[..., Served], pool: ThreadPoolExecutor
) -> None:
    server = served("tests._serve_app:make_app", "--shutdown-timeout", "60")
    server.wait_ready()
    pool.submit(server.get, "/slow?seconds=60")
    server.wait_marker("started-slow")
    server.send(signal.SIGTERM)
    _wait_until(lambda: "SIGTERM: shutting down" in server.log, what="first SIGTERM handled")
    server.send(signal.SIGTERM)
    assert server.wait() == 128 + signal.SIGTERM


def test_async_factory_xheaders_and_uvloop(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_app_async", "--xheaders", "--loop", "uvloop")
    server.wait_ready()
    data = server.get_json("/pid", {"X-Real-IP": "203.0.113.9", "X-Scheme": "https"})
    assert data["remote_ip"] == "203.0.113.9"
    assert data["protocol"] == "https"
    assert data["loop"].startswith("uvloop")
    server.send(signal.SIGTERM)
    assert server.wait() == 0


def test_without_xheaders_proxy_headers_are_ignored(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_app")
    server.wait_ready()
    data = server.get_json("/pid", {"X-Real-IP": "203.0.113.9"})
    assert data["remote_ip"] == "127.0.0.1"
    assert data["loop"] == "asyncio.unix_events"
    server.send(signal.SIGINT)
    assert server.wait() == 0


def test_reuse_port_workers_bind_their_own_sockets(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_app", "--processes", "2", "--reuse-port")
    server.wait_ready(workers=2)
    # SO_REUSEPORT sockets are bound by the workers, not by the parent
    _wait_until(
        lambda: all(p.net_connections(kind="tcp") for p in server.workers()),
        what="worker sockets",
    )
    assert not [c for c in server.parent.net_connections(kind="tcp") if c.status == "LISTEN"]
    # the kernel hashes each new connection (its source port) to one of the
    # sockets: a few connections reach both workers
    first = server.get_json("/pid")["pid"]
    _wait_until(lambda: server.get_json("/pid")["pid"] != first, what="the other worker")
    server.send(signal.SIGTERM)
    assert server.wait() == 0


# ---------------------------------------------------------------------------
# WebSocket and SSE during shutdown (behaviour from tornado_kit's mixins)


async def test_sigterm_closes_open_websocket_with_1001(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_full_app", "--processes", "2")
    await asyncio.to_thread(server.wait_ready, 2)
    ws = await websocket_connect(f"ws://127.0.0.1:{server.port}/ws")
    try:
        assert json.loads(await ws.read_message() or "")["hello"] > 0
        server.send(signal.SIGTERM)
        while await asyncio.wait_for(ws.read_message(), 20) is not None:
            pass
        assert ws.close_code == 1001
    finally:
        ws.close()
    assert await asyncio.to_thread(server.wait) == 0


async def test_sigterm_ends_open_sse_stream_cleanly(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:make_full_app")
    await asyncio.to_thread(server.wait_ready)
    chunks: list[bytes] = []
    client = AsyncHTTPClient(force_instance=True)
    try:
        fetch = asyncio.ensure_future(
            client.fetch(
                HTTPRequest(
                    f"http://127.0.0.1:{server.port}/sse",
                    streaming_callback=chunks.append,
                    request_timeout=30,
                )
            )
        )
        await _async_until(lambda: server.marker("sse-open"))
        server.send(signal.SIGTERM)
        response = await fetch  # raises if the stream was cut, not finished
        assert response.code == 200
        assert b"event: status\ndata: ready\n\n" in b"".join(chunks)
    finally:
        client.close()
    assert await asyncio.to_thread(server.wait) == 0


# ---------------------------------------------------------------------------
# bad input and faults


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_such_module_xyz:make_app", "cannot import module 'no_such_module_xyz'"),
        ("tests._serve_app:missing", "module 'tests._serve_app' has no attribute 'missing'"),
        ("tests._serve_app", "expected module:factory"),
        ("tests._serve_app:NOT_CALLABLE", "is a int, not a callable"),
    ],
)
def test_bad_factory_path_is_a_usage_error(factory: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tornado_kit", "serve", factory, "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# Module names without letters cannot import a real module (no side effects).
_NO_MODULE = st.text(alphabet="._-/ 0123456789\x00", max_size=12)


@settings(max_examples=80, deadline=None)
@given(module=_NO_MODULE, sep=st.sampled_from([":", "", "::"]), attr=st.text(max_size=20))
def test_load_factory_rejects_any_bad_path_with_a_clear_error(
    module: str, sep: str, attr: str
) -> None:
    with pytest.raises(FactoryPathError):
        load_factory(module + sep + attr)


@settings(max_examples=80, deadline=None)
@given(attr=st.text(max_size=30))
def test_load_factory_attribute_path_is_a_callable_or_a_clear_error(attr: str) -> None:
    try:
        factory = load_factory("tests._serve_app:" + attr)
    except FactoryPathError:
        return
    assert callable(factory)


def test_load_factory_accepts_dotted_attributes() -> None:
    from tests import _serve_app

    assert load_factory("tests._serve_app:make_app") is _serve_app.make_app
    assert load_factory("tests._serve_app:PidHandler.get") is _serve_app.PidHandler.get
    with pytest.raises(FactoryPathError, match="absolute name"):
        load_factory(".relative:make_app")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_factory_raising_is_reported_without_restart_storm(
    served: Callable[..., Served], processes: str
) -> None:
    server = served("tests._serve_app:failing_app", "--processes", processes)
    assert server.wait() == 1
    assert "RuntimeError: database unreachable at startup" in server.log
    assert len(server.marker("factory_calls")) <= int(processes)


def test_factory_failing_with_an_os_error_is_reported_as_the_factory_failing(
    served: Callable[..., Served],
) -> None:
    server = served("tests._serve_app:config_missing_app")
    assert server.wait() == 1
    assert "the app factory tests._serve_app:config_missing_app failed" in server.log
    assert "FileNotFoundError: [Errno 2] No such file or directory" in server.log
    assert "cannot bind" not in server.log


def test_factory_returning_something_else_is_reported(served: Callable[..., Served]) -> None:
    server = served("tests._serve_app:not_an_app", "--processes", "2")
    assert server.wait() == 1
    assert "returned dict, not a tornado.web.Application" in server.log


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tornado_kit",
                "serve",
                "tests._serve_app:make_app",
                "--port",
                str(port),
                "--address",
                "127.0.0.1",
                "--processes",
                "2",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot bind port {port}" in result.stderr


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from tornado_kit.__main__ import main

    for args in (
        ["--port", "70000"],
        ["--port", "1", "--processes", "-1"],
        ["--port", "1", "--processes", "two"],
        ["--port", "x"],
        ["--port", "1", "--shutdown-timeout", "soon"],
        ["--port", "1", "--shutdown-timeout", "-1"],
        ["--port", "1", "--shutdown-timeout", "nan"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "tests._serve_app:make_app", *args])
        assert exit_info.value.code == 2, args
        assert "usage: tornado-kit serve" in capsys.readouterr().err


def test_an_address_that_does_not_resolve_is_reported_without_a_traceback() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "tornado_kit", "serve", "tests._serve_app:make_app"),
            *("--port", str(free_port()), "--address", "no-such-host.invalid"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error: cannot resolve 'no-such-host.invalid'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_without_uvloop_reports_the_extra_to_install() -> None:
    script = (
        "import sys; sys.modules['uvloop'] = None; from tornado_kit.__main__ import main;"
        "sys.exit(main(['serve', 'tests._serve_app:make_app', '--port', '0', '--loop', 'uvloop']))"
    )
    result = _run_script(script)
    assert result.returncode == 1
    assert "error: loop='uvloop' needs uvloop: pip install 'tornado-kit[fast]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_rejects_bad_arguments_before_binding() -> None:
    def factory() -> Any:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="processes must be >= 0"):
        serve(factory, port=0, processes=-1)
    with pytest.raises(ValueError, match="loop must be"):
        serve(factory, port=0, loop="trio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown_timeout"):
        serve(factory, port=0, shutdown_timeout=-1)
    with pytest.raises(ValueError, match="bind different ports"):
        serve(factory, port=0, processes=2, reuse_port=True)
    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        serve(factory, port=0, max_restarts=-1)


def test_serve_without_fork_refuses_several_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")  # as on Windows

    def factory() -> Any:
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match=r"needs os\.fork\(\)"):
        serve(factory, port=0, processes=2)


def test_uvloop_missing_is_a_clear_import_error_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tornado_kit._worker import new_event_loop as _new_event_loop

    monkeypatch.setitem(sys.modules, "uvloop", None)  # "import uvloop" now fails

    def factory() -> Any:
        raise AssertionError("never called")

    with pytest.raises(ImportError, match=r"pip install 'tornado-kit\[fast\]'"):
        serve(factory, port=0, loop="uvloop")
    loop = _new_event_loop("auto")
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_a_failing_on_shutdown_hook_is_logged_and_the_exit_status_stays_0(
    tmp_path: Path,
) -> None:
    port = free_port()
    script = f"""
import asyncio, logging
from tornado_kit import serve
from tests._serve_app import make_app

async def hook(app):
    await asyncio.sleep(0)
    raise RuntimeError("hook failed on purpose")

logging.basicConfig(level=logging.INFO)
serve(make_app, port={port}, address="127.0.0.1", on_shutdown=hook)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "SERVE_TEST_DIR": str(tmp_path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "on_shutdown callback __main__:hook failed" in stderr
    assert "RuntimeError: hook failed on purpose" in stderr
    assert _lines(tmp_path / "released")  # the app's own shutdown hooks ran before it


async def test_serve_refuses_to_run_inside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="without a running event loop"):
        serve(lambda: None, port=0)  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------------------
# the docs page and the example


def test_docs_own_http_server_snippet_runs_and_shuts_down_with_tornado_kit_shutdown(
    served: Callable[..., Served], tmp_path: Path
) -> None:
    page = (ROOT / "docs" / "deployment.md").read_text()
    section = page.split("## Your own HTTPServer", 1)[1]
    snippet = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    (tmp_path / "own_server.py").write_text(snippet)
    server = served(
        "", argv=[sys.executable, "own_server.py"], cwd=tmp_path, env={"PORT": "{port}"}
    )
    server.wait_ready()
    assert server.get_json("/square/7") == {"square": 49}
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.log
    assert "executor closed: True" in server.log


def test_docs_snippet_runs_as_a_script_and_through_the_console_script(
    served: Callable[..., Served], tmp_path: Path
) -> None:
    page = (ROOT / "docs" / "deployment.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "myapp.py").write_text(snippet)
    port_env = {"PORT": "{port}", "PROCESSES": "2"}

    server = served("", argv=[sys.executable, "myapp.py"], cwd=app_dir, env=port_env)
    server.wait_ready()
    assert server.get_json("/")["hello"] == "world"
    server.send(signal.SIGTERM)
    assert server.wait() == 0

    # the console script finds myapp in the current directory
    console = str(Path(sys.executable).parent / "tornado-kit")
    server = served("", argv=[console, "serve", "myapp:make_app", "--port", "{port}"], cwd=app_dir)
    server.wait_ready()
    assert server.get_json("/")["pid"] == server.proc.pid
    server.send(signal.SIGINT)
    assert server.wait() == 0


async def test_example_08_serves_http_sse_and_websocket_then_drains(
    served: Callable[..., Served],
) -> None:
    argv = [sys.executable, "examples/08_serve.py", "--port", "{port}", "--processes", "1"]
    server = served("", argv=argv)
    await asyncio.to_thread(server.wait_ready)
    base = f"127.0.0.1:{server.port}"
    client = AsyncHTTPClient(force_instance=True)
    chunks: list[bytes] = []
    try:
        who = json.loads((await client.fetch(f"http://{base}/")).body)
        assert who["pid"] == server.proc.pid
        stream = asyncio.ensure_future(
            client.fetch(
                HTTPRequest(
                    f"http://{base}/events", streaming_callback=chunks.append, request_timeout=30
                )
            )
        )
        ws = await websocket_connect(f"ws://{base}/ws")
        try:
            await ws.write_message(json.dumps({"n": 1}))
            assert json.loads(await ws.read_message() or "")["echo"] == {"n": 1}
            await _async_until(lambda: b"event: hello" in b"".join(chunks))
            await client.fetch(f"http://{base}/news", method="POST", body="extra! extra!")
            await _async_until(lambda: b"data: extra! extra!" in b"".join(chunks))
            server.send(signal.SIGTERM)
            assert (await stream).code == 200  # the stream was finished, not cut
            while await asyncio.wait_for(ws.read_message(), 20) is not None:
                pass
            assert ws.close_code == 1001
        finally:
            ws.close()
    finally:
        client.close()
    assert await asyncio.to_thread(server.wait) == 0


async def test_draining_server_forgets_a_request_whose_client_hung_up() -> None:
    # A client that disconnects mid-request, while its handler runs or in the
    # middle of its body: the handler hears of it (on_connection_close) and
    # the request no longer counts as in flight, so a drain does not wait.
    gone = {"waiting": asyncio.Event(), "upload": asyncio.Event()}

    class Waits(RequestHandler):
        async def get(self) -> None:
            await gone["waiting"].wait()

        def on_connection_close(self) -> None:
            gone["waiting"].set()

    @stream_request_body
    class Upload(RequestHandler):
        def data_received(self, chunk: bytes) -> None:
            pass

        def put(self) -> None:
            self.write("complete")

        def on_connection_close(self) -> None:
            super().on_connection_close()  # fails the body future: put() never runs
            gone["upload"].set()

    sock, port = bind_unused_port()
    server = DrainingHTTPServer(Application([(r"/wait", Waits), (r"/upload", Upload)]))
    server.add_sockets([sock])
    requests = {
        "waiting": b"GET /wait HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "upload": b"PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc",
    }
    try:
        for name, request in requests.items():
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            await _async_until(lambda: server.in_flight == 1)
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(gone[name].wait(), 10)
            await _async_until(lambda: server.in_flight == 0)
        # nothing in flight: drained at once, even when no time is left
        # (serve() passes what the WebSocket/SSE phase left of shutdown_timeout)
        assert await server.drain(0)
    finally:
        server.stop()
        await server.close_all_connections()


def test_signal_handlers_fall_back_where_the_loop_has_none() -> None:
    # Windows' proactor loop has no add_signal_handler: a plain handler hands
    # the signal to the loop thread instead.
    from tornado_kit._worker import install_signal_handlers as _install_signal_handlers

    class NoSignalsLoop(asyncio.SelectorEventLoop):
        def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
            raise NotImplementedError

    loop = NoSignalsLoop()
    received: list[int] = []
    before = signal.getsignal(signal.SIGUSR1)
    try:
        restore = _install_signal_handlers(loop, [signal.SIGUSR1], received.append)
        os.kill(os.getpid(), signal.SIGUSR1)
        loop.run_until_complete(asyncio.sleep(0.05))
        restore()
        assert received == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) == before
    finally:
        signal.signal(signal.SIGUSR1, before)
        loop.close()
