"""How much ``/metrics`` grows when clients send random HTTP methods.

The attack run against 0.1.0 sent 2,000 requests with random methods to an
unknown path of the reference app and watched ``/metrics`` grow from 77 KB to
4 MB: every method became a series. This script serves an app shaped like
the reference app's unknown route (``TimingMixin`` + ``NotFoundHandler``,
which answers any method) in-process on a loopback port, sends the nine
standard methods once and then *N* random RFC 9110 tokens, and prints the
size of the exposition and the number of request series before and after::

    python benchmarks/metrics_labels.py [--requests 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application

from tornado_kit import MetricsHandler, NotFoundHandler, PrometheusMetrics, TimingMixin

STANDARD = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits


class Missing(TimingMixin, NotFoundHandler):
    """404 for any path and method, observed into the metrics."""


def series_count(text: str) -> int:
    return sum(
        1
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("http_request_duration_seconds_count")
    )


async def main(requests: int, seed: int) -> None:
    app = Application(
        [("/metrics", MetricsHandler)], default_handler_class=Missing, metrics=PrometheusMetrics()
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(seed)

    async def send(method: str) -> None:
        await client.fetch(
            f"{base}/no/such/path",
            method=method,
            allow_nonstandard_methods=True,
            body=b"" if method in ("POST", "PUT", "PATCH") else None,
            raise_error=False,
        )

    async def scrape() -> str:
        return (await client.fetch(base + "/metrics")).body.decode()

    try:
        for method in STANDARD:
            await send(method)
        before = await scrape()
        for _ in range(requests):
            await send("".join(rng.choice(TCHAR) for _ in range(rng.randint(1, 24))))
        after = await scrape()
    finally:
        server.stop()
        await server.close_all_connections()
    print(
        f"after {len(STANDARD)} standard methods: {len(before):>9,} bytes, "
        f"{series_count(before):>5} request series"
    )
    print(
        f"after {requests:,} random methods more: {len(after):>9,} bytes, "
        f"{series_count(after):>5} request series"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.seed))
