"""Bare Tornado vs the full tornado-kit HTTP stack, loaded by wrk on loopback.

One invocation starts two servers as subprocesses:

* **bare**: ``RequestHandler.get`` writing a dict (Tornado's stdlib JSON);
* **stack**: the same handler with ``TokenAuthMixin`` (StaticTokenVerifier),
  ``JSONErrorMixin``, ``TimingMixin`` (access log written to a file as JSON
  lines) and ``JSONBodyMixin`` (``write_json``: orjson when installed). The
  access log is configured as docs/timing.md recommends for production:
  logger ``tornado_kit.access`` at ``INFO``, ``propagate = False``, one
  ``JSONLinesFileHandler`` (batched writes, ``flush_interval=0.5``, 64 KiB);
  ``--access-handler file`` uses ``logging.FileHandler`` with a
  ``JSONLinesFormatter`` instead (one write and flush per record);

then loads each with ``wrk`` (same ``Authorization`` header for both),
alternating bare/stack for several rounds, for a ~20-byte and a ~1 KB JSON
response. It prints requests/s and p99 latency per round and the median
over rounds, with the stack/bare ratio. A third server, bare Tornado with
its own one-line access log written to a file, is measured as a reference
(``--no-reference`` skips it). It also prints each server's CPU
time per request (from ``/proc``, Linux): on a shared machine the
throughput of a run depends on what else is running, the CPU cost of a
request much less.

Usage::

    .venv/bin/python benchmarks/http_stack.py [--rounds 3] [--duration 5] [--connections 32]

Needs ``wrk`` on PATH (``apt-get install wrk``). The numbers are noisy on a
shared machine; compare the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

TOKEN = "bench-token-0123456789"
SMALL = {"id": 1, "ok": True}  # 21 bytes as JSON
LARGE = {
    "items": [
        {"id": i, "name": f"item-{i:04d}", "price": 9.99, "tags": ["a", "b"]} for i in range(14)
    ]
}  # about 1 KB as JSON


def serve(kind: str, port: int, access_log: str | None, access_handler: str = "buffered") -> None:
    from tornado.web import Application, RequestHandler

    class BareSmall(RequestHandler):
        def get(self) -> None:
            self.write(SMALL)

    class BareLarge(RequestHandler):
        def get(self) -> None:
            self.write(LARGE)

    routes: list[Any]
    settings: dict[str, Any] = {}
    if kind in ("bare", "bare+log"):
        routes = [("/small", BareSmall), ("/large", BareLarge)]
        if kind == "bare+log":
            # Reference only: Tornado's own one-line access log, written to a file.
            assert access_log is not None
            handler = logging.FileHandler(access_log + ".tornado")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger = logging.getLogger("tornado.access")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
    else:
        from tornado_kit import (
            JSONBodyMixin,
            JSONErrorMixin,
            JSONLinesFileHandler,
            JSONLinesFormatter,
            StaticTokenVerifier,
            TimingMixin,
            TokenAuthMixin,
        )

        class Stack(TokenAuthMixin, JSONErrorMixin, TimingMixin, JSONBodyMixin, RequestHandler):
            payload: Any = None

            def get(self) -> None:
                self.write_json(self.payload)

        class StackSmall(Stack):
            payload = SMALL

        class StackLarge(Stack):
            payload = LARGE

        routes = [("/small", StackSmall), ("/large", StackLarge)]
        settings["token_verifier"] = StaticTokenVerifier({TOKEN: {"sub": "bench"}})
        assert access_log is not None
        file_handler: logging.Handler
        if access_handler == "buffered":
            file_handler = JSONLinesFileHandler(access_log)  # flush_interval=0.5, 64 KiB
        else:
            file_handler = logging.FileHandler(access_log)
            file_handler.setFormatter(JSONLinesFormatter())
        logger = logging.getLogger("tornado_kit.access")
        logger.addHandler(file_handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    async def main() -> None:
        app = Application(routes, **settings)
        app.listen(port, address="127.0.0.1")
        await stop.wait()

    stop = asyncio.Event()

    async def run() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await main()

    asyncio.run(run())
    logging.shutdown()  # writes what JSONLinesFileHandler still holds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of *pid* (Linux ``/proc``), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[11], fields[12]: utime, stime (proc(5) fields 14 and 15)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str,
    duration: int,
    connections: int,
    pid: int | None = None,
    counts: list[int] | None = None,
) -> tuple[float, float, float | None]:
    """Return (requests per second, p99 latency in ms, server CPU us per request).

    The number of responses wrk received is appended to *counts* when given.
    """
    cpu_before = cpu_seconds(pid) if pid else None
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    cpu_after = cpu_seconds(pid) if pid else None
    total = re.search(r"(\d+) requests in", out)
    if counts is not None and total:
        counts.append(int(total.group(1)))
    cpu_per_request = None
    if cpu_before is not None and cpu_after is not None and total and int(total.group(1)):
        cpu_per_request = (cpu_after - cpu_before) / int(total.group(1)) * 1e6
    return rps, float(p99.group(1)) * _UNITS[p99.group(2)], cpu_per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the reference server (bare Tornado with its own access log to a file)",
    )
    parser.add_argument(
        "--access-handler",
        choices=["buffered", "file"],
        default="buffered",
        help="stack's access log handler: JSONLinesFileHandler (default, the documented"
        " production set-up) or logging.FileHandler + JSONLinesFormatter",
    )
    parser.add_argument("--serve", choices=["bare", "bare+log", "stack"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--access-log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.access_log, args.access_handler)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    from tornado_kit import _json

    workdir = tempfile.mkdtemp(prefix="tk-bench-")
    access_log = os.path.join(workdir, "access.jsonl")
    kinds = ["bare", "stack"] if args.no_reference else ["bare", "stack", "bare+log"]
    ports = {kind: free_port() for kind in kinds}
    procs = {
        kind: subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                kind,
                "--port",
                str(port),
                "--access-log",
                access_log,
                "--access-handler",
                args.access_handler,
            ]
        )
        for kind, port in ports.items()
    }
    try:
        for port in ports.values():
            wait_for(port)
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
            f"orjson={'yes' if _json.HAVE_ORJSON else 'no'} (stack side), stack access log:"
            f" logger tornado_kit.access INFO, propagate=False, "
            + (
                "JSONLinesFileHandler(flush_interval=0.5, buffer_size=64 KiB)"
                if args.access_handler == "buffered"
                else "logging.FileHandler + JSONLinesFormatter"
            )
        )
        results: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
        stack_responses: list[int] = []
        for size in ("small", "large"):
            for kind in kinds:  # warm-up
                run_wrk(
                    f"http://127.0.0.1:{ports[kind]}/{size}",
                    1,
                    args.connections,
                    counts=stack_responses if kind == "stack" else None,
                )
            for rnd in range(1, args.rounds + 1):
                shift = (rnd - 1) % len(kinds)  # rotate who goes first
                for kind in kinds[shift:] + kinds[:shift]:
                    rps, p99, cpu = run_wrk(
                        f"http://127.0.0.1:{ports[kind]}/{size}",
                        args.duration,
                        args.connections,
                        procs[kind].pid,
                        stack_responses if kind == "stack" else None,
                    )
                    results.setdefault((size, kind), []).append((rps, p99, cpu))
                    cpu_text = f"  server CPU {cpu:6.1f} us/req" if cpu is not None else ""
                    print(
                        f"  round {rnd} {size:5} {kind:8} {rps:8.0f} req/s"
                        f"  p99 {p99:7.2f} ms{cpu_text}"
                    )
        # Stop the stack server first: a clean stop writes the records its
        # JSONLinesFileHandler still holds.
        procs["stack"].terminate()
        procs["stack"].wait(10)
        with open(access_log, encoding="utf-8") as log_file:
            lines = sum(1 for _ in log_file)
        print(
            f"\naccess log: {lines} JSON lines written by the stack server"
            f" (wrk received {sum(stack_responses)} responses from it)"
        )
        print(
            f"\n{'response':9} {'bare req/s':>10} {'stack req/s':>11} {'ratio':>6}"
            f" {'bare p99':>9} {'stack p99':>9} {'CPU/req bare':>13} {'stack':>7}"
            f" {'ratio':>6}  target (req/s ratio)"
        )
        for size, target in (("small", 0.90), ("large", 0.95)):
            bare = results[(size, "bare")]
            stack = results[(size, "stack")]
            ratio = statistics.median(s[0] / b[0] for b, s in zip(bare, stack, strict=True))
            bare_cpu = [c for _, _, c in bare if c is not None]
            stack_cpu = [c for _, _, c in stack if c is not None]
            cpu_text = ""
            if bare_cpu and stack_cpu:
                b_cpu, s_cpu = statistics.median(bare_cpu), statistics.median(stack_cpu)
                # the inverse CPU ratio is the throughput ratio on a CPU-bound server
                cpu_text = f" {b_cpu:11.1f}us {s_cpu:5.1f}us {b_cpu / s_cpu:6.2f}"
            label = "~20 B" if size == "small" else "~1 KB"
            print(
                f"{label:9} {statistics.median(r for r, _, _ in bare):10.0f}"
                f" {statistics.median(r for r, _, _ in stack):11.0f} {ratio:6.2f}"
                f" {statistics.median(p for _, p, _ in bare):7.2f}ms"
                f" {statistics.median(p for _, p, _ in stack):7.2f}ms{cpu_text}"
                f"  >= {target:.2f} {'ok' if ratio >= target else 'BELOW'}"
            )
        print(
            "(req/s ratio: median over rounds of stack/bare measured back to back; CPU ratio:"
            " bare/stack server CPU time per request, less sensitive to other load)"
        )
        # Other load on a shared machine only ever adds CPU time per request
        # (cache and scheduler interference), so the least disturbed round of
        # each server is the closest to its own cost.
        for size in ("small", "large"):
            bare_cpu = [c for _, _, c in results[(size, "bare")] if c is not None]
            stack_cpu = [c for _, _, c in results[(size, "stack")] if c is not None]
            if bare_cpu and stack_cpu:
                label = "~20 B" if size == "small" else "~1 KB"
                print(
                    f"{label:9} least disturbed round: CPU/req bare {min(bare_cpu):.1f}us,"
                    f" stack {min(stack_cpu):.1f}us, ratio {min(bare_cpu) / min(stack_cpu):.2f}"
                )
        if "bare+log" in kinds:
            print("\nreference: bare Tornado with its own one-line access log written to a file")
            for size in ("small", "large"):
                ref = results[(size, "bare+log")]
                stack = results[(size, "stack")]
                ratio = statistics.median(s[0] / r[0] for r, s in zip(ref, stack, strict=True))
                ref_cpu = [c for _, _, c in ref if c is not None]
                stack_cpu = [c for _, _, c in stack if c is not None]
                cpu_text = ""
                if ref_cpu and stack_cpu:
                    r_cpu, s_cpu = statistics.median(ref_cpu), statistics.median(stack_cpu)
                    cpu_text = (
                        f"  CPU/req {r_cpu:.1f}us vs stack {s_cpu:.1f}us ({r_cpu / s_cpu:.2f})"
                    )
                label = "~20 B" if size == "small" else "~1 KB"
                print(
                    f"{label:9} bare+log {statistics.median(r for r, _, _ in ref):8.0f} req/s,"
                    f" stack/bare+log {ratio:.2f}{cpu_text}"
                )
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
