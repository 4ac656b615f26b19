"""No secret query value in any log record, on any logger, for any handler.

DESIGN.md "0.2 → Hardening": the values of the ``redact_query_arguments``
names never appear in a log record written while serving an app that uses
tornado-kit handlers or is run by ``serve()``: Tornado's ``tornado.access``,
``tornado.general`` and ``tornado.application`` lines and request reprs
included, for plain Tornado handlers as much as for mixin ones.

Every secret value sent here contains the marker ``Zq`` at its start, between
its hostile characters and at its end, and nothing else sent or logged does:
"``Zq`` is in no record" proves that no part of any value leaked, wherever
the redaction would have stopped. Every record of every logger is captured
(a handler on the root logger, every logger at DEBUG), formatted as text with
its traceback and as a JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import Application, RequestHandler

from tests._hostile_logs_app import CUSTOM_NAME, REFUSED_PREFIX, PlainRaises, make_app, verify
from tests._servers import eventually, free_port, open_stream, stop_process, wait_for_port
from tests._threaded_server import ThreadedServer, raw_get
from tornado_kit import TimingMixin, TokenAuthMixin
from tornado_kit._jsonlog import JSONLinesFormatter
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import (
    DEFAULT_SECRET_NAMES,
    QueryRedactionFilter,
    install,
    install_for_settings,
    redact_text,
    settings_secret_names,
)
from tornado_kit._timing import REDACTED_QUERY_ARGUMENTS
from tornado_kit._ws._rooms import STATE_KEY

ROOT = Path(__file__).resolve().parents[1]
MARKER = "Zq"
#: DESIGN.md's default list.
DESIGN_NAMES = (
    "access_token",
    "token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "code",
)
TORNADO_LOGGERS = ("tornado.access", "tornado.application", "tornado.general")


# ---------------------------------------------------------------------------
# Capturing every record
# ---------------------------------------------------------------------------


class EveryRecord(logging.Handler):
    """Keeps every record it sees as text (with traceback) and as a JSON line."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.text = logging.Formatter("%(levelname)s %(name)s %(message)s")
        self.json = JSONLinesFormatter()
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.text.format(record))
        self.lines.append(self.json.format(record))

    def joined(self) -> str:
        return "\n".join(self.lines)

    def leaks(self) -> list[str]:
        return [line for line in self.lines if MARKER in line]


