"""The app tests/test_hostile_json.py serves in a subprocess, with or without orjson.

``python -c BOOT PORT stdlib`` blocks orjson (``sys.modules["orjson"] = None``,
so ``import orjson`` raises ``ImportError``) *before* tornado_kit is imported:
the process runs the standard-library JSON path exactly as an installation
without the ``fast`` extra does. ``GET /backend`` says which path it runs.

Routes, shaped like the reference app's:

* ``POST /api/users``: a JSON body with an ``email``, stored in SQLite.
* ``/ws``: a chat room; ``{"text": ...}`` is broadcast to every member,
  ``{"shout": ...}`` makes the server broadcast a string that holds a lone
  surrogate (``"shout"`` plus U+D800) and report the refusal to the sender.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import BroadcastMixin, JSONBodyMixin, JSONErrorMixin, JSONMessageMixin
from tornado_kit._json import HAVE_ORJSON

BOOT = (
    "import sys\n"
    "if sys.argv[2] == 'stdlib':\n"
    "    sys.modules['orjson'] = None\n"
    "from tests._hostile_json_app import main\n"
    "main(int(sys.argv[1]))\n"
)


class Backend(RequestHandler):
    def get(self) -> None:
        self.write({"orjson": HAVE_ORJSON, "orjson_module": sys.modules.get("orjson") is not None})


class Users(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        body = self.get_json_body()
        db: sqlite3.Connection = self.settings["db"]
        cursor = db.execute("INSERT INTO users (email) VALUES (?)", (str(body["email"]),))
        self.write_json({"id": cursor.lastrowid, "email": body["email"]}, status=201)


class Chat(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    def open(self) -> None:
        self.join("room")

    async def on_json(self, data: dict[str, Any]) -> None:
        if "shout" in data:
            try:
                await self.broadcast("room", str(data["shout"]) + "\ud800")
            except ValueError as exc:
                self.write_message({"refused": str(exc)})
            return
        await self.broadcast("room", {"text": data.get("text")}, exclude_self=False)


def make_app() -> Application:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    return Application(
        [("/backend", Backend), ("/api/users", Users), ("/ws", Chat)],
        db=db,
    )


def main(port: int) -> None:
    async def serve() -> None:
        server = HTTPServer(make_app())
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()  # until SIGTERM ends the process

    asyncio.run(serve())
