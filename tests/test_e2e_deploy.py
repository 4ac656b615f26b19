"""Layout 2 of examples/deploy for real: two app processes on Redis behind nginx.

Two ``python -m examples.reference_app --redis-url ...`` processes (instances
"a" and "b", one SQLite file shared in WAL mode) run behind a real nginx whose
configuration is rendered from ``examples/deploy/nginx.conf`` into the test's
tmp dir. The template has four backend ports; the test fills them with
``[a, b, a, b]``.

Pinning: every response carries ``X-Served-By`` (``--instance-name``), so a
client knows which backend nginx chose; a client can also talk to a backend's
port directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.websocket import WebSocketClientConnection

from tests._refapp import png_bytes, start_reference_app
from tests._servers import find_binary, free_port, stop_process, wait_for_port
from tornado_kit.testing import parse_sse, read_sse, ws_connect

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "examples" / "deploy" / "nginx.conf"

pytestmark = [pytest.mark.slow, pytest.mark.nginx, pytest.mark.redis]


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = find_binary("nginx")
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return binary


def render_nginx_conf(listen: int, ports: list[int], runtime_dir: Path) -> str:
    """The deploy template with its placeholders filled in (what the README's sed does)."""
    text = TEMPLATE.read_text()
    text = text.replace("@LISTEN@", f"127.0.0.1:{listen}")
    text = text.replace("@RUNTIME_DIR@", str(runtime_dir))
    for i, port in enumerate(ports, start=1):
        text = text.replace(f"@PORT_{i}@", str(port))
    assert "@" not in "".join(line.split("#")[0] for line in text.splitlines()), text
    return text


@dataclass
class Deployment:
    nginx_port: int
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def backend(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


def start_backend(
    name: str, port: int, tmp_path: Path, redis_url: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp_path / f"backend-{name}.log"
    proc = start_reference_app(
        port,
        log_path,
        *("--redis-url", redis_url, "--db", str(tmp_path / "shared.db")),
        *("--instance-name", name, "--xheaders", "--heartbeat-interval", "0.5"),
        *("--shutdown-timeout", "5", "--image-workers", "1"),
    )
    return proc, log_path


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str, nginx_binary: str) -> Iterator[Deployment]:
    ports = {"a": free_port(), "b": free_port()}
    dep = Deployment(nginx_port=free_port(), ports=ports)
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for name, port in ports.items():
            dep.procs[name], dep.logs[name] = start_backend(name, port, tmp_path, redis_url)
        runtime = tmp_path / "nginx"
        runtime.mkdir()
        conf = runtime / "nginx.conf"
        conf.write_text(render_nginx_conf(dep.nginx_port, [ports["a"], ports["b"]] * 2, runtime))
        checked = subprocess.run(
            [nginx_binary, "-t", "-p", str(runtime), "-c", str(conf), "-g", "user root;"],
            capture_output=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr.decode()
        nginx = subprocess.Popen(
            [
                nginx_binary,
                "-p",
                str(runtime),
                "-c",
                str(conf),
                "-g",
                "daemon off; user root;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in (*ports.values(), dep.nginx_port):
                wait_for_port(port, timeout=30)
        except TimeoutError:
            logs = "\n".join(f"--- {name}:\n{dep.log(name)}" for name in ports)
            raise AssertionError(f"the deployment did not start\n{logs}") from None
        yield dep
    finally:
        for proc in dep.procs.values():
            stop_process(proc)
        if nginx is not None:
            stop_process(nginx)


# -- clients -------------------------------------------------------------------


async def call(
    http: AsyncHTTPClient,
    url: str,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    return await http.fetch(
        url, method=method, body=data, headers=hdrs, raise_error=False, request_timeout=30
    )


async def sign_in(http: AsyncHTTPClient, base: str, name: str) -> str:
    response = await call(http, base + "/api/token", "POST", {"name": name})
    assert response.code in (200, 201), response.body
    token: str = json.loads(response.body)["token"]
    return token


async def drain(conn: WebSocketClientConnection) -> None:
    """Read until the connection is closed."""
    while await conn.read_message() is not None:
        pass


async def read_chat(conn: WebSocketClientConnection, text: str, timeout: float = 10) -> Any:
    """Read chat messages until the one with *text* (skipping warm-up messages)."""

    async def read() -> Any:
        while True:
            raw = await conn.read_message()
            assert raw is not None, f"closed ({conn.close_code}) before {text!r}"
            message = json.loads(raw)
            if message.get("text") == text:
                return message

    return await asyncio.wait_for(read(), timeout)


async def warm_up(
    sender: WebSocketClientConnection, receivers: list[WebSocketClientConnection]
) -> None:
    """Send until every receiver has a message: the Redis subscriptions are then active."""
    got: set[int] = set()
    for i in range(100):
        sender.write_message(json.dumps({"text": f"warm-{i}"}))
        for n, conn in enumerate(receivers):
            if n in got:
                continue
            try:
                while True:
                    raw = await asyncio.wait_for(conn.read_message(), 0.2)
                    assert raw is not None
                    if json.loads(raw)["text"].startswith("warm-"):
                        got.add(n)
                        break
            except asyncio.TimeoutError:
                pass
        if len(got) == len(receivers):
            return
    raise AssertionError("chat never reached every backend")


async def close_ws(conns: list[WebSocketClientConnection]) -> None:
    """Close each connection and wait for the closing handshake (its reader task ends)."""
    open_conns = [conn for conn in conns if conn.close_code is None]
    for conn in conns:
        conn.close()  # also on connections the server closed: marks them closed
    for conn in open_conns:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(drain(conn), 5)


class FeedClient:
    """A reconnecting SSE client, like a browser's EventSource.

    It records every event with the backend that sent it; when a stream ends
    it reconnects to the same URL with ``Last-Event-ID``.
    """

    def __init__(self, http: AsyncHTTPClient, url: str) -> None:
        self.http = http
        self.url = url
        self.events: list[tuple[str, Any]] = []  # (backend, event)
        self.backends: list[str] = []  # X-Served-By of each connection
        self.last_id: str | None = None
        self.connected = asyncio.Event()
        self.stopped = False
        self._buffer = ""
        self._served_by = "?"

    def _header(self, line: str) -> None:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-served-by":
            self._served_by = value.strip()
            self.backends.append(self._served_by)
            self.connected.set()

    def _chunk(self, data: bytes) -> None:
        self._buffer += data.decode()
        complete, sep, rest = self._buffer.rpartition("\n\n")
        if not sep:
            return
        self._buffer = rest
        for event in parse_sse(complete + "\n\n"):
            self.events.append((self._served_by, event))
            if event.id:
                self.last_id = event.id

    async def run(self) -> None:
        while not self.stopped:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            self._buffer = ""
            with contextlib.suppress(HTTPClientError, OSError):
                await self.http.fetch(
                    self.url,
                    headers=headers,
                    header_callback=self._header,
                    streaming_callback=self._chunk,
                    request_timeout=120,
                )
            if not self.stopped:
                await asyncio.sleep(0.1)  # EventSource's reconnection delay, shortened


def user_ids(feed: FeedClient) -> dict[str, str | None]:
    return {json.loads(e.data)["user"]["name"]: e.id for _, e in feed.events if e.event == "user"}


def user_names(feed: FeedClient) -> list[str]:
    return [json.loads(e.data)["user"]["name"] for _, e in feed.events if e.event == "user"]


async def until(predicate: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


# -- tests ---------------------------------------------------------------------


async def test_http_chat_and_live_feed_through_nginx(deployment: Deployment) -> None:
    http = AsyncHTTPClient(force_instance=True)
    conns: list[WebSocketClientConnection] = []
    try:
        # HTTP round trips, balanced over both backends.
        served_by = set()
        for _ in range(10):
            response = await call(http, deployment.url + "/healthz")
            assert response.code == 200
            served_by.add(response.headers["X-Served-By"])
        assert served_by == {"a", "b"}

        # A token from one backend works on the other (shared secret); the
        # users live in one SQLite file shared by both processes.
        token = await sign_in(http, deployment.url, "alice")
        created = await call(http, deployment.url + "/api/users", "POST", {"name": "u1"}, token)
        assert created.code == 201
        user_id = json.loads(created.body)["id"]
        for name in ("a", "b"):
            direct = await call(
                http, f"{deployment.backend(name)}/api/users/{user_id}", token=token
            )
            assert json.loads(direct.body)["name"] == "u1"
        # nginx passes the client's request id (and the app echoes it) ...
        tagged = await call(
            http, deployment.url + "/api/users", token=token, headers={"X-Request-ID": "e2e-42"}
        )
        assert tagged.headers["X-Request-ID"] == "e2e-42"
        # ... and errors keep their problem+json body through nginx.
        missing = await call(http, deployment.url + "/api/users/999999", token=token)
        assert missing.code == 404
        assert missing.headers["Content-Type"].startswith("application/problem+json")

        # Chat: a client pinned to backend a reaches clients on backend b,
        # directly and through nginx.
        on_a = await ws_connect(f"{deployment.backend('a')}/ws?room=e2e&access_token={token}")
        on_b = await ws_connect(f"{deployment.backend('b')}/ws?room=e2e&access_token={token}")
        conns += [on_a, on_b]
        via = {}
        for _ in range(4):
            conn = await ws_connect(f"{deployment.url}/ws?room=e2e&access_token={token}")
            conns.append(conn)
            via[conn.headers["X-Served-By"]] = conn
        assert set(via) == {"a", "b"}, "least_conn spreads WebSockets over both backends"
        await warm_up(on_a, [on_b, via["a"], via["b"]])
        on_a.write_message(json.dumps({"text": "from a"}))
        for conn in (on_b, via["a"], via["b"]):
            message = await read_chat(conn, "from a")
            assert (message["room"], message["from"]) == ("e2e", "alice")
        on_b.write_message(json.dumps({"text": "from b"}))
        await read_chat(on_a, "from b")

        # The feed through nginx is live: an event arrives while the stream is open.
        reader = asyncio.ensure_future(
            read_sse(f"{deployment.url}/events?access_token={token}", 1, timeout=20)
        )
        made = 0
        try:
            while not reader.done() and made < 100:
                await call(http, deployment.url + "/api/users", "POST", {"name": f"f{made}"}, token)
                made += 1
                await asyncio.wait([reader], timeout=0.1)
            (event,) = await reader
        finally:
            reader.cancel()
        assert event.event == "user"
        assert json.loads(event.data)["user"]["name"].startswith("f")
    finally:
        await close_ws(conns)
        http.close()


async def test_sigterm_one_backend(deployment: Deployment) -> None:
    http = AsyncHTTPClient(force_instance=True, max_clients=50)
    conns: list[WebSocketClientConnection] = []
    feeds: list[FeedClient] = []
    tasks: list[asyncio.Future[Any]] = []
    try:
        token = await sign_in(http, deployment.url, "ops")

        # WebSockets on backend a: one direct, one through nginx.
        direct_a = await ws_connect(f"{deployment.backend('a')}/ws?access_token={token}")
        conns.append(direct_a)
        proxied_a = None
        for _ in range(6):
            conn = await ws_connect(f"{deployment.url}/ws?access_token={token}")
            conns.append(conn)
            if conn.headers["X-Served-By"] == "a":
                proxied_a = conn
                break
        assert proxied_a is not None

        # SSE clients through nginx until both backends have some.
        while {f.backends[0] for f in feeds} != {"a", "b"} and len(feeds) < 8:
            feed = FeedClient(http, f"{deployment.url}/events?access_token={token}")
            feeds.append(feed)
            tasks.append(asyncio.ensure_future(feed.run()))
            await asyncio.wait_for(feed.connected.wait(), 20)
        assert {f.backends[0] for f in feeds} == {"a", "b"}

        # A steady stream of feed events, published on backend b.
        created: list[str] = []
        publishing = True

        async def publish() -> None:
            i = 0
            while publishing:
                name = f"ev{i}"
                response = await call(
                    http, deployment.backend("b") + "/api/users", "POST", {"name": name}, token
                )
                assert response.code == 201, response.body
                created.append(name)
                i += 1
                await asyncio.sleep(0.02)

        tasks.append(asyncio.ensure_future(publish()))
        # Every feed is live before the shutdown starts.
        await until(lambda: all(len(f.events) >= 3 for f in feeds), what="feeds live")

        # An in-flight request on a: an image upload whose body trickles in.
        upload_started = asyncio.Event()

        async def body(write: Callable[[bytes], Awaitable[None]]) -> None:
            data = png_bytes(300, 200)
            step = len(data) // 10 + 1
            for i in range(0, len(data), step):
                await write(data[i : i + step])
                upload_started.set()
                await asyncio.sleep(0.1)

        upload = asyncio.ensure_future(
            http.fetch(
                deployment.backend("a") + "/api/images",
                method="POST",
                body_producer=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
                raise_error=False,
                request_timeout=30,
            )
        )
        tasks.append(upload)
        await upload_started.wait()

        deployment.procs["a"].send_signal(signal.SIGTERM)

        # The in-flight upload completes.
        response = await asyncio.wait_for(upload, 30)
        assert response.code == 200, response.body
        assert json.loads(response.body)["width"] == 128

        # WebSocket clients of a get 1001 "going away", directly and through nginx.
        for conn in (direct_a, proxied_a):
            await asyncio.wait_for(drain(conn), 20)
            assert conn.close_code == 1001
        assert deployment.procs["a"].wait(timeout=20) == 0

        # SSE clients of a reconnect (Last-Event-ID) through nginx to b.
        moved = [f for f in feeds if f.backends[0] == "a"]
        await until(lambda: all(f.backends[-1] == "b" for f in moved), what="reconnected")
        marker = len(created) + 5
        await until(lambda: len(created) >= marker, what="more events")
        publishing = False
        await asyncio.wait_for(tasks[-2], 10)  # publish() finishes its last request
        last = created[-1]
        await until(
            lambda: all(last in user_names(f) for f in feeds), what="every feed has the last event"
        )

        # Compare every event: from its first event on, each client has every
        # event published since, once, in order, with increasing ids. (The
        # feed also carries the upload's "image" event; nobody had to "reset".)
        for feed in feeds:
            assert {e.event for _, e in feed.events} <= {"user", "image"}
            names = user_names(feed)
            start = created.index(names[0])
            assert names == created[start:], (feed.backends, names)
            ids = [e.id for _, e in feed.events]
            assert len(set(ids)) == len(ids)
            as_tuples = [tuple(int(p) for p in i.split("-")) for i in ids]
            assert as_tuples == sorted(as_tuples)
        # Two clients saw each common event under the same id, whichever
        # backend (and Redis stream read) delivered it.
        for one, other in itertools.pairwise(feeds):
            ids_one, ids_other = user_ids(one), user_ids(other)
            common = ids_one.keys() & ids_other.keys()
            assert len(common) >= 5
            assert {n: ids_one[n] for n in common} == {n: ids_other[n] for n in common}
        for feed in moved:
            assert feed.backends == ["a", "b"]
            assert {b for b, _ in feed.events} == {"a", "b"}

        # The service stays up on b through nginx.
        for _ in range(4):
            health = await call(http, deployment.url + "/healthz")
            assert health.code == 200, health.body
            assert health.headers["X-Served-By"] == "b"
        assert "Traceback" not in deployment.log("a")
    finally:
        for feed in feeds:
            feed.stopped = True
        await close_ws(conns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        http.close()


async def test_one_server_with_worker_processes(tmp_path: Path, redis_url: str) -> None:
    """Layout 1: one `--processes 2` server; its workers share rooms through Redis."""
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_reference_app(
        port,
        log_path,
        *("--processes", "2", "--redis-url", redis_url, "--db", str(tmp_path / "app.db")),
    )
    http = AsyncHTTPClient(force_instance=True)
    conns: list[WebSocketClientConnection] = []
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_port, port, 30)
        base = f"http://127.0.0.1:{port}"
        token = await sign_in(http, base, "wendy")
        # Connections are spread over the workers by the kernel; every one of
        # them gets every message of the room, whichever worker it is on.
        for _ in range(8):
            conns.append(await ws_connect(f"{base}/ws?room=w&access_token={token}"))
        # The handshake completes before open() has joined the room on the
        # worker's Redis subscription: wait until every client gets chat.
        await warm_up(conns[0], conns[1:])
        conns[0].write_message(json.dumps({"text": "to every worker"}))
        for conn in conns:
            message = await read_chat(conn, "to every worker")
            assert message["from"] == "wendy"
        proc.send_signal(signal.SIGTERM)
        for conn in conns:
            await asyncio.wait_for(drain(conn), 20)
            assert conn.close_code == 1001
        returncode = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        assert returncode == 0, log_path.read_text(errors="replace")
    finally:
        await close_ws(conns)
        http.close()
        stop_process(proc)