@contextlib.contextmanager
def every_record() -> Iterator[EveryRecord]:
    handler = EveryRecord()
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    private = [logger for logger in loggers if not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in [root, *private]:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in [root, *private]:
            logger.removeHandler(handler)
        for logger, level in levels:
            logger.setLevel(level)


# ---------------------------------------------------------------------------
# Raw HTTP and WebSocket clients (they send any byte a request target allows)
# ---------------------------------------------------------------------------


async def raw_status(
    port: int, target: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> int:
    """Send one request with *target* verbatim; return the response status."""
    reader, writer = await open_stream("127.0.0.1", port)
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    body = b""
    if method == "POST":
        body = b"plain text"
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    try:
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(response.split(b" ", 2)[1])


@contextlib.asynccontextmanager
async def raw_websocket(port: int, target: str, *, rcvbuf: int | None = None) -> Any:
    """A WebSocket handshake, then nothing: the client never reads nor answers a ping."""
    reader, writer = await open_stream("127.0.0.1", port, rcvbuf=rcvbuf)
    writer.write(
        (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode("latin-1")
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.split(b" ", 2)[1] == b"101", head
    try:
        yield reader
    finally:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------
# Secrets and spellings
# ---------------------------------------------------------------------------


def secret(label: str) -> str:
    """A value valid as an RFC 6750 b64token, marked at both ends."""
    return f"{MARKER}{label}.~-{MARKER}"


def upper(name: str) -> str:
    return name.upper()


def percent_encoded(name: str) -> str:
    """Every other character as %XX (lower-case hex for the odd ones)."""
    out = []
    for i, char in enumerate(name):
        if i % 2 == 0:
            out.append(f"%{ord(char):02X}" if i % 4 == 0 else f"%{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


SPELLINGS = [
    (name, spell)
    for name in (*DESIGN_NAMES, CUSTOM_NAME)
    for spell in (str, upper, percent_encoded)
]


def decodes_to_access_token(spelled: str) -> bool:
    return unquote(spelled) == "access_token"


# ---------------------------------------------------------------------------
# The in-process server (testing plugin)
# ---------------------------------------------------------------------------


@pytest.fixture
def app() -> Application:
    return make_app()


async def exercise_http(port: int, query: str, *, query_has_token: bool) -> None:
    """Every kind of handler of the app, each with *query*; statuses checked."""
    token = "" if query_has_token else "&access_token=" + secret("tok")
    bad = "&access_token=" + REFUSED_PREFIX + secret("bad")
    expected = [
        (f"/auth/raises?{query}{token}", 500, None),
        (f"/auth/raises?{query}", 500, "header"),
        (f"/auth/ok?{query}{bad}", 400 if query_has_token else 401, None),
        (f"/auth/ok?{query}&access_token=a%20{MARKER}", 400, None),
        (f"/plain/ok?{query}", 200, None),
        (f"/plain/raises?{query}", 500, None),
        (f"/plain/http-error?{query}", 403, None),
        (f"/timed/ok?{query}", 200, None),
        (f"/timed/raises?{query}", 500, None),
        (f"/timed/on-finish-raises?{query}", 200, None),
        (f"/metrics?{query}", 200, None),
        (f"/static/_hostile_logs_app.py?{query}", 200, None),
        (f"/static/no-such-file?{query}", 404, None),
        (f"/static/..%2FREADME.md?{query}", 403, None),
        (f"/json?{query}", 415, "post"),
    ]
    for target, status, how in expected:
        headers = {}
        method = "GET"
        if how == "header":
            if query_has_token:
                continue  # a header and a query token: a 400, covered above
            headers["Authorization"] = "Bearer " + secret("hdr")
        elif how == "post":
            method = "POST"
            headers["Content-Type"] = "text/plain"
        got = await raw_status(port, target, method=method, headers=headers)
        assert got == status, (target, got)


@pytest.mark.parametrize(("name", "spell"), SPELLINGS, ids=lambda x: getattr(x, "__name__", x))
async def test_no_secret_query_value_in_any_record_of_any_handler(
    base_url: str, name: str, spell: Any
) -> None:
    spelled = spell(name)
    query = f"page=2&{spelled}={secret('v')}"
    with every_record() as records:
        await exercise_http(
            port_of(base_url), query, query_has_token=decodes_to_access_token(spelled)
        )
    assert not records.leaks(), "\n".join(records.leaks())
    # The lines are there, with the rest of the query kept.
    for logger in TORNADO_LOGGERS:
        assert logger in records.names
    assert "Uncaught exception GET /plain/raises?page=2&" in records.joined()
    assert f"{spelled}=REDACTED" in records.joined()


async def test_last_argument_in_a_request_repr_is_redacted_and_the_repr_kept(
    base_url: str,
) -> None:
    with every_record() as records:
        status = await raw_status(port_of(base_url), f"/plain/raises?password={secret('p')}")
    assert status == 500
    assert not records.leaks()
    assert "uri='/plain/raises?password=REDACTED', version='HTTP/1.1'" in records.joined()


async def test_header_token_never_appears_in_any_record(base_url: str) -> None:
    port = port_of(base_url)
    headers = {"Authorization": "Bearer " + secret("header")}
    refused = {"Authorization": f"Bearer {REFUSED_PREFIX}{secret('header')}"}
    malformed = {"Authorization": f"Bearer {MARKER} {MARKER}"}
    with every_record() as records:
        assert await raw_status(port, "/auth/raises", headers=headers) == 500
        assert await raw_status(port, "/auth/ok", headers=headers) == 200
        assert await raw_status(port, "/auth/ok", headers=refused) == 401
        assert await raw_status(port, "/auth/ok", headers=malformed) == 400
        assert await raw_status(port, "/auth/ok?x=1", headers=headers) == 200
    assert not records.leaks(), "\n".join(records.leaks())
    assert "Uncaught exception GET /auth/raises" in records.joined()


async def test_every_name_at_once_with_hostile_characters(base_url: str) -> None:
    values = {
        spell(name): f"{MARKER}'\"%41+={MARKER};,){MARKER}"
        for name, spell in SPELLINGS
        if not decodes_to_access_token(spell(name))
    }
    query = "&".join(f"{name}={value}" for name, value in values.items())
    with every_record() as records:
        await exercise_http(port_of(base_url), query, query_has_token=False)
    assert not records.leaks(), "\n".join(records.leaks())


async def test_websocket_closed_for_heartbeat_timeout_logs_no_secret(
    base_url: str, app: Application
) -> None:
    query = f"room=hb&access_token={secret('hb')}&{CUSTOM_NAME}={secret('hb2')}"
    with every_record() as records:
        async with raw_websocket(port_of(base_url), f"/ws/heartbeat?{query}"):
            await eventually(lambda: "no pong within" in records.joined())
    assert not records.leaks(), "\n".join(records.leaks())
    assert "closing WebSocket /ws/heartbeat?room=hb&access_token=REDACTED&" in records.joined()


async def test_websocket_evicted_as_slow_consumer_logs_no_secret(
    base_url: str, app: Application, ws_connect: Any
) -> None:
    port = port_of(base_url)
    query = f"room=slow&token={secret('slow')}&{CUSTOM_NAME.upper()}={secret('slow2')}"
    with every_record() as records:
        sender = await ws_connect(f"/ws/room?password={secret('sender')}")
        async with raw_websocket(port, f"/ws/room?{query}", rcvbuf=4096):
            rooms = state_for(app).resources[STATE_KEY].rooms
            await eventually(lambda: len(rooms.get("flood", ())) == 2)
            await sender.write_message('{"size": 16384, "count": 400}')
            reply = await asyncio.wait_for(sender.read_message(), 10)
            assert json.loads(reply) == {"flooded": True}
            await eventually(lambda: "bytes unsent" in records.joined())
        sender.close()
    assert not records.leaks(), "\n".join(records.leaks())
    assert "closing WebSocket /ws/room?room=slow&token=REDACTED&" in records.joined()


# ---------------------------------------------------------------------------
# When tornado-kit learns the names an app or a class adds
# ---------------------------------------------------------------------------
# The filter's names are per process: each test below uses a name no other
# test uses, so only the hook under test can have registered it.


def fresh_name(label: str) -> str:
    return f"{label}_{os.urandom(4).hex()}"


PLUGIN_NAME = fresh_name("plugin")


@pytest.mark.parametrize("app", [make_app(redact_query_arguments=[PLUGIN_NAME])], ids=["app"])
async def test_testing_plugin_redacts_the_app_setting_from_the_first_request(
    base_url: str,
) -> None:
    with every_record() as records:
        status = await raw_status(port_of(base_url), f"/plain/raises?{PLUGIN_NAME}={secret('p')}")
    assert status == 500
    assert not records.leaks(), "\n".join(records.leaks())
    assert f"{PLUGIN_NAME}=REDACTED" in records.joined()


def test_app_setting_is_redacted_for_plain_handlers_once_the_app_state_exists() -> None:
    # What the first WebSocket, SSE stream, broker or executor of the app does.
    name = fresh_name("state")
    app = make_app(redact_query_arguments=(name,))
    state_for(app)
    with ThreadedServer(app) as server, every_record() as records:
        assert server.raw(raw_get(f"/plain/raises?{name}={secret('s')}")).status == 500
    assert not records.leaks(), "\n".join(records.leaks())


@pytest.mark.parametrize(("path", "status"), [("/timed/raises", 500), ("/timed/ok", 200)])
def test_app_setting_is_redacted_from_the_first_timing_request_on(path: str, status: int) -> None:
    name = fresh_name("timed")
    app = make_app(redact_query_arguments=[name])
    with ThreadedServer(app) as server, every_record() as records:
        assert server.raw(raw_get(f"{path}?{name}={secret('t')}")).status == status
        assert server.raw(raw_get(f"/plain/raises?{name}={secret('u')}")).status == 500
    assert not records.leaks(), "\n".join(records.leaks())


def test_auth_query_argument_setting_is_redacted_by_a_plain_server() -> None:
    name = fresh_name("tk")
    app = make_app(auth_query_argument=name)
    with ThreadedServer(app) as server, every_record() as records:
        assert server.raw(raw_get(f"/auth/raises?{name}={secret('a')}")).status == 500
        assert server.raw(raw_get(f"/auth/ok?{name}={REFUSED_PREFIX}{secret('b')}")).status == 401
    assert not records.leaks(), "\n".join(records.leaks())
    assert f"Uncaught exception GET /auth/raises?{name}=REDACTED" in records.joined()


def raising_get(self: RequestHandler) -> None:
    raise RuntimeError(f"cannot serve {self.request.uri}")


@pytest.mark.parametrize(
    ("mixin", "attribute"),
    [(TimingMixin, "redact_query_arguments"), (TokenAuthMixin, "auth_query_argument")],
)
def test_class_attribute_names_are_redacted_from_the_first_request(
    mixin: type[RequestHandler], attribute: str
) -> None:
    name = fresh_name("cls")
    value: Any = (name,) if attribute == "redact_query_arguments" else name
    handler = type("Named", (mixin, RequestHandler), {attribute: value, "get": raising_get})
    app = Application([("/named", handler), ("/plain/raises", PlainRaises)], token_verifier=verify)
    with ThreadedServer(app) as server, every_record() as records:
        # A plain handler first: only the class definition can have told the filter.
        assert server.raw(raw_get(f"/plain/raises?{name}={secret('d')}")).status == 500
        assert server.raw(raw_get(f"/named?{name}={secret('c')}")).status == 500
    assert not records.leaks(), "\n".join(records.leaks())
    assert f"Uncaught exception GET /named?{name}=REDACTED" in records.joined()


@pytest.mark.parametrize("value", [5, [b"session"], ["session", None]])
def test_bad_redact_query_arguments_setting_is_a_type_error_naming_it(value: Any) -> None:
    with pytest.raises(TypeError, match="redact_query_arguments"):
        install_for_settings({"redact_query_arguments": value})


def test_a_str_setting_is_one_name() -> None:
    assert settings_secret_names({"redact_query_arguments": "Session"}) == {"session"}


# ---------------------------------------------------------------------------
# serve() in a subprocess
# ---------------------------------------------------------------------------


def test_serve_subprocess_writes_no_secret_to_stderr(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "stderr.log"
    argv = [sys.executable, "-m", "tornado_kit", "serve", "tests._hostile_logs_app:make_app"]
    argv += ["--port", str(port), "--address", "127.0.0.1", "--processes", "2"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [*argv, "--log-level", "debug"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file
        )
    try:
        wait_for_port(port, timeout=30)
        query = "&".join(
            f"{spell(name)}={secret(str(i))}"
            for i, (name, spell) in enumerate(SPELLINGS)
            if not decodes_to_access_token(spell(name))
        )
        asyncio.run(exercise_http(port, query, query_has_token=False))
    finally:
        stop_process(proc)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, text
    assert "Uncaught exception GET /plain/raises?" in text
    assert f"{CUSTOM_NAME}=REDACTED" in text
    assert MARKER not in text, [line for line in text.splitlines() if MARKER in line]


# ---------------------------------------------------------------------------
# A user's own server (no plugin, no serve()): hostile values, hypothesis
# ---------------------------------------------------------------------------

#: Characters Tornado accepts raw in a request target (RFC 9112 VCHAR and
#: obs-text), except "&" (it ends the value) and "#" (a client never sends one).
RAW_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0xFF).filter(
    lambda c: c not in "&#\x7f"
)
HOSTILE = st.text(alphabet=st.sampled_from("%+='\"\\;,)(]}>:/?") | RAW_CHARS, max_size=12)


@st.composite
def spelled_names(
    draw: st.DrawFn, names: tuple[str, ...] = tuple(sorted(DEFAULT_SECRET_NAMES))
) -> str:
    name = draw(st.sampled_from(names))
    out = []
    for char in name:
        kind = draw(st.sampled_from(("keep", "upper", "pct", "PCT")))
        if kind == "upper":
            out.append(char.upper())
        elif kind == "pct":
            out.append(f"%{ord(char):02x}")
        elif kind == "PCT":
            out.append(f"%{ord(char):02X}")
        else:
            out.append(char)
    return "".join(out)


@st.composite
def marked_values(draw: st.DrawFn) -> str:
    """Marker, hostile text, marker, hostile text, marker: raw or percent-encoded."""
    value = MARKER + draw(HOSTILE) + MARKER + draw(HOSTILE) + MARKER
    if draw(st.booleans()):
        return quote(value.encode("utf-8"), safe="")
    return value


@pytest.fixture(scope="module")
def threaded() -> Iterator[ThreadedServer]:
    with ThreadedServer(make_app()) as server:
        yield server


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=spelled_names(), value=marked_values(), where=st.sampled_from(("last", "middle")))
def test_any_secret_value_and_spelling_is_redacted_by_a_plain_server(
    threaded: ThreadedServer, name: str, value: str, where: str
) -> None:
    pair = f"{name}={value}"
    query = f"{pair}&page=2" if where == "middle" else f"page=2&{pair}"
    with every_record() as records:
        for path, status in (
            ("/plain/raises", 500),
            ("/plain/http-error", 403),
            ("/plain/ok", 200),
        ):
            response = threaded.raw(raw_get(f"{path}?{query}"))
            assert response.status == status, (path, response.status)
    assert not records.leaks(), "\n".join(records.leaks())


# ---------------------------------------------------------------------------
# The filter itself
# ---------------------------------------------------------------------------


def tornado_record(uri: str) -> logging.LogRecord:
    """What RequestHandler.log_exception logs for an uncaught exception."""
    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", uri, "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "127.0.0.1"}),
    )
    try:
        raise RuntimeError(f"cannot serve {uri}")
    except RuntimeError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "tornado.application",
        logging.ERROR,
        __file__,
        1,
        "Uncaught exception %s\n%r",
        (f"GET {uri} (127.0.0.1)", request),
        exc_info,
    )


@settings(max_examples=300, deadline=None)
@given(name=spelled_names(), value=marked_values(), tail=st.sampled_from(("", "&page=2")))
def test_filter_redacts_any_value_under_any_spelling(name: str, value: str, tail: str) -> None:
    record = tornado_record(f"/p?x=1&{name}={value}{tail}")
    assert QueryRedactionFilter(DEFAULT_SECRET_NAMES).filter(record)
    for formatter in (logging.Formatter(), JSONLinesFormatter()):
        text = formatter.format(record)
        assert MARKER not in text
        assert f"/p?x=1&{name}=REDACTED{tail}" in text


@given(value=marked_values())
def test_filter_keeps_other_arguments_untouched(value: str) -> None:
    record = logging.LogRecord(
        "tornado.access",
        logging.INFO,
        __file__,
        1,
        "200 GET %s (127.0.0.1) 1.00ms",
        (f"/p?mytoken={value}&token_hint={value}&x=access_token",),
        None,
    )
    assert QueryRedactionFilter(DEFAULT_SECRET_NAMES).filter(record)
    assert (
        record.getMessage()
        == f"200 GET /p?mytoken={value}&token_hint={value}&x=access_token (127.0.0.1) 1.00ms"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Tornado's access line and the request repr: the value ends at a
        # space, "&" or the closing quote, which is kept.
        ("200 GET /p?token=abc (127.0.0.1) 1.00ms", "200 GET /p?token=REDACTED (127.0.0.1) 1.00ms"),
        ("uri='/p?a=1&token=abc', version=", "uri='/p?a=1&token=REDACTED', version="),
        ('uri="/p?token=a\'b"', 'uri="/p?token=REDACTED"'),
        # Everything up to the end of the value, "=", "?", "#" and "%" included.
        ("/p?token=a=b?c#d%zz&x=1", "/p?token=REDACTED&x=1"),
        # Spelled any way Tornado decodes to the name.
        ("/p?ACCESS%5ftoken=abc", "/p?ACCESS%5ftoken=REDACTED"),
        # A name inside another value, and in a traceback's source line.
        ("/p?x=token=abc", "/p?x=token=REDACTED"),
        ("    verify(token=token)", "    verify(token=REDACTED)"),
        # Not a secret name, or nothing to hide.
        ("/p?mytoken=abc&token_type=bearer&tokens=1", "/p?mytoken=abc&token_type=bearer&tokens=1"),
        ("/p?token=&token", "/p?token=&token"),
        ("a == b", "a == b"),
    ],
)
def test_redact_text_rules(text: str, expected: str) -> None:
    assert redact_text(text, DEFAULT_SECRET_NAMES) == expected


