"""Where the HTTP stack's time goes: CPU per request of each layer, without sockets.

``benchmarks/http_stack.py`` measures the whole server under ``wrk``; on a
shared machine its figures move with the other load. This one runs the same
handlers in-process: each request is a real ``HTTPServerRequest`` routed by
a real ``Application`` and executed by Tornado's ``_execute``, but the
connection is an in-memory stand-in that accepts the response without a
socket (so the HTTP parsing and socket I/O that both sides share are left
out). It reports process CPU time per request (``time.process_time``, all
threads, the log-flushing one included) for each configuration, alternating
configurations round after round and keeping each one's best round. Every
configuration runs in its own subprocess so the logging set-up of one does
not leak into another.

Configurations (~20-byte JSON response unless ``--large``):

* ``bare``: ``RequestHandler.get`` writing a dict (Tornado's stdlib JSON);
* ``auth``: ``TokenAuthMixin`` + ``StaticTokenVerifier`` (bearer header);
* ``timing-nolog``: ``TimingMixin``, access logger not enabled for INFO;
* ``stack-nolog``: TokenAuth + JSONError + Timing + JSONBody, no access log;
* ``stack-buffered``: the same, access log written by ``JSONLinesFileHandler``
  (the set-up docs/timing.md recommends; ``flush_interval=0.5``);
* ``stack-filehandler``: the same with ``logging.FileHandler`` +
  ``JSONLinesFormatter`` (one write and flush per record).

Usage::

    .venv/bin/python benchmarks/http_stack_layers.py [--requests 5000] [--rounds 7] [--large]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

TOKEN = "bench-token-0123456789"
SMALL = {"id": 1, "ok": True}
LARGE = {
    "items": [
        {"id": i, "name": f"item-{i:04d}", "price": 9.99, "tags": ["a", "b"]} for i in range(14)
    ]
}
CONFIGS = [
    "bare",
    "auth",
    "timing-nolog",
    "stack-nolog",
    "stack-buffered",
    "stack-filehandler",
]


def build_app(config: str, payload: Any, log_path: str) -> Any:
    from tornado.web import Application, RequestHandler

    from tornado_kit import (
        JSONBodyMixin,
        JSONErrorMixin,
        JSONLinesFormatter,
        StaticTokenVerifier,
        TimingMixin,
        TokenAuthMixin,
    )

    class Bare(RequestHandler):
        def get(self) -> None:
            self.write(payload)

    class Auth(TokenAuthMixin, RequestHandler):
        def get(self) -> None:
            self.write(payload)

    class Timing(TimingMixin, RequestHandler):
        def get(self) -> None:
            self.write(payload)

    class Stack(TokenAuthMixin, JSONErrorMixin, TimingMixin, JSONBodyMixin, RequestHandler):
        def get(self) -> None:
            self.write_json(payload)

    # Tornado's own access line is off on every side (its logger has no
    # handler and is below WARNING in the benchmark server too).
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    access = logging.getLogger("tornado_kit.access")
    access.propagate = False
    access.setLevel(logging.WARNING)
    if config == "stack-buffered":
        from tornado_kit import JSONLinesFileHandler

        access.setLevel(logging.INFO)
        access.addHandler(JSONLinesFileHandler(log_path))
    elif config == "stack-filehandler":
        access.setLevel(logging.INFO)
        file_handler = logging.FileHandler(log_path)
        file_handler.setFormatter(JSONLinesFormatter())
        access.addHandler(file_handler)
    handler_class = {
        "bare": Bare,
        "auth": Auth,
        "timing-nolog": Timing,
    }.get(config, Stack)
    return Application(
        [("/", handler_class)], token_verifier=StaticTokenVerifier({TOKEN: {"sub": "bench"}})
    )


class _Context:
    remote_ip = "127.0.0.1"
    protocol = "http"
    trusted_downstream = None


class _Connection:
    """Takes the response and drops it: stands in for HTTP1Connection."""

    context = _Context()

    def set_close_callback(self, callback: Any) -> None:
        pass

    def _done(self) -> Any:
        from tornado.concurrent import Future

        future: Future[None] = Future()
        future.set_result(None)
        return future

    def write_headers(self, start_line: Any, headers: Any, chunk: bytes | None = None) -> Any:
        return self._done()

    def write(self, chunk: bytes) -> Any:
        return self._done()

    def finish(self) -> None:
        pass


async def drive(app: Any, requests: int) -> float:
    """CPU microseconds per request for *requests* GET / requests."""
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    connection = _Connection()
    start_line = RequestStartLine("GET", "/", "HTTP/1.1")
    start = time.process_time()
    for _ in range(requests):
        headers = HTTPHeaders()
        headers.add("Host", "127.0.0.1:8888")
        headers.add("Authorization", "Bearer " + TOKEN)
        headers.add("User-Agent", "bench")
        request = HTTPServerRequest(start_line=start_line, headers=headers, connection=connection)
        delegate = app.find_handler(request)
        delegate.headers_received(start_line, headers)
        delegate.finish()
        handler = delegate.handler
        while not handler._finished:  # an async prepare may need a loop turn
            await asyncio.sleep(0)
        if handler._status_code != 200:
            raise RuntimeError(f"{handler._status_code} from {type(handler).__name__}")
    return (time.process_time() - start) / requests * 1e6


def child(config: str, requests: int, rounds: int, large: bool) -> None:
    payload = LARGE if large else SMALL
    with tempfile.TemporaryDirectory(prefix="tk-layers-") as tmp:
        app = build_app(config, payload, os.path.join(tmp, "access.jsonl"))

        async def main() -> None:
            await drive(app, min(requests, 1000))  # warm-up
            for _ in range(rounds):
                print(f"{await drive(app, requests):.2f}", flush=True)

        asyncio.run(main())
        logging.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--large", action="store_true", help="~1 KB JSON response")
    parser.add_argument(
        "--configs", nargs="+", choices=CONFIGS, default=CONFIGS, help="default: all"
    )
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, 1, args.large)
        return
    configs = list(dict.fromkeys(["bare", *args.configs]))
    best: dict[str, float] = {}
    for rnd in range(args.rounds):
        order = configs[rnd % len(configs) :] + configs[: rnd % len(configs)]
        for config in order:
            command = [
                sys.executable,
                __file__,
                "--child",
                config,
                "--requests",
                str(args.requests),
            ]
            if args.large:
                command.append("--large")
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            value = float(out.split()[-1])
            best[config] = min(best.get(config, value), value)
    size = "~1 KB" if args.large else "~20 B"
    print(
        f"{size} JSON response, {args.requests} requests per round, best of {args.rounds}"
        " rounds (process CPU time per request, in-process, no sockets)"
    )
    bare = best["bare"]
    for config in configs:
        value = best[config]
        print(f"  {config:18} {value:7.1f} us  {value - bare:+6.1f} us vs bare")


if __name__ == "__main__":
    main()
