"""Lone surrogates are refused on both JSON backends, in bodies and in messages.

A lone UTF-16 surrogate (``"\\ud800"`` without its pair) decodes to a Python
``str`` that no UTF-8 encoder accepts: 0.1 decoded it on the standard-library
path and failed later (a 500 from SQLite, a WebSocket aborted in the middle of
a broadcast). Now ``_json.loads`` refuses it with ``ValueError`` on both
backends, so a JSON body gets a 400 problem document and a WebSocket message
an error reply, with the connection kept.

The unit tests switch backends in-process (``tests.test_json.backend``); the
server tests run the app in subprocesses, one with orjson importable and one
with ``import orjson`` blocked before tornado_kit is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import WebSocketClientConnection

from tests._example_process import ROOT
from tests._hostile_json_app import BOOT
from tests._servers import free_port, stop_process, wait_for_port
from tests.test_json import BACKENDS, backend
from tornado_kit import _json
from tornado_kit.testing import ws_connect

# ---------------------------------------------------------------------------
# _json.loads and _json.dumps, both backends
# ---------------------------------------------------------------------------

HIGH = st.integers(0xD800, 0xDBFF)
LOW = st.integers(0xDC00, 0xDFFF)
#: A UTF-16 code unit, a surrogate (of either half) much more often than by chance.
CODE_UNIT = HIGH | LOW | st.integers(0, 0xFFFF)


def utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-le")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


@st.composite
def string_literals(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A JSON string literal and the UTF-16 code units of the string it stands for.

    Pieces: ``\\uXXXX`` escapes of any code unit (hex digits in either case),
    and plain text or other escapes, among them an escaped backslash followed
    by ``ud800``: a literal backslash and letters, not a surrogate.
    """
    pieces = draw(
        st.lists(
            CODE_UNIT.map(lambda u: (("\\u%04x" if u % 2 else "\\u%04X") % u, [u]))
            | st.sampled_from(
                [
                    ("\\\\", "\\"),
                    ('\\"', '"'),
                    ("\\n", "\n"),
                    ("ud800", "ud800"),
                    ("\\\\ud83d", "\\ud83d"),
                    ("é", "é"),
                    ("\U0001f600", "\U0001f600"),
                ]
            ).map(lambda piece: (piece[0], utf16_units(piece[1]))),
            max_size=10,
        )
    )
    return '"' + "".join(text for text, _ in pieces) + '"', [u for _, us in pieces for u in us]


def utf16_is_valid(units: list[int]) -> bool:
    """The UTF-16 rule, written out: every high surrogate is followed by a low one."""
    i = 0
    while i < len(units):
        if 0xD800 <= units[i] <= 0xDBFF:
            if i + 1 == len(units) or not 0xDC00 <= units[i + 1] <= 0xDFFF:
                return False
            i += 2
        elif 0xDC00 <= units[i] <= 0xDFFF:
            return False
        else:
            i += 1
    return True


@settings(max_examples=500, deadline=None)
@given(literal=string_literals(), as_key=st.booleans())
def test_escaped_surrogates_decode_only_as_valid_pairs_on_both_backends(
    literal: tuple[str, list[int]], as_key: bool
) -> None:
    text, units = literal
    document = f"{{{text}:1}}" if as_key else f'[1,{{"a":[{text}]}}]'
    for name in BACKENDS:
        for data in (document, document.encode("utf-8")):
            with backend(name):
                if utf16_is_valid(units):
                    expected = b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le")
                    value = _json.loads(data)
                    assert value == ({expected: 1} if as_key else [1, {"a": [expected]}])
                else:
                    with pytest.raises(ValueError, match="lone surrogate"):
                        _json.loads(data)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, categories=["Cs", "Ll", "Lo", "So"]), max_size=8))
def test_raw_surrogates_in_str_input_are_refused_on_both_backends(text: str) -> None:
    document = json.dumps([text], ensure_ascii=False)  # raw characters, no escapes
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    for name in BACKENDS:
        with backend(name):
            if has_surrogate:
                with pytest.raises(ValueError, match="lone surrogate"):
                    _json.loads(document)
                # The same code points as (invalid, CESU-style) UTF-8 bytes.
                with pytest.raises(ValueError):
                    _json.loads(document.encode("utf-8", "surrogatepass"))
            else:
                assert _json.loads(document) == [text]
                assert _json.loads(document.encode("utf-8")) == [text]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('["\\\\ud800"]', ["\\ud800"]),  # an escaped backslash: no escape at all
        ('["\\\\\\ud83d\\ude00"]', ["\\\U0001f600"]),  # backslash, then a valid pair
        ('["\\u00e9\\u20ac"]', ["é€"]),  # escapes outside the surrogate range
        ('{"k":"\\uDBFF\\uDFFF"}', {"k": "\U0010ffff"}),
    ],
)
def test_text_that_only_looks_like_a_lone_surrogate_decodes(
    name: str, text: str, value: Any
) -> None:
    with backend(name):
        assert _json.loads(text) == value


