"""SSE fan-out: one event to N open streams, ``stream_topic()`` vs a direct loop.

Both kinds of stream are open at the same time on one Tornado server (this
process); the clients are raw sockets in a separate process on loopback.
Each round publishes one event and measures the time from the publish until
the last client has received it, alternating between

* ``stream_topic``: ``SSEMixin`` handlers following a broker topic
  (``LocalBroker.publish``; the streams of the topic share one subscription,
  each has its own bounded queue for when its client is slow, and keepalive
  is on, driven by the one per-application timer), and
* ``direct``: the hand-written baseline, a loop over plain handlers doing
  ``handler.write(chunk); handler.flush()`` with the event encoded once.

It also reports the server loop time (publish until the loop has run every
write) and the server's RSS per open stream. Run::

    .venv/bin/python benchmarks/sse_fanout.py            # N=2000, 21 rounds
    .venv/bin/python benchmarks/sse_fanout.py --n 500 --rounds 7

Targets (issue 3): time <= 1.2x the direct loop; <= 18 KiB RSS per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import selectors
import socket
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

from _common import rss_bytes
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from tornado_kit import LocalBroker, ServerSentEvent, SSEMixin
from tornado_kit._lifecycle import shutdown, state_for
from tornado_kit._sse import encode_broker_message

KIB = 1024


# -- server side -----------------------------------------------------------------


class TopicStream(SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.stream_topic(self.get_query_argument("topic", "bench"))


class DirectStream(RequestHandler):
    """The baseline: SSE headers, then written to from a plain loop over handlers."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        await self.flush()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.settings["direct"][self] = done
        await done

    def on_connection_close(self) -> None:
        done = self.settings["direct"].pop(self, None)
        if done is not None and not done.done():
            done.set_result(None)


def direct_loop(handlers: dict[Any, Any], chunk: bytes) -> None:
    for handler in handlers:
        handler.write(chunk)
        handler.flush()


# -- client side (separate process) ----------------------------------------------


def client_main(conn: Connection, port: int) -> None:
    groups: dict[str, list[socket.socket]] = {}
    selector = selectors.DefaultSelector()
    try:
        while True:
            command = conn.recv()
            if command[0] == "open":
                _, group, path, n = command
                groups[group] = open_streams(port, path, n)
                conn.send("ready")
            elif command[0] == "wait":
                _, group, marker = command
                conn.send(wait_for(selector, groups[group], marker.encode(), conn))
            elif command[0] == "close":
                for socks in groups.values():
                    for sock in socks:
                        sock.close()
                conn.send("closed")
                return
    finally:
        selector.close()


def open_streams(port: int, path: str, n: int) -> list[socket.socket]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    socks = []
    for start in range(0, n, 200):  # batches, so the listen backlog never overflows
        batch = []
        for _ in range(min(200, n - start)):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request.encode())
            batch.append(sock)
        for sock in batch:
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise RuntimeError("server closed a stream")
                head += data
            sock.setblocking(False)
        socks += batch
    return socks


def wait_for(
    selector: selectors.BaseSelector, socks: list[socket.socket], marker: bytes, conn: Connection
) -> float:
    """Tell the server we are listening, then return when every socket saw *marker*."""
    tails: dict[socket.socket, bytes] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        tails[sock] = b""
        try:
            while sock.recv(65536):  # drain keepalives that arrived meanwhile
                pass
        except BlockingIOError:
            pass
    conn.send("waiting")
    remaining = len(socks)
    last = 0.0
    keep = len(marker)
    try:
        while remaining:
            for key, _ in selector.select(timeout=30):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise RuntimeError("server closed a stream")
                seen = tails[sock] + data
                if marker in seen:
                    last = time.monotonic()
                    remaining -= 1
                    selector.unregister(sock)
                    del tails[sock]
                else:
                    tails[sock] = seen[-keep:]
    finally:
        for sock in tails:
            selector.unregister(sock)
    return last


# -- the benchmark ---------------------------------------------------------------


async def ask(conn: Connection, *command: Any) -> Any:
    conn.send(command)
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


async def settle(app: Application, n_topic: int, n_direct: int) -> None:
    # Open SSE streams register in state_for(app).connections.
    streams = state_for(app).connections
    while len(streams) < n_topic or len(app.settings["direct"]) < n_direct:
        await asyncio.sleep(0.05)


