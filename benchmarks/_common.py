"""Helpers shared by the benchmark scripts (not a benchmark itself).

A script run as ``python benchmarks/x.py`` has ``benchmarks/`` as
``sys.path[0]``, so ``from _common import ...`` finds this file.

* :func:`free_port` / :func:`wait_for_port`: a loopback port for a server
  subprocess, and waiting until it accepts connections.
* :func:`run_wrk` / :func:`parse_wrk`: one ``wrk --latency`` run and the
  figures the scripts print from its output.
* :func:`stop_processes`: SIGTERM server subprocesses, SIGKILL what outlives a timeout.
* :func:`rss_bytes`: resident memory of a process (and its descendants).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:*port* accepts a connection; re-raise the error after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class WrkResult:
    """What one ``wrk --latency`` run reported."""

    rps: float
    #: 99th percentile latency in ms (NaN when wrk printed no distribution).
    p99_ms: float
    requests: int
    non2xx: int
    #: wrk's "Socket errors: ..." line, when it printed one.
    socket_errors: str | None
    output: str


def parse_wrk(output: str) -> WrkResult:
    """The figures of ``wrk --latency`` *output*."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    if rps is None or requests is None:
        raise ValueError(f"not wrk output:\n{output}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: .*", output)
    return WrkResult(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS_MS[p99.group(2)] if p99 else float("nan"),
        requests=int(requests.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors.group(0) if socket_errors else None,
        output=output,
    )


def run_wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    threads: int = 1,
    extra: Sequence[str] = (),
    wrk: str = "wrk",
) -> WrkResult:
    """``wrk -t<threads> -c<connections> -d<duration>s --latency [extra] url``, parsed."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", *extra, url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout: float = 20.0) -> None:
    """SIGTERM every process still running (in the order given), then wait for each.

    They all shut down at the same time; one still alive *timeout* seconds
    after its signal is SIGKILLed.
    """
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_bytes(pid: int | None = None, *, children: bool = False) -> int:
    """Resident set size of process *pid* (default: this one), plus its descendants'."""
    import psutil

    proc = psutil.Process(pid if pid is not None else os.getpid())
    total = int(proc.memory_info().rss)
    if children:
        total += sum(int(c.memory_info().rss) for c in proc.children(recursive=True))
    return total
