"""Server memory growth from three 90 MB POSTs to a 401 route and to an unknown path.

Usage::

    .venv/bin/python benchmarks/hostile_bodies.py [--root CHECKOUT] [--size-mb 90] [--count 3]

Starts ``python -m tornado_kit serve hostile_bodies:make_app`` (one process)
from *CHECKOUT* (default: this one), so the ``tornado_kit`` under test is the
checkout's; give ``--root`` a checkout of another revision (e.g. 0.1.0 in a
temp dir) to compare. The app (defined here, public API only) has a
``TokenAuthMixin`` route ``/private`` and a problem+json 404 for the rest.
Each POST is sent over a raw loopback socket as fast as the server takes it
(the server may close the connection early: that is what a limit does).
Printed: the status each POST got and the growth of the server's resident
memory after each group of POSTs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from tornado.web import Application, RequestHandler

from tornado_kit import JSONErrorMixin, NotFoundHandler, StaticTokenVerifier, TokenAuthMixin

HERE = Path(__file__).resolve().parent
MB = 1000 * 1000
PIECE = 1024 * 1024


class PrivateHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        self.write({"length": len(self.request.body)})


def make_app() -> Application:
    return Application(
        [(r"/private", PrivateHandler)],
        token_verifier=StaticTokenVerifier({"benchmark-token": {"sub": "bench"}}),
        default_handler_class=NotFoundHandler,
    )


def post(port: int, path: str, size: int) -> str:
    """Send a *size*-byte POST; the status line the server answered, or what happened."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
        sock.sendall(f"{head}Content-Length: {size}\r\n\r\n".encode())
        piece = b"x" * PIECE
        try:
            sent = 0
            while sent < size:
                n = min(PIECE, size - sent)
                sock.sendall(piece[:n])
                sent += n
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            return "connection reset"
        return answer.split(b"\r\n", 1)[0].decode("latin1") or "closed without answer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="checkout to serve from")
    parser.add_argument("--size-mb", type=int, default=90)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _common import free_port, rss_bytes, stop_processes, wait_for_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.root), str(HERE)])}
    argv = [sys.executable, "-m", "tornado_kit", "serve", "hostile_bodies:make_app"]
    argv += ["--port", str(port), "--address", "127.0.0.1", "--log-level", "warning"]
    server = subprocess.Popen(argv, cwd=args.root, env=env)
    try:
        wait_for_port(port)
        revision = subprocess.run(
            ["git", "-C", str(args.root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"checkout {args.root} ({revision or 'not a git checkout'})")
        start = rss_bytes(server.pid)
        print(f"server RSS before: {start / MB:.1f} MB")
        for label, path in (("401 route /private", "/private"), ("404 path /nowhere", "/nowhere")):
            before = rss_bytes(server.pid)
            statuses = [post(port, path, args.size_mb * MB) for _ in range(args.count)]
            after = rss_bytes(server.pid)
            answered = ", ".join(sorted(set(statuses)))
            print(
                f"{args.count} x {args.size_mb} MB POST to {label}: {answered}; "
                f"server RSS {after / MB:.1f} MB (+{(after - before) / MB:.1f} MB)"
            )
        print(f"total growth: +{(rss_bytes(server.pid) - start) / MB:.1f} MB")
    finally:
        stop_processes([server])


if __name__ == "__main__":
    main()
