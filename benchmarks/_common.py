"""Helpers shared by the benchmark scripts (not a benchmark itself).

A script run as ``python benchmarks/x.py`` has ``benchmarks/`` as
``sys.path[0]``, so ``from _common import ...`` finds this file.

* :func:`free_port` / :func:`wait_for_port`: a loopback port for a server
  subprocess, and waiting until it accepts connections.
* :func:`run_wrk` / :func:`parse_wrk`: one ``wrk --latency`` run and the
  figures the scripts print from its output.
* :func:`stop_processes`: SIGTERM server subprocesses, SIGKILL what outlives a timeout.
* :func:`rss_bytes`: resident memory of a process (and its descendants).
* :class:`KeepAliveClient`: sequential HTTP/1.1 requests on one connection
  (a plain socket); :func:`wait_until_idle`: until a server sleeps in epoll.
* :func:`callgrind_per_request`: a server's instructions per request;
  :func:`callgrind_total`, :func:`callgrind_functions`,
  :func:`print_callgrind_functions`: what a callgrind dump holds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

#: The response bodies of the HTTP benchmarks: ~20 bytes and about 1 KB as JSON.
SMALL = {"id": 1, "ok": True}
LARGE = {
    "items": [
        {"id": i, "name": f"item-{i:04d}", "price": 9.99, "tags": ["a", "b"]} for i in range(14)
    ]
}


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


@dataclass
class HTTPResponse:
    """One response read by :class:`KeepAliveClient`."""

    status: int
    #: Header names in lower case (a repeated header keeps its last value).
    headers: dict[str, str]
    body: bytes


class KeepAliveClient:
    """HTTP/1.1 requests, one at a time, on one persistent connection.

    A plain socket and a minimal parser: responses need a ``Content-Length``
    (Tornado's finished responses have one). ``Connection: close`` or a
    connection closed early raises ``ConnectionError``.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 300.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def request(self, raw: bytes) -> HTTPResponse:
        """Send the complete request *raw* (bytes on the wire) and read its response."""
        self._sock.sendall(raw)
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        if headers.get("connection", "").lower() == "close":
            raise ConnectionError(f"the server closed the connection after: {status_line}")
        return HTTPResponse(int(status_line.split(" ", 2)[1]), headers, body)

    def _receive(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection in a response")
        self._buffer += data

    def close(self) -> None:
        self._sock.close()


def _sleeping_in_epoll(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        state = stat.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/wchan", encoding="ascii") as wchan:
        where = wchan.read()
    return state == "S" and "epoll" in where


def wait_until_idle(pid: int, timeout: float = 300.0) -> None:
    """Return once process *pid* sleeps in ``epoll_wait`` (Linux only).

    A single-threaded event-loop server that sleeps there has done all the
    work it was given: a client that waits for this before each request
    makes the server take the same path for every request (it always finds
    its socket empty and waits for the next one), whatever the machine's load.
    Two observations 1 ms apart are required, so that a non-blocking
    ``epoll_wait`` between two callbacks is not taken for idleness.
    """
    if not os.path.exists(f"/proc/{pid}/wchan"):
        raise RuntimeError(f"no /proc/{pid}/wchan: wait_until_idle needs Linux /proc")
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < 2:
        seen = seen + 1 if _sleeping_in_epoll(pid) else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not go idle within {timeout:g}s")
        time.sleep(0.001)


def callgrind_total(dump: str) -> int:
    """Total ``Ir`` (first event) of callgrind dump *dump*: ``summary:``, else ``totals:``."""
    found: dict[str, int] = {}
    with open(dump, encoding="utf-8", errors="replace") as data:
        for line in data:
            key, _, value = line.partition(":")
            if key in ("summary", "totals") and value.split():
                found[key] = int(value.split()[0])
    for key in ("summary", "totals"):
        if key in found:
            return found[key]
    raise ValueError(f"{dump}: no summary: or totals: line (not a callgrind dump?)")


# "   1,234,567 (12.34%)  /path/file.c:function [/path/object.so]"
_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*?)(?: \[.*\])?$")
# callgrind names the deeper levels of a recursive function fn'2, fn'3...
_RECURSION_LEVEL = re.compile(r"'\d+$")


def callgrind_functions(dump: str, *, inclusive: bool) -> dict[str, int]:
    """Cost per function of callgrind dump *dump*, by ``callgrind_annotate``.

    Keys are function names (a C build without frame pointers shows the
    interpreter's C functions, not Python ones). Exclusive costs of one
    function listed several times (inlined code under other source files,
    recursion levels ``fn'2``...) are summed. With *inclusive*, a function's
    cost includes its callees' and the largest of its listings is kept.

    A call in progress when the counters were zeroed (in a process
    instrumented from its start, ``main()`` and every frame below) is
    written with ``calls=0``, which ``callgrind_annotate`` 3.19 counts as
    the caller's own cost (so ``main`` holds everything in an exclusive
    listing); it is counted as a call here, on a copy of the dump.
    """
    with tempfile.TemporaryDirectory(prefix="tk-callgrind-") as tmp:
        fixed = os.path.join(tmp, os.path.basename(dump))
        with (
            open(dump, encoding="utf-8", errors="replace") as src,
            open(fixed, "w", encoding="utf-8") as dst,
        ):
            for line in src:
                dst.write("calls=1 " + line[8:] if line.startswith("calls=0 ") else line)
        argv = [
            shutil.which("callgrind_annotate") or "callgrind_annotate",
            "--threshold=100",
            "--auto=no",
            f"--inclusive={'yes' if inclusive else 'no'}",
            fixed,
        ]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    costs: dict[str, int] = {}
    listing = False
    for line in out.splitlines():
        if line.rstrip().endswith("file:function"):
            listing = True
            continue
        match = _ANNOTATE_LINE.match(line) if listing else None
        if match is None:
            continue
        cost = int(match.group(1).replace(",", ""))
        key = _RECURSION_LEVEL.sub("", match.group(2).rsplit(":", 1)[-1])
        costs[key] = max(costs.get(key, 0), cost) if inclusive else costs.get(key, 0) + cost
    return costs


def callgrind_per_request(
    server_argv: Sequence[str],
    *,
    port: int,
    request: bytes,
    check: Callable[[HTTPResponse], None],
    warmup: int,
    requests: int,
    out_base: str,
    env: dict[str, str] | None = None,
) -> tuple[float, str]:
    """Instructions a server executes per request, counted by callgrind.

    Starts *server_argv* (a single-threaded event-loop server on 127.0.0.1:
    *port*) under ``valgrind --tool=callgrind``, instrumentation off until
    the port accepts connections; sends *warmup* requests, zeroes, sends
    *requests* more and dumps (``callgrind_control -i on``, ``-z``, ``-d``),
    one request at a time on one keep-alive connection, each once the server
    is idle (:func:`wait_until_idle`); *check* sees every response. Writes
    ``{out_base}.callgrind*`` and ``.stderr``; returns (total ``Ir`` / *requests*, dump path).
    """
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # start-up (imports) at full speed
        "--dump-instr=no",
        f"--callgrind-out-file={out_base}.callgrind",
        *server_argv,
    ]
    with open(f"{out_base}.stderr", "wb") as stderr:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    client: KeepAliveClient | None = None

    def control(*option: str) -> None:
        wait_until_idle(proc.pid)
        argv = ["callgrind_control", *option, str(proc.pid)]
        subprocess.run(argv, check=True, capture_output=True)

    def send(count: int) -> None:
        assert client is not None
        for _ in range(count):
            wait_until_idle(proc.pid)
            check(client.request(request))

    try:
        wait_for_port(port, timeout=300)
        control("-i", "on")
        client = KeepAliveClient(port)
        send(warmup)
        control("-z")
        send(requests)
        control("-d")
    except BaseException:
        with open(f"{out_base}.stderr", encoding="utf-8", errors="replace") as err:
            print(f"--- {out_base}.stderr:\n{err.read()[-3000:]}", file=sys.stderr)
        raise
    finally:
        if client is not None:
            client.close()
        stop_processes([proc])
    dump = f"{out_base}.callgrind.1"
    return callgrind_total(dump) / requests, dump


def print_callgrind_functions(
    dumps: dict[str, str], pair: tuple[str, str], top: int, requests: int
) -> None:
    """Print the top *top* functions of the dumps of *pair* (labels in *dumps*).

    By exclusive and by inclusive cost per request (divided by *requests*),
    then the functions the first of the pair spends more and less in than
    the second. A label missing from *dumps* is reported and skipped.
    """
    costs: dict[str, dict[str, dict[str, int]]] = {}
    for name in pair:
        if name not in dumps:
            print(f"\n--functions: variant {name} was not run")
            continue
        costs[name] = {
            kind: callgrind_functions(dumps[name], inclusive=kind == "inclusive")
            for kind in ("exclusive", "inclusive")
        }
        for kind, by_function in costs[name].items():
            print(f"\n{name}: top {top} functions by {kind} instructions per request")
            for function, cost in sorted(by_function.items(), key=lambda kv: -kv[1])[:top]:
                print(f"  {cost / requests:12,.0f}  {function}")
    if len(costs) < 2:
        return
    first, second = pair
    totals = {name: callgrind_total(dumps[name]) for name in pair}
    for kind in ("exclusive", "inclusive"):
        a, b = costs[first][kind], costs[second][kind]
        functions = a.keys() | b.keys()
        note = f" (all functions: {(totals[first] - totals[second]) / requests:+,.0f})"
        if kind == "inclusive":
            # The interpreter's dispatch frames (eval loop, calls, the task
            # step) include nearly everything; leave them out of this diff.
            limit = min(totals.values()) / 4
            functions = {f for f in functions if max(a.get(f, 0), b.get(f, 0)) < limit}
            note = " (functions below a quarter of the total)"
        diff = {f: a.get(f, 0) - b.get(f, 0) for f in functions}
        ranked = sorted(diff.items(), key=lambda kv: (-kv[1], kv[0]))
        print(
            f"\n{first} - {second}, {kind} instructions per request{note}: {first} spends more in"
        )
        for function, cost in ranked[:top]:
            in_a, in_b = a.get(function, 0) / requests, b.get(function, 0) / requests
            where = f"({first} {in_a:,.0f}, {second} {in_b:,.0f})"
            print(f"  {cost / requests:+10,.0f}  {function}  {where}")
        print("  and less in")
        for function, cost in ranked[::-1][: max(3, top // 3)]:
            print(f"  {cost / requests:+10,.0f}  {function}")
