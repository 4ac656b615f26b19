"""Server memory under a WebSocket client that floods invalid messages and never reads.

A server process runs a chat handler like the reference app's
(``JSONMessageMixin``, ``BroadcastMixin``, ``HeartbeatMixin`` with its default
20 s heartbeat, so the heartbeat does not end the attack within the run). One
raw TCP client completes the handshake, then for ``--seconds`` (default 10)
sends 1-byte text frames (``x``, not JSON) as fast as the socket takes them
and never reads. Each one makes ``JSONMessageMixin`` answer with a 61-byte
error message, so without a bound the answers pile up in the server's
memory. The client's receive buffer is small (``--rcvbuf``, 4 KiB), as a
client that never reads advertises, and so is the server socket's send
buffer (``--server-sndbuf``, 16 KiB, as on a slow link): on loopback Linux
otherwise grows both to megabytes, which delays (but does not prevent) the
growth of the process on a machine as slow as ours. The script prints the
server's RSS (psutil) before the flood, every second, and its growth at the
end, and how the connection ended (the close code the server sent, read
once the flood is over).

``--source DIR`` imports tornado_kit from another tree (a checkout of an
older version, to compare): the server runs with ``PYTHONPATH=DIR``.

Run: ``.venv/bin/python benchmarks/hostile_ws_flood.py [--seconds 10] [--source DIR]``

Figures on the development machine (2 cores shared with other work, load
average 8 to 10, so the server answered only about 10,000 frames a second),
``--seconds 10``, server RSS growth:

* 0.1.0 (``git archive`` of main before the fix, ``--source``): +54.6 MiB,
  rising about 5 MiB a second until the end; the connection stayed open
  until the heartbeat closed it (1011) long after. With
  ``--server-sndbuf 0`` the kernel first absorbed about 4 MB of answers:
  +19.9 MiB, all of it in the last three seconds.
* with ``max_pending_bytes`` bounding every write: +0.2 MiB (peak +0.4);
  closed with 1013 after about 1.5 s, dropped by Tornado 5 s later (the
  client sees a reset). With ``--server-sndbuf 0``: +0.5 MiB, 1013.

Most of 0.1's growth was not the answers' bytes but what Tornado keeps per
queued ``write_message`` (a future and a task, about 1.6 KiB each); the
answers are now pre-built frames without a future.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import free_port, rss_bytes, stop_processes, wait_for_port  # noqa: E402

MASK = b"\x01\x02\x03\x04"
#: One masked 1-byte text frame "x" (RFC 6455 §5.2; clients must mask).
FRAME = bytes([0x81, 0x81]) + MASK + bytes([ord("x") ^ MASK[0]])
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def serve(port: int, sndbuf: int) -> None:
    """The server process: the chat handler on 127.0.0.1:*port* until SIGTERM."""
    from typing import Any

    from tornado.httpserver import HTTPServer
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    import tornado_kit
    from tornado_kit import BroadcastMixin, HeartbeatMixin, JSONMessageMixin

    class Chat(HeartbeatMixin, JSONMessageMixin, BroadcastMixin, WebSocketHandler):
        def open(self) -> None:
            if sndbuf and self.ws_connection is not None:
                sock = self.ws_connection.stream.socket
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            self.join("lobby")

        async def on_json(self, data: dict[str, Any]) -> None:
            await self.broadcast("lobby", {"text": data.get("text")}, exclude_self=False)

    async def main() -> None:
        server = HTTPServer(Application([("/ws", Chat)]))
        server.listen(port, "127.0.0.1")
        print(f"serving tornado_kit from {os.path.dirname(tornado_kit.__file__)}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def handshake(port: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket()
    # A client that never reads advertises a small window: Linux would
    # otherwise let the loopback buffers of both ends absorb megabytes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: leave every frame unread
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head!r}")
    return sock


def close_code(sock: socket.socket, timeout: float = 20.0) -> str:
    """Read what the server sent, up to its close frame; describe how it ended."""
    sock.settimeout(timeout)
    buffer = b""
    frames = 0
    try:
        while True:
            while len(buffer) < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    return f"connection dropped without a close frame after {frames} frames"
                buffer += chunk
            n = buffer[1] & 0x7F
            start = 2
            if n == 126:
                start = 4
            elif n == 127:
                start = 10
            while len(buffer) < start:
                buffer += sock.recv(65536)
            if n == 126:
                (n,) = struct.unpack("!H", buffer[2:4])
            elif n == 127:
                (n,) = struct.unpack("!Q", buffer[2:10])
            while len(buffer) < start + n:
                chunk = sock.recv(65536)
                if not chunk:
                    return f"connection dropped mid-frame after {frames} frames"
                buffer += chunk
            opcode, payload = buffer[0] & 0x0F, buffer[start : start + n]
            buffer = buffer[start + n :]
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return f"close frame {code} {payload[2:].decode()!r} after {frames} data frames"
            frames += 1
    except TimeoutError:
        return f"still open after {frames} frames ({timeout:g} s without data)"
    except OSError as exc:
        return f"connection reset ({exc.__class__.__name__}) after {frames} frames"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source", default=ROOT, help="the tree to import tornado_kit from")
    parser.add_argument("--rcvbuf", type=int, default=4096, help="the client's SO_RCVBUF")
    parser.add_argument(
        "--server-sndbuf",
        type=int,
        default=16384,
        help="SO_SNDBUF of the server's socket (0: the kernel's default, which grows)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.server_sndbuf)
        return

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.path.abspath(args.source)}
    server = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            str(port),
            "--server-sndbuf",
            str(args.server_sndbuf),
        ],
        env=env,
        cwd=args.source,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        assert server.stdout is not None
        print(server.stdout.readline().strip())
        time.sleep(0.5)
        before = rss_bytes(server.pid)
        print(f"server RSS before the flood: {before / 2**20:.1f} MiB")
        sock = handshake(port, args.rcvbuf)
        sock.settimeout(0.05)  # never block past the once-a-second report
        batch = FRAME * 1000
        unsent = b""
        sent_bytes = 0
        ended = ""
        start = time.monotonic()
        next_report = start + 1.0
        peak = before
        while (now := time.monotonic()) - start < args.seconds:
            if not ended:
                unsent = unsent or batch
                try:
                    n = sock.send(unsent)  # a partial send keeps the frames aligned
                    unsent = unsent[n:]
                    sent_bytes += n
                except TimeoutError:
                    pass  # the server is not taking more right now
                except OSError as exc:
                    ended = f"send failed at {now - start:.1f} s ({exc.__class__.__name__})"
            else:
                time.sleep(0.05)
            if now >= next_report:
                rss = rss_bytes(server.pid)
                peak = max(peak, rss)
                frames = sent_bytes // len(FRAME)
                print(f"  {now - start:4.1f} s: RSS {rss / 2**20:7.1f} MiB, {frames} frames sent")
                next_report += 1.0
        sent = sent_bytes // len(FRAME)
        after = rss_bytes(server.pid)
        peak = max(peak, after)
        print(f"server RSS after {args.seconds:g} s: {after / 2**20:.1f} MiB")
        print(f"growth: {(after - before) / 2**20:+.1f} MiB (peak {(peak - before) / 2**20:+.1f})")
        print(f"frames sent: {sent}" + (f"; {ended}" if ended else ""))
        print(f"how it ended: {close_code(sock)}")
        sock.close()
    finally:
        stop_processes([server])


if __name__ == "__main__":
    main()
