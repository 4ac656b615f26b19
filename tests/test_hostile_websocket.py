"""Hostile WebSocket clients through a real server and raw sockets.

* A client that never reads cannot make the server buffer without bound:
  ``max_pending_bytes`` bounds every write of a mixin handler (error replies
  of ``JSONMessageMixin``, the app's own ``write_message``, broadcasts); past
  it the connection is closed with 1013 "Try Again Later" (RFC 6455 §7.4.1).
* Every refused handshake of a mixin handler is an RFC 9457 problem document,
  with or without ``JSONErrorMixin``, and leaves nothing registered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from tornado.iostream import IOStream
from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from tests._servers import eventually
from tests.test_websocket import Connect, assert_registries_empty, read_json, send_json
from tornado_kit import (
    AllowedOriginsMixin,
    APIError,
    BroadcastMixin,
    HeartbeatMixin,
    JSONErrorMixin,
    JSONMessageMixin,
    StaticTokenVerifier,
    TimingMixin,
    TokenAuthMixin,
)
from tornado_kit._compat.stream import compresses, pending_write_bytes
from tornado_kit._json import loads
from tornado_kit._lifecycle import state_for

LIMIT = 64 * 1024
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample nonce: base64 of 16 bytes
#: One 1-byte text frame "x" (not JSON), masked as a client must (RFC 6455 §5.3).
MASK = b"\x01\x02\x03\x04"
INVALID_FRAME = bytes([0x81, 0x81]) + MASK + bytes([ord("x") ^ MASK[0]])
#: The size of JSONMessageMixin's answer to it.
REPLY = b'{"error":{"status":400,"detail":"message is not valid JSON"}}'
CLOSE_FRAME_SIZE = 4 + len("client too slow")


# ---------------------------------------------------------------------------
# Handlers: each records the most bytes its stream ever held unsent
# ---------------------------------------------------------------------------


class Peaks:
    """Per connection: its stream and the largest unsent backlog seen after a write.

    Each server socket gets a small fixed send buffer (as on a slow link; it
    also stops Linux from growing it to megabytes on loopback), so that what
    the kernels hold stays small beside ``max_pending_bytes``.
    """

    def __init__(self) -> None:
        self.streams: dict[WebSocketHandler, IOStream] = {}
        self.peak: dict[WebSocketHandler, int] = {}

    def opened(self, handler: WebSocketHandler) -> None:
        assert handler.ws_connection is not None
        stream = handler.ws_connection.stream
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        self.streams[handler] = stream

    def sample(self, handler: WebSocketHandler) -> None:
        stream = self.streams.get(handler)
        if stream is not None:
            pending = pending_write_bytes(stream)
            self.peak[handler] = max(self.peak.get(handler, 0), pending)


def peaks_of(handler: WebSocketHandler) -> Peaks:
    peaks: Peaks = handler.settings["peaks"]
    return peaks


class Chat(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
    """Like the reference app's chat: JSON in, a broadcast to the room out."""

    def open(self) -> None:
        peaks_of(self).opened(self)
        self.join("room")

    async def on_json(self, data: dict[str, Any]) -> None:
        if "refuse" in data:
            raise APIError(409, data["refuse"] + "\ud800")  # a detail JSON cannot carry
        if "flood" in data:
            blob = "b" * data["flood"]
            for _ in range(data["count"]):
                await self.broadcast("room", blob)
                for member in self.settings["members"]():
                    peaks_of(self).sample(member)
        else:
            self.write_message({"echo": data})

    def on_message(self, message: str | bytes) -> Any:
        result = super().on_message(message)
        peaks_of(self).sample(self)
        return result


def _push(handler: WebSocketHandler, count: int) -> None:
    """Write *count* 1 KiB messages at once, as an app's loop would; record how many went."""
    sent = 0
    with contextlib.suppress(WebSocketClosedError):
        for _ in range(count):
            handler.write_message("p" * 1024)
            sent += 1
            peaks_of(handler).sample(handler)
    handler.settings["sent"].append(sent)


