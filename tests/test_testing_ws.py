"""tornado_kit.testing.ws_connect and the ws_connect fixture."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from tornado.httpclient import HTTPClientError
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClientConnection, WebSocketError, WebSocketHandler

from tornado_kit.testing import ws_connect


class Echo(WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    def on_message(self, message: str | bytes) -> None:
        header = self.request.headers.get("X-Test", "")
        text = message if isinstance(message, str) else message.decode()
        self.write_message(f"{header}:{text}")


class Refuse(WebSocketHandler):
    def prepare(self) -> None:
        self.send_error(401)


class Plain(RequestHandler):
    def get(self) -> None:
        self.write("not a websocket")


@pytest.fixture
def app() -> Application:
    return Application([("/echo", Echo), ("/refuse", Refuse), ("/plain", Plain)])


async def test_helper_accepts_http_urls_headers_and_subprotocols(base_url: str) -> None:
    conn = await ws_connect(
        base_url + "/echo?x=1", headers={"X-Test": "h"}, subprotocols=["chat.v2", "chat.v1"]
    )
    try:
        assert conn.selected_subprotocol == "chat.v2"
        await conn.write_message("hi")
        assert await conn.read_message() == "h:hi"
    finally:
        conn.close()
        assert await conn.read_message() is None


@pytest.mark.parametrize(("path", "code"), [("/refuse", 401), ("/nope", 404)])
async def test_refused_handshake_raises_with_the_status(
    base_url: str, path: str, code: int
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await ws_connect(base_url + path)
    assert info.value.code == code


async def test_non_websocket_response_raises(base_url: str) -> None:
    with pytest.raises(WebSocketError):
        await ws_connect(base_url + "/plain")


async def test_helper_times_out() -> None:
    # A listening socket that never answers the handshake.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(asyncio.TimeoutError):
            await ws_connect(f"ws://127.0.0.1:{port}/", timeout=0.3)


async def test_fixture_connects_relative_to_base_url(
    ws_connect: Callable[..., Awaitable[WebSocketClientConnection]],
) -> None:
    conn = await ws_connect("/echo", headers={"X-Test": "f"})
    await conn.write_message("a")
    assert await conn.read_message() == "f:a"
    # Left open on purpose: the fixture closes it (filterwarnings=error would
    # report an unclosed connection otherwise).
