"""One JSON chat message to N connected WebSocket clients: BroadcastMixin vs the seed loop.

The seed loop is what tornado-kit replaces::

    for conn in connections:
        conn.write_message({...})

(JSON-encoded once per connection, one frame, one future and one task per
connection). ``BroadcastMixin.broadcast`` encodes once, builds the frame once
and writes it straight to each socket.

Both run against the same N connections (default 5000), opened by a
separate client process (``benchmarks/_ws_clients.py``, epoll, loopback),
interleaved round by round (each timed round follows an untimed round of
the same variant, so that it pays for its own garbage), first with Python's
default GC settings, then with the GC disabled during the loops. For each round it measures:

* server loop time: the broadcast call / the seed loop, on the server, as
  wall time and as the thread's CPU time (robust when the machine is busy);
* delivery time: from the start of the loop until the client process has
  received the frame on the last connection (``time.monotonic`` is
  system-wide, so the two processes share the clock).

Run: ``.venv/bin/python benchmarks/ws_broadcast.py [--clients 5000] [--rounds 9]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _ws_clients import raise_nofile

from tornado_kit import BroadcastMixin

MESSAGE = {
    "type": "chat",
    "room": "lobby",
    "user": "alice",
    "text": "Hello everyone, the build is green again!",
    "ts": 1764201600.123,
}


class ChatHandler(BroadcastMixin, WebSocketHandler):
    """Joins the room (for the mixin) and the seed's list of connections."""

    def initialize(self, connections: list[WebSocketHandler]) -> None:
        self.connections = connections

    def open(self) -> None:
        self.connections.append(self)
        self.join("lobby")

    def on_close(self) -> None:
        if self in self.connections:
            self.connections.remove(self)

    def on_message(self, message: str | bytes) -> None:
        pass


def seed_loop(connections: list[WebSocketHandler]) -> None:
    for conn in connections:
        conn.write_message(MESSAGE)


class GCCounter:
    """Counts the collections of each generation that start while enabled."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.enabled = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if self.enabled and phase == "start":
            self.counts[info["generation"]] += 1


async def one_round(
    mode: str,
    connections: list[WebSocketHandler],
    times: asyncio.Queue[float],
    gc_off: bool,
    counter: GCCounter,
) -> tuple[float, float, list[int], float]:
    sender = connections[0]
    if gc_off:
        gc.disable()
    counter.counts = [0, 0, 0]
    counter.enabled = True
    try:
        start = time.monotonic()
        t0 = time.perf_counter()
        c0 = time.thread_time()
        if mode == "mixin":
            await sender.broadcast("lobby", MESSAGE, exclude_self=False)  # type: ignore[attr-defined]
        else:
            seed_loop(connections)
        loop_time = time.perf_counter() - t0
        loop_cpu = time.thread_time() - c0
        last = await asyncio.wait_for(times.get(), 60)
    finally:
        counter.enabled = False
        if gc_off:
            gc.enable()
    return loop_time, last - start, counter.counts, loop_cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    n = args.clients
    raise_nofile(n + 200)

    connections: list[WebSocketHandler] = []
    app = Application([("/chat", ChatHandler, {"connections": connections})])
    sockets = bind_sockets(0, "127.0.0.1", backlog=4096)
    port = sockets[0].getsockname()[1]
    server = HTTPServer(app)
    server.add_sockets(sockets)

    client_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ws_clients.py")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        client_script,
        str(port),
        "/chat",
        str(n),
        "count",
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    assert proc.stdout is not None
    times: asyncio.Queue[float] = asyncio.Queue()

    async def read_times() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            text = line.decode().strip()
            if text != "ready":
                times.put_nowait(float(text))

    reader = asyncio.ensure_future(read_times())
    while len(connections) < n:
        await asyncio.sleep(0.05)
        if proc.returncode is not None:
            raise SystemExit("client process died")
    print(
        f"{n} clients connected in {time.monotonic() - started:.1f}s "
        f"(python {sys.version.split()[0]}, tornado {__import__('tornado').version})"
    )

    results: dict[tuple[str, bool], list[tuple[float, float, list[int]]]] = {}
    counter = GCCounter()
    try:
        for gc_off in (False, True):
            # Interleaved so that both variants see the same machine load; each
            # timed round follows an untimed round of the same variant, so it
            # pays for its own garbage (not for a full GC that the previous
            # variant's tasks made due).
            for mode in ("seed", "mixin"):
                await one_round(mode, connections, times, gc_off, counter)  # warm-up
            for _ in range(args.rounds):
                for mode in ("seed", "mixin"):
                    await one_round(mode, connections, times, gc_off, counter)
                    await asyncio.sleep(0.05)
                    results.setdefault((mode, gc_off), []).append(
                        await one_round(mode, connections, times, gc_off, counter)
                    )
                    await asyncio.sleep(0.05)  # let the round's tasks finish
    finally:
        for conn in list(connections):
            conn.close()
        await asyncio.sleep(0.5)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        reader.cancel()
        server.stop()

    def med(values: list[Any]) -> float:
        return statistics.median(values) * 1000

    print(f"\nmedians over {args.rounds} rounds, N={n} (ms)")
    print(
        f"{'GC':<10}{'variant':<16}{'loop wall':>11}{'loop CPU':>10}{'last client':>13}"
        f"{'GC runs/round (gen0/1/2)':>27}"
    )
    for gc_off in (False, True):
        label = "disabled" if gc_off else "default"
        for mode, name in (("seed", "seed loop"), ("mixin", "BroadcastMixin")):
            rows = results[(mode, gc_off)]
            per_gen = "/".join(f"{sum(r[2][g] for r in rows) / len(rows):.1f}" for g in range(3))
            print(
                f"{label:<10}{name:<16}{med([r[0] for r in rows]):>11.1f}"
                f"{med([r[3] for r in rows]):>10.1f}{med([r[1] for r in rows]):>13.1f}"
                f"{per_gen:>27}"
            )
    print(
        "\nBroadcastMixin speed-up over the seed loop (targets: >= 3x default GC, >= 1.7x GC off)"
    )
    for gc_off in (False, True):
        label = "GC disabled" if gc_off else "default GC"
        seed = results[("seed", gc_off)]
        mixin = results[("mixin", gc_off)]
        ratios = [med([r[i] for r in seed]) / med([r[i] for r in mixin]) for i in (0, 3, 1)]
        print(
            f"{label:<12} loop wall {ratios[0]:5.2f}x   loop CPU {ratios[1]:5.2f}x"
            f"   last client {ratios[2]:5.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
