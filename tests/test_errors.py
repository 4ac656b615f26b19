"""JSONErrorMixin, APIError, NotFoundHandler and JSONBodyMixin through a real server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.web import Application, HTTPError, RequestHandler

from tests._example_process import ExampleProcess
from tests._threaded_server import ThreadedServer
from tornado_kit import (
    APIError,
    JSONBodyMixin,
    JSONErrorMixin,
    NotFoundHandler,
    TimingMixin,
)
from tornado_kit import _json as tk_json

SECRET = "s3cr3t-internal-detail"


class APIErrorHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise APIError(
            429,
            "slow down",
            type="https://example.com/probs/rate",
            headers={"Retry-After": "30"},
            limit=10,
        )


class TitledHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise APIError(409, "name taken", title="Conflict Of Names", name="alice")


class PlainHTTPErrorHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise HTTPError(403, SECRET)


class BoomHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise ValueError(SECRET)


class OnlyGetHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.write("ok")

    def delete(self) -> None:
        self.write("gone")


class TimedErrorHandler(JSONErrorMixin, TimingMixin, RequestHandler):
    def get(self) -> None:
        raise APIError(400, "bad")


class BadExtensionHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise APIError(422, "cannot encode", thing=object())


class RaisingWriteErrorHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        raise APIError(400, "bad input")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        raise RuntimeError(SECRET)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        super().send_error(status_code, **kwargs)
        self.settings["write_error_left_on_instance"] = "write_error" in self.__dict__


class PartialHandler(JSONErrorMixin, RequestHandler):
    async def get(self) -> None:
        self.write("partial " * 10)
        await self.flush()
        raise ValueError(SECRET)


class SendErrorHandler(JSONErrorMixin, RequestHandler):
    def get(self) -> None:
        self.send_error(503)

    def delete(self) -> None:
        self.send_error(204)


class WrongLengthHandler(JSONErrorMixin, TimingMixin, RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Length", "100")
        self.write("short")


class BodyHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        self.write_json({"got": self.get_json_body()}, status=201)

    def put(self) -> None:
        self.write_json({"got": self.get_json_body(require_object=False)})


class SmallBodyHandler(BodyHandler):
    json_body_max_bytes = 64


class ValueHandler(JSONBodyMixin, RequestHandler):
    """Echoes the request body's JSON through write_json (for orjson vs stdlib)."""

    def post(self) -> None:
        self.write_json(self.get_json_body(require_object=False))


def make_app(**settings: Any) -> Application:
    return Application(
        [
            ("/api-error", APIErrorHandler),
            ("/titled", TitledHandler),
            ("/plain", PlainHTTPErrorHandler),
            ("/boom", BoomHandler),
            ("/only-get", OnlyGetHandler),
            ("/timed-error", TimedErrorHandler),
            ("/bad-extension", BadExtensionHandler),
            ("/raising-write-error", RaisingWriteErrorHandler),
            ("/partial", PartialHandler),
            ("/send-error", SendErrorHandler),
            ("/wrong-length", WrongLengthHandler),
            ("/body", BodyHandler),
            ("/small-body", SmallBodyHandler),
            ("/value", ValueHandler),
        ],
        default_handler_class=NotFoundHandler,
        **settings,
    )


@pytest.fixture
def app() -> Application:
    return make_app()


async def fetch(client: AsyncHTTPClient, url: str, method: str = "GET", **kw: Any) -> HTTPResponse:
    if method in ("POST", "PUT", "PATCH") and "body" not in kw:
        kw["body"] = b""
    return await client.fetch(
        url, method=method, raise_error=False, allow_nonstandard_methods=True, **kw
    )


def problem(response: HTTPResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.body)
    assert isinstance(body, dict)
    return body


# -- APIError and HTTPError -------------------------------------------------


