"""WebSocket client helpers for tests: :func:`ws_connect` and a quiet close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError
from tornado.websocket import WebSocketClientConnection, websocket_connect

__all__ = ["close_quietly", "ws_connect"]


def _ws_url(url: str) -> str:
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


async def ws_connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    timeout: float = 10,
    **kw: Any,
) -> WebSocketClientConnection:
    """Open a WebSocket to *url* (``ws://``, ``wss://``, ``http://`` or ``https://``).

    Raises :class:`tornado.httpclient.HTTPClientError` when the server refuses
    the handshake (``exc.code`` is the status, e.g. 403) and
    :class:`asyncio.TimeoutError` when it does not answer within *timeout*
    seconds. Extra keyword arguments go to
    :func:`tornado.websocket.websocket_connect` (``ping_interval``,
    ``max_message_size``, ``compression_options``, ...). Close the connection
    when done.

    Example::

        conn = await ws_connect(base_url + "/chat", headers={"Origin": "https://example.com"})
        await conn.write_message('{"text": "hi"}')
        print(await conn.read_message())
        conn.close()

    .. versionadded:: 0.1
    """
    request = HTTPRequest(
        _ws_url(url),
        headers=dict(headers or {}),
        connect_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        return await asyncio.wait_for(
            websocket_connect(
                request, subprotocols=list(subprotocols) if subprotocols else None, **kw
            ),
            timeout,
        )
    except HTTPTimeoutError as exc:  # Tornado's own connect/request timeout
        raise asyncio.TimeoutError(str(exc)) from exc


async def _drain(conn: WebSocketClientConnection) -> None:
    while await conn.read_message() is not None:
        pass


async def close_quietly(conn: WebSocketClientConnection, timeout: float = 5) -> None:
    """Close *conn* and wait until the server has answered the close frame."""
    stream = getattr(conn.protocol, "stream", None)
    conn.close()
    if stream is None or stream.closed():
        return  # already closed (read_message() would wait forever now)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(_drain(conn), timeout)
