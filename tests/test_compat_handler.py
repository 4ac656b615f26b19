"""tornado_kit._compat.handler against the installed Tornado, on a real server.

Each function reads or changes one private attribute of ``RequestHandler`` or
``HTTPError``; these tests pin what it returns at each stage of a real
response, and its fallback on an object (or a Tornado) without the
attribute. Run them on every supported Tornado (6.2 to 6.6).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from types import SimpleNamespace
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.web import Application, GZipContentEncoding, HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler, websocket_connect

from tests._servers import eventually
from tornado_kit._compat.handler import (
    AccessLogHook,
    close_called,
    discard_pending_body,
    finished,
    headers_written,
    http_error_message,
    is_unimplemented,
    log_request,
    mark_finished,
    pending_body,
    reason,
    remove_transforms,
    response_headers,
    status_code,
    user_if_resolved,
)


class Stages(RequestHandler):
    """Writes what each accessor says before and after a write, a flush and the finish."""

    async def get(self) -> None:
        seen: dict[str, Any] = {"start": self._state()}
        self.set_status(418)
        seen["teapot"] = [status_code(self), reason(self)]
        self.write("abc")
        self.write("de")
        seen["pending"] = [chunk.decode() for chunk in pending_body(self)]
        discard_pending_body(self)
        seen["discarded"] = list(pending_body(self))
        response_headers(self)["X-Direct"] = "set"
        seen["has_direct"] = "X-Direct" in response_headers(self)
        self.settings["seen"] = seen
        self.write("x")
        await self.flush()
        seen["flushed"] = self._state()
        await self.finish("y")
        seen["finished"] = self._state()

    def _state(self) -> list[Any]:
        return [finished(self), headers_written(self), pending_body(self) == []]


class Aborted(RequestHandler):
    def get(self) -> None:
        mark_finished(self)
        seen: dict[str, Any] = {"finished": finished(self)}
        try:
            self.write("late")
        except RuntimeError as exc:
            seen["write"] = str(exc)
        self.settings["seen"] = seen
        self.request.connection.close()  # type: ignore[union-attr]


class Users(RequestHandler):
    def get_current_user(self) -> Any:
        raise AssertionError("user_if_resolved must not resolve current_user")

    def get(self) -> None:
        before = user_if_resolved(self)
        self.current_user = {"sub": "alice"}
        self.write({"before": before, "after": user_if_resolved(self)})


class LogsTwice(RequestHandler):
    def get(self) -> None:
        log_request(self)  # what finish() calls; finish() logs again
        self.write("ok")


class OwnLog(AccessLogHook):
    def _tk_log_request(self) -> None:
        self.settings["own"].append(self.get_status())

    def get(self) -> None:
        self.set_status(202)


class DefaultLog(AccessLogHook):
    def get(self) -> None:
        self.write("ok")


class Uncompressed(RequestHandler):
    def get(self) -> None:
        remove_transforms(self, GZipContentEncoding)
        self.write("z" * 4096)


class Compressed(RequestHandler):
    def get(self) -> None:
        self.write("z" * 4096)


class Socket(WebSocketHandler):
    def open(self) -> None:
        self.settings["closes"].append(("open", close_called(self)))

    def on_close(self) -> None:
        self.settings["closes"].append(("on_close", close_called(self)))


@pytest.fixture
def app() -> Application:
    logged: list[str] = []
    return Application(
        [
            ("/stages", Stages),
            ("/aborted", Aborted),
            ("/users", Users),
            ("/logs-twice", LogsTwice),
            ("/own-log", OwnLog),
            ("/default-log", DefaultLog),
            ("/uncompressed", Uncompressed),
            ("/compressed", Compressed),
            ("/ws", Socket),
        ],
        compress_response=True,
        log_function=lambda handler: logged.append(type(handler).__name__),
        logged=logged,
        own=[],
        closes=[],
    )


async def test_response_state_at_each_stage(
    app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await http_client.fetch(base_url + "/stages", raise_error=False)
    assert response.code == 418
    assert response.body == b"xy"  # "abcde" was discarded before the flush
    assert response.headers["X-Direct"] == "set"
    seen = app.settings["seen"]
    assert seen["start"] == [False, False, True]
    assert seen["teapot"] == [418, "I'm a Teapot"]
    assert seen["pending"] == ["abc", "de"]
    assert seen["discarded"] == []
    assert seen["has_direct"] is True
    assert seen["flushed"] == [False, True, True]
    assert seen["finished"] == [True, True, True]


async def test_mark_finished_makes_later_writes_fail_as_after_finish(
    app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await http_client.fetch(base_url + "/aborted")
    assert info.value.code == 599  # the connection closed without an answer
    assert app.settings["seen"] == {"finished": True, "write": "Cannot write() after finish()"}


async def test_user_if_resolved_never_resolves_current_user(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    response = await http_client.fetch(base_url + "/users")
    assert json.loads(response.body) == {"before": None, "after": {"sub": "alice"}}


async def test_log_request_runs_tornados_log_hook(
    app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    await http_client.fetch(base_url + "/logs-twice")
    assert app.settings["logged"] == ["LogsTwice", "LogsTwice"]


async def test_access_log_hook_replaces_tornados_line_or_keeps_it(
    app: Application, base_url: str, http_client: AsyncHTTPClient
) -> None:
    await http_client.fetch(base_url + "/own-log")
    assert app.settings["own"] == [202]
    assert app.settings["logged"] == []  # Application.log_request did not run
    await http_client.fetch(base_url + "/default-log")
    assert app.settings["logged"] == ["DefaultLog"]  # the default hook is Tornado's


async def test_remove_transforms_switches_compression_off_for_one_response(
    base_url: str, http_client: AsyncHTTPClient
) -> None:
    headers = {"Accept-Encoding": "gzip"}
    compressed = await http_client.fetch(
        base_url + "/compressed", headers=headers, decompress_response=False
    )
    assert compressed.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(compressed.body) == b"z" * 4096
    plain = await http_client.fetch(
        base_url + "/uncompressed", headers=headers, decompress_response=False
    )
    assert "Content-Encoding" not in plain.headers
    assert plain.body == b"z" * 4096


async def test_close_called_turns_true_when_on_close_runs(app: Application, base_url: str) -> None:
    conn = await websocket_connect(base_url.replace("http", "ws") + "/ws")
    conn.close()
    await eventually(lambda: len(app.settings["closes"]) == 2)
    assert app.settings["closes"] == [("open", False), ("on_close", True)]
    await asyncio.sleep(0)


class Verbs(RequestHandler):
    def get(self) -> None:
        pass


def test_is_unimplemented_tells_tornados_405_default_apart() -> None:
    assert not is_unimplemented(Verbs, "GET")
    assert is_unimplemented(Verbs, "POST")
    assert is_unimplemented(Verbs, "BREW")  # no method of that name at all


def test_is_unimplemented_without_tornados_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Tornado release without _unimplemented_method: defined verbs count.
    monkeypatch.delattr(RequestHandler, "_unimplemented_method")
    assert not is_unimplemented(Verbs, "GET")
    assert not is_unimplemented(Verbs, "POST")  # RequestHandler.post exists then
    assert is_unimplemented(Verbs, "BREW")


MESSAGES = [
    ((500,), None),
    ((500, "plain"), "plain"),
    ((500, "100%"), "100%"),
    ((500, "%s of %d", "3", 4), "3 of 4"),
    ((500, ""), ""),
]


@pytest.mark.parametrize(("args", "expected"), MESSAGES)
def test_http_error_message_is_the_formatted_log_message(
    args: tuple[Any, ...], expected: str | None
) -> None:
    error = HTTPError(*args)
    assert http_error_message(error) == expected
    if hasattr(error, "get_message"):  # Tornado 6.5+: the same as its own
        assert http_error_message(error) == error.get_message()


@pytest.mark.parametrize(("args", "expected"), MESSAGES)
def test_http_error_message_fallback_before_get_message(
    args: tuple[Any, ...], expected: str | None
) -> None:
    # Tornado 6.2-6.4: no get_message; log_message is stored with "%" doubled
    # when there are no args (their HTTPError.__init__).
    log_message, rest = (args[1] if len(args) > 1 else None), args[2:]
    if log_message and not rest:
        log_message = log_message.replace("%", "%%")
    old_style: Any = SimpleNamespace(log_message=log_message, args=rest)
    assert http_error_message(old_style) == expected


def test_fallbacks_for_objects_without_the_internals() -> None:
    bare: Any = SimpleNamespace(get_status=lambda: 299)
    assert finished(bare) is False
    assert headers_written(bare) is False
    assert status_code(bare) == 299
    assert reason(bare) == ""
    assert pending_body(bare) == []
    assert user_if_resolved(bare) is None
    assert close_called(bare) is False
    remove_transforms(bare, GZipContentEncoding)  # nothing to remove: no error
    assert not hasattr(bare, "_transforms")
    logged: list[Any] = []
    bare.application = SimpleNamespace(log_request=logged.append)
    log_request(bare)  # no _log hook: what it would do
    assert logged == [bare]