@pytest.mark.parametrize("name", BACKENDS)
def test_lone_surrogate_deep_in_a_nested_document_is_refused_without_recursion_error(
    name: str,
) -> None:
    depth = 800  # deeper than orjson's limit (the stdlib decides), within the stdlib's
    text = "[" * depth + '"\\udfff"' + "]" * depth
    with backend(name), pytest.raises(ValueError, match="lone surrogate"):
        _json.loads(text)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("value", ["x\ud800", {"k\udc00": 1}, ["\ud83d\ude00"]])
def test_values_holding_surrogates_are_refused_by_dumps_on_both_backends(
    name: str, value: Any
) -> None:
    # "\ud83d\ude00" written as two code points is not the emoji: not text.
    with backend(name), pytest.raises(ValueError, match="lone surrogate"):
        _json.dumps(value)


# ---------------------------------------------------------------------------
# Through a server process, with orjson and with orjson blocked
# ---------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    backend: str


@pytest.fixture(scope="module", params=["orjson", "stdlib"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The app of tests/_hostile_json_app.py in a subprocess on that JSON backend."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOT, str(port), request.param],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=30)
        yield Served(f"http://127.0.0.1:{port}", request.param)
    finally:
        stop_process(proc)
        assert proc.stderr is not None
        errors = proc.stderr.read().decode()
        proc.stderr.close()
    # No traceback in the server's log: nothing reached an unhandled error.
    assert "Traceback" not in errors, errors


async def fetch(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any, str]:
    client = AsyncHTTPClient(force_instance=True)
    try:
        response = await client.fetch(
            url,
            method=method,
            body=body,
            headers={"Content-Type": "application/json"} if body is not None else None,
            raise_error=False,
        )
    finally:
        client.close()
    return response.code, json.loads(response.body), response.headers.get("Content-Type", "")


async def test_server_runs_the_backend_it_was_started_with(served: Served) -> None:
    status, info, _ = await fetch(served.url + "/backend")
    assert status == 200
    wanted = served.backend == "orjson"
    assert info == {"orjson": wanted, "orjson_module": wanted}


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "a\\ud800@example.com"}',  # an escaped lone high surrogate
        b'{"email": "a\\udc00\\ud800@example.com"}',  # low then high: no pair
        b'{"email": "a\xed\xa0\x80@example.com"}',  # an encoded surrogate: not UTF-8
    ],
)
async def test_json_body_with_a_lone_surrogate_is_a_400_problem(
    served: Served, body: bytes
) -> None:
    status, problem, content_type = await fetch(served.url + "/api/users", "POST", body)
    assert status == 400
    assert content_type == "application/problem+json"
    assert problem["status"] == 400
    assert problem["detail"] == "the request body is not valid JSON"
    # A valid pair is text: stored and answered.
    status, user, _ = await fetch(
        served.url + "/api/users", "POST", b'{"email": "\\ud83d\\ude00@example.com"}'
    )
    assert status == 201
    assert user["email"] == "\U0001f600@example.com"


@contextlib.asynccontextmanager
async def two_members(served: Served) -> AsyncIterator[tuple[WebSocketClientConnection, ...]]:
    """A sender and another member of the served chat room, closed afterwards."""
    sender = await ws_connect(served.url + "/ws")
    member = await ws_connect(served.url + "/ws")
    try:
        yield sender, member
    finally:
        sender.close(1000)
        member.close(1000)


async def receive(conn: WebSocketClientConnection) -> Any:
    message = await asyncio.wait_for(conn.read_message(), 10)
    assert message is not None, f"connection closed ({conn.close_code})"
    return json.loads(message)


async def test_chat_message_with_a_lone_surrogate_gets_an_error_and_the_connection_stays(
    served: Served,
) -> None:
    async with two_members(served) as (sender, member):
        await sender.write_message('{"text": "x\\ud800"}')
        reply = await receive(sender)
        assert reply == {
            "error": {
                "status": 400,
                "detail": "message contains a lone surrogate (invalid Unicode)",
            }
        }
        await sender.write_message('{"text": "still here \\ud83d\\ude00"}')
        for conn in (sender, member):
            # The member never saw the refused message: this is the next one.
            message = await receive(conn)
            assert message == {"text": "still here \U0001f600"}


async def test_broadcasting_a_str_with_a_lone_surrogate_is_a_value_error_before_sending(
    served: Served,
) -> None:
    async with two_members(served) as (sender, member):
        await sender.write_message('{"shout": "hey"}')
        reply = await receive(sender)
        detail = "the broadcast message contains a lone surrogate (invalid Unicode) at index 3"
        assert reply == {"refused": detail}
        await sender.write_message('{"text": "after"}')
        for conn in (sender, member):
            assert await receive(conn) == {"text": "after"}
