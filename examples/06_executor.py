"""CPU-bound work in a bounded process pool: 503 + Retry-After instead of a growing queue.

Run it::

    python examples/06_executor.py --port 8888

Then::

    curl -i 'localhost:8888/checksum?rounds=50000'    # ~20 ms of pure-Python work
    curl -i 'localhost:8888/checksum?rounds=50000000' # longer than executor_timeout: 504
    curl -i localhost:8888/stats                      # running, queued, rejected
    curl -i localhost:8888/healthz                    # answers even while the pool is full
    # flood it: a few requests run, a few wait, the rest get 503 with Retry-After
    for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code}\\n' \\
        'localhost:8888/checksum?rounds=2000000' & done; wait

The job runs in worker processes, so it must be a module-level function: the
workers import this file to find it (that is also why the server starts under
``if __name__ == "__main__"``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tornado.web import Application, RequestHandler

from tornado_kit import (
    APIError,
    BoundedExecutor,
    ExecutorMixin,
    JSONErrorMixin,
    NotFoundHandler,
    TimingMixin,
    executor_for,
    serve,
)


def checksum(data: bytes, rounds: int) -> str:
    """Pure-Python CPU work: a chain of sha256 digests."""
    digest = data
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class ChecksumHandler(ExecutorMixin, JSONErrorMixin, TimingMixin, RequestHandler):
    executor_timeout = 2.0

    async def get(self) -> None:
        try:
            rounds = int(self.get_argument("rounds", "50000"))
        except ValueError:
            raise APIError(400, "rounds must be an integer") from None
        if not 0 < rounds <= 100_000_000:
            raise APIError(400, "rounds must be between 1 and 100000000")
        with self.timed("job"):
            digest = await self.run_in_executor(checksum, b"tornado-kit", rounds)
        self.write({"rounds": rounds, "sha256": digest})


class StatsHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write(executor_for(self.application).stats())


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.write("ok")


def make_app(**settings: Any) -> Application:
    settings.setdefault(
        "executor", BoundedExecutor(kind="process", max_workers=2, max_pending=2, name="checksum")
    )
    return Application(
        [
            (r"/checksum", ChecksumHandler),
            (r"/stats", StatsHandler),
            (r"/healthz", HealthHandler),
        ],
        default_handler_class=NotFoundHandler,
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__)
    # Until SIGTERM or Ctrl-C; then accepted jobs finish (up to 5 s) and the workers stop.
    serve(make_app, port=args.port, address=args.address, shutdown_timeout=5)
