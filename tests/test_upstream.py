"""fetch_all and UpstreamResult against real upstream servers on real sockets."""

from __future__ import annotations

import asyncio
import json
import math
import re
import tracemalloc
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import tornado
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

from tests._example_process import run_example
from tests._servers import free_port
from tests._threaded_server import ThreadedServer
from tornado_kit import UpstreamResult, fetch_all
from tornado_kit._lifecycle import shutdown
from tornado_kit._upstream import upstream_client

MIB = 1024 * 1024


class JSONHandler(RequestHandler):
    def get(self) -> None:
        self.write({"users": ["alice", "bob"]})


class SlowHandler(RequestHandler):
    """Sleeps ``s`` seconds and records how many requests were in flight at once."""

    gone: asyncio.Event

    def prepare(self) -> None:
        self.gone = asyncio.Event()

    def on_connection_close(self) -> None:
        self.gone.set()  # the client gave up: stop at once (no task outlives the test)

    async def get(self) -> None:
        state = self.settings["concurrency"]
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        seconds = float(self.get_argument("s"))
        try:
            await asyncio.wait_for(self.gone.wait(), seconds)
        except asyncio.TimeoutError:
            self.write({"slept": seconds})
        finally:
            state["now"] -= 1


class ErrorHandler(RequestHandler):
    def get(self) -> None:
        self.set_status(500)
        self.set_header("Content-Type", "application/problem+json")
        self.finish(json.dumps({"status": 500, "detail": "database down"}))


class HTMLHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish("<html><body>502 Bad Gateway</body></html>")


class InvalidJSONHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"truncated": ')


class EmptyHandler(RequestHandler):
    def get(self) -> None:
        self.set_status(204)


class BigHandler(RequestHandler):
    """20 MiB of JSON-typed bytes, chunked or with a Content-Length."""

    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        if self.get_argument("length", ""):
            self.set_header("Content-Length", str(20 * MIB))
        chunk = b" " * MIB
        try:
            for _ in range(20):
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass  # the client gave up, as it should


class EchoHandler(RequestHandler):
    """Answers with the body and Content-Type it is told to, at the status it is told to."""

    def post(self) -> None:
        self.set_status(int(self.get_argument("status", "200")))
        content_type = self.get_argument("ct", "")
        if content_type:
            self.set_header("Content-Type", content_type)
        else:
            self.clear_header("Content-Type")
        self.finish(self.request.body)

    def put(self) -> None:
        self.write({"method": self.request.method, "x_token": self.request.headers.get("X-Token")})


def make_upstream(**settings: Any) -> Application:
    settings.setdefault("concurrency", {"now": 0, "max": 0})
    return Application(
        [
            (r"/json", JSONHandler),
            (r"/slow", SlowHandler),
            (r"/error", ErrorHandler),
            (r"/html", HTMLHandler),
            (r"/invalid", InvalidJSONHandler),
            (r"/empty", EmptyHandler),
            (r"/big", BigHandler),
            (r"/echo", EchoHandler),
        ],
        **settings,
    )


@pytest.fixture
def app() -> Application:
    return make_upstream()


@pytest.fixture
def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"  # nothing listens there: refused


