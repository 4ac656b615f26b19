"""The reference app against a hostile client: what an attack run on 0.1.0 found.

* Bodies: no ``max_body_size`` anywhere (Tornado's 100 MB). Now the server's
  limit is the JSON limit, every JSON route refuses a declared
  ``Content-Length`` over 1 MiB with 413 before reading it, and the image
  route raises its own request's limit. Driven through the real
  ``python -m examples.reference_app`` (``serve()``), which must pass the
  limit on.
* ``/api/aggregate`` built its upstream URLs from the ``Host`` header and sent
  the caller's bearer token there (server-side request forgery).
* ``/api/users/<4,301 digits>`` was a 500 (``int()``'s digit limit).
* ``/static/x%00`` was a 500, and static errors were HTML.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

from examples.reference_app import close_app, make_app
from tests._refapp import app_config, serving, start_reference_app, threaded_refapp
from tests._servers import free_port, serve_app, stop_process, wait_for_port
from tests._threaded_server import Response, ThreadedServer, parse_response

MIB = 1024 * 1024


# -- helpers ---------------------------------------------------------------------


async def raw_exchange(port: int, request: bytes, timeout: float = 15.0) -> Response:
    """Send *request* verbatim, read until the server closes; fail if it never answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_response(data)


def head_only(
    method: str, path: str, length: str, token: str | None = None, **headers: str
) -> bytes:
    """A request that declares *length* body bytes and sends none of them."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def assert_problem(status: int, content_type: str | None, body: bytes, expected: int) -> Any:
    assert status == expected, (status, body[:300])
    assert content_type is not None
    assert content_type.startswith("application/problem+json"), content_type
    document = json.loads(body)
    assert document["status"] == expected
    return document


def noise_png(min_bytes: int) -> bytes:
    """A PNG of random pixels (incompressible) of at least *min_bytes*."""
    side = int((min_bytes / 3) ** 0.5) + 8
    rng = random.Random(7)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=0)
    return out.getvalue()


# -- the real `python -m examples.reference_app` ------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``python -m examples.reference_app`` as ``make demo`` runs it; yields its port."""
    tmp = tmp_path_factory.mktemp("served")
    port = free_port()
    proc = start_reference_app(port, tmp / "app.log", "--db", str(tmp / "app.db"))
    try:
        wait_for_port(port, timeout=60)
        yield port
    finally:
        stop_process(proc)


async def sign_in(http_client: AsyncHTTPClient, base: str, name: str = "mallory") -> str:
    response = await http_client.fetch(
        base + "/api/token",
        method="POST",
        body=json.dumps({"name": name}),
        headers={"Content-Type": "application/json"},
    )
    token: str = json.loads(response.body)["token"]
    return token


async def test_a_json_body_declared_over_1_mib_is_413_before_it_is_sent(served: int) -> None:
    for length in (str(MIB + 1), "9" * 5000):
        response = await raw_exchange(
            served, head_only("POST", "/api/token", length, Content_Type="application/json")
        )
        problem = assert_problem(
            response.status, response.headers.get("content-type"), response.body, 413
        )
        assert problem["max_bytes"] == MIB


async def test_an_unrouted_request_cannot_make_the_server_buffer_more_than_1_mib(
    served: int,
) -> None:
    # No handler of the app sees it: the server's own max_body_size (from
    # serve(http_server_options=...)) refuses it with a 413 problem, without
    # waiting for the body.
    for path in ("/no/such/route", "/metrics"):
        response = await raw_exchange(served, head_only("POST", path, str(50 * MIB)))
        problem = assert_problem(
            response.status, response.headers.get("content-type"), response.body, 413
        )
        assert problem["max_bytes"] == MIB


async def test_the_image_route_takes_more_than_the_server_wide_limit(
    served: int, http_client: AsyncHTTPClient
) -> None:
    base = f"http://127.0.0.1:{served}"
    token = await sign_in(http_client, base)
    image = noise_png(MIB + 200_000)
    assert MIB < len(image) < 5 * MIB
    response = await http_client.fetch(
        base + "/api/images",
        method="POST",
        body=image,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
        raise_error=False,
        request_timeout=60,
    )
    assert response.code == 200, response.body[:300]
    assert json.loads(response.body)["size"] == len(image)
    # Over its own limit (5 MiB): 413 from the declared length, body never sent.
    over = await raw_exchange(
        served, head_only("POST", "/api/images", str(5 * MIB + 1), token, Content_Type="image/png")
    )
    problem = assert_problem(over.status, over.headers.get("content-type"), over.body, 413)
    assert problem["max_bytes"] == 5 * MIB


@pytest.mark.parametrize("length", ["\u00b2", "\u0663", "-1", "+5", "1_0", "0x10", "5, 6"])
async def test_a_malformed_content_length_on_a_streamed_route_is_never_a_500(
    served: int, http_client: AsyncHTTPClient, length: str
) -> None:
    token = await sign_in(http_client, f"http://127.0.0.1:{served}")
    for path, content_type in (("/api/images", "image/png"), ("/api/token", "application/json")):
        try:
            request = head_only("POST", path, length, token, Content_Type=content_type)
        except UnicodeEncodeError:
            request = head_only("POST", path, "1", token, Content_Type=content_type).replace(
                b"Content-Length: 1", b"Content-Length: " + length.encode("utf-8")
            )
        response = await raw_exchange(served, request)
        assert response.status in (400, 413), (path, length, response.status, response.body)


# -- /api/aggregate: no request forgery ----------------------------------------------


