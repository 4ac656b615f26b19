"""Many lightweight WebSocket clients in one process, for the ws_* benchmarks.

Plain non-blocking sockets and ``select.epoll`` (Linux): no per-connection
task or object beyond the socket, so one client process keeps up with
thousands of connections on a small machine.

Run as ``python benchmarks/_ws_clients.py PORT PATH N MODE``:

``MODE=count``  after every N data frames received (one per connection),
                print ``time.monotonic()`` of the last one on stdout.
``MODE=idle``   connect, print ``ready``, then hold the connections
                (answering pings with pongs) until stdin closes.
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
    """Print the monotonic time each time every connection has one more frame.

    Reads with ``recv_into`` one shared buffer (no allocation per read unless
    a frame is split across reads), so that the client process is not the
    bottleneck of the measurement.
    """
    ep = select.epoll()
    recv_into = {s.fileno(): s.recv_into for s in socks}
    partial: dict[int, bytes] = {}
    for fd in recv_into:
        ep.register(fd, select.EPOLLIN)
    buf = bytearray(1 << 16)
    total = 0
    out = sys.stdout
    try:
        while True:
            for fd, _ in ep.poll():
                got = recv_into[fd](buf)
                if not got:
                    return
                data: bytes | bytearray
                if fd in partial:
                    data = partial.pop(fd) + buf[:got]
                    end = len(data)
                else:
                    data, end = buf, got
                pos = 0
                while end - pos >= 2:
                    opcode = data[pos] & 0x0F
                    length = data[pos + 1] & 0x7F
                    head = 2
                    if length == 126:
                        if end - pos < 4:
                            break
                        (length,) = struct.unpack_from("!H", data, pos + 2)
                        head = 4
                    elif length == 127:
                        if end - pos < 10:
                            break
                        (length,) = struct.unpack_from("!Q", data, pos + 2)
                        head = 10
                    if end - pos < head + length:
                        break
                    pos += head + length
                    if opcode in (0x1, 0x2):
                        total += 1
                        if total % n == 0:
                            out.write(f"{time.monotonic()!r}\n")
                            out.flush()
                    elif opcode == 0x8:
                        return
                if pos < end:
                    partial[fd] = bytes(data[pos:end])
    finally:
        ep.close()


def _answer_pings(sock: socket.socket, data: bytes) -> None:
    pos = 0
    while len(data) - pos >= 2:
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        if length >= 126 or len(data) - pos < 2 + length:
            break  # only small control frames are expected on idle connections
        if opcode == 0x9:  # RFC 6455 §5.5.3: answer a ping with a pong (zero mask)
            payload = data[pos + 2 : pos + 2 + length]
            sock.send(bytes([0x8A, 0x80 | length]) + b"\x00\x00\x00\x00" + payload)
        pos += 2 + length


def connect_and_hold(port: int, path: str, n: int, batch: int = 200) -> None:
    """Open *n* connections and hold them, answering pings all along (also
    while the later ones are still connecting), until stdin closes."""
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    handshaking: dict[int, bytes] = {}
    stdin = sys.stdin.fileno()
    opened = ready = 0
    try:
        while True:
            while opened < n and len(handshaking) < batch:
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(_handshake(port, path))
                s.setblocking(False)
                socks[s.fileno()] = s
                handshaking[s.fileno()] = b""
                ep.register(s.fileno(), select.EPOLLIN)
                opened += 1
            for fd, _ in ep.poll(1):
                if fd == stdin:
                    if not os.read(stdin, 4096):
                        return
                    continue
                sock = socks[fd]
                data = sock.recv(65536)
                if not data:
                    ep.unregister(fd)
                    continue
                if fd in handshaking:
                    buf = handshaking.pop(fd) + data
                    head, sep, rest = buf.partition(b"\r\n\r\n")
                    if not sep:
                        handshaking[fd] = buf
                        continue
                    if not head.startswith(b"HTTP/1.1 101"):
                        raise SystemExit(f"handshake refused: {head[:80]!r}")
                    ready += 1
                    if ready == n:
                        print("ready", flush=True)
                        ep.register(stdin, select.EPOLLIN)
                    data = rest
                _answer_pings(sock, data)
    finally:
        ep.close()
        for s in socks.values():
            s.close()


def main() -> None:
    port, path, n, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    raise_nofile(n + 100)
    if mode == "idle":
        connect_and_hold(port, path, n)
        return
    socks = connect_all(port, path, n)
    print("ready", flush=True)
    try:
        count_frames(socks, n)
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
