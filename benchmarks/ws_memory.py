"""Server memory per idle WebSocket connection: HeartbeatMixin vs the alternatives.

Variants, each in a fresh server process (so freed memory of one variant
never flatters the next), with N idle connections (default 5000) opened by a
separate client process (``benchmarks/_ws_clients.py``) that answers pings:

* ``plain``          a plain ``WebSocketHandler``, no heartbeat;
* ``ping-only``      a control: one timer writes HeartbeatMixin's ping frame
                     to every plain connection, without any bookkeeping (no
                     timeout, no latency): the cost of the ping/pong traffic;
* ``heartbeat``      ``HeartbeatMixin`` (one timer for all connections);
* ``seed``           the seed's pattern, one ``PeriodicCallback(self.ping)``
                     per connection, started in ``open`` and stopped in ``on_close``;
* ``tornado-ping``   Tornado's built-in ``websocket_ping_interval`` (one task
                     per connection).

All ping every second, so that the figures include a ping/pong round trip's
state (e.g. the measured latency). For each variant the server measures its
RSS after a warm-up (200 connections opened and closed), then with the N
connections open and after a few ping rounds; it prints the growth per
connection, and the difference to ``plain``. Target: HeartbeatMixin costs at
most 0.3 KiB per connection more than plain.

Run: ``.venv/bin/python benchmarks/ws_memory.py [--clients 5000] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import rss_bytes  # noqa: E402
from _ws_clients import raise_nofile  # noqa: E402

from tornado_kit import HeartbeatMixin  # noqa: E402

PING_INTERVAL = 1.0
VARIANTS = ("plain", "ping-only", "heartbeat", "seed", "tornado-ping")


class Counted(WebSocketHandler):
    def initialize(self, counter: list[int]) -> None:
        self.counter = counter

    def open(self) -> None:
        self.counter[0] += 1

    def on_close(self) -> None:
        self.counter[0] -= 1

    def on_message(self, message: str | bytes) -> None:
        pass


class Plain(Counted):
    pass


class Heartbeat(HeartbeatMixin, Counted):
    heartbeat_interval = PING_INTERVAL
    heartbeat_timeout = PING_INTERVAL


class Seed(Counted):
    def open(self) -> None:
        super().open()
        self.pinger = PeriodicCallback(self.ping, PING_INTERVAL * 1000)
        self.pinger.start()

    def on_close(self) -> None:
        self.pinger.stop()
        super().on_close()


class PingOnly(Counted):
    """Control: pinged by one shared timer, no per-connection bookkeeping."""

    def initialize(self, counter: list[int], conns: set[WebSocketHandler]) -> None:
        super().initialize(counter)
        self.conns = conns

    def open(self) -> None:
        super().open()
        self.conns.add(self)

    def on_close(self) -> None:
        self.conns.discard(self)
        super().on_close()


async def serve(variant: str, n: int) -> dict[str, Any]:
    raise_nofile(n + 300)
    counter = [0]
    handler: type[WebSocketHandler] = {
        "plain": Plain,
        "ping-only": PingOnly,
        "heartbeat": Heartbeat,
        "seed": Seed,
        "tornado-ping": Plain,
    }[variant]
    settings: dict[str, Any] = {}
    if variant == "tornado-ping":
        settings["websocket_ping_interval"] = PING_INTERVAL
    kwargs: dict[str, Any] = {"counter": counter}
    if variant == "ping-only":
        conns: set[WebSocketHandler] = set()
        kwargs["conns"] = conns

        from tornado_kit._compat.stream import prebuilt_buffer, write_prebuilt
        from tornado_kit._ws._heartbeat import PING_FRAME

        def ping_all() -> None:
            # HeartbeatMixin's write path (a pre-built frame, no future), no table.
            for conn in conns:
                proto = conn.ws_connection
                stream = proto.stream if proto is not None else None
                if stream is not None and not stream.closed():
                    write_prebuilt(stream, prebuilt_buffer(stream), PING_FRAME)

        PeriodicCallback(ping_all, PING_INTERVAL * 1000).start()
    app = Application([("/ws", handler, kwargs)], **settings)
    sockets = bind_sockets(0, "127.0.0.1", backlog=4096)
    port = sockets[0].getsockname()[1]
    server = HTTPServer(app)
    server.add_sockets(sockets)

    async def clients(count: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            os.path.join(HERE, "_ws_clients.py"),
            str(port),
            "/ws",
            str(count),
            "idle",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        while counter[0] < count:
            await asyncio.sleep(0.05)
        return proc

    async def finish(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()
        while counter[0]:
            await asyncio.sleep(0.05)

    warm = await clients(200)
    await asyncio.sleep(2 * PING_INTERVAL)
    await finish(warm)
    gc.collect()
    await asyncio.sleep(0.5)
    before = rss_bytes()
    proc = await clients(n)
    await asyncio.sleep(3 * PING_INTERVAL + 0.5)
    gc.collect()
    after = rss_bytes()
    still_open = counter[0]
    await finish(proc)
    server.stop()
    return {"variant": variant, "per_conn": (after - before) / n, "open": still_open}


def bookkeeping(n: int) -> float:
    """Python heap bytes per connection of HeartbeatMixin's own state (tracemalloc).

    Registers *n* stand-in handlers in the per-app registries exactly as the
    handshake does (connection set, heartbeat table) and records one
    answered ping each (the measured latency and pong time). Exact, unlike
    RSS, but it does not see allocator fragmentation.
    """
    import tracemalloc

    from tornado_kit._lifecycle import state_for
    from tornado_kit._ws._heartbeat import Heartbeat

    class Stub:
        pass

    app = Application()
    stubs = [Stub() for _ in range(n)]
    state = state_for(app)
    hb = Heartbeat(20.0, 20.0)
    hb._timer = object()  # type: ignore[assignment]  # no IOLoop needed here
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sent = 1000.0
    for stub in stubs:
        state.connections.add(stub)
        hb.add(stub)  # type: ignore[arg-type]
        beat = hb.conns[stub]  # type: ignore[index]
        beat.tick, beat.sent = 1, sent
        now = sent + 0.001 * (1 + len(hb.conns) % 7)
        beat.last_pong, beat.latency = now, now - sent
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(asyncio.run(serve(args.serve, args.clients))))
        return

    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    print(f"N={args.clients} idle connections, pings every {PING_INTERVAL}s, {args.repeat} runs")
    for _ in range(args.repeat):
        for variant in VARIANTS:
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, __file__, "--serve", variant, "--clients", str(args.clients)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            if data["open"] != args.clients:
                print(f"  warning: {variant}: {data['open']} of {args.clients} still open")
            results[variant].append(data["per_conn"])
            print(
                f"  {variant:<13} {data['per_conn'] / 1024:6.2f} KiB/conn "
                f"({time.monotonic() - started:.0f}s)"
            )

    plain = statistics.median(results["plain"]) / 1024
    print("\nserver RSS growth per idle connection (median), and the cost over plain")
    for variant in VARIANTS:
        value = statistics.median(results[variant]) / 1024
        extra = "" if variant == "plain" else f"   {value - plain:+5.2f} KiB over plain"
        print(f"{variant:<13} {value:6.2f} KiB{extra}")
    hb = statistics.median(results["heartbeat"]) / 1024 - plain
    traffic = statistics.median(results["ping-only"]) / 1024 - plain
    print(f"\nHeartbeatMixin: {hb:+.2f} KiB RSS per connection over plain (target <= 0.30 KiB)")
    print(f"  the ping/pong traffic alone (ping-only control): {traffic:+.2f} KiB")
    print(f"  HeartbeatMixin over ping-only (its bookkeeping): {hb - traffic:+.2f} KiB")
    own = bookkeeping(args.clients)
    print(
        f"HeartbeatMixin's own per-connection state (tracemalloc): {own:.0f} bytes "
        f"= {own / 1024:.2f} KiB"
    )


if __name__ == "__main__":
    main()
