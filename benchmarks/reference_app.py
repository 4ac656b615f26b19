"""The reference app behind nginx: HTTP load, chat and SSE fan-out at once.

Usage::

    .venv/bin/python benchmarks/reference_app.py [--duration 15] [--ws 1000] [--sse 500]

For each layout (two backends, then one backend), the script starts a
redis-server, the reference app instance(s) with ``--redis-url``, and nginx
rendered from ``examples/deploy/nginx.conf`` (the template's four upstream
ports are filled with the backends' ports). Then, all through nginx:

- a client process (this script re-run with ``--clients``) opens ``--ws``
  chat WebSockets spread over 10 rooms and ``--sse`` subscribers of the live
  feed (``/events``); one member of each room sends a chat message every
  second with its send time, and every receiver records the delivery delay
  (WebSocket: send to the room; SSE: the same message through the event log
  and the feed);
- meanwhile ``wrk`` loads ``GET /api/users/1`` (token auth, SQLite lookup,
  JSON, timing, access log).

Printed per layout: wrk requests/s and p99 latency, chat and SSE delivery
p50/p99 and how many deliveries arrived out of those expected, and the RSS
of the backend processes (sum) with every client connected.

No target: this is the baseline. The machine may have 2 cores shared by wrk,
the client process, nginx, Redis and the backends; report what it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import free_port, rss_bytes, run_wrk, stop_processes, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "examples" / "deploy" / "nginx.conf"
ROOMS = 10
SECRET = "benchmark-secret-0123456789abcdef"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the client process ----------------------------------------------------------


async def clients_main(args: argparse.Namespace) -> None:
    from tornado.websocket import websocket_connect

    host = f"127.0.0.1:{args.port}"
    ws_delays: list[float] = []
    sse_delays: list[float] = []
    sent = 0

    def note(text: str, into: list[float]) -> None:
        if text.startswith("bench:"):
            into.append(time.time() - float(text[6:]))

    async def ws_reader(conn: Any) -> None:
        while True:
            raw = await conn.read_message()
            if raw is None:
                return
            message = json.loads(raw)
            note(message.get("text", ""), ws_delays)

    async def sse_reader(reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: {"):
                text = line[6:].strip()
                with contextlib.suppress(ValueError):
                    note(json.loads(text).get("text", ""), sse_delays)

    conns: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    writers: list[asyncio.StreamWriter] = []

    async def open_ws(i: int) -> None:
        url = f"ws://{host}/ws?room=r{i % ROOMS}&access_token={args.token}"
        conn = await websocket_connect(url, connect_timeout=60)
        conns.append(conn)
        tasks.append(asyncio.ensure_future(ws_reader(conn)))

    async def open_sse() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        writer.write(
            f"GET /events?access_token={args.token} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        writers.append(writer)
        tasks.append(asyncio.ensure_future(sse_reader(reader)))

    batch = 50
    for start in range(0, args.ws, batch):
        await asyncio.gather(*(open_ws(i) for i in range(start, min(args.ws, start + batch))))
    for start in range(0, args.sse, batch):
        await asyncio.gather(*(open_sse() for _ in range(start, min(args.sse, start + batch))))
    await asyncio.sleep(2)  # subscriptions settle (Redis SUBSCRIBE of every room)
    ws_delays.clear()
    sse_delays.clear()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    senders = conns[:ROOMS]  # one member of each room
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        for conn in senders:
            conn.write_message(json.dumps({"text": f"bench:{time.time()!r}"}))
            sent += 1
        await asyncio.sleep(1.0)
    await asyncio.sleep(3)  # let the last messages arrive

    per_room = args.ws // ROOMS
    result = {
        "sent": sent,
        "ws_expected": sent * per_room,
        "ws_received": len(ws_delays),
        "ws_p50_ms": percentile(ws_delays, 0.50) * 1000,
        "ws_p99_ms": percentile(ws_delays, 0.99) * 1000,
        "sse_expected": sent * args.sse,
        "sse_received": len(sse_delays),
        "sse_p50_ms": percentile(sse_delays, 0.50) * 1000,
        "sse_p99_ms": percentile(sse_delays, 0.99) * 1000,
        "ws_open": sum(1 for c in conns if c.close_code is None),
    }
    print(json.dumps(result), flush=True)
    for conn in conns:
        conn.close()
    for writer in writers:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the orchestrator ----------------------------------------------------------


def render_nginx(listen: int, ports: list[int], runtime: Path) -> Path:
    text = TEMPLATE.read_text().replace("@LISTEN@", f"127.0.0.1:{listen}")
    text = text.replace("@RUNTIME_DIR@", str(runtime))
    for i in range(4):
        text = text.replace(f"@PORT_{i + 1}@", str(ports[i % len(ports)]))
    conf = runtime / "nginx.conf"
    conf.write_text(text)
    return conf


def rss_mib(pids: list[int]) -> float:
    return sum(rss_bytes(pid, children=True) for pid in pids) / 2**20


def load_api(url: str, token: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) of ``wrk -t2`` with the bearer token."""
    auth = ["-H", f"Authorization: Bearer {token}"]
    result = run_wrk(url, connections=connections, duration=duration, threads=2, extra=auth)
    assert not math.isnan(result.p99_ms), result.output
    if result.non2xx:
        print(f"    wrk: {result.non2xx} non-2xx responses", flush=True)
    return result.rps, result.p99_ms


