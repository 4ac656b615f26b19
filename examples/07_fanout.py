"""Fan out to several upstreams with one deadline and partial results.

Run it::

    python examples/07_fanout.py --port 8888

It starts three toy upstreams on the same event loop (a fast profile service,
an orders service that is too slow, and a "stats" service that answers with an
HTML error page) and an aggregator in front of them. Then::

    curl -s localhost:8888/dashboard/alice | python -m json.tool

answers within the 0.5 s deadline with the profile, and says for the other two
what went wrong instead of failing the whole page::

    {"user": "alice",
     "profile": {"name": "Alice", ...},
     "unavailable": {"orders": "overall timeout (0.5 s) reached",
                     "stats": "upstream returned non-JSON (text/html)"}}
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from tornado_kit import JSONErrorMixin, NotFoundHandler, fetch_all, shutdown, upstream_client


class ProfileHandler(RequestHandler):
    def get(self, user: str) -> None:
        self.write({"name": user.title(), "plan": "pro"})


class OrdersHandler(RequestHandler):
    async def get(self, user: str) -> None:
        await asyncio.sleep(3)  # far too slow for the aggregator's deadline
        self.write({"orders": []})


class StatsHandler(RequestHandler):
    def get(self, user: str) -> None:
        self.set_status(200)
        self.set_header("Content-Type", "text/html")
        self.write("<html><body>maintenance</body></html>")


class DashboardHandler(JSONErrorMixin, RequestHandler):
    def initialize(self, upstream: str) -> None:
        self.upstream = upstream

    async def get(self, user: str) -> None:
        results = await fetch_all(
            {
                "profile": f"{self.upstream}/profile/{user}",
                "orders": f"{self.upstream}/orders/{user}",
                "stats": f"{self.upstream}/stats/{user}",
            },
            timeout=0.5,
            client=upstream_client(self.application),
        )
        body: dict[str, Any] = {"user": user, "unavailable": {}}
        for name, result in results.items():
            if result.ok:
                body[name] = result.json
            else:
                logging.warning("upstream %s failed: %s", name, result.error)
                body["unavailable"][name] = result.error
        self.write(body)


def make_upstreams() -> Application:
    return Application(
        [
            (r"/profile/(\w+)", ProfileHandler),
            (r"/orders/(\w+)", OrdersHandler),
            (r"/stats/(\w+)", StatsHandler),
        ]
    )


def make_app(upstream: str, **settings: Any) -> Application:
    settings.setdefault("upstream_max_clients", 20)
    return Application(
        [(r"/dashboard/(\w+)", DashboardHandler, {"upstream": upstream})],
        default_handler_class=NotFoundHandler,
        **settings,
    )


async def main(port: int, address: str) -> None:
    sockets = bind_sockets(0, "127.0.0.1")
    upstreams = HTTPServer(make_upstreams())
    upstreams.add_sockets(sockets)
    upstream_port = sockets[0].getsockname()[1]
    app = make_app(f"http://127.0.0.1:{upstream_port}")
    server = app.listen(port, address=address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.info("listening on http://%s:%d", address or "localhost", port)
    await stop.wait()
    server.stop()
    upstreams.stop()
    await shutdown(app, timeout=5)  # closes the shared upstream client
    await upstreams.close_all_connections()


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__)
    asyncio.run(main(args.port, args.address))
