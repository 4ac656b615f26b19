"""serve(): one process vs two processes vs uvloop, measured side by side with wrk.

Usage::

    .venv/bin/python benchmarks/serve.py [--duration 8] [--connections 64] [--rounds 1]

Each configuration is started with ``serve()`` in a subprocess (this script
re-runs itself with ``--server``), warmed up for 2 s, then loaded by ``wrk``
on loopback against a JSON endpoint built with tornado-kit's mixins
(``JSONErrorMixin`` + ``JSONBodyMixin.write_json``). Requests/s and the p99
latency are printed per configuration, then the ratios against
``processes=1`` on asyncio.

The machine this runs on may have 2 cores shared with wrk itself (and with
anything else running): two worker processes compete with wrk's threads, so
the 2-process gain is bounded well below 2x there. The figures are what was
measured; nothing is tuned to improve them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tornado.web import Application, RequestHandler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import free_port, run_wrk, stop_processes, wait_for_port  # noqa: E402

from tornado_kit import JSONBodyMixin, JSONErrorMixin, serve  # noqa: E402

CONFIGS = [
    ("processes=1 asyncio", ["--processes", "1", "--loop", "asyncio"]),
    ("processes=2 asyncio", ["--processes", "2", "--loop", "asyncio"]),
    ("processes=1 uvloop", ["--processes", "1", "--loop", "uvloop"]),
    ("processes=2 uvloop", ["--processes", "2", "--loop", "uvloop"]),
    ("processes=2 reuse_port", ["--processes", "2", "--loop", "asyncio", "--reuse-port"]),
]


class JSONHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write_json({"message": "Hello, World!", "pid": os.getpid()})


def make_app() -> Application:
    return Application([(r"/json", JSONHandler)])


def run_server(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    serve(
        make_app,
        port=args.port,
        address="127.0.0.1",
        processes=args.processes,
        loop=args.loop,
        reuse_port=args.reuse_port,
        shutdown_timeout=2,
    )


def measure(
    wrk: str, label: str, extra: list[str], args: argparse.Namespace
) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--server", "--port", str(port), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=20)
        url = f"http://127.0.0.1:{port}/json"
        run_wrk(url, connections=args.connections, duration=2, threads=2, wrk=wrk)  # warm-up
        result = run_wrk(
            url, connections=args.connections, duration=args.duration, threads=2, wrk=wrk
        )
        errors = [result.socket_errors] if result.socket_errors else []
        if result.non2xx:
            errors.append(f"Non-2xx or 3xx responses: {result.non2xx}")
        note = f"  ({'; '.join(errors)})" if errors else ""
        print(
            f"  {label:<22} {result.rps:>10.0f} req/s   p99 {result.p99_ms:>7.2f} ms{note}",
            flush=True,
        )
        return result.rps, result.p99_ms
    finally:
        stop_processes([server], timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (best kept)")
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        run_server(args)
        return

    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        sys.exit("uvloop is not installed: pip install 'tornado-kit[fast]'")
    print(
        f"serve() benchmark: GET /json, wrk -t2 -c{args.connections} -d{args.duration}s, "
        f"{os.cpu_count()} CPUs shared with wrk"
    )
    results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in CONFIGS}
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}/{args.rounds}")
        for label, extra in CONFIGS:
            results[label].append(measure(wrk, label, extra, args))

    # Best round per configuration (highest requests/s) to damp outside noise.
    best = {label: max(runs) for label, runs in results.items()}
    base_rps, base_p99 = best["processes=1 asyncio"]
    print("\nbest of rounds, relative to processes=1 asyncio:")
    for label, (rps, p99) in best.items():
        print(
            f"  {label:<22} {rps:>10.0f} req/s ({rps / base_rps:4.2f}x)   "
            f"p99 {p99:>7.2f} ms ({p99 / base_p99:4.2f}x)"
        )
    two = best["processes=2 asyncio"][0] / base_rps
    uv = best["processes=1 uvloop"][0] / base_rps
    print(f"\nratio processes=2 / processes=1 (asyncio): {two:.2f}x")
    print(f"ratio uvloop / asyncio (processes=1):      {uv:.2f}x")


if __name__ == "__main__":
    main()