def run_layout(
    label: str, backends: int, redis_url: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    import urllib.request

    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    ports = [free_port() for _ in range(backends)]
    listen = free_port()
    runtime = workdir / f"nginx-{backends}"
    runtime.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, REFERENCE_APP_SECRET=SECRET)
    db = workdir / f"bench-{backends}.db"
    try:
        for i, port in enumerate(ports):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "examples.reference_app",
                        "--port",
                        str(port),
                        "--address",
                        "127.0.0.1",
                        "--redis-url",
                        redis_url,
                        "--db",
                        str(db),
                        "--instance-name",
                        f"b{i}",
                        "--xheaders",
                        "--log-level",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        conf = render_nginx(listen, ports, runtime)
        nginx = subprocess.Popen(
            [nginx_bin, "-p", str(runtime), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(nginx)
        for port in (*ports, listen):
            wait_for_port(port)
        base = f"http://127.0.0.1:{listen}"
        request = urllib.request.Request(
            base + "/api/token",
            data=b'{"name": "bench"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["token"]

        clients = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--clients",
                "--port",
                str(listen),
                "--token",
                token,
                "--ws",
                str(args.ws),
                "--sse",
                str(args.sse),
                "--duration",
                str(args.duration),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(clients)
        assert clients.stdout is not None
        assert clients.stdin is not None
        line = clients.stdout.readline()
        assert line.strip() == "ready", line
        backend_pids = [p.pid for p in procs[:backends]]
        rss_idle = rss_mib(backend_pids)
        clients.stdin.write("go\n")
        clients.stdin.flush()
        rps, p99 = load_api(base + "/api/users/1", token, args.duration, args.connections)
        rss_loaded = rss_mib(backend_pids)
        result: dict[str, Any] = json.loads(clients.stdout.readline())
        clients.wait(timeout=60)
        result.update(
            label=label, rps=rps, http_p99_ms=p99, rss_idle=rss_idle, rss_loaded=rss_loaded
        )
        return result
    finally:
        stop_processes(procs[::-1], timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--ws", type=int, default=1000)
    parser.add_argument("--sse", type=int, default=500)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        asyncio.run(clients_main(args))
        return
    for binary in ("redis-server", "nginx", "wrk"):
        if not (shutil.which(binary) or Path("/usr/sbin", binary).exists()):
            sys.exit(f"{binary} is required")

    workdir = Path(tempfile.mkdtemp(prefix="tk-bench-refapp-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    results = []
    try:
        wait_for_port(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        print(
            f"reference app through nginx: {args.ws} chat clients in {ROOMS} rooms, "
            f"{args.sse} SSE subscribers, wrk -c{args.connections} on GET /api/users/1 "
            f"for {args.duration}s, 1 chat message per room per second",
            flush=True,
        )
        for label, backends in (("2 backends", 2), ("1 backend", 1)):
            print(f"  running: {label} ...", flush=True)
            results.append(run_layout(label, backends, redis_url, workdir, args))
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    header = (
        f"{'layout':<11} {'req/s':>8} {'p99 ms':>8} {'chat p50':>9} {'chat p99':>9} "
        f"{'chat got':>13} {'sse p50':>8} {'sse p99':>8} {'sse got':>13} "
        f"{'RSS MiB idle/load':>18}"
    )
    print(header)
    for r in results:
        print(
            f"{r['label']:<11} {r['rps']:>8.0f} {r['http_p99_ms']:>8.1f} "
            f"{r['ws_p50_ms']:>9.1f} {r['ws_p99_ms']:>9.1f} "
            f"{r['ws_received']:>6}/{r['ws_expected']:<6} "
            f"{r['sse_p50_ms']:>8.1f} {r['sse_p99_ms']:>8.1f} "
            f"{r['sse_received']:>6}/{r['sse_expected']:<6} "
            f"{r['rss_idle']:>8.1f}/{r['rss_loaded']:<8.1f}"
        )
    two, one = results
    print(
        f"ratio 2 backends / 1 backend: req/s {two['rps'] / one['rps']:.2f}x, "
        f"chat p99 {two['ws_p99_ms'] / one['ws_p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
