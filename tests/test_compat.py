"""tornado_kit._compat: the Tornado internals, on real streams and real handshakes.

When a Tornado release changes one of these internals, this module is where
it shows first; each function's fallback is checked on an object without the
attribute.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from tornado.iostream import IOStream
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tests._servers import eventually
from tests.test_websocket import Connect
from tornado_kit._compat.stream import (
    compresses,
    cross_origin_refusal,
    pending_write_bytes,
    prebuilt_buffer,
    queued_writes,
    write_prebuilt,
)
from tornado_kit._ws._base import TrackedWebSocket


@pytest_asyncio.fixture
async def stream_pair() -> AsyncIterator[tuple[IOStream, socket.socket]]:
    """An IOStream on one end of a socket pair whose other end nobody reads."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = IOStream(ours)
    try:
        yield stream, theirs
    finally:
        stream.close()
        theirs.close()


def drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


async def test_pending_bytes_and_queued_writes_follow_what_the_kernel_has_not_taken(
    stream_pair: tuple[IOStream, socket.socket],
) -> None:
    stream, peer = stream_pair
    assert pending_write_bytes(stream) == 0
    assert queued_writes(stream) == 0
    futures = [stream.write(b"x" * 10_000) for _ in range(20)]
    pending = pending_write_bytes(stream)
    assert 0 < pending <= 200_000
    assert 0 < queued_writes(stream) <= 20
    received = b""
    while not all(f.done() for f in futures):
        received += drain(peer)
        await asyncio.sleep(0.01)
    received += drain(peer)
    assert len(received) == 200_000
    assert pending_write_bytes(stream) == 0
    assert queued_writes(stream) == 0
    stream.close()
    assert pending_write_bytes(stream) == 0  # the buffer is gone after close()


async def test_prebuilt_frames_go_out_in_order_behind_queued_data(
    stream_pair: tuple[IOStream, socket.socket],
) -> None:
    stream, peer = stream_pair
    stream.write(b"a" * 100_000)  # more than the kernel takes: some is queued
    buffer = prebuilt_buffer(stream)
    assert buffer is not None
    assert len(buffer) > 0
    assert write_prebuilt(stream, buffer, b"<frame>") is None
    assert queued_writes(stream) == 1  # the prebuilt frame added no future
    received = b""
    while len(received) < 100_007:
        received += drain(peer)
        await asyncio.sleep(0.01)
    assert received == b"a" * 100_000 + b"<frame>"


async def test_prebuilt_frame_to_a_broken_socket_returns_the_error(
    stream_pair: tuple[IOStream, socket.socket],
) -> None:
    stream, peer = stream_pair
    peer.close()
    buffer = prebuilt_buffer(stream)
    error = write_prebuilt(stream, buffer, b"x")
    if error is None:  # the first send may still succeed; the next one fails
        error = write_prebuilt(stream, buffer, b"x")
    assert isinstance(error, OSError)


def test_fallbacks_for_objects_without_the_internals() -> None:
    bare: Any = SimpleNamespace()
    assert pending_write_bytes(bare) == 0
    assert pending_write_bytes(None) == 0
    assert queued_writes(bare) == 0
    assert prebuilt_buffer(bare) is None
    assert compresses(bare)  # unknown: take the write_message path, which works for all


class Plain(TrackedWebSocket):
    def open(self) -> None:
        self.settings["opened"].append(self)


class Deflating(Plain):
    def get_compression_options(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def app() -> Application:
    return Application(
        [("/plain", Plain), ("/deflate", Deflating), ("/origin-rule", OriginRule)], opened=[]
    )


async def test_compresses_tells_deflate_connections_apart(
    app: Application, ws_connect: Connect
) -> None:
    await ws_connect("/plain")
    await ws_connect("/deflate", compression_options={})
    await eventually(lambda: len(app.settings["opened"]) == 2)
    plain, deflating = app.settings["opened"]
    assert not compresses(plain.ws_connection)
    assert compresses(deflating.ws_connection)


class OriginRule(RequestHandler):
    """Answers what cross_origin_refusal says of this request, with Tornado's check_origin.

    (Up to Tornado 6.5 the default ``check_origin`` compares the origin with
    the ``Host``; from 6.6 Tornado does that before calling it.)
    """

    def get(self) -> None:
        def check(origin: str) -> bool:
            return WebSocketHandler.check_origin(self, origin)  # type: ignore[arg-type]

        self.write({"refused": cross_origin_refusal(self, check)})


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # no Origin: not a browser
        ({"Origin": "http://{host}"}, False),  # the same host
        ({"Origin": "https://elsewhere.example"}, True),
    ],
)
async def test_cross_origin_refusal_applies_tornados_rule(
    base_url: str, http_client: Any, headers: dict[str, str], refused: bool
) -> None:
    host = base_url.split("://", 1)[1]
    headers = {name: value.format(host=host) for name, value in headers.items()}
    response = await http_client.fetch(base_url + "/origin-rule", headers=headers)
    assert (json.loads(response.body)["refused"] is not None) is refused