async def test_every_outcome_is_a_result_and_nothing_raises(
    base_url: str, closed_port_url: str
) -> None:
    results = await fetch_all(
        {
            "users": base_url + "/json",
            "refused": closed_port_url,
            "slow": HTTPRequest(base_url + "/slow?s=2", request_timeout=0.1),
            "error": base_url + "/error",
            "html": base_url + "/html",
            "invalid": base_url + "/invalid",
            "empty": base_url + "/empty",
            "big": base_url + "/big",
            "scheme": "ftp://example.invalid/",
        },
        timeout=5,
    )
    assert list(results) == [
        "users",
        "refused",
        "slow",
        "error",
        "html",
        "invalid",
        "empty",
        "big",
        "scheme",
    ]
    users = results["users"]
    assert (users.ok, users.status, users.json, users.error) == (
        True,
        200,
        {"users": ["alice", "bob"]},
        None,
    )
    assert users.elapsed > 0
    assert users.headers is not None
    assert users.headers["Content-Type"].startswith("application/json")

    refused = results["refused"]
    assert (refused.ok, refused.status) == (False, None)
    assert refused.error is not None
    assert refused.error.startswith("connection failed:")
    assert "refused" in refused.error.lower()

    assert results["slow"].error == "timed out after 0.1 s"
    assert results["slow"].status is None

    error = results["error"]
    assert (error.ok, error.status, error.error) == (False, 500, "upstream returned HTTP 500")
    assert error.json == {"status": 500, "detail": "database down"}  # still decoded

    html = results["html"]
    assert (html.ok, html.status, html.json) == (False, 200, None)
    assert html.error == "upstream returned non-JSON (text/html)"
    assert b"Bad Gateway" in html.body

    invalid = results["invalid"]
    assert not invalid.ok
    assert invalid.error is not None
    assert invalid.error.startswith("upstream returned invalid JSON")

    empty = results["empty"]
    assert (empty.ok, empty.status, empty.json, empty.body) == (True, 204, None, b"")

    big = results["big"]
    assert (big.ok, big.status, big.body) == (False, None, b"")
    assert big.error == f"upstream body larger than max_body_size ({10 * MIB} bytes)"

    scheme = results["scheme"]
    assert not scheme.ok
    assert scheme.error is not None
    assert "Unsupported url scheme" in scheme.error


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
async def test_a_20_mib_body_is_refused_without_buffering_it(
    base_url: str, with_length: bool
) -> None:
    url = base_url + "/big" + ("?length=1" if with_length else "")
    tracemalloc.start()
    try:
        results = await fetch_all({"big": url}, max_body_size=MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert results["big"].error == f"upstream body larger than max_body_size ({MIB} bytes)"
    # The whole body is 20 MiB; the client and the (in-process) server together
    # never held more than a few MiB of it.
    assert peak < 8 * MIB


async def test_overall_timeout_returns_partial_results_and_leaves_no_task(
    base_url: str,
) -> None:
    results = await fetch_all(
        {"fast": base_url + "/json", "stuck": base_url + "/slow?s=5"},
        timeout=0.3,
    )
    assert results["fast"].ok
    stuck = results["stuck"]
    assert (stuck.ok, stuck.status) == (False, None)
    # whichever fires first at the deadline: the capped request timeout or ours
    assert stuck.error in {"overall timeout (0.3 s) reached", "timed out after 0.3 s"}
    # (the autouse fixture fails the test if a task was left running)


async def test_fetches_waiting_for_a_slot_at_the_deadline_are_abandoned(
    app: Application, base_url: str
) -> None:
    results = await fetch_all(
        {"first": base_url + "/slow?s=5", "second": base_url + "/json"},
        timeout=0.3,
        max_clients=1,
    )
    assert not results["first"].ok
    assert results["second"].error == "overall timeout (0.3 s) reached"
    assert app.settings["concurrency"]["max"] == 1


async def test_fetches_run_concurrently_up_to_max_clients(app: Application, base_url: str) -> None:
    urls = {f"u{i}": base_url + "/slow?s=0.3" for i in range(4)}
    results = await fetch_all(urls)
    assert all(r.ok for r in results.values())
    assert app.settings["concurrency"]["max"] == 4

    app.settings["concurrency"]["max"] = 0
    results = await fetch_all(urls, max_clients=2)
    assert all(r.ok for r in results.values())
    assert app.settings["concurrency"]["max"] == 2


async def test_http_request_objects_are_honoured_and_not_modified(base_url: str) -> None:
    request = HTTPRequest(base_url + "/echo", method="PUT", body=b"{}", headers={"X-Token": "t"})
    results = await fetch_all({"put": request})
    assert results["put"].json == {"method": "PUT", "x_token": "t"}
    assert dict(request.headers) == {"X-Token": "t"}  # the caller's request is reusable
    assert request.request_timeout is None
    assert (await fetch_all({"again": request}))["again"].ok


async def test_a_streaming_callback_of_the_caller_gets_the_body(base_url: str) -> None:
    chunks: list[bytes] = []
    request = HTTPRequest(base_url + "/json", streaming_callback=chunks.append)
    result = (await fetch_all({"s": request}))["s"]
    assert json.loads(b"".join(chunks)) == {"users": ["alice", "bob"]}
    assert (result.ok, result.body, result.json) == (True, b"", None)


async def test_expect_json_false_accepts_any_body(base_url: str) -> None:
    result = (await fetch_all({"html": base_url + "/html"}, expect_json=False))["html"]
    assert (result.ok, result.json, result.error) == (True, None, None)
    assert result.body.startswith(b"<html>")


async def test_per_request_limits_are_capped_by_each_other_and_by_the_deadline(
    base_url: str,
) -> None:
    slow = base_url + "/slow?s=3"
    results = await fetch_all(
        {
            "url": slow,
            "own_shorter": HTTPRequest(slow, request_timeout=0.1),
            "own_longer": HTTPRequest(slow, request_timeout=60),
            "fast": base_url + "/json",
        },
        timeout=10,
        request_timeout=0.3,
    )
    assert results["url"].error == "timed out after 0.3 s"
    assert results["own_shorter"].error == "timed out after 0.1 s"
    assert results["own_longer"].error == "timed out after 0.3 s"
    assert results["fast"].ok
    # without request_timeout, the overall deadline caps a request's own limit
    capped = (await fetch_all({"own": HTTPRequest(slow, request_timeout=60)}, timeout=0.3))["own"]
    assert capped.error in {"overall timeout (0.3 s) reached", "timed out after 0.3 s"}


async def test_an_upstream_that_hangs_up_or_speaks_garbage_is_a_result() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if request.startswith(b"GET /cut "):  # a crash in the middle of the body
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"partial'
            )
        elif request.startswith(b"GET /garbage "):
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()  # /silent: closes without a word
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        results = await fetch_all(
            {name: url + name for name in ("cut", "garbage", "silent")},
            timeout=10,
            request_timeout=1,
        )
    finally:
        server.close()
        await server.wait_closed()
    for name, result in results.items():
        assert (result.ok, result.status, result.json) == (False, None, None), name
        assert result.error is not None
        if name == "garbage" and tornado.version_info < (6, 6):
            # Tornado 6.5 logs "Malformed HTTP message" and leaves the fetch
            # to its timeout: still a result, bounded by request_timeout.
            assert result.error == "timed out after 1 s"
            continue
        # Tornado's words: "Connection closed" / "Stream closed"
        assert re.fullmatch(r"request failed: \w+ closed", result.error), result.error


