"""App factories that tests/test_server.py serves in real subprocesses.

``python -m tornado_kit serve tests._serve_app:make_app --port N`` imports this
module in the supervisor, but the factories run only in the serving processes.
Handlers leave marker files in ``$SERVE_TEST_DIR`` so that the tests can wait
for "the slow request has started" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler

from tornado_kit._lifecycle import PHASE_RESOURCES, state_for

NOT_CALLABLE = 42


def _mark(name: str, text: str = "") -> None:
    directory = os.environ.get("SERVE_TEST_DIR")
    if directory:
        with open(Path(directory) / name, "a") as f:
            f.write(text + "\n")


def _record_factory_call() -> int:
    _mark("factory_calls", str(os.getpid()))
    return os.getpid()


class PidHandler(RequestHandler):
    def get(self) -> None:
        self.write(
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "factory_pid": self.settings["factory_pid"],
                "remote_ip": self.request.remote_ip,
                "protocol": self.request.protocol,
                "loop": type(asyncio.get_running_loop()).__module__,
            }
        )


class SlowHandler(RequestHandler):
    async def get(self) -> None:
        seconds = float(self.get_argument("seconds", "1"))
        tag = self.get_argument("tag", "slow")
        _mark(f"started-{tag}", str(os.getpid()))
        await asyncio.sleep(seconds)
        _mark("order", f"{os.getpid()}:finished-{tag}")
        self.write(f"done after {seconds}")


class BlockHandler(RequestHandler):
    """Blocks this process's event loop, so that the next connection is
    accepted by another worker."""

    def get(self) -> None:
        _mark("blocking", str(os.getpid()))
        time.sleep(float(self.get_argument("seconds", "1")))
        self.write(str(os.getpid()))


def _routes() -> list[tuple[str, type[RequestHandler]]]:
    return [(r"/pid", PidHandler), (r"/slow", SlowHandler), (r"/block", BlockHandler)]


def make_app() -> Application:
    """Plain HTTP app: /pid, /slow and /block.

    It registers a resource-phase shutdown callback (like a broker or an
    executor would) that leaves a marker, to show that serve() ran it.
    """
    app = Application(_routes(), factory_pid=_record_factory_call())
    state_for(app).on_shutdown(_release, PHASE_RESOURCES)
    return app


def _release() -> None:
    _mark("released", str(os.getpid()))
    _mark("order", f"{os.getpid()}:released")


def on_shutdown(app: Application) -> None:
    """serve(on_shutdown=...) hook: record that it ran, with the app it got."""
    _mark("on_shutdown", f"{os.getpid()}:{app.settings['factory_pid']}")


async def make_app_async() -> Application:
    """The same app from a coroutine factory (runs inside the worker's loop)."""
    asyncio.get_running_loop()
    return make_app()


def failing_app() -> Application:
    """A factory that cannot build its app (e.g. the database is unreachable)."""
    _record_factory_call()
    raise RuntimeError("database unreachable at startup")


def config_missing_app() -> Application:
    """A factory that fails with an OSError that has nothing to do with binding."""
    raise FileNotFoundError(2, "No such file or directory", "/etc/no-such-app.toml")


def not_an_app() -> object:
    return {"not": "an app"}


def crashing_app() -> Application:
    """Serves, then the process dies with status 7 shortly after start."""
    app = make_app()
    IOLoop.current().call_later(0.3, os._exit, 7)
    return app


def make_full_app() -> Application:
    """HTTP routes plus a WebSocket and an SSE stream built on tornado-kit mixins."""
    from tornado.websocket import WebSocketHandler

    from tornado_kit import JSONMessageMixin, SSEMixin

    class EchoSocket(JSONMessageMixin, WebSocketHandler):
        def open(self) -> None:
            _mark("ws-open", str(os.getpid()))
            self.write_message({"hello": os.getpid()})

        def on_json(self, data: object) -> None:
            self.write_message({"echo": data})

    class Feed(SSEMixin, RequestHandler):
        async def get(self) -> None:
            await self.send_event("ready", event="status")
            _mark("sse-open", str(os.getpid()))
            await self.stream_topic("feed")

    routes: list[tuple[str, type]] = [*_routes(), (r"/ws", EchoSocket), (r"/sse", Feed)]
    return Application(routes, factory_pid=_record_factory_call())
