"""The HTTP mixins work in every order to the left of RequestHandler / WebSocketHandler.

Every permutation of TokenAuthMixin, JSONErrorMixin, TimingMixin and
JSONBodyMixin serves the same statuses, headers and bodies and emits exactly
one access record per request. Handlers that raise in ``prepare``,
``write_error`` or ``on_finish`` never turn bad input into a 500, never leak
an exception message and never leave an unhandled exception in the log.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any
from unittest.mock import ANY

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler, websocket_connect

from tornado_kit import (
    APIError,
    HeartbeatMixin,
    JSONBodyMixin,
    JSONErrorMixin,
    StaticTokenVerifier,
    TimingMixin,
    TokenAuthMixin,
)

MIXINS = (TokenAuthMixin, JSONErrorMixin, TimingMixin, JSONBodyMixin)
ORDERS = list(itertools.permutations(MIXINS))
SECRET = "leaky-internal-message"
TOKEN = "good-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
RID = "req-42"


def order_id(order: tuple[type, ...]) -> str:
    return "-".join(cls.__name__.replace("Mixin", "") for cls in order)


class Behaviour(RequestHandler):
    """The verb methods, shared by every composed handler (placed last)."""

    def get(self) -> None:
        if self.get_argument("crash", None):
            raise ValueError(SECRET)
        self.write_json({"sub": self.current_user["sub"]})  # type: ignore[attr-defined]

    def post(self) -> None:
        with self.timed("parse"):  # type: ignore[attr-defined]
            body = self.get_json_body()  # type: ignore[attr-defined]
        self.write_json({"echo": body}, status=201)  # type: ignore[attr-defined]


def compose(order: tuple[type, ...], name: str, **methods: Any) -> type[RequestHandler]:
    return type(name, (*order, Behaviour, RequestHandler), dict(methods))


async def _prepare_rejecting_bad_input(self: Any) -> None:
    result = super(type(self), self).prepare()
    if result is not None:
        await result
    if self.get_argument("limit", "1") != "1":
        raise APIError(400, "limit must be 1", argument="limit")
    if self.get_argument("bug", None):
        raise KeyError(SECRET)


def _raising_write_error(self: Any, status_code: int, **kwargs: Any) -> None:
    raise RuntimeError(SECRET)


def _raising_on_finish(self: Any) -> None:
    raise RuntimeError(SECRET)


def routes_for(order: tuple[type, ...]) -> list[Any]:
    prefix = "/" + order_id(order)
    return [
        (prefix + "/plain", compose(order, "Plain")),
        (prefix + "/prepare", compose(order, "Prepare", prepare=_prepare_rejecting_bad_input)),
        (prefix + "/write-error", compose(order, "WriteError", write_error=_raising_write_error)),
        (prefix + "/on-finish", compose(order, "OnFinish", on_finish=_raising_on_finish)),
    ]


class CountingError(APIError):
    """A 429 with ``Retry-After`` that counts how often its headers are applied."""

    def __init__(self, applied: list[str]) -> None:
        super().__init__(429, "slow down", headers={"Retry-After": "30"})
        self.applied = applied

    def apply_headers(self, handler: RequestHandler) -> None:
        self.applied.append(type(handler).__name__)
        super().apply_headers(handler)


def _raise_counting_error(self: Any) -> None:
    raise CountingError(self.settings["applied"])


#: Every order with JSONErrorMixin, and every order without it.
HEADER_ORDERS = ORDERS + list(itertools.permutations((TokenAuthMixin, TimingMixin, JSONBodyMixin)))
#: WebSocket handlers: the WebSocket mixins alone (no APIErrorHeadersMixin), and with others.
WS_HEADER_ORDERS: list[tuple[type, ...]] = [
    (HeartbeatMixin,),
    (JSONErrorMixin, HeartbeatMixin),
    (HeartbeatMixin, JSONErrorMixin),
    (TokenAuthMixin, HeartbeatMixin),
    (HeartbeatMixin, TimingMixin),
]


def header_routes_for(order: tuple[type, ...]) -> list[Any]:
    prefix = "/headers/" + order_id(order)
    return [
        (prefix + "/raise", compose(order, "Raise", get=_raise_counting_error)),
        (
            prefix + "/raise-write-error",
            compose(
                order,
                "RaiseWriteError",
                get=_raise_counting_error,
                write_error=_raising_write_error,
            ),
        ),
    ]


@pytest.fixture
def app() -> Application:
    routes = [route for order in ORDERS for route in routes_for(order)]
    routes += [route for order in HEADER_ORDERS for route in header_routes_for(order)]
    for order in WS_HEADER_ORDERS:
        socket = type("RaiseSocket", (*order, WebSocketHandler), {"prepare": _raise_counting_error})
        routes.append(("/headers/ws/" + order_id(order), socket))
    ws_orders = itertools.permutations((TokenAuthMixin, JSONErrorMixin, TimingMixin))
    for order in ws_orders:
        routes.append(("/ws/" + order_id(order), type("Socket", (*order, EchoSocket), {})))
    verifier = StaticTokenVerifier({TOKEN: {"sub": "alice", "scopes": []}})
    return Application(routes, token_verifier=verifier, applied=[])


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


async def call(client: AsyncHTTPClient, url: str, method: str = "GET", **kw: Any) -> HTTPResponse:
    headers = {"X-Request-ID": RID, **kw.pop("headers", {})}
    if method in ("POST", "PUT") and "body" not in kw:
        kw["body"] = b""
    return await client.fetch(url, method=method, headers=headers, raise_error=False, **kw)


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.access for r in caplog.records if r.name == "tornado_kit.access"]  # type: ignore[attr-defined]


def unhandled(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("tornado.")
    ]


def problem(response: HTTPResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    assert SECRET.encode() not in response.body
    value: dict[str, Any] = json.loads(response.body)
    return value


# Expected (status, problem body or JSON body) per scenario, identical in every order.
SCENARIOS: list[tuple[str, str, dict[str, Any], int, dict[str, Any] | None]] = [
    ("missing token", "GET", {}, 401, {"title": "Unauthorized", "status": 401, "detail": ANY}),
    (
        "invalid token",
        "GET",
        {"headers": {"Authorization": "Bearer nope"}},
        401,
        {"title": "Unauthorized", "status": 401, "detail": ANY, "error": "invalid_token"},
    ),
    ("ok", "GET", {"headers": AUTH}, 200, None),
    (
        "json body",
        "POST",
        {"headers": {**AUTH, **JSON}, "body": b'{"a": 1}'},
        201,
        None,
    ),
    (
        "malformed json",
        "POST",
        {"headers": {**AUTH, **JSON}, "body": b'{"a": '},
        400,
        {"title": "Bad Request", "status": 400, "detail": "the request body is not valid JSON"},
    ),
    (
        "wrong content type",
        "POST",
        {"headers": {**AUTH, "Content-Type": "text/plain"}, "body": b"{}"},
        415,
        {
            "title": "Unsupported Media Type",
            "status": 415,
            "detail": "the request body must be application/json",
        },
    ),
    (
        "no such method",
        "PUT",
        {"headers": AUTH},
        405,
        {"title": "Method Not Allowed", "status": 405},
    ),
    (
        "crash",
        "GET",
        {"headers": AUTH, "query": "crash=1"},
        500,
        {"title": "Internal Server Error", "status": 500, "detail": "internal server error"},
    ),
]


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
async def test_every_order_behaves_the_same(
    order: tuple[type, ...],
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = base_url + "/" + order_id(order) + "/plain"
    for name, method, kw, status, expected in SCENARIOS:
        caplog.clear()
        kw = dict(kw)
        query = kw.pop("query", None)
        response = await call(http_client, url + (f"?{query}" if query else ""), method, **kw)
        assert response.code == status, name
        assert response.headers["X-Request-ID"] == RID, name
        records = access_records(caplog)
        assert len(records) == 1, (name, records)
        assert records[0]["status"] == status
        assert records[0]["request_id"] == RID
        if expected is None:
            assert "total" in response.headers["Server-Timing"]
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert records[0]["user"] == "alice"
            body = json.loads(response.body)
            assert body == ({"sub": "alice"} if method == "GET" else {"echo": {"a": 1}}), name
            continue
        body = problem(response)
        assert body == {
            "type": "about:blank",
            "instance": "/" + order_id(order) + "/plain",
            "request_id": RID,
            **expected,
        }, name
        if status == 401:
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="api"'), name
            assert ("invalid_token" in challenge) == (name == "invalid token")
        if status == 405:
            assert response.headers["Allow"] == "GET, POST"
        if status < 500:
            assert unhandled(caplog) == [], name


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
async def test_raising_in_prepare_write_error_and_on_finish(
    order: tuple[type, ...],
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = base_url + "/" + order_id(order)

    # bad input rejected in a user prepare(): a 400 problem, nothing unhandled
    response = await call(http_client, prefix + "/prepare?limit=5", headers=AUTH)
    assert response.code == 400
    assert problem(response)["argument"] == "limit"
    assert unhandled(caplog) == []

    # auth still runs first in a user prepare() that calls super()
    caplog.clear()
    response = await call(http_client, prefix + "/prepare?limit=5")
    assert response.code == 401
    assert "WWW-Authenticate" in response.headers

    # a bug in prepare: 500, message not leaked, logged once with its traceback
    caplog.clear()
    response = await call(http_client, prefix + "/prepare?bug=1", headers=AUTH)
    assert response.code == 500
    assert problem(response)["detail"] == "internal server error"
    assert len(access_records(caplog)) == 1
    bugs = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert len(bugs) == 1

    # write_error override raising: minimal problem, status and challenge kept
    caplog.clear()
    response = await call(http_client, prefix + "/write-error")
    assert response.code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["X-Request-ID"] == RID
    assert problem(response) == {"type": "about:blank", "title": "Unauthorized", "status": 401}
    assert unhandled(caplog) == []
    assert len(access_records(caplog)) == 1

    # on_finish raising: the response is intact, one record, nothing unhandled
    caplog.clear()
    response = await call(http_client, prefix + "/on-finish", headers=AUTH)
    assert response.code == 200
    assert json.loads(response.body) == {"sub": "alice"}
    assert unhandled(caplog) == []
    assert len(access_records(caplog)) == 1
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["tornado_kit.timing"]


@pytest.mark.parametrize("order", HEADER_ORDERS, ids=order_id)
async def test_api_error_headers_are_applied_once_in_every_order(
    order: tuple[type, ...], app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    prefix = base_url + "/headers/" + order_id(order)
    for path, name in (("/raise", "Raise"), ("/raise-write-error", "RaiseWriteError")):
        app.settings["applied"].clear()
        response = await call(http_client, prefix + path, headers=AUTH)
        assert response.code == 429, path
        assert response.headers["Retry-After"] == "30", path
        assert app.settings["applied"] == [name], path
        if JSONErrorMixin in order:
            body = json.loads(response.body)
            expected = {"status": 429, "detail": "slow down"}
            if path == "/raise-write-error":  # the minimal document
                expected = {"status": 429}
            assert {key: body[key] for key in expected} == expected, path


@pytest.mark.parametrize("order", WS_HEADER_ORDERS, ids=order_id)
async def test_api_error_headers_are_applied_once_on_a_refused_handshake(
    order: tuple[type, ...], app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    app.settings["applied"].clear()
    response = await call(http_client, base_url + "/headers/ws/" + order_id(order), headers=AUTH)
    assert response.code == 429
    assert response.headers["Retry-After"] == "30"
    assert app.settings["applied"] == ["RaiseSocket"]
    assert json.loads(response.body)["detail"] == "slow down"


class EchoSocket(WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(f"{self.current_user['sub']}:{message}")


WS_ORDERS = list(itertools.permutations((TokenAuthMixin, JSONErrorMixin, TimingMixin)))


@pytest.mark.parametrize("order", WS_ORDERS, ids=order_id)
async def test_auth_on_websocket_in_every_order(
    order: tuple[type, ...],
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ws_url = base_url.replace("http", "ws") + "/ws/" + order_id(order)

    # refused handshake: a 401 problem with the challenge and the request id
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url, connect_timeout=10)
    refused = info.value.response
    assert refused is not None
    assert info.value.code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert refused.headers["X-Request-ID"]
    assert problem(refused)["request_id"] == refused.headers["X-Request-ID"]
    records = access_records(caplog)
    assert [r["status"] for r in records] == [401]

    # token in the query (browsers cannot set headers): accepted, logged at close
    caplog.clear()
    conn = await websocket_connect(ws_url + f"?access_token={TOKEN}", connect_timeout=10)
    try:
        await conn.write_message("hi")
        assert await conn.read_message() == "alice:hi"
    finally:
        conn.close(1000)
    for _ in range(500):
        if access_records(caplog):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    records = access_records(caplog)
    assert len(records) == 1
    assert records[0]["status"] == 101
    assert records[0]["user"] == "alice"
    assert TOKEN not in caplog.text
    assert unhandled(caplog) == []