async def test_empty_mapping_and_bad_arguments() -> None:
    assert await fetch_all({}) == {}
    for timeout in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="timeout must be positive"):
            await fetch_all({}, timeout=timeout)
    with pytest.raises(ValueError, match="request_timeout must be positive"):
        await fetch_all({}, request_timeout=0)
    with pytest.raises(ValueError, match="max_clients"):
        await fetch_all({}, max_clients=0)


async def test_upstream_client_is_shared_per_app_bounded_and_closed_at_shutdown(
    base_url: str,
) -> None:
    # the aggregating app (its own settings); the upstream is the fixture's server
    aggregator = Application([], upstream_max_clients=2)
    client = upstream_client(aggregator)
    assert upstream_client(aggregator) is client
    urls = {f"u{i}": base_url + "/slow?s=0.3" for i in range(3)}
    batches = await asyncio.gather(fetch_all(urls, client=client), fetch_all(urls, client=client))
    assert all(r.ok for batch in batches for r in batch.values())
    await shutdown(aggregator)
    with pytest.raises(RuntimeError, match="closed"):
        await client.fetch(base_url + "/json")


async def test_upstream_client_bounds_connections_across_calls(
    app: Application, base_url: str
) -> None:
    aggregator = Application([], upstream_max_clients=2)
    try:
        client = upstream_client(aggregator)
        urls = {f"u{i}": base_url + "/slow?s=0.3" for i in range(3)}
        await asyncio.gather(fetch_all(urls, client=client), fetch_all(urls, client=client))
        assert app.settings["concurrency"]["max"] == 2
    finally:
        await shutdown(aggregator)


def test_result_is_a_frozen_record() -> None:
    result = UpstreamResult(name="a", url="http://a/", ok=True, status=200, json=[1])
    with pytest.raises(AttributeError):
        result.ok = False  # type: ignore[misc]


# -- property: whatever an upstream answers, fetch_all describes it ---------------


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_upstream()) as server:
        yield server


JSON_TYPES = ["application/json", "application/problem+json", "application/json; charset=utf-8"]
OTHER_TYPES = ["text/html", "text/plain", "application/xml"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.sampled_from([200, 201, 400, 404, 500, 503]),
    content_type=st.sampled_from(["", *JSON_TYPES, *OTHER_TYPES]),
    body=st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    ),
)
def test_any_upstream_answer_is_described_never_raised(
    echo_server: ThreadedServer, status: int, content_type: str, body: bytes
) -> None:
    query = urllib.parse.urlencode({"status": status, "ct": content_type})
    url = f"http://127.0.0.1:{echo_server.port}/echo?{query}"
    request = HTTPRequest(url, method="POST", body=body)
    result = asyncio.run(fetch_all({"x": request}, timeout=10))["x"]

    assert result.status == status
    assert result.body == body
    media_type = content_type.split(";")[0]
    try:
        # RFC 8259: no NaN or Infinity, no number beyond a double's range
        expected = json.loads(body, parse_constant=_refuse, parse_float=_finite) if body else None
        valid = True
    except ValueError:
        expected, valid = None, False
    json_typed = media_type in ("", "application/json", "application/problem+json")
    if 200 <= status < 300:
        assert result.ok == (not body or (json_typed and valid)), result.error
    else:
        assert not result.ok
        assert result.error == f"upstream returned HTTP {status}"
    if result.ok:
        assert result.error is None
        assert result.json == expected
    else:
        assert result.error


# -- examples/07_fanout.py runs on its own ------------------------------------------


@pytest.fixture
def example_07() -> Iterator[str]:
    yield from run_example("07_fanout.py")


async def test_example_07_runs_on_its_own(example_07: str, http_client: AsyncHTTPClient) -> None:
    response = await http_client.fetch(example_07 + "/dashboard/alice")
    body = json.loads(response.body)
    assert body["profile"] == {"name": "Alice", "plan": "pro"}
    assert body["unavailable"]["stats"] == "upstream returned non-JSON (text/html)"
    assert body["unavailable"]["orders"] in {
        "overall timeout (0.5 s) reached",
        "timed out after 0.5 s",
    }
