"""A user's test module: the tornado-kit plugin serves the app on a real port."""

import json

import pytest
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import JSONErrorMixin, JSONMessageMixin, SSEMixin

pytest_plugins = ["tornado_kit.testing"]


class Hello(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world"})


class Echo(JSONMessageMixin, WebSocketHandler):
    def on_json(self, data: dict[str, object]) -> None:
        self.write_message({"echo": data})


class Clock(SSEMixin, RequestHandler):
    async def get(self) -> None:
        for tick in range(3):
            await self.send_event({"tick": tick}, id=str(tick))


@pytest.fixture
def app() -> Application:
    return Application([("/hello", Hello), ("/echo", Echo), ("/clock", Clock)])


async def test_http(base_url, http_client) -> None:
    response = await http_client.fetch(base_url + "/hello")
    assert json.loads(response.body) == {"hello": "world"}


async def test_not_found_is_problem_json(base_url, http_client) -> None:
    response = await http_client.fetch(base_url + "/nope", raise_error=False)
    assert response.code == 404


async def test_websocket(ws_connect) -> None:
    conn = await ws_connect("/echo")
    await conn.write_message(json.dumps({"text": "hi"}))
    assert json.loads(await conn.read_message()) == {"echo": {"text": "hi"}}


async def test_sse(sse) -> None:
    events = await sse("/clock", count=3, timeout=5)
    assert [e.id for e in events] == ["0", "1", "2"]
    assert json.loads(events[2].data) == {"tick": 2}