async def test_api_error_detail_extensions_and_headers_reach_the_client(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/api-error")
    assert response.code == 429
    assert response.headers["Retry-After"] == "30"
    assert problem(response) == {
        "type": "https://example.com/probs/rate",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "slow down",
        "instance": "/api-error",
        "limit": 10,
    }


async def test_api_error_title_is_the_reason_phrase(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/titled")
    assert response.code == 409
    assert response.reason == "Conflict Of Names"
    body = problem(response)
    assert body["title"] == "Conflict Of Names"
    assert body["name"] == "alice"


async def test_plain_http_error_log_message_never_reaches_the_client(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/plain")
    assert response.code == 403
    assert SECRET.encode() not in response.body
    assert problem(response) == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "instance": "/plain",
    }
    # ... but it is in the server log
    assert any(SECRET in r.getMessage() for r in caplog.records)


async def test_unhandled_exception_is_a_500_without_the_message(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/boom")
    assert response.code == 500
    assert SECRET.encode() not in response.body
    assert SECRET not in str(dict(response.headers))
    assert problem(response) == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal server error",
        "instance": "/boom",
    }


async def test_serve_traceback_reveals_message_and_traceback(
    http_client: AsyncHTTPClient, base_url_traceback: str
) -> None:
    plain = problem(await fetch(http_client, base_url_traceback + "/plain"))
    assert plain["detail"] == SECRET
    boom = problem(await fetch(http_client, base_url_traceback + "/boom"))
    assert boom["detail"] == "internal server error"
    assert "ValueError" in boom["traceback"]
    assert SECRET in boom["traceback"]


@pytest.fixture
async def base_url_traceback() -> Any:
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port

    sock, port = bind_unused_port()
    server = HTTPServer(make_app(serve_traceback=True))
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await server.close_all_connections()


async def test_send_error_without_exception(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/send-error")
    assert response.code == 503
    assert problem(response) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "instance": "/send-error",
    }


async def test_no_content_status_has_no_body(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/send-error", method="DELETE")
    assert response.code == 204
    assert response.body == b""


async def test_failure_while_finishing_closes_the_connection(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(HTTPClientError) as info:
        await http_client.fetch(base_url + "/wrong-length")
    assert info.value.code == 599
    records = [r for r in caplog.records if r.name == "tornado_kit.access"]
    assert len(records) == 1
    assert records[0].access["aborted"] is True  # type: ignore[attr-defined]
    assert (await fetch(http_client, base_url + "/only-get")).code == 200


async def test_head_error_has_no_body(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/nowhere", method="HEAD")
    assert response.code == 404
    assert response.body == b""
    assert response.headers["Content-Type"] == "application/problem+json"


# -- 404 and 405 ------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
async def test_unmatched_route_is_404_problem_for_every_method(
    method: str, base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/no/such/path?q=1", method=method)
    assert response.code == 404
    assert problem(response) == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/no/such/path",
    }


async def test_405_is_a_problem_with_allow(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/only-get", method="POST")
    assert response.code == 405
    assert response.headers["Allow"] == "GET, DELETE"
    assert problem(response)["title"] == "Method Not Allowed"


async def test_unknown_method_is_405_problem(base_url: str, http_client: AsyncHTTPClient) -> None:
    response = await fetch(http_client, base_url + "/only-get", method="PROPFIND")
    assert response.code == 405
    assert problem(response)["status"] == 405


async def test_request_id_in_problem_with_timing(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(
        http_client, base_url + "/timed-error", headers={"X-Request-ID": "abc-123"}
    )
    assert response.code == 400
    assert response.headers["X-Request-ID"] == "abc-123"
    assert problem(response)["request_id"] == "abc-123"


async def test_no_request_id_member_without_timing(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/api-error", headers={"X-Request-ID": "x"})
    assert "request_id" not in problem(response)


# -- write_error never raises ----------------------------------------------


def _tornado_uncaught(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("tornado.") and r.levelno >= logging.ERROR
    ]


async def test_unencodable_extension_gives_minimal_problem(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch(http_client, base_url + "/bad-extension")
    assert response.code == 422
    assert problem(response) == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
    }
    assert _tornado_uncaught(caplog) == []
    assert any(r.name == "tornado_kit.errors" for r in caplog.records)


async def test_write_error_override_raising_gives_minimal_problem(
    app: Application,
    base_url: str,
    http_client: AsyncHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = await fetch(http_client, base_url + "/raising-write-error")
    # send_error's guard is on the instance only for the time of Tornado's call.
    assert app.settings["write_error_left_on_instance"] is False
    assert response.code == 400
    assert SECRET.encode() not in response.body
    assert problem(response) == {"type": "about:blank", "title": "Bad Request", "status": 400}
    assert _tornado_uncaught(caplog) == []
    logged = [r for r in caplog.records if r.name == "tornado_kit.errors"]
    assert len(logged) == 1
    assert logged[0].exc_info is not None


async def test_error_after_flush_closes_the_connection(
    base_url: str, http_client: AsyncHTTPClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await http_client.fetch(base_url + "/partial")
    # The truncated chunked body is not passed off as a complete response.
    assert info.value.code == 599
    messages = [r.getMessage() for r in caplog.records]
    assert any("after the response headers" in m for m in messages)
    assert not any("Cannot send error response" in m for m in messages)
    # The server is still healthy.
    assert (await fetch(http_client, base_url + "/only-get")).code == 200


# -- JSONBodyMixin ----------------------------------------------------------

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/merge-patch+json",
        "application/vnd.api+json; ext=x",
    ],
)
async def test_json_content_types_accepted(
    content_type: str, base_url: str, http_client: AsyncHTTPClient
) -> None:
    headers = {"Content-Type": content_type}
    response = await fetch(
        http_client, base_url + "/body", method="POST", body=b'{"a": [1, 2]}', headers=headers
    )
    assert response.code == 201
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.body) == {"got": {"a": [1, 2]}}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json", "text/json"],
)
async def test_non_json_content_type_is_415(
    content_type: str, base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(
        http_client,
        base_url + "/body",
        method="POST",
        body=b"{}",
        headers={"Content-Type": content_type},
    )
    assert response.code == 415
    assert problem(response)["status"] == 415


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'"text"', "must be an object"),
        (b"null", "must be an object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"x": NaN}', "not valid JSON"),
        (b'{"x": -Infinity}', "not valid JSON"),
        (b'{"x": 1e400}', "not valid JSON"),
    ],
)
async def test_bad_json_body_is_400(
    body: bytes, detail: str, base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(http_client, base_url + "/body", method="POST", body=body, headers=JSON)
    assert response.code == 400
    assert detail in problem(response)["detail"]


async def test_require_object_false_accepts_any_value(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await fetch(
        http_client, base_url + "/body", method="PUT", body=b"[1,2]", headers=JSON
    )
    assert response.code == 200
    assert json.loads(response.body) == {"got": [1, 2]}


async def test_body_over_class_limit_is_413(base_url: str, http_client: AsyncHTTPClient) -> None:
    body = json.dumps({"x": "a" * 100}).encode()
    response = await fetch(
        http_client, base_url + "/small-body", method="POST", body=body, headers=JSON
    )
    assert response.code == 413
    assert problem(response)["max_bytes"] == 64
    ok = await fetch(http_client, base_url + "/small-body", method="POST", body=b"{}", headers=JSON)
    assert ok.code == 201


async def test_default_limit_is_one_mib(base_url: str, http_client: AsyncHTTPClient) -> None:
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    response = await fetch(http_client, base_url + "/body", method="POST", body=big, headers=JSON)
    assert response.code == 413
    assert problem(response)["max_bytes"] == 1024 * 1024


async def test_setting_limit_applies_and_class_attribute_wins(
    http_client: AsyncHTTPClient,
) -> None:
    with ThreadedServer(make_app(json_body_max_bytes=10)) as server:
        body = b'{"x": "0123456789"}'
        assert server.request("POST", "/body", body, JSON).status == 413
        # SmallBodyHandler's class attribute (64) beats the setting (10).
        assert server.request("POST", "/small-body", body, JSON).status == 201


# -- orjson and stdlib agree -------------------------------------------------

VALUE = {
    "text": 'héllo \u2603 </script> "quoted" \\ \n\t',
    "emoji": "\U0001f600",
    "ints": [0, -1, 2**53 + 1, 2**70],
    "floats": [0.5, -1.25e-7, 1e300],
    "nested": {"a": [None, True, False, {"b": []}]},
    "": "empty key",
}


@pytest.mark.parametrize("backend", ["orjson", "stdlib"])
async def test_write_json_same_value_with_orjson_and_stdlib(
    backend: str, base_url: str, http_client: AsyncHTTPClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "stdlib":
        monkeypatch.setattr(tk_json, "_orjson", None)
    else:
        assert tk_json._orjson is not None
    response = await fetch(
        http_client,
        base_url + "/value",
        method="POST",
        body=json.dumps(VALUE).encode(),
        headers=JSON,
    )
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.body) == VALUE


# -- property tests over a threaded server ----------------------------------


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_app()) as server:
        yield server


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_any_json_value_round_trips_or_is_400(threaded: ThreadedServer, value: Any) -> None:
    response = threaded.request("POST", "/body", json.dumps(value).encode(), JSON)
    if isinstance(value, dict):
        assert response.status == 201
        assert json.loads(response.body) == {"got": value}
    else:
        assert response.status == 400
        assert response.headers["content-type"] == "application/problem+json"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_500(threaded: ThreadedServer, body: bytes) -> None:
    response = threaded.request("POST", "/body", body, JSON)
    assert response.status in (201, 400)
    if response.status == 400:
        assert json.loads(response.body)["status"] == 400


media_types = st.one_of(
    st.sampled_from(
        ["application/json", "application/problem+json", "text/html", "application/xml", "*/*"]
    ),
    st.from_regex(r"[a-zA-Z]{1,12}/[a-zA-Z.+-]{1,20}", fullmatch=True),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(media_type=media_types, params=st.sampled_from(["", "; charset=utf-8", ";q=1"]))
def test_content_type_decides_415(threaded: ThreadedServer, media_type: str, params: str) -> None:
    response = threaded.request("POST", "/body", b"{}", {"Content-Type": media_type + params})
    lowered = media_type.lower()
    is_json = lowered == "application/json" or (
        lowered.startswith("application/") and lowered.endswith("+json")
    )
    assert response.status == (201 if is_json else 415)


def test_missing_content_type_is_accepted(threaded: ThreadedServer) -> None:
    raw = (
        b'POST /body HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    )
    response = threaded.raw(raw)
    assert response.status == 201
    assert json.loads(response.body) == {"got": {"a": 1}}


def test_content_length_over_limit_is_413_before_parsing(threaded: ThreadedServer) -> None:
    body = b"x" * 100
    raw = (
        b"POST /small-body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + body
    )
    response = threaded.raw(raw)
    # Invalid JSON, but the size check comes first.
    assert response.status == 413


def test_api_error_rejects_reserved_extension_names() -> None:
    with pytest.raises(TypeError, match="may not be named"):
        APIError(400, "x", instance="/elsewhere")
    assert repr(APIError(404, "gone")) == "APIError(404, 'gone')"


def test_chunked_body_over_limit_is_413(threaded: ThreadedServer) -> None:
    chunk = b"x" * 100
    raw = (
        b"POST /small-body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"64\r\n"
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    response = threaded.raw(raw)
    assert response.status == 413
    assert json.loads(response.body)["max_bytes"] == 64


# -- the runnable example ---------------------------------------------------------


@pytest.fixture
def example_02() -> Iterator[str]:
    with ExampleProcess("02_json_errors.py", capture=True) as example:
        yield example.url
    # the 500's exception is logged by the server, never sent to the client
    assert b"hunter2" in example.stderr


async def test_example_02_runs_on_its_own(example_02: str, http_client: AsyncHTTPClient) -> None:
    missing = await fetch(http_client, example_02 + "/items/1")
    assert missing.code == 404
    assert problem(missing)["item_id"] == 1
    created = await fetch(
        http_client, example_02 + "/items", "POST", body=b'{"name": "lamp"}', headers=JSON
    )
    assert created.code == 201
    assert json.loads(created.body) == {"id": 1, "name": "lamp"}
    assert (await fetch(http_client, example_02 + "/items/1")).code == 200
    bad = await fetch(http_client, example_02 + "/items", "POST", body=b"{", headers=JSON)
    assert bad.code == 400
    invalid = await fetch(http_client, example_02 + "/items", "POST", body=b"{}", headers=JSON)
    assert problem(invalid)["field"] == "name"
    boom = await fetch(http_client, example_02 + "/boom")
    assert boom.code == 500
    assert b"hunter2" not in boom.body
    assert (await fetch(http_client, example_02 + "/nowhere")).code == 404
    assert (await fetch(http_client, example_02 + "/items", "DELETE")).headers[
        "Allow"
    ] == "GET, POST"
