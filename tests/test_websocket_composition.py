"""The WebSocket mixins compose with TokenAuthMixin and TimingMixin in any order.

Each parametrised case builds one handler from an order of the six mixins
and drives it through a real server: refused token (401) and origin (403) at
the handshake, JSON decoding and its error message, a room broadcast with and
without ``exclude_self``, heartbeat latency, one access record when the
connection closes, and empty registries afterwards.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from tests._servers import eventually
from tests.test_websocket import Connect, read_json, ws_state
from tornado_kit import (
    AllowedOriginsMixin,
    BroadcastMixin,
    HeartbeatMixin,
    JSONMessageMixin,
    StaticTokenVerifier,
    TimingMixin,
    TokenAuthMixin,
)
from tornado_kit._json import dumps_str
from tornado_kit._lifecycle import state_for

MIXINS = (
    AllowedOriginsMixin,
    HeartbeatMixin,
    JSONMessageMixin,
    BroadcastMixin,
    TokenAuthMixin,
    TimingMixin,
)
# 720 orders; every 24th keeps the run short while every mixin still takes
# every position (first, last and in between) in some case.
ORDERS = list(itertools.permutations(MIXINS))[::24]
TOKEN = "ws-token"
GOOD_ORIGIN = {"Origin": "https://ok.example"}


def order_id(order: tuple[type, ...]) -> str:
    return "-".join(cls.__name__.replace("Mixin", "") for cls in order)


def _open(self: Any) -> None:
    self.opened_user = self.current_user["sub"]
    self.join("room")


async def _on_json(self: Any, data: dict[str, Any]) -> None:
    await self.broadcast(
        "room", {"from": self.opened_user, **data}, exclude_self=data.get("exclude", True)
    )


# The user's handler code and knobs go on the composed class itself, as in
# ``class Chat(<mixins>, WebSocketHandler): ...``: on a base placed after the
# mixins, their own defaults (``None`` knobs, ``on_json``) would hide them.
BODY = {
    "open": _open,
    "on_json": _on_json,
    "allowed_origins": ("https://ok.example",),
    "heartbeat_interval": 0.05,
    "heartbeat_timeout": 2.0,
}


def compose(order: tuple[type, ...]) -> type[WebSocketHandler]:
    return type("Composed_" + order_id(order), (*order, WebSocketHandler), dict(BODY))


@pytest.fixture(params=ORDERS, ids=order_id)
def app(request: pytest.FixtureRequest) -> Application:
    handler = compose(request.param)
    return Application(
        [("/ws", handler)],
        token_verifier=StaticTokenVerifier({TOKEN: {"sub": "alice"}}),
    )


async def test_every_order_behaves_the_same(
    app: Application, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_kit.access")
    url = f"/ws?access_token={TOKEN}"

    with pytest.raises(HTTPClientError) as info:
        await ws_connect("/ws", headers=GOOD_ORIGIN)  # no token
    assert info.value.code == 401
    with pytest.raises(HTTPClientError) as info:
        await ws_connect(url, headers={"Origin": "https://evil.example"})
    assert info.value.code == 403
    assert not state_for(app).connections  # refused handshakes are never registered

    a = await ws_connect(url, headers=GOOD_ORIGIN)
    b = await ws_connect(url, headers=GOOD_ORIGIN)
    await eventually(lambda: len(ws_state(app).rooms.get("room", ())) == 2)
    await a.write_message(dumps_str({"n": 1}))
    assert await read_json(b) == {"from": "alice", "n": 1}  # a excluded itself
    await a.write_message(dumps_str({"n": 2, "exclude": False}))
    assert await read_json(a) == {"from": "alice", "n": 2, "exclude": False}
    assert await read_json(b) == {"from": "alice", "n": 2, "exclude": False}
    await b.write_message("not json")
    assert await read_json(b) == {"error": {"status": 400, "detail": "message is not valid JSON"}}

    handlers = list(state_for(app).connections)
    await eventually(lambda: all(h.latency is not None for h in handlers))

    caplog.clear()
    a.close(1000)
    b.close(1000)
    await eventually(lambda: not state_for(app).connections)
    await eventually(
        lambda: len([r for r in caplog.records if r.name == "tornado_kit.access"]) == 2
    )
    records = [r.access for r in caplog.records if r.name == "tornado_kit.access"]  # type: ignore[attr-defined]
    assert [r["status"] for r in records] == [101, 101]
    assert [r["user"] for r in records] == ["alice", "alice"]
    assert TOKEN not in caplog.text
    ws = ws_state(app)
    assert not ws.rooms
    assert not ws.members
    assert not any(hb.conns or hb.running for hb in ws.heartbeats.values())
