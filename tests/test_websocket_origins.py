"""Property tests for origin matching (AllowedOriginsMixin) and the relay envelope."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from tornado_kit import AllowedOriginsMixin
from tornado_kit._ws._origins import parse_origin, parse_pattern
from tornado_kit._ws._rooms import envelope, open_envelope

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=3).map(".".join)
scheme = st.sampled_from(["http", "https"])


def _handler(patterns: list[str], host: str = "server.test") -> AllowedOriginsMixin:
    class H(AllowedOriginsMixin, WebSocketHandler):
        allowed_origins = tuple(patterns)

    handler = H.__new__(H)
    handler.application = Application()

    handler.request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/ws", "HTTP/1.1"), headers=HTTPHeaders(Host=host)
    )
    return handler


def _ok(patterns: list[str], origin: str) -> bool:
    handler = _handler(patterns)
    return handler.check_origin(origin)


@settings(max_examples=100, deadline=None)
@given(sub=st.lists(label, min_size=1, max_size=3).map(".".join), base=domain, s=scheme)
def test_wildcard_matches_any_depth_but_not_the_bare_domain(sub: str, base: str, s: str) -> None:
    patterns = [f"{s}://*.{base}"]
    assert _ok(patterns, f"{s}://{sub}.{base}")
    assert _ok(patterns, f"{s.upper()}://{sub.upper()}.{base.upper()}")
    assert not _ok(patterns, f"{s}://{base}")
    other = "https" if s == "http" else "http"
    assert not _ok(patterns, f"{other}://{sub}.{base}")
    assert not _ok(patterns, f"{s}://{sub}{base}")  # no dot: a different domain


@settings(max_examples=100, deadline=None)
@given(host=domain, s=scheme, port=st.integers(1, 65535))
def test_default_ports_are_normalised(host: str, s: str, port: int) -> None:
    default = 443 if s == "https" else 80
    assert _ok([f"{s}://{host}"], f"{s}://{host}:{default}")
    assert _ok([f"{s}://{host}:{default}"], f"{s}://{host}")
    assert _ok([f"{s}://{host}:{port}"], f"{s}://{host}:{port}")
    if port != default:
        assert not _ok([f"{s}://{host}"], f"{s}://{host}:{port}")


@settings(max_examples=200, deadline=None)
@given(origin=st.text(max_size=60))
def test_arbitrary_origins_never_raise(origin: str) -> None:
    result = _ok(["https://example.com", "https://*.example.org"], origin)
    assert isinstance(result, bool)
    if result:
        parsed = parse_origin(origin)
        assert parsed is not None
        assert parsed[1] == "example.com" or parsed[1].endswith(".example.org")


@pytest.mark.parametrize("bad", ["example.com", "https://*", "https://a.*.com", "https://x/y", ""])
def test_invalid_patterns_are_rejected_clearly(bad: str) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        parse_pattern(bad)


def test_unicode_pattern_is_idna_encoded() -> None:
    assert parse_pattern("https://bücher.example")[1] == "xn--bcher-kva.example"


@settings(max_examples=100, deadline=None)
@given(
    payload=st.one_of(st.text().map(lambda t: (1, t.encode())), st.binary().map(lambda b: (2, b))),
    origin=st.from_regex(r"([0-9a-f]{12}\.[0-9]{1,6})?", fullmatch=True),
)
def test_envelope_round_trip(payload: tuple[int, bytes], origin: str) -> None:
    opcode, data = payload
    assert open_envelope(envelope(opcode, origin, data)) == (opcode, origin, data)


# -- through a real server: any Origin header value gets 101 or 403, never 500 --


class Echo(AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = ("https://example.com", "https://*.example.org")


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[int]:
    """One server on its own IOLoop thread for the sync hypothesis test."""
    started = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        import asyncio

        async def main() -> None:
            sock, port = bind_unused_port()
            server = HTTPServer(Application([("/ws", Echo)]))
            server.add_sockets([sock])
            stop = asyncio.Event()
            holder.update(port=port, stop=stop, loop=asyncio.get_running_loop())
            started.set()
            await stop.wait()
            server.stop()
            await server.close_all_connections()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield holder["port"]  # type: ignore[misc]
    finally:
        loop = holder["loop"]
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)


header_text = (
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=50)
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=60, deadline=None)
@given(origin=st.one_of(header_text, st.sampled_from(["https://a.example.org", "https://[::1"])))
def test_any_origin_header_gets_101_or_403(threaded_server: int, origin: str) -> None:
    with socket.create_connection(("127.0.0.1", threaded_server), timeout=10) as sock:
        request = (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1])
    assert status in (101, 403), (origin, head[:200])
    if status == 101:
        parsed = parse_origin(origin)
        assert parsed is not None
