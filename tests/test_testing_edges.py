"""tornado_kit.testing against servers other than Tornado's: raw bodies, split UTF-8, URLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tornado_kit.testing import read_sse
from tornado_kit.testing._sse import SSEParser
from tornado_kit.testing._ws import _ws_url

BODY = "id: 1\ndata: é€𝄞 one\n\nid: 2\ndata: two ü\r\n\r\n".encode()


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[str]:
    """An HTTP/1.1 server that sends an un-chunked event stream a few bytes at a time."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        # 3-byte pieces split the 2-, 3- and 4-byte UTF-8 sequences.
        for i in range(0, len(BODY), 3):
            writer.write(BODY[i : i + 3])
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.close()  # the end of the body (no Content-Length, no chunks)
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_read_sse_reads_a_body_that_is_not_chunked(raw_server: str) -> None:
    events = await read_sse(raw_server + "/", count=5, timeout=5)  # ends early: closed
    assert [(e.id, e.data) for e in events] == [("1", "é€𝄞 one"), ("2", "two ü")]


async def test_read_sse_stops_after_count_events(raw_server: str) -> None:
    events = await read_sse(raw_server + "/", count=1, timeout=5)
    assert [e.data for e in events] == ["é€𝄞 one"]


def test_a_crlf_split_across_feeds_is_one_line_break() -> None:
    parser = SSEParser()
    assert parser.feed("data: a\r") == []
    assert parser.feed("\ndata: b\r") == []
    assert [e.data for e in parser.feed("\n\r\n")] == ["a\nb"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:1/p?q=1", "ws://h:1/p?q=1"),
        ("https://h/p", "wss://h/p"),
        ("ws://h/p", "ws://h/p"),
        ("wss://h/p", "wss://h/p"),
    ],
)
def test_ws_connect_maps_http_urls_to_websocket_urls(url: str, expected: str) -> None:
    assert _ws_url(url) == expected