async def run(n: int, rounds: int, keepalive: float) -> None:
    TopicStream.sse_keepalive_interval = keepalive
    app = Application(
        [("/topic", TopicStream), ("/direct", DirectStream)], broker=LocalBroker(), direct={}
    )
    sockets = bind_sockets(0, "127.0.0.1", backlog=4096)
    port = sockets[0].getsockname()[1]
    server = HTTPServer(app)
    server.add_sockets(sockets)
    broker: LocalBroker = app.settings["broker"]

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    client = ctx.Process(target=client_main, args=(child, port), daemon=True)
    client.start()
    try:
        # Warm up the code paths (and the allocator) on a few streams of each kind.
        await ask(parent, "open", "warm-topic", "/topic?topic=warm", 50)
        await ask(parent, "open", "warm-direct", "/direct", 50)
        await settle(app, 50, 50)
        rss0 = rss_bytes()
        await ask(parent, "open", "topic", "/topic", n)
        await settle(app, n + 50, 50)
        await asyncio.sleep(keepalive * 2.5)  # keepalives flow on every stream
        rss1 = rss_bytes()
        await ask(parent, "open", "direct", "/direct", n)
        await settle(app, n + 50, n + 50)
        await asyncio.sleep(keepalive * 2.5)
        rss2 = rss_bytes()

        times: dict[str, list[float]] = {"topic": [], "direct": []}
        loop_times: dict[str, list[float]] = {"topic": [], "direct": []}
        for r in range(rounds):
            order = ("topic", "direct") if r % 2 == 0 else ("direct", "topic")
            for mode in order:
                marker = f"mark-{r}-{mode}"
                event = ServerSentEvent(f'{{"round":{r},"marker":"{marker}"}}', id=str(r))
                assert await ask(parent, "wait", mode, marker) == "waiting"
                if mode == "topic":
                    message = encode_broker_message(event)
                    t0 = time.monotonic()
                    broker.publish_nowait("bench", message)
                else:
                    # Only the measured streams (not the warm-up ones).
                    handlers = dict.fromkeys(list(app.settings["direct"])[50:], 0)
                    t0 = time.monotonic()
                    direct_loop(handlers, event.encode())
                # Two turns of the loop: the hub's fan-out (woken by the publish)
                # has run, and so have the write-completion callbacks of both.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                loop_times[mode].append(time.monotonic() - t0)
                last = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
                times[mode].append(last - t0)
                await asyncio.sleep(0.05)

        print(f"SSE fan-out: one event to N={n} open streams, {rounds} rounds, clients in")
        print(f"a separate process on loopback, keepalive every {keepalive:g} s, default GC")
        print()
        print(f"{'':12} {'until last client (median)':>28} {'server loop (median)':>22}")
        for mode, label in (("topic", "stream_topic"), ("direct", "direct loop")):
            print(
                f"{label:12} {statistics.median(times[mode]) * 1000:25.1f} ms"
                f" {statistics.median(loop_times[mode]) * 1000:19.1f} ms"
            )
        ratio = statistics.median(times["topic"]) / statistics.median(times["direct"])
        loop_ratio = statistics.median(loop_times["topic"]) / statistics.median(
            loop_times["direct"]
        )
        print()
        print(f"time ratio stream_topic / direct: {ratio:.2f}x   (target <= 1.2x)")
        print(f"server loop ratio:                {loop_ratio:.2f}x")
        per_topic = (rss1 - rss0) / n / KIB
        per_direct = (rss2 - rss1) / n / KIB
        print(f"RSS per stream, stream_topic with keepalive: {per_topic:.1f} KiB (target <= 18)")
        print(f"RSS per stream, direct baseline:             {per_direct:.1f} KiB")
        await ask(parent, "close")
    finally:
        server.stop()
        for handler, done in list(app.settings["direct"].items()):
            handler.finish()
            if not done.done():
                done.set_result(None)
        await shutdown(app, timeout=5)
        await server.close_all_connections()
        client.join(10)
        if client.is_alive():
            client.kill()
            client.join()
        parent.close()
        child.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="open streams of each kind")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--keepalive", type=float, default=2.0, help="keepalive interval (s)")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.rounds, args.keepalive))


if __name__ == "__main__":
    main()