class SmallChat(Chat):
    """BroadcastMixin's class attribute, as in 0.1, still sets the bound."""

    max_pending_bytes = LIMIT // 4


class DeflateChat(Chat):
    """The same, with permessage-deflate (RFC 7692): replies go through write_message."""

    def get_compression_options(self) -> dict[str, Any]:
        return {}


class PushFromSetting(HeartbeatMixin, WebSocketHandler):
    """The limit comes from the application setting (no BroadcastMixin in sight)."""

    heartbeat_interval = 60.0

    def open(self) -> None:
        peaks_of(self).opened(self)

    def on_message(self, message: str | bytes) -> None:
        _push(self, int(message))


class PushFromAttribute(AllowedOriginsMixin, WebSocketHandler):
    """The limit comes from the class attribute, which wins over the setting."""

    max_pending_bytes = LIMIT // 2

    def open(self) -> None:
        peaks_of(self).opened(self)

    def on_message(self, message: str | bytes) -> None:
        _push(self, int(message))


class Timed(TimingMixin, HeartbeatMixin, WebSocketHandler):
    pass


class Guarded(TokenAuthMixin, HeartbeatMixin, WebSocketHandler):
    pass


class ProblemTimed(TimingMixin, JSONErrorMixin, HeartbeatMixin, BroadcastMixin, WebSocketHandler):
    pass


class OriginsLast(HeartbeatMixin, AllowedOriginsMixin, WebSocketHandler):
    allowed_origins = ("https://ok.example",)


class ProblemOrigins(AllowedOriginsMixin, JSONErrorMixin, WebSocketHandler):
    allowed_origins = ("https://ok.example",)


@pytest.fixture
def app() -> Application:
    peaks = Peaks()
    app = Application(
        [
            ("/chat", Chat),
            ("/zchat", DeflateChat),
            ("/small-chat", SmallChat),
            ("/push", PushFromSetting),
            ("/push-attr", PushFromAttribute),
            ("/timed", Timed),
            ("/guarded", Guarded),
            ("/problem", ProblemTimed),
            ("/origins", OriginsLast),
            ("/problem-origins", ProblemOrigins),
        ],
        max_pending_bytes=LIMIT,
        token_verifier=StaticTokenVerifier({"t0ken": {"sub": "alice"}}),
        peaks=peaks,
        sent=[],
    )
    app.settings["members"] = lambda: [h for h in state_for(app).connections if h in peaks.streams]
    return app


@pytest_asyncio.fixture(autouse=True)
async def _registries_clean(app: Application) -> AsyncIterator[None]:
    yield
    assert_registries_empty(app)


# ---------------------------------------------------------------------------
# A raw client that never reads
# ---------------------------------------------------------------------------


async def raw_upgrade(
    base_url: str, path: str, *, rcvbuf: int = 4096, extra: str = ""
) -> socket.socket:
    """A non-blocking socket after a 101; its small receive buffer is never read by itself.

    *extra* holds more header lines (``"Name: value\\r\\n"``).
    """
    loop = asyncio.get_running_loop()
    port = int(base_url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def read_frames(sock: socket.socket) -> tuple[list[tuple[int, bytes]], int | None]:
    """Read every frame up to and including the close frame: (data frames, close code)."""
    loop = asyncio.get_running_loop()
    buffer = b""

    async def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            assert chunk, "connection closed before the close frame"
            buffer += chunk
        data, buffer = buffer[:n], buffer[n:]
        return data

    frames: list[tuple[int, bytes]] = []
    while True:
        b0, b1 = await take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await take(8))
        payload = await take(n)
        opcode = b0 & 0x0F
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return frames, code
        frames.append((opcode, payload))


async def close_back(sock: socket.socket, code: int) -> None:
    """Answer the server's close frame (RFC 6455 §5.5.1) and hang up."""
    payload = struct.pack("!H", code)
    frame = bytes([0x88, 0x80 | len(payload)]) + MASK
    frame += bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    with contextlib.suppress(OSError):
        await asyncio.get_running_loop().sock_sendall(sock, frame)
    sock.close()


