"""Multi-process serving with a graceful shutdown you can watch.

Run it::

    python examples/08_serve.py --port 8888 --processes 2

Then, in another terminal::

    curl localhost:8888/                        # which worker answered
    curl -N localhost:8888/events &             # an SSE stream (stays open)
    curl -X POST -d 'hello' localhost:8888/news # published to that worker's streams
    curl 'localhost:8888/slow?seconds=5' &      # an in-flight request
    kill -TERM <the parent pid printed at start>

On SIGTERM (or Ctrl-C) each worker stops accepting, ends the SSE stream
cleanly (curl exits 0), closes WebSockets on ``/ws`` with code 1001, lets the
slow request finish (up to ``--shutdown-timeout``), and exits; the parent
exits 0 once every worker is gone. ``kill -9`` a worker and the parent starts
a new one.

The same app runs from the command line, without this file's ``main()``::

    python -m tornado_kit serve examples.08_serve:make_app --port 8888 --processes 2

(``08_serve`` is not a valid identifier but ``importlib`` accepts it.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import JSONBodyMixin, JSONErrorMixin, JSONMessageMixin, SSEMixin, broker_for, serve


class WhoHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write_json({"pid": os.getpid(), "parent": os.getppid()})


class SlowHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    async def get(self) -> None:
        seconds = min(float(self.get_argument("seconds", "5")), 60.0)
        await asyncio.sleep(seconds)
        self.write_json({"slept": seconds, "pid": os.getpid()})


class NewsHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    async def post(self) -> None:
        # The default LocalBroker is per process: a RedisBroker in the
        # "broker" setting would reach the streams of every worker.
        await broker_for(self.application).publish("news", self.request.body.decode())
        self.set_status(202)
        self.write_json({"published": True, "pid": os.getpid()})


class EventsHandler(SSEMixin, RequestHandler):
    async def get(self) -> None:
        await self.send_event({"pid": os.getpid()}, event="hello")
        await self.stream_topic("news")  # returns when the server shuts down


class EchoSocket(JSONMessageMixin, WebSocketHandler):
    def on_json(self, data: dict[str, Any]) -> None:
        self.write_message({"echo": data, "pid": os.getpid()})


def make_app() -> Application:
    """Runs in each worker after the fork (the broker is made there on first use)."""
    return Application(
        [
            (r"/", WhoHandler),
            (r"/slow", SlowHandler),
            (r"/news", NewsHandler),
            (r"/events", EventsHandler),
            (r"/ws", EchoSocket),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="tornado-kit serve() example")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--processes", type=int, default=2, help="0: one per CPU")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s"
    )
    logging.info("parent pid %d, http://localhost:%d/", os.getpid(), args.port)
    serve(
        make_app,
        port=args.port,
        processes=args.processes,
        shutdown_timeout=args.shutdown_timeout,
    )


if __name__ == "__main__":
    main()
