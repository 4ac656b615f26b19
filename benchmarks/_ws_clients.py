"""Many lightweight WebSocket clients in one process, for the ws_* benchmarks.

Plain non-blocking sockets and ``select.epoll`` (Linux): no per-connection
task or object beyond the socket, so one client process keeps up with
thousands of connections on a small machine.

Run as ``python benchmarks/_ws_clients.py PORT PATH N MODE``:

``MODE=count``  after every N data frames received (one per connection),
                print ``time.monotonic()`` of the last one on stdout.
``MODE=idle``   connect, print ``ready``, then hold the connections (answer
                nothing) until stdin closes.
"""

from __future__ import annotations

import base64
import os
import resource
import select
import socket
import struct
import sys
import time


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < n:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below the {n} sockets needed")


def _handshake(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def connect_all(port: int, path: str, n: int, batch: int = 200) -> list[socket.socket]:
    """Open *n* WebSocket connections, *batch* handshakes in flight at a time."""
    socks: list[socket.socket] = []
    ep = select.epoll()
    try:
        while len(socks) < n:
            pending: dict[int, tuple[socket.socket, bytes]] = {}
            for _ in range(min(batch, n - len(socks) - len(pending))):
                s = socket.create_connection(("127.0.0.1", port))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(_handshake(port, path))
                s.setblocking(False)
                pending[s.fileno()] = (s, b"")
                ep.register(s.fileno(), select.EPOLLIN)
            while pending:
                for fd, _ in ep.poll(10):
                    s, buf = pending[fd]
                    buf += s.recv(4096)
                    if b"\r\n\r\n" in buf:
                        if not buf.startswith(b"HTTP/1.1 101"):
                            raise SystemExit(f"handshake refused: {buf[:80]!r}")
                        ep.unregister(fd)
                        del pending[fd]
                        socks.append(s)
                    else:
                        pending[fd] = (s, buf)
    finally:
        ep.close()
    return socks


def count_frames(socks: list[socket.socket], n: int) -> None:
    """Print the monotonic time each time every connection has one more frame."""
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    partial: dict[int, bytes] = {}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    total = 0
    out = sys.stdout
    try:
        while True:
            for fd, _ in ep.poll():
                data = by_fd[fd].recv(1 << 20)
                if not data:
                    return
                buf = partial.pop(fd, b"") + data
                pos = 0
                while len(buf) - pos >= 2:
                    opcode = buf[pos] & 0x0F
                    length = buf[pos + 1] & 0x7F
                    head = 2
                    if length == 126:
                        if len(buf) - pos < 4:
                            break
                        (length,) = struct.unpack_from("!H", buf, pos + 2)
                        head = 4
                    elif length == 127:
                        if len(buf) - pos < 10:
                            break
                        (length,) = struct.unpack_from("!Q", buf, pos + 2)
                        head = 10
                    if len(buf) - pos < head + length:
                        break
                    pos += head + length
                    if opcode in (0x1, 0x2):
                        total += 1
                        if total % n == 0:
                            out.write(f"{time.monotonic()!r}\n")
                            out.flush()
                    elif opcode == 0x8:
                        return
                if pos < len(buf):
                    partial[fd] = buf[pos:]
    finally:
        ep.close()


def main() -> None:
    port, path, n, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    raise_nofile(n + 100)
    socks = connect_all(port, path, n)
    print("ready", flush=True)
    try:
        if mode == "count":
            count_frames(socks, n)
        else:
            sys.stdin.read()  # hold until the parent closes our stdin
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