def test_record_without_equals_sign_is_passed_untouched() -> None:
    args = ("GET /p (127.0.0.1)", 1.0)
    record = logging.LogRecord(
        "tornado.access", logging.INFO, __file__, 1, "200 %s %.2fms", args, None
    )
    assert QueryRedactionFilter(DEFAULT_SECRET_NAMES).filter(record)
    assert record.msg == "200 %s %.2fms"
    assert record.args is args
    assert record.exc_text is None


def redaction_filters(name: str) -> list[QueryRedactionFilter]:
    return [f for f in logging.getLogger(name).filters if isinstance(f, QueryRedactionFilter)]


def test_one_filter_per_logger_and_names_are_added() -> None:
    install(("first_extra",))
    install(("second_extra",))
    install()
    for name in TORNADO_LOGGERS:
        filters = redaction_filters(name)
        assert len(filters) == 1
        assert {"first_extra", "second_extra"} | DEFAULT_SECRET_NAMES <= filters[0].names


def test_every_tornado_kit_logger_but_the_access_log_carries_the_filter() -> None:
    # A module that adds a logger must add it to _redact.FILTERED_LOGGERS.
    names = [
        name
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] == "tornado_kit"
    ]
    assert "tornado_kit.timing" in names
    for name in names:
        assert len(redaction_filters(name)) == (name != "tornado_kit.access"), name


def test_one_default_list_design_names_and_0_1_names() -> None:
    assert REDACTED_QUERY_ARGUMENTS is DEFAULT_SECRET_NAMES
    assert set(DESIGN_NAMES) <= DEFAULT_SECRET_NAMES
    assert {"auth", "authorization", "id_token", "key", "refresh_token", "sig", "signature"} <= (
        DEFAULT_SECRET_NAMES
    )


def test_json_lines_formatter_writes_the_redacted_exception_text() -> None:
    record = tornado_record(f"/p?token={secret('j')}")
    QueryRedactionFilter(DEFAULT_SECRET_NAMES).filter(record)
    line = json.loads(JSONLinesFormatter().format(record))
    assert "RuntimeError: cannot serve /p?token=REDACTED" in line["exc_info"]
    assert MARKER not in json.dumps(line)


def test_docs_example_of_a_plain_handler_logs_the_password_redacted(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "timing.md").read_text(encoding="utf-8")
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "hunter2" in b]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "tornado.access 200 GET /plain?password=REDACTED&page=2 (127.0.0.1)" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
