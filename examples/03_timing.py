"""Request ids, Server-Timing spans, a JSON-lines access log and Prometheus metrics.

Run it::

    python examples/03_timing.py --port 8888

Then::

    curl -i localhost:8888/users/7                 # Server-Timing: total;dur=..., db;dur=...
    curl -i -H 'X-Request-ID: trace-42' 'localhost:8888/users/7?api_key=hidden'
    curl -i localhost:8888/users/0                 # 404, still has X-Request-ID
    curl localhost:8888/metrics                    # Prometheus text format

Every request writes one JSON line to stdout (the ``api_key`` value shows as
``REDACTED``)::

    {"time":"...","level":"INFO","logger":"tornado_kit.access","message":"200 GET ...",
     "method":"GET","path":"/users/7","status":200,"duration_ms":11.9,
     "request_id":"trace-42","user":null,"bytes":27,...,"spans":{"db":10.6,"render":0.01}}
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from tornado.web import Application, RequestHandler

from tornado_kit import (
    APIError,
    JSONBodyMixin,
    JSONErrorMixin,
    JSONLinesFormatter,
    MetricsHandler,
    NotFoundHandler,
    PrometheusMetrics,
    TimingMixin,
    serve,
)


class UserHandler(JSONErrorMixin, TimingMixin, JSONBodyMixin, RequestHandler):
    async def get(self, user_id: str) -> None:
        with self.timed("db"):
            await asyncio.sleep(0.01)  # stands in for a database query
            user = {"id": int(user_id), "name": f"user-{user_id}"} if user_id != "0" else None
        if user is None:
            raise APIError(404, "no such user")
        with self.timed("render"):
            self.write_json(user)


class NotFound(TimingMixin, NotFoundHandler):
    """Unmatched routes get a request id and an access record too."""


def setup_access_log(stream: Any = sys.stdout) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONLinesFormatter())
    access = logging.getLogger("tornado_kit.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False  # no second copy through the root logger
    return handler


def make_app(**settings: Any) -> Application:
    settings.setdefault("metrics", PrometheusMetrics())
    return Application(
        [
            (r"/users/([0-9]+)", UserHandler),
            (r"/metrics", MetricsHandler),
        ],
        default_handler_class=NotFound,
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__, log_level=logging.WARNING)  # stdout: access lines only
    setup_access_log()
    print(f"listening on http://{args.address}:{args.port}/", file=sys.stderr, flush=True)
    serve(make_app, port=args.port, address=args.address)  # until SIGTERM or Ctrl-C
