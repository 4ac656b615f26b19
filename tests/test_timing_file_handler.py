"""JSONLinesFileHandler: batched JSON-lines file writes that lose nothing on a clean stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

from tests._servers import free_port, wait_for_port
from tornado_kit import StaticTokenVerifier, TimingMixin, TokenAuthMixin
from tornado_kit._jsonlog import JSONLinesFileHandler

ROOT = Path(__file__).resolve().parents[1]


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def make_logger(
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[logging.Logger, Path, JSONLinesFileHandler]]]:
    made: list[tuple[logging.Logger, JSONLinesFileHandler]] = []

    def make(**options: Any) -> tuple[logging.Logger, Path, JSONLinesFileHandler]:
        path = tmp_path / f"log{len(made)}.jsonl"
        logger = logging.getLogger(f"tests.jsonl_file.{len(made)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        handler = JSONLinesFileHandler(path, **options)
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, path, handler

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)
        handler.close()


def test_records_wait_in_memory_and_close_writes_them_all(make_logger: Any) -> None:
    logger, path, handler = make_logger(flush_interval=60)
    for i in range(100):
        logger.info("record %d", i, extra={"n": i})
    assert lines_of(path) == []  # batched: nothing written yet
    handler.close()
    records = lines_of(path)
    assert [r["n"] for r in records] == list(range(100))
    assert records[0]["message"] == "record 0"
    assert records[0]["logger"] == logger.name


def test_flush_interval_writes_without_any_call(make_logger: Any) -> None:
    logger, path, _handler = make_logger(flush_interval=0.05)
    logger.info("first")
    assert wait_until(lambda: len(lines_of(path)) == 1)
    logger.info("second")  # a new batch after the first was written
    assert wait_until(lambda: len(lines_of(path)) == 2)
    assert [r["message"] for r in lines_of(path)] == ["first", "second"]


def test_buffer_size_triggers_a_write(make_logger: Any) -> None:
    logger, path, _handler = make_logger(flush_interval=60, buffer_size=300)
    logger.info("a" * 100)
    assert lines_of(path) == []
    logger.info("b" * 200)  # the batch passes 300 bytes: written at once
    assert [r["message"][0] for r in lines_of(path)] == ["a", "b"]


def test_flush_level_writes_the_batch_in_order(make_logger: Any) -> None:
    logger, path, _handler = make_logger(flush_interval=60)
    logger.info("before")
    logger.warning("still buffered")
    assert lines_of(path) == []
    logger.error("now")
    assert [r["message"] for r in lines_of(path)] == ["before", "still buffered", "now"]


def test_zero_interval_writes_every_record(make_logger: Any) -> None:
    logger, path, _handler = make_logger(flush_interval=0)
    logger.info("one")
    assert [r["message"] for r in lines_of(path)] == ["one"]


def test_flush_writes_and_a_record_after_close_is_not_lost(make_logger: Any) -> None:
    logger, path, handler = make_logger(flush_interval=60)
    logger.info("one")
    handler.flush()
    assert [r["message"] for r in lines_of(path)] == ["one"]
    handler.close()
    logger.info("late")  # e.g. logged by another shutdown hook
    assert [r["message"] for r in lines_of(path)] == ["one", "late"]


def test_unencodable_text_is_escaped_not_dropped(make_logger: Any) -> None:
    logger, path, _handler = make_logger(flush_interval=0)
    logger.info("lone surrogate \udc80 and newline\n", extra={"k": "\ud800"})
    (record,) = lines_of(path)
    assert record["message"] == "lone surrogate \udc80 and newline\n"
    assert record["k"] == "\ud800"


def test_appends_to_an_existing_file(make_logger: Any, tmp_path: Path) -> None:
    (tmp_path / "log0.jsonl").write_text('{"old":true}\n', encoding="utf-8")
    logger, path, _handler = make_logger(flush_interval=0)
    logger.info("new")
    assert [r.get("message", "old") for r in lines_of(path)] == ["old", "new"]


@pytest.mark.parametrize(
    "options",
    [{"flush_interval": -1}, {"flush_interval": float("inf")}, {"buffer_size": -1}],
)
def test_bad_options_are_refused(options: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        JSONLinesFileHandler(tmp_path / "x.jsonl", **options)
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_does_not_write_the_parents_records_again(make_logger: Any) -> None:
    logger, path, handler = make_logger(flush_interval=60)
    logger.info("parent before fork")  # buffered in the parent when it forks
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 1
        try:
            logger.info("child")
            handler.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.info("parent after fork")
    handler.close()
    messages = sorted(r["message"] for r in lines_of(path))
    assert messages == ["child", "parent after fork", "parent before fork"]


# -- with a real server --------------------------------------------------------------------


class Hello(TokenAuthMixin, TimingMixin, RequestHandler):
    def get(self) -> None:
        self.write({"hello": self.current_user["sub"]})


async def test_access_records_through_a_real_server(
    http_client: AsyncHTTPClient, tmp_path: Path
) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    path = tmp_path / "access.jsonl"
    handler = JSONLinesFileHandler(path, flush_interval=60)
    access = logging.getLogger("tornado_kit.access")
    level, propagate = access.level, access.propagate
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    app = Application(
        [("/hello", Hello)], token_verifier=StaticTokenVerifier({"t0k": {"sub": "ann"}})
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        for i in range(20):
            response = await http_client.fetch(
                f"http://127.0.0.1:{port}/hello?access_token=t0k&i={i}", raise_error=False
            )
            assert response.code == 200
        response = await http_client.fetch(f"http://127.0.0.1:{port}/hello", raise_error=False)
        assert response.code == 401
    finally:
        server.stop()
        await server.close_all_connections()
        access.removeHandler(handler)
        access.setLevel(level)
        access.propagate = propagate
        handler.close()
    records = lines_of(path)
    assert [r["status"] for r in records] == [200] * 20 + [401]
    assert records[0]["path"] == "/hello?access_token=REDACTED&i=0"
    assert records[0]["user"] == "ann"
    assert records[-1]["level"] == "WARNING"


SERVER_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from tornado.web import Application, RequestHandler
    from tornado_kit import TimingMixin, serve
    from tornado_kit._jsonlog import JSONLinesFileHandler

    class Hello(TimingMixin, RequestHandler):
        def get(self):
            self.write("hi")

    access = logging.getLogger("tornado_kit.access")
    access.addHandler(JSONLinesFileHandler(sys.argv[2], flush_interval=60))
    access.setLevel(logging.INFO)
    access.propagate = False
    serve(
        lambda: Application([("/", Hello)]),
        port=int(sys.argv[1]),
        address="127.0.0.1",
        processes=int(sys.argv[3]),
    )
    """
)


@pytest.mark.parametrize("processes", [1, 2])
def test_serve_sigterm_writes_every_buffered_record(tmp_path: Path, processes: int) -> None:
    # With 2 workers both append to the one file (created before the fork):
    # each writes its own lines once, whole, at its clean exit.
    port = free_port()
    path = tmp_path / "access.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(port), str(path), str(processes)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        for i in range(60):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/?i={i}", timeout=10) as r:
                assert r.status == 200
        assert lines_of(path) == []  # still in memory (flush_interval=60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    paths = [r["path"] for r in lines_of(path)]
    if processes == 1:
        assert paths == [f"/?i={i}" for i in range(60)]
    else:  # two batches, one per worker, each in its own order
        assert sorted(paths) == sorted(f"/?i={i}" for i in range(60))
