"""One application that mixes tornado-kit handlers with plain Tornado ones.

tests/test_hostile_logs.py serves it in-process (testing plugin) and in a
``python -m tornado_kit serve tests._hostile_logs_app:make_app`` subprocess, and
checks that no secret query value reaches any log record. Several handlers
put the request URI into their own exception and ``HTTPError`` messages on
purpose: those messages reach Tornado's loggers too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado.web import Application, HTTPError, RequestHandler, StaticFileHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import (
    BroadcastMixin,
    HeartbeatMixin,
    JSONBodyMixin,
    JSONErrorMixin,
    JSONMessageMixin,
    MetricsHandler,
    PrometheusMetrics,
    TimingMixin,
    TokenAuthMixin,
)

#: A name added by the ``redact_query_arguments`` setting.
CUSTOM_NAME = "session_key"
#: Files served under ``/static/``: this directory (tests/).
STATIC_ROOT = Path(__file__).resolve().parent
#: Tokens the verifier refuses (401 ``invalid_token``); every other is accepted.
REFUSED_PREFIX = "bad"


def verify(token: str) -> dict[str, Any] | None:
    return None if token.startswith(REFUSED_PREFIX) else {"sub": "user"}


class AuthRaises(TokenAuthMixin, RequestHandler):
    """Authenticated, then an uncaught exception whose message holds the URI."""

    def get(self) -> None:
        raise RuntimeError(f"cannot serve {self.request.uri}")


class AuthOk(TokenAuthMixin, RequestHandler):
    def get(self) -> None:
        self.write("ok")


class PlainOk(RequestHandler):
    def get(self) -> None:
        self.write("ok")


class PlainRaises(RequestHandler):
    def get(self) -> None:
        raise ValueError(f"broken for {self.request.full_url()}")


class PlainHTTPError(RequestHandler):
    def get(self) -> None:
        raise HTTPError(403, "refused %s", self.request.uri)


class JSONBody(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        self.write_json({"got": self.get_json_body()})


class Timed(TimingMixin, RequestHandler):
    def get(self) -> None:
        self.write("ok")


class TimedRaises(TimingMixin, RequestHandler):
    def get(self) -> None:
        raise KeyError(self.request.uri)


class TimedOnFinishRaises(TimingMixin, RequestHandler):
    """tornado-kit logs this exception itself (on ``tornado_kit._timing``)."""

    def get(self) -> None:
        self.write("ok")

    def on_finish(self) -> None:
        raise RuntimeError(f"after {self.request.uri}")


class Heartbeat(HeartbeatMixin, WebSocketHandler):
    pass


class Room(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    def open(self) -> None:
        self.join("flood")

    async def on_json(self, data: dict[str, Any]) -> None:
        blob = "x" * int(data["size"])
        for _ in range(int(data["count"])):
            await self.broadcast("flood", blob)
        self.write_message({"flooded": True})


def make_app(**settings: Any) -> Application:
    settings = {
        "token_verifier": verify,
        "metrics": PrometheusMetrics(),
        "redact_query_arguments": [CUSTOM_NAME],
        "heartbeat_interval": 0.2,
        "heartbeat_timeout": 1.0,
        "max_pending_bytes": 64 * 1024,
        **settings,
    }
    return Application(
        [
            (r"/auth/raises", AuthRaises),
            (r"/auth/ok", AuthOk),
            (r"/plain/ok", PlainOk),
            (r"/plain/raises", PlainRaises),
            (r"/plain/http-error", PlainHTTPError),
            (r"/json", JSONBody),
            (r"/timed/ok", Timed),
            (r"/timed/raises", TimedRaises),
            (r"/timed/on-finish-raises", TimedOnFinishRaises),
            (r"/metrics", MetricsHandler),
            (r"/static/(.*)", StaticFileHandler, {"path": str(STATIC_ROOT)}),
            (r"/ws/heartbeat", Heartbeat),
            (r"/ws/room", Room),
        ],
        **settings,
    )
