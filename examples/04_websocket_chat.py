"""A chat over WebSocket: rooms, JSON messages, heartbeats and an origin allow-list.

Run it::

    python examples/04_websocket_chat.py --port 8888

Open http://localhost:8888/ in two browser tabs and chat. Or from a shell
(``pip install websockets``)::

    python -m websockets ws://localhost:8888/chat/lobby
    > {"text": "hello"}

What each mixin does here:

* ``AllowedOriginsMixin``: only pages from ``allowed_origins`` (and the
  server's own host) may open the socket; anything else gets a 403.
* ``HeartbeatMixin``: one timer pings every connection every 20 s and closes
  the ones that stop answering (code 1011); ``self.latency`` is shown to users.
* ``JSONMessageMixin``: each message is a JSON object handed to ``on_json``;
  bad input gets ``{"error": {...}}`` and the connection stays open.
* ``BroadcastMixin``: ``join``/``broadcast`` to a room, encoded once for all;
  with ``--redis redis://...`` rooms span every process sharing that Redis.
"""

from __future__ import annotations

import functools
from typing import Any

from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BroadcastMixin,
    HeartbeatMixin,
    JSONMessageMixin,
    serve,
)

PAGE = """<!doctype html>
<meta charset="utf-8"><title>tornado-kit chat</title>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<script>
  const log = document.getElementById("log");
  const ws = new WebSocket(`ws://${location.host}/chat/lobby`);
  ws.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    log.appendChild(item);
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    ws.send(JSON.stringify({text: input.value}));
    input.value = "";
  };
</script>
"""


class ChatHandler(
    AllowedOriginsMixin, HeartbeatMixin, JSONMessageMixin, BroadcastMixin, WebSocketHandler
):
    allowed_origins = ("https://chat.example.com", "https://*.example.com")

    def open(self, room: str) -> None:
        self.room = room
        self.name = f"guest-{id(self) % 10000}"
        self.join(room)
        self.write_message({"system": f"welcome to {room}, you are {self.name}"})

    async def on_json(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise APIError(400, 'send {"text": "..."}')
        if len(text) > 2000:
            raise APIError(413, "at most 2000 characters")
        await self.broadcast(
            self.room,
            {"from": self.name, "text": text, "latency_ms": _ms(self.latency)},
            exclude_self=False,
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class PageHandler(RequestHandler):
    def get(self) -> None:
        self.write(PAGE)


def make_app(redis_url: str | None = None, **settings: Any) -> Application:
    """The chat; with *redis_url* its rooms span every process sharing that Redis."""
    if redis_url:
        from tornado_kit import RedisBroker

        settings["broker"] = RedisBroker(redis_url)
    return Application(
        [(r"/", PageHandler), (r"/chat/(\w{1,32})", ChatHandler)],
        **settings,
    )


if __name__ == "__main__":
    from _run import parse_args  # examples/_run.py: --port, --address, logging

    args = parse_args(__doc__, redis="redis:// URL: share rooms between processes")
    # Until SIGTERM or Ctrl-C; then every socket is closed with 1001 (going away),
    # and the broker (the Redis connections) too: the settings' resources are closed
    # by tornado_kit.shutdown(), which serve() runs.
    serve(
        functools.partial(make_app, args.redis),
        port=args.port,
        address=args.address,
    )
