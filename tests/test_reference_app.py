"""The reference app (examples/reference_app) through a real server: every route, every error.

The app is built by its own factory on a temporary SQLite file; requests go
over real sockets (the plugin's ``base_url`` / ``http_client``), WebSockets
and SSE through the plugin's ``ws_connect`` / ``sse`` fixtures, thumbnails
through the real process pool.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.iostream import StreamClosedError
from tornado.web import Application

from examples.reference_app import Config, close_app, make_app, server_options
from tests._refapp import MAX_IMAGE, SECRET, app_config, png_bytes, serving, threaded_refapp
from tests._servers import free_port


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return app_config(tmp_path)


@pytest_asyncio.fixture
async def app(config: Config) -> AsyncIterator[Application]:
    application = make_app(config)
    try:
        yield application
    finally:
        await close_app(application)


@pytest.fixture
def http_server_options(config: Config) -> dict[str, Any]:
    """The plugin's server gets the options ``__main__`` passes to ``serve()``."""
    return server_options(config)


class Client:
    """Small JSON helper over the plugin's real ``http_client``."""

    def __init__(self, http_client: AsyncHTTPClient, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> HTTPResponse:
        hdrs = dict(headers or {})
        if token == "default":
            token = self.token
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        return await self.http.fetch(
            self.base_url + path,
            method=method,
            body=data,
            headers=hdrs,
            raise_error=False,
            request_timeout=30,
        )

    async def sign_in(self, name: str) -> dict[str, Any]:
        response = await self.call("POST", "/api/token", {"name": name}, token=None)
        assert response.code in (200, 201), response.body
        data = json.loads(response.body)
        self.token = data["token"]
        return data


def problem(response: HTTPResponse, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem response with *status*; return its body."""
    assert response.code == status, (response.code, response.body)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = json.loads(response.body)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["instance"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest_asyncio.fixture
async def client(app: Application, http_client: AsyncHTTPClient, base_url: str) -> Client:
    # The aggregator's upstreams: this server, as __main__ configures it from its port.
    app.settings["self_url"] = base_url
    c = Client(http_client, base_url)
    await c.sign_in("alice")
    return c


# -- page, health, metrics, unknown routes ----------------------------------


async def test_index_page_and_static_files(client: Client) -> None:
    page = await client.call("GET", "/", token=None)
    assert page.code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b'id="signin-form"' in page.body
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = await client.call("GET", path, token=None)
        assert response.code == 200
        assert kind in response.headers["Content-Type"]


async def test_healthz_needs_no_token(client: Client) -> None:
    response = await client.call("GET", "/healthz", token=None)
    assert response.code == 200
    assert json.loads(response.body) == {"status": "ok"}
    assert response.headers["X-Request-ID"]


async def test_metrics_count_requests(client: Client) -> None:
    await client.call("GET", "/api/users")
    response = await client.call("GET", "/metrics", token=None)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    assert 'tornado_http_request_duration_seconds_count{handler="UsersHandler"' in text


async def test_unknown_route_and_method_are_problems(client: Client) -> None:
    problem(await client.call("GET", "/nope"), 404)
    problem(await client.call("PATCH", "/api/users"), 405)


async def test_database_is_in_wal_mode(client: Client, config: Config) -> None:
    with sqlite3.connect(config.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_instance_name_header(http_client: AsyncHTTPClient, tmp_path: Path) -> None:
    # X-Served-By is opt-in: off in the other tests, on here (deployments use it).
    config = Config(db_path=str(tmp_path / "x.db"), secret=SECRET, instance_name="b7")
    async with serving(config) as url:
        ok = await http_client.fetch(f"{url}/healthz")
        missing = await http_client.fetch(f"{url}/nope", raise_error=False)
    assert ok.headers["X-Served-By"] == "b7"
    assert missing.code == 404
    assert missing.headers["X-Served-By"] == "b7"


# -- token sign-in -----------------------------------------------------------


async def test_sign_in_creates_the_user_once(client: Client) -> None:
    first = await client.call("POST", "/api/token", {"name": "bob"}, token=None)
    again = await client.call("POST", "/api/token", {"name": " bob "}, token=None)
    assert (first.code, again.code) == (201, 200)
    one, two = json.loads(first.body), json.loads(again.body)
    assert one["user"]["id"] == two["user"]["id"]
    assert one["user"]["name"] == "bob"
    me = await client.call("GET", f"/api/users/{one['user']['id']}", token=two["token"])
    assert json.loads(me.body)["name"] == "bob"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"{}", "application/json", 400),
        (b'{"name": ""}', "application/json", 400),
        (b'{"name": 42}', "application/json", 400),
        (b'{"name": "x\\ny"}', "application/json", 400),
        (b'{"name": "' + b"a" * 33 + b'"}', "application/json", 400),
        (b'{"name": "-lead"}', "application/json", 400),
        (b'{"name": "ok", "admin": true}', "application/json", 400),
        (b'{"name": "ok"}', "text/plain", 415),
    ],
)
async def test_sign_in_bad_input(
    client: Client, body: bytes, content_type: str, status: int
) -> None:
    response = await client.call(
        "POST", "/api/token", raw=body, token=None, headers={"Content-Type": content_type}
    )
    problem(response, status)


async def test_sign_in_body_too_large(client: Client) -> None:
    big = json.dumps({"name": "a" * (2 * 1024 * 1024)}).encode()
    response = await client.call(
        "POST", "/api/token", raw=big, token=None, headers={"Content-Type": "application/json"}
    )
    problem(response, 413)


# -- auth on the API ---------------------------------------------------------


async def test_api_requires_a_token(client: Client) -> None:
    missing = await client.call("GET", "/api/users", token=None)
    problem(missing, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    forged = await client.call("GET", "/api/users", token="tk1.forged.token")
    problem(forged, 401)
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
    bad_header = await client.call(
        "GET", "/api/users", token=None, headers={"Authorization": "Bearer a b"}
    )
    problem(bad_header, 400)
    # A token signed with another secret (another deployment) is invalid here.
    from tornado_kit import SignedTokenVerifier

    other = SignedTokenVerifier("another-secret-0123456789abcdef", max_age=60).issue({"sub": "x"})
    problem(await client.call("GET", "/api/orders", token=other), 401)
    # The query argument works too (browsers' WebSocket / EventSource).
    ok = await client.call("GET", f"/api/users?access_token={client.token}", token=None)
    assert ok.code == 200


# -- users CRUD --------------------------------------------------------------


async def test_users_crud(client: Client) -> None:
    created = await client.call("POST", "/api/users", {"name": "carol", "email": "c@x.example"})
    assert created.code == 201
    user = json.loads(created.body)
    assert created.headers["Location"] == f"/api/users/{user['id']}"
    assert (user["name"], user["email"]) == ("carol", "c@x.example")

    fetched = json.loads((await client.call("GET", f"/api/users/{user['id']}")).body)
    assert fetched == user

    updated = await client.call("PUT", f"/api/users/{user['id']}", {"name": "carol2"})
    assert updated.code == 200
    body = json.loads(updated.body)
    assert (body["name"], body["email"]) == ("carol2", None)
    assert body["updated"] >= body["created"]

    deleted = await client.call("DELETE", f"/api/users/{user['id']}")
    assert deleted.code == 204
    assert deleted.body == b""
    problem(await client.call("GET", f"/api/users/{user['id']}"), 404)
    problem(await client.call("DELETE", f"/api/users/{user['id']}"), 404)
    problem(await client.call("PUT", f"/api/users/{user['id']}", {"name": "zed"}), 404)


async def test_users_conflicts(client: Client) -> None:
    body = problem(await client.call("POST", "/api/users", {"name": "alice"}), 409)
    assert body["name"] == "alice"
    dave = json.loads((await client.call("POST", "/api/users", {"name": "dave"})).body)
    problem(await client.call("PUT", f"/api/users/{dave['id']}", {"name": "alice"}), 409)
    # Nothing changed.
    again = json.loads((await client.call("GET", f"/api/users/{dave['id']}")).body)
    assert again["name"] == "dave"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": None},
        {"name": "ok", "email": "no-at-sign"},
        {"name": "ok", "email": "a@b@c"},
        {"name": "ok", "email": 7},
        {"name": "ok", "email": "a b@c.example"},
        {"name": "ok", "role": "admin"},
        {"name": ["list"]},
    ],
)
async def test_users_invalid_bodies(client: Client, body: dict[str, Any]) -> None:
    problem(await client.call("POST", "/api/users", body), 400)
    alice = json.loads((await client.call("GET", "/api/users?limit=1")).body)["items"][0]
    problem(await client.call("PUT", f"/api/users/{alice['id']}", body), 400)


async def test_users_ids_out_of_range_are_404(client: Client) -> None:
    problem(await client.call("GET", "/api/users/0"), 404)
    problem(await client.call("GET", "/api/users/" + "9" * 30), 404)
    problem(await client.call("DELETE", "/api/users/" + "9" * 30), 404)
    problem(await client.call("GET", "/api/users/abc"), 404)  # no route


async def test_users_pagination(client: Client) -> None:
    for i in range(6):
        assert (await client.call("POST", "/api/users", {"name": f"user{i}"})).code == 201
    seen: list[int] = []
    path: str | None = "/api/users?limit=4"
    pages = 0
    while path is not None:
        response = await client.call("GET", path)
        assert response.code == 200
        page = json.loads(response.body)
        seen.extend(u["id"] for u in page["items"])
        if page["next"] is not None:
            assert response.headers["Link"] == f'<{page["next"]}>; rel="next"'
        else:
            assert "Link" not in response.headers
        path = page["next"]
        pages += 1
    assert pages == 2
    assert len(seen) == 7  # alice + 6
    assert seen == sorted(seen)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "limit=", "after=-1", "after=1e3", "limit=9" * 30],
)
async def test_users_pagination_bad_parameters(client: Client, query: str) -> None:
    body = problem(await client.call("GET", f"/api/users?{query}"), 400)
    assert body["parameter"] in ("limit", "after")


# -- orders ------------------------------------------------------------------


async def test_orders(client: Client) -> None:
    me = (await client.sign_in("erin"))["user"]
    for item in ("tea", "cake", "jam"):
        response = await client.call("POST", "/api/orders", {"item": item, "quantity": 2})
        assert response.code == 201
        assert json.loads(response.body)["user_id"] == me["id"]
    page = json.loads((await client.call("GET", f"/api/orders?user_id={me['id']}&limit=2")).body)
    assert [o["item"] for o in page["items"]] == ["tea", "cake"]
    assert page["next"].startswith(f"/api/orders?user_id={me['id']}&limit=2&after=")
    rest = json.loads((await client.call("GET", page["next"])).body)
    assert [o["item"] for o in rest["items"]] == ["jam"]
    assert rest["next"] is None
    other = json.loads((await client.call("GET", "/api/orders?user_id=999")).body)
    assert other["items"] == []
    problem(await client.call("GET", "/api/orders", token=None), 401)


@pytest.mark.parametrize(
    "body",
    [
        {"item": "", "quantity": 1},
        {"item": "x" * 101},
        {"item": 5},
        {"item": "tea", "quantity": 0},
        {"item": "tea", "quantity": 1000},
        {"item": "tea", "quantity": "3"},
        {"item": "tea", "quantity": True},
        {"item": "tea", "quantity": 1.5},
        {"item": "tea", "price": 1},
    ],
)
async def test_orders_invalid_bodies(client: Client, body: dict[str, Any]) -> None:
    problem(await client.call("POST", "/api/orders", body), 400)


async def test_orders_bad_query(client: Client) -> None:
    problem(await client.call("GET", "/api/orders?user_id=zero"), 400)
    problem(await client.call("GET", "/api/orders?user_id=0"), 400)


async def test_order_by_a_deleted_user_is_a_conflict(client: Client) -> None:
    frank = (await client.sign_in("frank"))["user"]
    assert (await client.call("DELETE", f"/api/users/{frank['id']}")).code == 204
    problem(await client.call("POST", "/api/orders", {"item": "tea"}), 409)


# -- aggregate (fan-out) -------------------------------------------------------


async def test_aggregate_all_upstreams(client: Client) -> None:
    await client.call("POST", "/api/orders", {"item": "tea"})
    response = await client.call("GET", "/api/aggregate")
    assert response.code == 200
    body = json.loads(response.body)
    assert body["partial"] is False
    assert [u["name"] for u in body["users"]["items"]] == ["alice"]
    assert [o["item"] for o in body["orders"]["items"]] == ["tea"]
    for name in ("users", "orders"):
        assert body["upstreams"][name]["ok"] is True
        assert body["upstreams"][name]["status"] == 200
        assert body["upstreams"][name]["error"] is None
    assert "upstreams" in response.headers["Server-Timing"]


async def test_aggregate_token_from_query_is_forwarded(client: Client) -> None:
    response = await client.call("GET", f"/api/aggregate?access_token={client.token}", token=None)
    assert response.code == 200
    assert json.loads(response.body)["partial"] is False


@pytest.mark.parametrize("down", ["orders", "users"])
async def test_aggregate_partial_when_one_upstream_is_down(
    app: Application, client: Client, down: str
) -> None:
    app.settings[f"{down}_url"] = f"http://127.0.0.1:{free_port()}/gone"
    response = await client.call("GET", "/api/aggregate")
    assert response.code == 200
    body = json.loads(response.body)
    assert body["partial"] is True
    assert body[down] is None
    assert body["upstreams"][down]["ok"] is False
    assert body["upstreams"][down]["status"] is None
    assert body["upstreams"][down]["error"]
    up = "users" if down == "orders" else "orders"
    assert body["upstreams"][up]["ok"] is True
    assert body[up]["items"] is not None


async def test_aggregate_partial_when_an_upstream_errors(app: Application, client: Client) -> None:
    # An upstream answering with an error (here: 404 problem+json) is a failure, not data.
    app.settings["orders_url"] = client.base_url + "/api/no-such-service"
    body = json.loads((await client.call("GET", "/api/aggregate")).body)
    assert body["partial"] is True
    assert body["upstreams"]["orders"]["status"] == 404


async def test_aggregate_all_down_is_502(app: Application, client: Client) -> None:
    app.settings["users_url"] = f"http://127.0.0.1:{free_port()}/"
    app.settings["orders_url"] = f"http://127.0.0.1:{free_port()}/"
    body = problem(await client.call("GET", "/api/aggregate"), 502)
    assert set(body["upstreams"]) == {"users", "orders"}


async def test_aggregate_requires_a_token(client: Client) -> None:
    problem(await client.call("GET", "/api/aggregate", token=None), 401)


# -- images (process pool) ---------------------------------------------------


async def test_image_thumbnail(client: Client) -> None:
    data = png_bytes(400, 300)
    response = await client.call(
        "POST", "/api/images", raw=data, headers={"Content-Type": "image/png"}
    )
    assert response.code == 200, response.body
    body = json.loads(response.body)
    assert body["processed"] is True
    assert body["size"] == len(data)
    assert (body["width"], body["height"]) == (128, 96)
    assert body["original"] == {"width": 400, "height": 300}
    assert body["format"] == "PNG"
    prefix = "data:image/png;base64,"
    assert body["thumbnail"].startswith(prefix)
    thumb = Image.open(io.BytesIO(base64.b64decode(body["thumbnail"][len(prefix) :])))
    assert thumb.size == (128, 96)
    assert "thumbnail" in response.headers["Server-Timing"]


async def upload_chunked(client: Client, chunks: list[bytes]) -> HTTPResponse:
    """``POST /api/images`` with a chunked body (no ``Content-Length``)."""

    async def producer(write: Callable[[bytes], Awaitable[None]]) -> None:
        for chunk in chunks:
            await write(chunk)

    return await client.http.fetch(
        client.base_url + "/api/images",
        method="POST",
        body_producer=producer,
        headers={"Authorization": f"Bearer {client.token}", "Content-Type": "image/png"},
        raise_error=False,
    )


async def test_image_streamed_in_chunks(client: Client) -> None:
    data = png_bytes(64, 64)
    response = await upload_chunked(client, [data[i : i + 100] for i in range(0, len(data), 100)])
    assert response.code == 200, response.body
    assert json.loads(response.body)["size"] == len(data)


async def test_image_over_the_limit_is_413(client: Client) -> None:
    data = b"\x89PNG" + b"\0" * MAX_IMAGE
    body = problem(
        await client.call("POST", "/api/images", raw=data, headers={"Content-Type": "image/png"}),
        413,
    )
    assert body["max_bytes"] == MAX_IMAGE


async def test_image_over_the_limit_without_content_length_is_cut_off(client: Client) -> None:
    # A chunked body has no length to refuse up front: Tornado closes the
    # connection (after a bare 400) when it passes the route's limit, having
    # buffered no more than the limit. The server goes on serving.
    try:
        response = await upload_chunked(client, [b"\0" * 8192] * (MAX_IMAGE // 8192 + 2))
    except (OSError, HTTPClientError, StreamClosedError):
        pass  # the connection was closed while the client was still sending
    else:
        assert response.code == 400, response.body
    assert (await client.call("GET", "/healthz")).code == 200


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"hello, not an image", "image/png"),
        (png_bytes(10, 10)[:40], "image/png"),  # truncated
        (png_bytes(10, 10), "text/plain"),
        (png_bytes(10, 10), ""),
        (b"", "image/png"),
        (b"%PDF-1.4 not an image", "image/jpeg"),
    ],
)
async def test_image_not_an_image_is_415(client: Client, data: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    problem(await client.call("POST", "/api/images", raw=data, headers=headers), 415)


async def test_image_requires_a_token(client: Client) -> None:
    response = await client.call(
        "POST",
        "/api/images",
        raw=png_bytes(8, 8),
        token=None,
        headers={"Content-Type": "image/png"},
    )
    problem(response, 401)


# -- chat over WebSocket -------------------------------------------------------


async def read_json(conn: Any, timeout: float = 10) -> Any:
    message = await asyncio.wait_for(conn.read_message(), timeout)
    assert message is not None, "connection closed"
    return json.loads(message)


async def test_chat_between_two_clients(client: Client, ws_connect: Any) -> None:
    alice_token = client.token
    bob_token = (await client.sign_in("bob"))["token"]
    alice = await ws_connect(f"/ws?room=tea&access_token={alice_token}")
    bob = await ws_connect(f"/ws?room=tea&access_token={bob_token}")
    elsewhere = await ws_connect(f"/ws?room=other&access_token={bob_token}")

    alice.write_message(json.dumps({"text": "hi bob"}))
    for conn in (alice, bob):
        msg = await read_json(conn)
        assert set(msg) == {"id", "room", "from", "text", "ts"}
        assert (msg["room"], msg["from"], msg["text"]) == ("tea", "alice", "hi bob")
    bob.write_message(json.dumps({"text": "hello alice"}))
    assert (await read_json(alice))["from"] == "bob"
    assert (await read_json(bob))["text"] == "hello alice"

    # The other room saw none of it: its first message is its own.
    elsewhere.write_message(json.dumps({"text": "anyone?"}))
    assert (await read_json(elsewhere))["text"] == "anyone?"


@pytest.mark.parametrize(
    "message", ["not json", "[1, 2]", '{"text": ""}', '{"text": 5}', '{"nope": 1}', "{}"]
)
async def test_chat_bad_message_keeps_connection(
    client: Client, ws_connect: Any, message: str
) -> None:
    conn = await ws_connect(f"/ws?access_token={client.token}")
    conn.write_message(message)
    reply = await read_json(conn)
    assert reply["error"]["status"] == 400
    conn.write_message(json.dumps({"text": "still here"}))
    assert (await read_json(conn))["text"] == "still here"


async def test_chat_message_too_long(client: Client, ws_connect: Any) -> None:
    conn = await ws_connect(f"/ws?access_token={client.token}")
    conn.write_message(json.dumps({"text": "x" * 2001}))
    assert (await read_json(conn))["error"]["status"] == 400


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("room=tea", 401),
        ("room=tea&access_token=forged", 401),
        ("room=bad%20room&T", 400),
        ("room=&T", 400),
        ("room=" + "r" * 33 + "&T", 400),
    ],
)
async def test_chat_handshake_errors(
    client: Client, ws_connect: Any, query: str, status: int
) -> None:
    query = query.replace("&T", f"&access_token={client.token}")
    with pytest.raises(HTTPClientError) as info:
        await ws_connect(f"/ws?{query}")
    assert info.value.code == status


async def test_chat_origin_allow_list(app: Application, client: Client, ws_connect: Any) -> None:
    app.settings["allowed_origins"] = ["https://chat.example"]
    path = f"/ws?access_token={client.token}"
    ok = await ws_connect(path, headers={"Origin": "https://chat.example"})
    ok.write_message(json.dumps({"text": "from an allowed origin"}))
    assert (await read_json(ok))["text"] == "from an allowed origin"
    with pytest.raises(HTTPClientError) as info:
        await ws_connect(path, headers={"Origin": "https://evil.example"})
    assert info.value.code == 403


# -- live feed over SSE ------------------------------------------------------


async def first_live_event(
    reader: Awaitable[list[Any]], action: Callable[[int], Awaitable[None]]
) -> tuple[Any, int]:
    """Repeat ``action(i)`` until the SSE *reader* (count=1) has an event; ``(event, calls)``.

    A stream subscribes when it opens; events published before that are not
    live. Acting until one arrives avoids guessing when that is.
    """
    task = asyncio.ensure_future(reader)
    calls = 0
    try:
        while not task.done() and calls < 100:
            await action(calls)
            calls += 1
            await asyncio.wait([task], timeout=0.1)
        (event,) = await task
    finally:
        task.cancel()
    return event, calls


async def test_feed_live_then_resume_with_last_event_id(client: Client, sse: Any) -> None:
    token = client.token

    async def create_user(i: int) -> None:
        response = await client.call("POST", "/api/users", {"name": f"feed{i}"})
        assert response.code == 201

    first, made = await first_live_event(
        sse(f"/events?access_token={token}", count=1, timeout=20), create_user
    )
    assert first.event == "user"
    first_data = json.loads(first.data)
    assert first_data["action"] == "created"
    first_index = int(first_data["user"]["name"].removeprefix("feed"))

    # More events while nobody listens: a user, an order (not a feed event), an upload.
    await client.call("POST", "/api/users", {"name": "later"})
    await client.call("POST", "/api/orders", {"item": "tea"})  # not a feed event
    await client.call(
        "POST", "/api/images", raw=png_bytes(20, 10), headers={"Content-Type": "image/png"}
    )
    missed = made - first_index - 1 + 2
    resumed = await sse(
        f"/events?access_token={token}",
        count=missed,
        timeout=20,
        headers={"Last-Event-ID": first.id},
    )
    names = [json.loads(e.data)["user"]["name"] for e in resumed if e.event == "user"]
    assert names == [f"feed{i}" for i in range(first_index + 1, made)] + ["later"]
    assert resumed[-1].event == "image"
    assert json.loads(resumed[-1].data)["width"] == 20
    ids = [first.id] + [e.id for e in resumed]
    assert len(set(ids)) == len(ids)


async def test_feed_carries_chat_and_room_feed(client: Client, ws_connect: Any, sse: Any) -> None:
    token = client.token
    conn = await ws_connect(f"/ws?room=news&access_token={token}")

    async def say(i: int) -> None:
        conn.write_message(json.dumps({"text": f"m{i}"}))
        await read_json(conn)

    event, _ = await first_live_event(
        sse(f"/events?room=news&access_token={token}", count=1, timeout=20), say
    )
    assert event.event == "chat"
    data = json.loads(event.data)
    assert data["room"] == "news"
    assert data["from"] == "alice"


async def test_feed_errors(client: Client) -> None:
    problem(await client.call("GET", "/events", token=None), 401)
    problem(
        await client.call(
            "GET", f"/events?room=no%20spaces&access_token={client.token}", token=None
        ),
        400,
    )


async def test_feed_garbage_last_event_id_is_not_an_error(client: Client, sse: Any) -> None:
    await client.call("POST", "/api/users", {"name": "zoe"})
    events = await sse(
        f"/events?access_token={client.token}",
        count=2,
        timeout=20,
        headers={"Last-Event-ID": "garbage\u00e9"},
    )
    # The log cannot resume from it: the client is told (reset), then gets what is retained.
    assert events[0].event == "reset"
    assert any(e.event == "user" for e in events[1:])


# -- open-ended input: never a 500 -------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text(max_size=3))),
    email=st.one_of(st.none(), st.text(max_size=40), st.integers()),
)
def test_any_user_body_gets_201_400_or_409(tmp_path: Path, name: Any, email: Any) -> None:
    async def run() -> tuple[int, bytes]:
        config = Config(db_path=str(tmp_path / "h.db"), secret=SECRET)
        http = AsyncHTTPClient(force_instance=True)
        try:
            async with serving(config) as url:
                return await post_user(http, url)
        finally:
            http.close()

    async def post_user(http: AsyncHTTPClient, url: str) -> tuple[int, bytes]:
        signed_in = await http.fetch(
            f"{url}/api/token",
            method="POST",
            body=json.dumps({"name": "prop"}),
            headers={"Content-Type": "application/json"},
        )
        token = json.loads(signed_in.body)["token"]
        response = await http.fetch(
            f"{url}/api/users",
            method="POST",
            body=json.dumps({"name": name, "email": email}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            raise_error=False,
        )
        return response.code, response.body

    code, body = asyncio.run(run())
    assert code in (201, 400, 409), body
    if code != 201:
        assert json.loads(body)["status"] == code


# -- Redis: shared feed, and an outage -----------------------------------------


@pytest.mark.redis
async def test_redis_outage_keeps_the_api_up(
    tmp_path: Path, redis_server: Any, http_client: AsyncHTTPClient
) -> None:
    from tornado_kit.testing import ws_connect

    config = app_config(tmp_path, redis_url=redis_server.url)
    async with serving(config) as url:
        c = Client(http_client, url)
        await c.sign_in("rita")
        conn = await ws_connect(f"{url}/ws?room=ops&access_token={c.token}")
        try:
            conn.write_message(json.dumps({"text": "before"}))
            assert (await read_json(conn))["text"] == "before"

            redis_server.stop()
            # The database is the source of truth: the write succeeds, the
            # feed event is dropped (and logged).
            created = await c.call("POST", "/api/users", {"name": "during"})
            assert created.code == 201
            # A chat message cannot reach the room: the sender is told.
            conn.write_message(json.dumps({"text": "lost"}))
            reply = await read_json(conn, timeout=30)
            assert reply["error"]["status"] == 503

            redis_server.start()
            # The broker reconnects by itself (with backoff); until its room
            # subscription is back a message may go unanswered. Chat works again.
            recovered = False
            for i in range(60):
                conn.write_message(json.dumps({"text": f"after{i}"}))
                try:
                    reply = await read_json(conn, timeout=1)
                except asyncio.TimeoutError:
                    continue
                if "error" not in reply:
                    assert reply["text"].startswith("after")
                    recovered = True
                    break
                await asyncio.sleep(0.5)
            assert recovered, "chat never recovered after Redis came back"
        finally:
            conn.close()
            await asyncio.wait_for(drain_ws(conn), 10)


async def drain_ws(conn: Any) -> None:
    while await conn.read_message() is not None:
        pass


# -- deployment files ----------------------------------------------------------


def test_systemd_unit_outlasts_the_drain() -> None:
    unit = (Path(__file__).parent.parent / "examples/deploy/tornado-kit@.service").read_text()
    lines = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] not in "#;"
    )
    assert lines["KillSignal"] == "SIGTERM"
    assert lines["Restart"] == "on-failure"
    exec_start = unit.split("ExecStart=", 1)[1].split("\n\n", 1)[0]
    assert "--port %i" in exec_start
    drain = float(exec_start.split("--shutdown-timeout", 1)[1].split()[0])
    assert float(lines["TimeoutStopSec"].rstrip("s")) > drain


def test_nginx_timeouts_outlast_heartbeats_and_keepalives() -> None:
    conf = (Path(__file__).parent.parent / "examples/deploy/nginx.conf").read_text()
    for location in ("location = /ws", "location = /events"):
        block = conf.split(location, 1)[1].split("}", 1)[0]
        timeout = float(block.split("proxy_read_timeout", 1)[1].split(";")[0].strip().rstrip("s"))
        # Defaults of heartbeat_interval (20 s) and sse_keepalive_interval (15 s).
        assert timeout > 20
    events = conf.split("location = /events", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in events
    assert "gzip off;" in events
    assert "least_conn;" in conf


# -- open-ended chat messages ------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
chat_frames = st.one_of(
    st.text(max_size=60),  # anything, JSON or not
    json_values.map(json.dumps),
    st.fixed_dictionaries({"text": st.text(max_size=40)}).map(json.dumps),
    st.fixed_dictionaries({"text": json_values}).map(json.dumps),
)


@pytest.fixture(scope="module")
def threaded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The app served from a background thread: hypothesis examples are sync."""
    with threaded_refapp(tmp_path_factory.mktemp("chat")) as (server, token):
        yield f"http://127.0.0.1:{server.port}", token


@settings(max_examples=60, deadline=None)
@given(frame=chat_frames)
def test_any_chat_frame_is_echoed_or_refused(threaded_app: tuple[str, str], frame: str) -> None:
    from tornado_kit.testing import ws_connect

    url, token = threaded_app
    try:
        data = json.loads(frame)
    except ValueError:
        data = None
    text = data.get("text") if isinstance(data, dict) else None
    valid = isinstance(text, str) and bool(text.strip()) and len(text) <= 2000

    async def run() -> None:
        conn = await ws_connect(f"{url}/ws?room=hypo&access_token={token}")
        try:
            conn.write_message(frame)
            reply = await read_json(conn)
            if valid:
                assert (reply["text"], reply["from"]) == (text, "hypo")
            else:
                assert reply["error"]["status"] == 400
            # Whatever it was, the connection is still usable.
            conn.write_message(json.dumps({"text": "still open"}))
            assert (await read_json(conn))["text"] == "still open"
        finally:
            conn.close()
            await asyncio.wait_for(drain_ws(conn), 10)

    asyncio.run(run())