def only_handler(app: Application, cls: type[WebSocketHandler]) -> WebSocketHandler:
    (handler,) = [h for h in state_for(app).connections if isinstance(h, cls)]
    return handler


def kernel_bytes(handler: WebSocketHandler, client: socket.socket) -> int:
    """What the two kernels can hold between server and client (send + receive buffers)."""
    stream = peaks_of(handler).streams[handler]
    server_sndbuf = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    client_rcvbuf = client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return int(server_sndbuf + client_rcvbuf)


# ---------------------------------------------------------------------------
# max_pending_bytes bounds every write
# ---------------------------------------------------------------------------


async def test_client_flooding_invalid_frames_without_reading_is_closed_with_1013(
    app: Application, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    client = await raw_upgrade(base_url, "/chat?access_token=s3cret")
    await eventually(lambda: len(state_for(app).connections) == 1)
    handler = only_handler(app, Chat)
    caplog.set_level(logging.WARNING, logger="tornado_kit.websocket")
    # Far more replies than the limit (60 bytes for each 7-byte frame): without
    # the bound the server would buffer megabytes.
    batch = INVALID_FRAME * 200
    for _ in range(300):
        await loop.sock_sendall(client, batch)
        await asyncio.sleep(0)
        if handler.ws_connection is None:
            break
    assert handler.ws_connection is None, "still open after 60000 unanswered replies"
    # The backlog never went past the bound (it is checked before each write).
    assert 0 < peaks_of(handler).peak[handler] <= LIMIT
    # Replies after the close are dropped without an error.
    handler.send_json_error(400, "late")  # type: ignore[attr-defined]
    with pytest.raises(WebSocketClosedError):
        handler.write_message("late")
    kernel = kernel_bytes(handler, client)
    frames, code = await read_frames(client)
    assert code == 1013  # RFC 6455 §7.4.1 "Try Again Later"
    assert {payload for _, payload in frames} == {REPLY}
    received = len(frames) * (2 + len(REPLY))
    # About max_pending_bytes of replies: what the process held, plus what
    # the kernels held when the limit was reached.
    assert LIMIT - len(REPLY) < received <= LIMIT + kernel
    await close_back(client, 1013)
    await eventually(lambda: not state_for(app).connections)
    (record,) = [r for r in caplog.records if "bytes would be unsent" in r.getMessage()]
    assert "/chat" in record.getMessage()
    assert "s3cret" not in caplog.text  # the path only, never the query


async def test_flood_on_a_compressed_connection_is_bounded_and_closed_with_1013(
    app: Application, base_url: str
) -> None:
    loop = asyncio.get_running_loop()
    deflate = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    client = await raw_upgrade(base_url, "/zchat", extra=deflate)
    await eventually(lambda: len(state_for(app).connections) == 1)
    handler = only_handler(app, DeflateChat)
    assert handler.ws_connection is not None
    assert compresses(handler.ws_connection)  # deflate was negotiated
    for _ in range(300):
        await loop.sock_sendall(client, INVALID_FRAME * 200)
        await asyncio.sleep(0)
        if handler.ws_connection is None:
            break
    assert handler.ws_connection is None, "still open after 60000 unanswered replies"
    assert peaks_of(handler).peak[handler] <= LIMIT
    frames, code = await read_frames(client)
    assert code == 1013
    assert frames
    assert all(opcode == 0x1 for opcode, _ in frames)
    await close_back(client, 1013)
    await eventually(lambda: not state_for(app).connections)


@pytest.mark.parametrize(("path", "limit"), [("/push", LIMIT), ("/push-attr", LIMIT // 2)])
async def test_app_write_loop_to_a_client_that_never_reads_is_closed_with_1013(
    app: Application, base_url: str, path: str, limit: int
) -> None:
    loop = asyncio.get_running_loop()
    client = await raw_upgrade(base_url, path)
    await eventually(lambda: len(state_for(app).connections) == 1)
    handler = next(iter(state_for(app).connections))
    frame = bytes([0x81, 0x80 | 5]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(b"10000"))
    await loop.sock_sendall(client, frame)  # "write 10000 KiB to me"
    await eventually(lambda: bool(app.settings["sent"]))
    (sent,) = app.settings["sent"]
    kernel = kernel_bytes(handler, client)
    assert sent * 1024 <= limit + kernel  # stopped near the bound, far from 10000
    assert peaks_of(handler).peak[handler] <= limit
    assert handler.ws_connection is None
    with pytest.raises(WebSocketClosedError):
        handler.write_message("after the close")
    frames, code = await read_frames(client)
    assert code == 1013
    assert len(frames) == sent
    await close_back(client, 1013)
    await eventually(lambda: not state_for(app).connections)


@pytest.mark.parametrize(("path", "limit"), [("/chat", LIMIT), ("/small-chat", LIMIT // 4)])
async def test_broadcast_to_a_member_that_never_reads_is_bounded_and_closed_with_1013(
    app: Application, base_url: str, ws_connect: Connect, path: str, limit: int
) -> None:
    sender = await ws_connect("/chat")
    slow = await raw_upgrade(base_url, path)
    await eventually(lambda: len(state_for(app).connections) == 2)
    await send_json(sender, {"flood": 4096, "count": 400})
    await send_json(sender, {"done": True})
    assert await read_json(sender) == {"echo": {"done": True}}
    (closed,) = [h for h in state_for(app).connections if h.ws_connection is None]
    assert peaks_of(closed).peak[closed] <= limit  # the slow member's own class decides
    frames, code = await read_frames(slow)
    assert code == 1013
    assert 0 < len(frames) < 400
    await close_back(slow, 1013)
    sender.close(1000)
    await eventually(lambda: not state_for(app).connections)


async def test_error_reply_whose_detail_json_cannot_carry_is_sent_without_it(
    ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ws_connect("/chat")
    await send_json(conn, {"refuse": "taken"})
    assert await read_json(conn) == {"error": {"status": 409}}
    assert "cannot encode the error detail for status 409" in caplog.text
    await send_json(conn, {"still": "open"})
    assert await read_json(conn) == {"echo": {"still": "open"}}
    conn.close(1000)


# ---------------------------------------------------------------------------
# Refused handshakes are problem documents
# ---------------------------------------------------------------------------


async def raw_request(base_url: str, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; return status, headers (lower-case names) and body."""
    port = int(base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.replace("{port}", str(port)).encode("latin-1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        return status, headers, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


UPGRADE = "Upgrade: websocket\r\n"
CONNECTION = "Connection: keep-alive, Upgrade\r\n"
VERSION = "Sec-WebSocket-Version: 13\r\n"
GOOD_KEY = f"Sec-WebSocket-Key: {KEY}\r\n"

ALL = UPGRADE + CONNECTION + GOOD_KEY + VERSION
#: (id, request line version, headers, status, a part of the detail)
REFUSALS = [
    ("no-upgrade", "HTTP/1.1", CONNECTION + GOOD_KEY + VERSION, 400, "Upgrade: websocket"),
    (
        "upgrade-h2c",
        "HTTP/1.1",
        "Upgrade: h2c\r\n" + CONNECTION + GOOD_KEY + VERSION,
        400,
        "Upgrade",
    ),
    ("no-connection", "HTTP/1.1", UPGRADE + GOOD_KEY + VERSION, 400, "Connection"),
    (
        "keep-alive-only",
        "HTTP/1.1",
        ALL.replace(CONNECTION, "Connection: keep-alive\r\n"),
        400,
        "Connection",
    ),
    ("no-key", "HTTP/1.1", ALL.replace(GOOD_KEY, ""), 400, "Sec-WebSocket-Key"),
    ("key-not-base64", "HTTP/1.1", ALL.replace(KEY, "not base64!!"), 400, "Sec-WebSocket-Key"),
    ("key-15-bytes", "HTTP/1.1", ALL.replace(KEY, "dGhlIHNhbXBsZSBub25j"), 400, "16 bytes"),
    (
        "version-8",
        "HTTP/1.1",
        ALL.replace(VERSION, "Sec-WebSocket-Version: 8\r\n"),
        426,
        "version 13",
    ),
    ("no-version", "HTTP/1.1", ALL.replace(VERSION, ""), 426, "version 13"),
    (
        "cross-origin",
        "HTTP/1.1",
        ALL + "Origin: https://elsewhere.example\r\n",
        403,
        "cross-origin",
    ),
    ("malformed-origin", "HTTP/1.1", ALL + "Origin: https://[::1\r\n", 403, "malformed Origin"),
    ("no-host", "HTTP/1.0", ALL, 400, '"Host"'),
]


@pytest.mark.parametrize("path", ["/timed", "/problem"])
@pytest.mark.parametrize(
    ("version", "headers", "status", "detail"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
async def test_every_refused_handshake_is_a_problem_document(
    app: Application,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
    path: str,
    version: str,
    headers: str,
    status: int,
    detail: str,
) -> None:
    caplog.set_level(logging.INFO, logger="tornado_kit.access")
    host = "Host: 127.0.0.1:{port}\r\n" if version == "HTTP/1.1" else ""
    request = f"GET {path} {version}\r\n{host}{headers}\r\n"
    got, response_headers, body = await raw_request(base_url, request)
    assert got == status, body
    assert response_headers["content-type"] == "application/problem+json"
    problem = loads(body)
    assert problem["status"] == status
    assert problem["instance"] == path
    assert problem["title"]
    assert detail in problem["detail"]
    assert "request_id" in problem  # TimingMixin's id: the same builder either way
    if status == 426:
        # RFC 6455 §4.4: the versions the server speaks.
        assert response_headers["sec-websocket-version"] == "13"
    # One access record, written now; nothing registered or left pending.
    records = [r.access for r in caplog.records if r.name == "tornado_kit.access"]  # type: ignore[attr-defined]
    assert [r["status"] for r in records] == [status]
    assert_registries_empty(app)


@pytest.mark.parametrize("path", ["/origins", "/problem-origins"])
async def test_origin_refused_by_allowed_origins_is_a_problem_document(
    app: Application, base_url: str, path: str
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{{port}}\r\n{UPGRADE}{CONNECTION}{GOOD_KEY}"
        f"{VERSION}Origin: https://evil.example\r\n\r\n"
    )
    status, headers, body = await raw_request(base_url, request)
    assert status == 403
    assert headers["content-type"] == "application/problem+json"
    assert loads(body)["detail"] == "cross-origin WebSocket not allowed"
    assert_registries_empty(app)


async def test_other_handshake_errors_are_problem_documents_without_json_error_mixin(
    app: Application, base_url: str
) -> None:
    # A method the handler does not have: 405 with Allow (RFC 9110 §15.5.6).
    request = f"POST /timed HTTP/1.1\r\nHost: 127.0.0.1:{{port}}\r\n{ALL}Content-Length: 0\r\n\r\n"
    status, headers, body = await raw_request(base_url, request)
    assert (status, headers["allow"]) == (405, "GET")
    assert headers["content-type"] == "application/problem+json"
    assert loads(body)["status"] == 405
    # TokenAuthMixin's refusal keeps its challenge (RFC 6750 §3).
    request = f"GET /guarded HTTP/1.1\r\nHost: 127.0.0.1:{{port}}\r\n{ALL}\r\n"
    status, headers, body = await raw_request(base_url, request)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert headers["content-type"] == "application/problem+json"
    assert loads(body)["status"] == 401
    assert_registries_empty(app)


async def test_valid_handshakes_with_odd_but_legal_headers_are_accepted(
    app: Application, base_url: str
) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /origins HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: WebSocket\r\n"
            f"Connection: keep-alive, UPGRADE\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nOrigin: https://ok.example\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.close()
    await eventually(lambda: not state_for(app).connections)
