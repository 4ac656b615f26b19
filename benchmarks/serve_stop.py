"""How long ``serve()`` takes from SIGTERM to exit, with a process pool that has run jobs.

Usage::

    .venv/bin/python benchmarks/serve_stop.py [--root CHECKOUT] [--processes 2] [--runs 10]

Starts ``python -m tornado_kit serve serve_stop:make_app`` from *CHECKOUT*
(default: this one; give a checkout of another revision to compare), runs a
few jobs on the app's process ``BoundedExecutor``, sends SIGTERM and times
the exit. Printed: the median, minimum and maximum over the runs, and how
many processes each run left behind (descendants still alive 2 s after the
exit; they are killed afterwards, resource trackers excepted, which then
exit by themselves).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tornado.web import Application, RequestHandler

from tornado_kit import BoundedExecutor, ExecutorMixin

HERE = Path(__file__).resolve().parent


def job() -> int:
    return os.getpid()


class JobHandler(ExecutorMixin, RequestHandler):
    async def get(self) -> None:
        self.write({"job": await self.run_in_executor(job)})


def make_app() -> Application:
    return Application([(r"/job", JobHandler)], executor=BoundedExecutor(1, kind="process"))


def run_jobs(port: int, count: int) -> None:
    deadline = time.monotonic() + 30
    done = 0
    while done < count:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/job")
            done += conn.getresponse().status == 200
            conn.close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def one_run(root: Path, processes: int) -> tuple[float, int]:
    import psutil

    sys.path.insert(0, str(HERE))
    from _common import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(HERE)])}
    argv = [sys.executable, "-m", "tornado_kit", "serve", "serve_stop:make_app", "--port"]
    argv += [str(port), "--address", "127.0.0.1", "--processes", str(processes)]
    argv += ["--log-level", "warning"]
    server = subprocess.Popen(argv, cwd=root, env=env, start_new_session=True)
    run_jobs(port, 8)
    time.sleep(0.3)
    tree = psutil.Process(server.pid).children(recursive=True)
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    elapsed = time.monotonic() - start
    time.sleep(2)
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in left:
        if "resource_tracker" not in " ".join(proc.cmdline()):
            proc.kill()
    return elapsed, len(left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="checkout to serve from")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results = [one_run(args.root, args.processes) for _ in range(args.runs)]
    times = [elapsed * 1000 for elapsed, _ in results]
    print(
        f"{args.root} processes={args.processes}: SIGTERM to exit median "
        f"{statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}, "
        f"n={args.runs}); processes left behind per run: {[n for _, n in results]}"
    )


if __name__ == "__main__":
    main()
