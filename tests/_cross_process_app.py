"""The app that tests/test_cross_process.py runs in two real server processes.

``python -m tests._cross_process_app PORT`` serves it on ``127.0.0.1:PORT``
with :func:`tornado_kit.serve`; both processes share the Redis at
``$TK_TEST_REDIS_URL`` through a :class:`~tornado_kit.RedisBroker` and a
:class:`~tornado_kit.RedisEventLog`, built by the factory inside the serving
process.

Routes:

``/chat/<room>``
    WebSocket. Sends ``{"type": "joined", "pid": ...}`` once the room's broker
    subscription is active; every JSON message ``{"text": ...}`` is broadcast to
    the room (in every process) as ``{"type": "chat", "text": ..., "pid": ...}``.
``/events/<topic>``
    SSE: ``stream_topic(topic, log=...)`` (replay after ``Last-Event-ID``, then live).
``POST /append/<topic>``
    Appends the body to the event log; answers ``{"id": ..., "data": ..., "pid": ...}``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import (
    BroadcastMixin,
    JSONMessageMixin,
    RedisBroker,
    RedisEventLog,
    SSEMixin,
    serve,
)


class ChatHandler(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    room = ""

    async def open(self, room: str) -> None:
        self.room = room
        await self.join(room)
        await self.write_message({"type": "joined", "pid": os.getpid()})

    async def on_json(self, data: dict[str, Any]) -> None:
        message = {"type": "chat", "text": data.get("text"), "pid": os.getpid()}
        await self.broadcast(self.room, message)


class EventsHandler(SSEMixin, RequestHandler):
    async def get(self, topic: str) -> None:
        await self.stream_topic(topic, log=self.settings["event_log"])


class AppendHandler(RequestHandler):
    async def post(self, topic: str) -> None:
        log: RedisEventLog = self.settings["event_log"]
        event = await log.append(topic, self.request.body.decode("utf-8"))
        self.write({"id": event.id, "data": event.data, "pid": os.getpid()})


def make_app() -> Application:
    broker = RedisBroker(os.environ["TK_TEST_REDIS_URL"], timeout=2.0)
    log = RedisEventLog(broker=broker, maxlen=1000)
    return Application(
        [
            (r"/chat/([^/]+)", ChatHandler),
            (r"/events/([^/]+)", EventsHandler),
            (r"/append/([^/]+)", AppendHandler),
        ],
        broker=broker,
        event_log=log,
    )


async def close_resources(app: Application) -> None:
    await app.settings["event_log"].close()
    await app.settings["broker"].close()


if __name__ == "__main__":
    serve(
        make_app,
        port=int(sys.argv[1]),
        address="127.0.0.1",
        shutdown_timeout=3.0,
        on_shutdown=close_resources,
    )