class Canary(RequestHandler):
    """Records every request it gets: it must get none."""

    def get(self, path: str) -> None:
        self.settings["seen"].append(
            (self.request.uri, self.request.headers.get("Authorization", ""))
        )
        self.write({"items": ["from the canary"]})


@pytest_asyncio.fixture
async def canary() -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    async with serve_app(Application([(r"/(.*)", Canary)], seen=seen)) as url:
        yield url.removeprefix("http://"), seen


async def test_aggregate_ignores_the_host_header(
    served: int, http_client: AsyncHTTPClient, canary: tuple[str, list[tuple[str, str]]]
) -> None:
    host, seen = canary
    base = f"http://127.0.0.1:{served}"
    token = await sign_in(http_client, base, "victim")
    for headers in ({"Host": host}, {"Host": host, "X-Forwarded-Host": host}):
        response = await http_client.fetch(
            base + "/api/aggregate", headers={"Authorization": f"Bearer {token}", **headers}
        )
        body = json.loads(response.body)
        assert body["partial"] is False, body
        assert any(u["name"] == "victim" for u in body["users"]["items"])
    assert seen == []  # the token never left for the host the client named


async def test_aggregate_without_a_configured_url_is_a_503_that_says_what_to_set(
    tmp_path: Path, http_client: AsyncHTTPClient, canary: tuple[str, list[tuple[str, str]]]
) -> None:
    host, seen = canary
    async with serving(app_config(tmp_path)) as base:  # make_app(Config(...)) without self_url
        token = await sign_in(http_client, base)
        response = await http_client.fetch(
            base + "/api/aggregate",
            headers={"Authorization": f"Bearer {token}", "Host": host},
            raise_error=False,
        )
    problem = assert_problem(
        response.code, response.headers.get("Content-Type"), response.body, 503
    )
    assert "self_url" in problem["detail"]
    assert seen == []


async def test_make_app_warns_once_when_the_aggregator_is_not_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(app_config(tmp_path))
    await close_app(app)
    configured = make_app(app_config(tmp_path, self_url="http://127.0.0.1:1"))
    await close_app(configured)
    warnings = [r for r in caplog.records if "/api/aggregate" in r.getMessage()]
    assert len(warnings) == 1


# -- client-chosen integers, static files: over a threaded server (hypothesis) --------


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedServer, str]]:
    with threaded_refapp(tmp_path_factory.mktemp("threaded")) as served_and_token:
        yield served_and_token


def response_problem(response: Response, expected: int) -> Any:
    return assert_problem(
        response.status, response.headers.get("content-type"), response.body, expected
    )


@pytest.mark.parametrize(
    "raw_id", ["9" * 4301, "9" * 50_000, str(2**63), str(2**64), "0" * 30, "0"]
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_user_id_beyond_sqlite_integers_is_404(
    threaded: tuple[ThreadedServer, str], raw_id: str, method: str
) -> None:
    server, token = threaded
    body = b'{"name": "x"}' if method == "PUT" else None
    response = server.request(
        method,
        f"/api/users/{raw_id}",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    problem = response_problem(response, 404)
    assert len(problem["detail"]) < 100  # the id is not echoed back


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["limit", "after", "user_id"]),
    value=st.one_of(
        st.text(max_size=30),
        st.integers().map(str),
        st.integers(min_value=0, max_value=5000).map(lambda n: "9" * n),
        st.sampled_from(["\u0663", "\u00b2", "1_000", " 5", "+5", "-0", "0" * 40 + "5"]),
    ),
)
def test_any_integer_query_parameter_is_200_or_400(
    threaded: tuple[ThreadedServer, str], name: str, value: str
) -> None:
    server, token = threaded
    path = "/api/orders" if name == "user_id" else "/api/users"
    response = server.request(
        "GET",
        f"{path}?{urllib.parse.urlencode({name: value})}",
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status != 200:
        assert response_problem(response, 400)["parameter"] == name


STATIC_ERRORS = [
    ("/static/x%00", 404),
    ("/static/%00", 404),
    ("/static/app.js%00.png", 404),
    ("/static/nope.css", 404),
    ("/static/" + "a" * 5000, 404),  # ENAMETOOLONG
    ("/static/", 403),
    ("/static/..%2fapp.py", 403),
    ("/static/a%2f..%2f..%2fstore.py", 403),
    ("/static/%ff", 400),
]


@pytest.mark.parametrize(("path", "status"), STATIC_ERRORS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_static_errors_are_problem_json(
    threaded: tuple[ThreadedServer, str], path: str, status: int, method: str
) -> None:
    server, _ = threaded
    response = server.request(method, path)
    assert response.status == status, (path, response.status, response.body[:200])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"]
    if method == "GET":
        assert json.loads(response.body)["status"] == status


def test_static_files_and_the_page_are_still_served(
    threaded: tuple[ThreadedServer, str],
) -> None:
    server, _ = threaded
    page = server.request("GET", "/")
    assert page.status == 200
    assert page.headers["cache-control"] == "no-cache"
    assert b"<html" in page.body.lower()
    script = server.request("GET", "/static/app.js")
    assert script.status == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "server-timing" in script.headers or "x-request-id" in script.headers


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=1, max_size=40))
def test_any_static_path_is_a_file_or_a_problem_never_a_500(
    threaded: tuple[ThreadedServer, str], raw: bytes
) -> None:
    server, _ = threaded
    response = server.raw(
        b"GET /static/" + urllib.parse.quote_from_bytes(raw, safe="").encode() + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert response.status in (200, 400, 403, 404), (raw, response.status)
    if response.status != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
