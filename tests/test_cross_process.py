"""Two real server processes share one Redis: rooms and SSE resume span processes.

Each process runs ``tests/_cross_process_app.py`` (``serve()`` on its own free
port) with its own :class:`~tornado_kit.RedisBroker` and
:class:`~tornado_kit.RedisEventLog`, exactly as two instances behind a load
balancer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import WebSocketClientConnection

from tests._servers import free_port, stop_process, wait_for_port
from tornado_kit._sse import ServerSentEvent
from tornado_kit.testing import read_sse, ws_connect

REPO = Path(__file__).resolve().parent.parent
WAIT = 20.0

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _start(name: str, redis_url: str, tmp_path: Path) -> Instance:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    env = dict(os.environ, TK_TEST_REDIS_URL=redis_url)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests._cross_process_app", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Instance(name, port, proc, log_path)


@pytest.fixture
def instances(redis_url: str, tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    """Processes "a" and "b" on one Redis; both stopped (never orphaned) at teardown."""
    a = _start("a", redis_url, tmp_path)
    b = _start("b", redis_url, tmp_path)
    try:
        for instance in (a, b):
            try:
                wait_for_port(instance.port, timeout=WAIT)
            except TimeoutError:
                raise AssertionError(
                    f"instance {instance.name} did not start:\n{instance.output()}"
                ) from None
        yield a, b
    finally:
        stop_process(a.proc)
        stop_process(b.proc)
    for instance in (a, b):
        # A clean SIGTERM shutdown: exit status 0, nothing logged as an error.
        assert instance.proc.returncode == 0, instance.output()
        assert "Traceback" not in instance.output(), instance.output()


async def _json_message(conn: WebSocketClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(conn.read_message(), WAIT)
    assert isinstance(message, str), f"connection closed: {conn.close_code}"
    data: dict[str, Any] = json.loads(message)
    return data


async def test_chat_message_reaches_a_client_of_the_other_process(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    conns: list[WebSocketClientConnection] = []
    try:
        alice = await ws_connect(a.url + "/chat/lobby")
        conns.append(alice)
        bob = await ws_connect(b.url + "/chat/lobby")
        conns.append(bob)
        carol = await ws_connect(b.url + "/chat/other-room")
        conns.append(carol)
        joined = [await _json_message(c) for c in conns]
        assert [j["type"] for j in joined] == ["joined"] * 3
        pid_a, pid_b = joined[0]["pid"], joined[1]["pid"]
        assert pid_a != pid_b

        await alice.write_message(json.dumps({"text": "hello from A"}))
        got = await _json_message(bob)
        assert got == {"type": "chat", "text": "hello from A", "pid": pid_a}

        await bob.write_message(json.dumps({"text": "hi back from B"}))
        got = await _json_message(alice)
        assert got == {"type": "chat", "text": "hi back from B", "pid": pid_b}

        # Order across processes, and no leak into another room or back to the sender.
        for i in range(20):
            await alice.write_message(json.dumps({"text": f"m{i}"}))
        texts = [(await _json_message(bob))["text"] for _ in range(20)]
        assert texts == [f"m{i}" for i in range(20)]
        await asyncio.sleep(0.2)
        for conn in (alice, carol):
            pending = conn.read_message()
            done, _ = await asyncio.wait([asyncio.ensure_future(pending)], timeout=0.2)
            assert not done, "unexpected message"
    finally:
        for conn in conns:
            conn.close()


async def _append(
    client: AsyncHTTPClient, instance: Instance, topic: str, data: str
) -> ServerSentEvent:
    response = await client.fetch(f"{instance.url}/append/{topic}", method="POST", body=data)
    body = json.loads(response.body)
    return ServerSentEvent(body["data"], id=body["id"])


async def test_sse_client_resumes_on_the_other_process_without_loss(
    instances: tuple[Instance, Instance],
) -> None:
    a, b = instances
    client = AsyncHTTPClient(force_instance=True)
    try:
        start = await _append(client, a, "feed", "e0")
        assert start.id is not None

        # Phase 1: a client of A follows the feed (anything appended after e0,
        # whether it is replayed or arrives live, is delivered exactly once).
        reader = asyncio.ensure_future(
            read_sse(
                f"{a.url}/events/feed", count=5, timeout=WAIT, headers={"Last-Event-ID": start.id}
            )
        )
        first = [await _append(client, a, "feed", f"e{i}") for i in range(1, 6)]
        seen = await reader
        assert [(e.id, e.data) for e in seen] == [(e.id, e.data) for e in first]

        # The client is gone; events keep coming, on both processes.
        missed = [await _append(client, b if i % 2 else a, "feed", f"e{i}") for i in range(6, 10)]

        # Phase 2: it reconnects to B with the last id it saw: replay, then live.
        last_id = seen[-1].id
        assert last_id is not None
        reader = asyncio.ensure_future(
            read_sse(
                f"{b.url}/events/feed", count=7, timeout=WAIT, headers={"Last-Event-ID": last_id}
            )
        )
        live = [await _append(client, a, "feed", f"e{i}") for i in range(10, 13)]
        resumed = await reader
        expected = missed + live
        assert [e.id for e in resumed] == [e.id for e in expected]
        assert [e.data for e in resumed] == [f"e{i}" for i in range(6, 13)]
        assert all(e.event is None for e in resumed)  # no "reset": nothing was lost
    finally:
        client.close()
