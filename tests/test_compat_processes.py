"""The internals that ``tornado_kit._compat`` reads for serve(), and their fallbacks.

Process-pool and multiprocessing helpers run in a subprocess: they stop the
forkserver and resource tracker of the process they run in, which must not
be pytest's own. HTTP/1 connection accessors run on a real
``HTTP1Connection`` over a socket pair.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream

from tornado_kit._compat import http1, process

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, multiprocessing, os, psutil
    from tornado_kit._compat import http1, process
    from tornado_kit._process_pool import close, make_pool, stop_helpers
    from tests._hostile_app import pool_job

    async def main():
        before = process.helper_pids()
        assert before == (None, None), before
        pool = make_pool(2, multiprocessing.get_context("forkserver"))
        assert await asyncio.wrap_future(pool.submit(pool_job, 0)) != os.getpid()
        forkserver, tracker = process.helper_pids()
        workers = process.pool_processes(pool)
        manager = process.pool_manager_thread(pool)
        assert forkserver and tracker and workers and manager.is_alive()
        await close(pool)
        assert not any(w.is_alive() for w in workers) and not manager.is_alive()
        del pool, workers, manager  # as BoundedExecutor.aclose() leaves it
        stop_helpers(before)
        assert process.helper_pids() == (None, None)
        for pid in (forkserver, tracker):
            assert not psutil.pid_exists(pid), pid  # exited and reaped
        # multiprocessing starts new helpers when it needs them again
        again = make_pool(1, multiprocessing.get_context("forkserver"))
        assert await asyncio.wrap_future(again.submit(pool_job, 0))
        assert process.helper_pids()[0] not in (None, forkserver)
        await close(again)
        del again
        stop_helpers(before)
        print("ok")

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def test_pool_internals_and_helpers_are_found_stopped_and_restarted(tmp_path: Path) -> None:
    script = tmp_path / "helpers.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "leaked" not in result.stderr  # the pools' semaphores were released


def test_multiprocessing_helpers_fall_back_when_the_internals_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from multiprocessing import forkserver, resource_tracker

    monkeypatch.setattr(forkserver, "_forkserver", object())
    monkeypatch.setattr(resource_tracker, "_resource_tracker", object())
    assert process.helper_pids() == (None, None)
    assert process.release_forkserver() is None
    assert process.release_resource_tracker() is None
    assert process.pool_processes(object()) == []  # type: ignore[arg-type]
    assert process.pool_manager_thread(object()) is None  # type: ignore[arg-type]


@pytest.fixture
def connection() -> Iterator[HTTP1Connection]:
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    try:
        yield HTTP1Connection(stream, is_client=False)
    finally:
        stream.close()
        theirs.close()


async def test_http1_connection_internals(connection: HTTP1Connection) -> None:
    assert http1.connection_max_body_size(connection) == connection.stream.max_buffer_size
    connection.set_max_body_size(5)
    assert http1.connection_max_body_size(connection) == 5
    assert http1.response_started(connection) is False
    assert connection._disconnect_on_finish is False
    http1.disconnect_after_response(connection)
    assert connection._disconnect_on_finish is True


async def test_http1_connection_internals_fall_back(connection: HTTP1Connection) -> None:
    del connection._max_body_size
    del connection._response_start_line
    assert http1.connection_max_body_size(connection) is None
    assert http1.response_started(connection) is None
    other = object()
    assert http1.connection_max_body_size(other) is None  # type: ignore[arg-type]
    assert http1.response_started(other) is None  # type: ignore[arg-type]
    http1.disconnect_after_response(other)  # type: ignore[arg-type]
