"""TimingMixin: request ids, Server-Timing, the one access record, JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httputil import HTTPHeaders, HTTPInputError
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler, websocket_connect

from tests._example_process import ExampleProcess
from tests._threaded_server import ThreadedServer, raw_get
from tornado_kit import APIError, JSONErrorMixin, NotFoundHandler, TimingMixin
from tornado_kit._access import add_access_field
from tornado_kit._jsonlog import JSONLinesFormatter
from tornado_kit._timing import REDACTED_QUERY_ARGUMENTS

HEX32 = re.compile(r"[0-9a-f]{32}")
# W3C Server Timing: metric *( ";" param ), metrics separated by commas.
SERVER_TIMING = re.compile(
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+;dur=\d+\.\d+(, [!#$%&'*+\-.^_`|~0-9A-Za-z]+;dur=\d+\.\d+)*"
)


class Hello(TimingMixin, RequestHandler):
    async def get(self) -> None:
        with self.timed("db"):
            await asyncio.sleep(0.01)
        with self.timed("db"):
            await asyncio.sleep(0.01)
        with self.timed("render page/1"), self.timed("inner"):
            pass
        async with self.timed("cache"):
            await asyncio.sleep(0)
        self.write("hello world")

    def head(self) -> None:
        self.write("hello world")


class Streamed(TimingMixin, RequestHandler):
    async def get(self) -> None:
        self.write("part one;")
        await self.flush()
        self.write("part two")


class User(TimingMixin, RequestHandler):
    def prepare(self) -> None:
        self.current_user = {"sub": "alice", "scopes": []}

    def get(self) -> None:
        add_access_field(self, "cache_hit", True)
        self.write("hi")


class Failing(JSONErrorMixin, TimingMixin, RequestHandler):
    def get(self) -> None:
        raise ValueError("no")

    def post(self) -> None:
        raise APIError(422, "bad")


class RejectingMixin(RequestHandler):
    def prepare(self) -> None:
        raise APIError(401, "who are you", headers={"WWW-Authenticate": 'Bearer realm="api"'})


class RejectedInPrepare(RejectingMixin, TimingMixin, JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write("unreachable")


class OnFinishRaises(TimingMixin, RequestHandler):
    def get(self) -> None:
        self.write("done")

    def on_finish(self) -> None:
        raise RuntimeError("on_finish bug")


class BadUser(TimingMixin, RequestHandler):
    """current_user is a mapping whose lookups fail: the record must not break."""

    class Exploding(dict[str, Any]):
        def get(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("mapping bug")

    def get(self) -> None:
        self.current_user = self.Exploding()
        self.write("fine")


class Plain(RequestHandler):
    def get(self) -> None:
        self.write("plain")


class EarlyLog(TimingMixin, RequestHandler):
    """Like an SSE stream that ends: _tk_log_access() first, finish() later."""

    async def get(self) -> None:
        self.write("data: x\n\n")
        await self.flush()
        self._tk_log_access()
        self._tk_log_access()


class Socket(TimingMixin, WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        if message == "bye":
            self.close(1000)
        else:
            self.write_message(message)


class NotFound(TimingMixin, NotFoundHandler):
    pass


class CustomQuery(TimingMixin, RequestHandler):
    redact_query_arguments = ("session",)

    def get(self) -> None:
        self.write("ok")


def make_app(**settings: Any) -> Application:
    return Application(
        [
            ("/hello", Hello),
            ("/streamed", Streamed),
            ("/user", User),
            ("/failing", Failing),
            ("/rejected", RejectedInPrepare),
            ("/on-finish-raises", OnFinishRaises),
            ("/bad-user", BadUser),
            ("/plain", Plain),
            ("/early-log", EarlyLog),
            ("/ws", Socket),
            ("/custom-query", CustomQuery),
        ],
        default_handler_class=NotFound,
        **settings,
    )


@pytest.fixture
def app() -> Application:
    return make_app()


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tornado_kit.access"]


def one_access(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    records = access(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    record: dict[str, Any] = records[0].access  # type: ignore[attr-defined]
    return record


async def fetch(client: AsyncHTTPClient, url: str, method: str = "GET", **kw: Any) -> HTTPResponse:
    if method in ("POST", "PUT") and "body" not in kw:
        kw["body"] = b""
    return await client.fetch(url, method=method, raise_error=False, **kw)


# -- request id ---------------------------------------------------------------


async def test_valid_request_id_is_kept(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    rid = "A.b_c-" + "9" * 122  # 128 characters
    response = await fetch(http_client, base_url + "/hello", headers={"X-Request-ID": rid})
    assert response.headers["X-Request-ID"] == rid
    assert one_access(caplog)["request_id"] == rid


@pytest.mark.parametrize("rid", ["", "a" * 129, "has space", "semi;colon", "slash/", "é"])
async def test_invalid_request_id_is_replaced(
    rid: str, base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/hello", headers={"X-Request-ID": rid})
    assert HEX32.fullmatch(response.headers["X-Request-ID"])


async def test_generated_ids_differ(base_url: str, http_client: AsyncHTTPClient) -> None:
    ids = {
        (await fetch(http_client, base_url + "/hello")).headers["X-Request-ID"] for _ in range(5)
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/failing", "GET", 500),
        ("/failing", "POST", 422),
        ("/failing", "PUT", 405),
        ("/hello", "DELETE", 405),
        ("/rejected", "GET", 401),
        ("/nowhere", "GET", 404),
    ],
)
async def test_request_id_is_on_every_error(
    path: str,
    method: str,
    status: int,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = await fetch(
        http_client, base_url + path, method=method, headers={"X-Request-ID": "err-1"}
    )
    assert response.code == status
    assert response.headers["X-Request-ID"] == "err-1"
    record = one_access(caplog)
    assert record["status"] == status
    assert record["request_id"] == "err-1"
    if path == "/rejected":
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert json.loads(response.body)["request_id"] == "err-1"


# -- Server-Timing --------------------------------------------------------------


def parse_server_timing(value: str) -> dict[str, float]:
    assert SERVER_TIMING.fullmatch(value), value
    result = {}
    for metric in value.split(", "):
        name, _, dur = metric.partition(";dur=")
        assert name not in result, f"{name} repeated"
        result[name] = float(dur)
    return result


async def test_server_timing_has_total_and_spans(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/hello")
    timing = parse_server_timing(response.headers["Server-Timing"])
    assert list(timing) == ["total", "db", "inner", "render_page_1", "cache"]
    # the two "db" spans (>= 10 ms each) are summed into one metric
    assert timing["db"] >= 20.0
    assert timing["total"] >= timing["db"]
    record = one_access(caplog)
    assert set(record["spans"]) == {"db", "inner", "render page/1", "cache"}
    assert record["spans"]["db"] >= 20.0


async def test_server_timing_on_errors(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/failing")
    assert response.code == 500
    assert "total" in parse_server_timing(response.headers["Server-Timing"])


async def test_no_server_timing_on_streamed_response(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/streamed")
    assert response.body == b"part one;part two"
    assert "Server-Timing" not in response.headers
    assert one_access(caplog)["bytes"] == len(b"part one;part two")


# -- the access record ------------------------------------------------------------


async def test_one_structured_record_and_no_tornado_line(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/user?x=1")
    record = one_access(caplog)
    assert record["method"] == "GET"
    assert record["path"] == "/user?x=1"
    assert record["status"] == 200
    assert record["user"] == "alice"
    assert record["bytes"] == len(response.body) == 2
    assert record["request_id"] == response.headers["X-Request-ID"]
    assert record["handler"] == "User"
    assert record["remote_ip"] == "127.0.0.1"
    assert record["cache_hit"] is True
    assert isinstance(record["duration_ms"], float)
    assert record["duration_ms"] >= 0
    assert [r for r in caplog.records if r.name == "tornado.access"] == []
    assert access(caplog)[0].levelno == logging.INFO


async def test_other_handlers_keep_tornado_access_log(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    await fetch(http_client, base_url + "/plain")
    assert access(caplog) == []
    assert len([r for r in caplog.records if r.name == "tornado.access"]) == 1


@pytest.mark.parametrize(
    ("path", "method", "level"),
    [
        ("/hello", "GET", logging.INFO),
        ("/failing", "POST", logging.WARNING),
        ("/nowhere", "GET", logging.WARNING),
        ("/failing", "GET", logging.ERROR),
    ],
)
async def test_level_by_status(
    path: str,
    method: str,
    level: int,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fetch(http_client, base_url + path, method=method)
    one_access(caplog)
    assert access(caplog)[0].levelno == level


async def test_head_counts_no_bytes(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/hello", method="HEAD")
    assert response.code == 200
    assert one_access(caplog)["bytes"] == 0


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("access_token=abc&x=1", "access_token=REDACTED&x=1"),
        ("PASSWORD=hunter2", "PASSWORD=REDACTED"),
        (
            "api_key=k&apikey=k2&key=k3&secret=s&token=t",
            "api_key=REDACTED&apikey=REDACTED&key=REDACTED&secret=REDACTED&token=REDACTED",
        ),
        ("access%5Ftoken=abc", "access%5Ftoken=REDACTED"),
        ("x=access_token", "x=access_token"),
        # no value, nothing to hide: kept as sent (same rules as auth.redact_query)
        ("flag&token", "flag&token"),
        ("token=&x=1", "token=&x=1"),
    ],
)
async def test_query_secrets_are_redacted(
    query: str,
    logged: str,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fetch(http_client, base_url + "/hello?" + query)
    record = one_access(caplog)
    assert record["path"] == "/hello?" + logged
    # The message ends with the random hex request id, which may contain "abc".
    message = access(caplog)[0].getMessage().replace(record["request_id"], "")
    for name in ("abc", "hunter2", "k2", "k3"):
        assert name not in message


def test_redacted_names_are_documented() -> None:
    assert {"access_token", "token", "password", "secret", "api_key", "apikey", "key"} <= (
        REDACTED_QUERY_ARGUMENTS
    )


async def test_auth_query_argument_setting_and_class_list_are_redacted(
    http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    with ThreadedServer(make_app(auth_query_argument="tk")) as server:
        server.request("GET", "/custom-query?tk=abc&session=s1&page=2")
    record = one_access(caplog)
    assert record["path"] == "/custom-query?tk=REDACTED&session=REDACTED&page=2"


async def test_on_finish_exception_is_logged_not_raised(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/on-finish-raises")
    assert response.code == 200
    assert response.body == b"done"
    assert one_access(caplog)["status"] == 200
    assert not any(
        r.name.startswith("tornado.") and r.levelno >= logging.ERROR for r in caplog.records
    )
    errors = [r for r in caplog.records if r.name == "tornado_kit.timing"]
    assert len(errors) == 1
    assert "on_finish" in errors[0].getMessage()
    # the server still serves
    assert (await fetch(http_client, base_url + "/hello")).code == 200


async def test_record_failure_never_breaks_the_request(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/bad-user")
    assert response.code == 200
    assert response.body == b"fine"
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["tornado_kit.timing"]


async def test_log_access_is_idempotent(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/early-log")
    assert response.code == 200
    assert one_access(caplog)["path"] == "/early-log"


async def test_disabled_access_logger_emits_nothing(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tornado_kit.access")
    response = await fetch(http_client, base_url + "/hello")
    assert response.code == 200
    assert access(caplog) == []


# -- WebSocket: logged when the connection ends --------------------------------------


async def test_websocket_logged_once_when_it_closes(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await websocket_connect(
        base_url.replace("http", "ws") + "/ws?access_token=t0k", connect_timeout=10
    )
    try:
        await conn.write_message("ping")
        assert await conn.read_message() == "ping"
        await asyncio.sleep(0.05)
        assert access(caplog) == []  # not at the handshake
        await conn.write_message("bye")
        assert await conn.read_message() is None  # server closed
    finally:
        conn.close()
    for _ in range(200):
        if access(caplog):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    record = one_access(caplog)
    assert record["status"] == 101
    assert record["path"] == "/ws?access_token=REDACTED"
    assert record["duration_ms"] >= 50.0
    assert "t0k" not in caplog.text


async def test_websocket_client_close_is_logged(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await websocket_connect(base_url.replace("http", "ws") + "/ws", connect_timeout=10)
    conn.close(1000)
    for _ in range(200):
        if access(caplog):
            break
        await asyncio.sleep(0.01)
    assert one_access(caplog)["status"] == 101


# -- bad X-Request-ID values over a raw socket --------------------------------------


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_app()) as server:
        yield server


VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")

header_values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.just(b"a" * 10_000),
    st.just(b"\xc3\xa9t\xc3\xa9"),
    st.sampled_from([b"abc\r\nX-Injected: 1", b"abc\nSet-Cookie: x=1", b"ok-id\x00", b" ok-id "]),
)


_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")


def request_ids_tornado_hands_over(request: bytes) -> list[str] | None:
    """The ``X-Request-ID`` values Tornado's parser gives the handler; ``None``: it refuses.

    What ``HTTP1Connection`` does with the bytes, with its public parts: the
    head ends at the first empty line, and the header lines (after the
    request line) go through :meth:`HTTPHeaders.parse`. Versions differ
    there (6.2 strips any whitespace from a value, ``\\x0b`` included; 6.4
    only spaces and tabs; 6.6 refuses control characters), so the test asks
    the installed Tornado instead of assuming one.
    """
    end = _END_OF_HEAD.search(request)
    head = request[: end.start() if end else len(request)].decode("latin-1").lstrip("\r\n")
    try:
        headers = HTTPHeaders.parse(head[head.find("\n") :])
    except HTTPInputError:
        return None
    return headers.get_list("X-Request-ID")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=header_values)
def test_any_request_id_bytes_are_never_echoed_raw(threaded: ThreadedServer, value: bytes) -> None:
    request = raw_get("/hello", b"X-Request-ID: " + value + b"\r\n")
    response = threaded.raw(request)
    assert response.status != 500
    if response.status == 400:
        return  # Tornado's HTTP parser refused the request line/headers
    assert response.status == 200
    echoed = response.headers["x-request-id"]
    handed = request_ids_tornado_hands_over(request)
    assert handed is not None  # Tornado served what its parser accepts
    kept = len(handed) == 1 and VALID.fullmatch(handed[0]) is not None
    if kept:
        assert echoed == handed[0]
    else:
        assert HEX32.fullmatch(echoed), echoed
    assert value.decode("latin-1") not in response.headers.values() or kept
    for name, header in response.header_list:
        assert "\r" not in header
        assert "\n" not in header
        assert name.lower() not in ("x-injected", "set-cookie")


@pytest.mark.parametrize("value", [b"\x0bA", b"A\x0b", b"\x0cA", b"\xa0A"])
def test_request_id_with_surrounding_whitespace_is_what_tornado_hands_over(
    threaded: ThreadedServer, value: bytes
) -> None:
    # Tornado 6.2 strips these characters from a header value (the handler
    # gets the valid id "A"), 6.4 keeps them (an invalid id) and 6.6 refuses
    # the request: the id is kept exactly when the handler got a valid one.
    request = raw_get("/hello", b"X-Request-ID: " + value + b"\r\n")
    response = threaded.raw(request)
    handed = request_ids_tornado_hands_over(request)
    if handed is None:
        assert response.status == 400
        return
    assert response.status == 200
    if handed == ["A"]:
        assert response.headers["x-request-id"] == "A"
    else:
        assert HEX32.fullmatch(response.headers["x-request-id"])


# -- JSON-lines formatter ---------------------------------------------------------------


def make_logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger("tests.jsonlines")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONLinesFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_json_lines_formatter_one_object_per_line() -> None:
    stream = io.StringIO()
    logger = make_logger(stream)
    try:
        logger.info(
            "multi\nline %s",
            "arg",
            extra={"access": {"status": 200, "path": "/x"}, "shard": 3, "blob": object()},
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["message"] == "multi\nline arg"
    assert first["level"] == "INFO"
    assert first["logger"] == "tests.jsonlines"
    assert first["status"] == 200
    assert first["path"] == "/x"
    assert "access" not in first  # merged at the top level, not repeated
    assert first["shard"] == 3
    assert first["blob"].startswith("<object object")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    second = json.loads(lines[1])
    assert "ValueError: boom" in second["exc_info"]


async def test_json_lines_access_log_end_to_end(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONLinesFormatter())
    logger = logging.getLogger("tornado_kit.access")
    logger.addHandler(handler)
    try:
        await fetch(http_client, base_url + "/user?password=p")
        await fetch(http_client, base_url + "/nowhere")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(d["status"], d["path"]) for d in lines] == [
        (200, "/user?password=REDACTED"),
        (404, "/nowhere"),
    ]
    assert lines[0]["user"] == "alice"
    assert lines[1]["level"] == "WARNING"


# -- the runnable example ---------------------------------------------------------------


@pytest.fixture
def example_03() -> Iterator[ExampleProcess]:
    with ExampleProcess("03_timing.py", capture=True) as example:
        yield example
    assert b"Traceback" not in example.stderr, example.stderr.decode()


async def test_example_03_runs_on_its_own(
    example_03: ExampleProcess, http_client: AsyncHTTPClient
) -> None:
    url = example_03.url
    response = await fetch(
        http_client, url + "/users/7?api_key=hidden", headers={"X-Request-ID": "trace-42"}
    )
    assert response.code == 200
    assert response.headers["X-Request-ID"] == "trace-42"
    assert "db" in parse_server_timing(response.headers["Server-Timing"])
    missing = await fetch(http_client, url + "/users/0")
    assert missing.code == 404
    assert HEX32.fullmatch(missing.headers["X-Request-ID"])
    metrics = await fetch(http_client, url + "/metrics")
    assert b'handler="UserHandler"' in metrics.body

    example_03.stop()
    lines = [json.loads(line) for line in example_03.stdout.splitlines()]
    assert [(d["status"], d["path"], d["request_id"]) for d in lines[:2]] == [
        (200, "/users/7?api_key=REDACTED", "trace-42"),
        (404, "/users/0", missing.headers["X-Request-ID"]),
    ]
    assert lines[0]["spans"]["db"] >= 10.0
    assert b"hidden" not in example_03.stdout


# -- the docs' snippets run ----------------------------------------------------------------


def _snippets() -> list[tuple[str, int, str]]:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for page in ("docs/errors.md", "docs/timing.md"):
        text = (root / page).read_text(encoding="utf-8")
        for index, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            found.append((page, index, block))
    return found


@pytest.mark.parametrize(("page", "index", "code"), _snippets(), ids=lambda v: str(v)[:20])
def test_docs_snippet_runs(page: str, index: int, code: str, tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if page == "docs/timing.md" and index == 0:
        assert "trace-42" in result.stdout
        assert '"path":"/users/7?access_token=REDACTED"' in result.stdout
        assert "secret" not in result.stdout


secret_values = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=12, max_size=40
)
argument_names = st.sampled_from(
    ["access_token", "ACCESS_TOKEN", "password", "Api_Key", "token", "secret", "key"]
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=argument_names,
    value=secret_values,
    before=st.lists(st.from_regex(r"[a-z]{1,6}=[a-z0-9]{0,6}", fullmatch=True), max_size=3),
)
def test_query_secret_never_reaches_the_log(
    threaded: ThreadedServer,
    caplog: pytest.LogCaptureFixture,
    name: str,
    value: str,
    before: list[str],
) -> None:
    caplog.clear()
    query = "&".join([*before, f"{name}={value}"])
    response = threaded.request("GET", "/hello?" + query, headers={"X-Request-ID": "prop-1"})
    assert response.status == 200

    def records() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "tornado_kit.access" and r.access["request_id"] == "prop-1"  # type: ignore[attr-defined]
        ]

    # the server thread logs right after sending the response: wait for it
    for _ in range(500):
        if records():
            break
        time.sleep(0.01)
    assert len(records()) == 1
    record = records()[0]
    assert value not in record.getMessage()
    assert value not in json.dumps(record.access)  # type: ignore[attr-defined]
    assert f"{name}=REDACTED" in record.access["path"]  # type: ignore[attr-defined]
