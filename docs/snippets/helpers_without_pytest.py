"""The tornado-kit test helpers in a plain asyncio program: no pytest needed."""

import asyncio
import sys

from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import SSEMixin
from tornado_kit.testing import parse_sse, read_sse, ws_connect


class Ticks(SSEMixin, RequestHandler):
    async def get(self) -> None:
        for tick in range(3):
            await self.send_event(f"tick {tick}", id=str(tick))


class Echo(WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


async def main() -> None:
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/ticks", Ticks), ("/echo", Echo)]))
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{port}"

    events = await read_sse(base + "/ticks", count=3, timeout=5)
    assert [(e.id, e.data) for e in events] == [("0", "tick 0"), ("1", "tick 1"), ("2", "tick 2")]
    assert parse_sse("id: 7\ndata: a\n\n")[0].id == "7"

    conn = await ws_connect(base + "/echo")  # http:// becomes ws://
    await conn.write_message("hi")
    assert await conn.read_message() == "hi"
    conn.close()
    assert await conn.read_message() is None  # the server answered the close

    server.stop()
    await server.close_all_connections()


asyncio.run(main())
assert not {"pytest", "pytest_asyncio"} & set(sys.modules)  # never imported
print("helpers ok")
