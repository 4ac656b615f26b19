"""An HTTPServer that drains: idle keep-alive connections close, busy ones finish.

Used by :func:`tornado_kit.serve` for its graceful shutdown. Tornado's
``HTTPServer.close_all_connections()`` closes every connection at once, busy or
not, and nothing in Tornado tells an idle keep-alive connection from one with a
request in flight (Tornado #1791); :class:`DrainingHTTPServer` keeps that
bookkeeping through the public ``HTTPServerConnectionDelegate`` hooks.

It also answers a request whose declared ``Content-Length`` exceeds the
body size limit with ``413 Content Too Large`` (RFC 9110 §15.5.14) as
problem+json (RFC 9457), before reading any of the body, where Tornado
would answer a bare ``400 Bad Request``. The check runs after the handler's
``headers_received``, so a ``@stream_request_body`` handler that raised its
own limit in ``prepare()`` (``request.connection.set_max_body_size``) is
judged by that limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import Application

from tornado_kit._compat.http1 import (
    connection_max_body_size,
    disconnect_after_response,
    response_started,
)
from tornado_kit._json import dumps

log = logging.getLogger("tornado_kit.server")

_DIGITS = re.compile(r"[0-9]+")
#: What Tornado itself answers to a malformed request head.
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
#: The default of ``serve(max_body_size=)``: the most a request may make a server buffer.
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
#: Tornado's default ``websocket_max_message_size``.
_WEBSOCKET_MAX_MESSAGE = 10 * 1024 * 1024
#: Read-buffer room beyond one body or frame: a header block and a read chunk.
_READ_HEADROOM = 128 * 1024


def with_buffer_size(options: dict[str, Any], app: Application) -> dict[str, Any]:
    """*options* with a ``max_buffer_size`` that fits one body or WebSocket frame.

    Tornado's IOStream default is 100 MB; a WebSocket frame is read whole, so
    the buffer must hold the largest message the app accepts.
    """
    if "max_buffer_size" in options or options.get("max_body_size") is None:
        return options
    message = app.settings.get("websocket_max_message_size", _WEBSOCKET_MAX_MESSAGE)
    largest = max(int(options["max_body_size"]), int(message or 0))
    return {**options, "max_buffer_size": largest + _READ_HEADROOM}


class DrainingHTTPServer(HTTPServer):
    """An :class:`HTTPServer` that knows which connections are mid-request.

    ``HTTP1ServerConnection`` calls :meth:`start_request` when it is ready to
    read the next request on a connection (so the previous response on it is
    complete), and our wrapping delegate marks the connection busy once that
    request's headers have arrived. A connection that is not busy is idle
    keep-alive: shutdown closes it at once instead of waiting for it.
    A WebSocket detaches its stream from the HTTP connection, which then ends
    and leaves this bookkeeping; :func:`tornado_kit.shutdown` closes those.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._tk_busy: dict[object, httputil.HTTPConnection] = {}
        self._tk_idle: set[object] = set()
        self._tk_draining = False
        self._tk_drained: asyncio.Event | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self._tk_busy.pop(server_conn, None)
        self._tk_idle.add(server_conn)
        if self._tk_draining:
            # The response on this connection is complete: do not wait for
            # another request on it.
            _close_server_conn(server_conn)
            self._tk_check_drained()
        delegate = super().start_request(server_conn, request_conn)
        return _TrackingDelegate(delegate, self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._tk_busy.pop(server_conn, None)
        self._tk_idle.discard(server_conn)
        super().on_close(server_conn)
        self._tk_check_drained()

    def _tk_request_started(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> None:
        self._tk_idle.discard(server_conn)
        self._tk_busy[server_conn] = request_conn
        if self._tk_draining:
            # "Connection: close" on the response, RFC 9112 §9.6
            disconnect_after_response(request_conn)

    @property
    def in_flight(self) -> int:
        """Connections with a request whose response is not complete yet."""
        return len(self._tk_busy)

    async def drain(self, timeout: float) -> bool:
        """Close idle connections, wait for busy ones; True when all finished in time."""
        self._tk_draining = True
        self._tk_drained = asyncio.Event()
        for server_conn in list(self._tk_idle):
            _close_server_conn(server_conn)
        for request_conn in self._tk_busy.values():
            # "Connection: close" on the response, RFC 9112 §9.6
            disconnect_after_response(request_conn)
        self._tk_check_drained()
        if self._tk_drained.is_set():  # nothing in flight: done, even with timeout 0
            return True
        try:
            await asyncio.wait_for(self._tk_drained.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _tk_check_drained(self) -> None:
        if self._tk_drained is not None and not self._tk_busy:
            self._tk_drained.set()


def _close_server_conn(server_conn: object) -> None:
    stream = getattr(server_conn, "stream", None)
    if stream is not None:
        stream.close()


def _length_text(headers: httputil.HTTPHeaders) -> str | None:
    """The request's ``Content-Length`` as one value, as Tornado reads it, else ``None``.

    Repeated equal values (``5, 5``) count as one, as in Tornado; unequal
    ones, and any ``Transfer-Encoding``, are ``None``: left to Tornado to refuse.
    """
    value = headers.get("Content-Length")
    if value is None or "Transfer-Encoding" in headers:
        return None
    pieces = {piece.strip() for piece in value.split(",")}
    return pieces.pop() if len(pieces) == 1 else None


def _declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The request's ``Content-Length`` when it is one plain number, else ``None``."""
    text = _length_text(headers)
    if text is None or not _DIGITS.fullmatch(text):
        return None
    # int() refuses more than 4300 digits (CPython's limit): any length of
    # more than 18 digits is over every limit anyway.
    return int(text) if len(text) <= 18 else 10**18


def _malformed_length(headers: httputil.HTTPHeaders) -> bool:
    """A ``Content-Length`` that Tornado takes as one value but that is not ``1*DIGIT``."""
    text = _length_text(headers)
    return text is not None and not _DIGITS.fullmatch(text)


def _problem_413(path: str, declared: int, limit: int) -> bytes:
    body = dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"the request body ({declared} bytes) is larger than the "
            f"limit of {limit} bytes",
            "instance": path,
            "max_bytes": limit,
        }
    )
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin1") + body


async def _write_and_close(stream: IOStream, data: bytes) -> None:
    """Write *data* (or flush what is queued), then close: the body is never read."""
    try:
        await stream.write(data)
    except StreamClosedError:
        pass
    finally:
        stream.close()


class _TrackingDelegate(httputil.HTTPMessageDelegate):
    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        server: DrainingHTTPServer,
        server_conn: object,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self._tk_delegate = delegate
        self._tk_server = server
        self._tk_server_conn = server_conn
        self._tk_request_conn = request_conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._tk_server._tk_request_started(self._tk_server_conn, self._tk_request_conn)
        result = self._tk_delegate.headers_received(start_line, headers)
        if not isinstance(start_line, httputil.RequestStartLine) or "Content-Length" not in headers:
            return result
        if result is None:
            return self._tk_refuse_if_bad_length(start_line, headers)
        return self._tk_then_refuse_if_bad_length(result, start_line, headers)

    async def _tk_then_refuse_if_bad_length(
        self,
        result: Awaitable[None],
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        await result  # a @stream_request_body handler's prepare() has run
        refusal = self._tk_refuse_if_bad_length(start_line, headers)
        if refusal is not None:
            await refusal

    def _tk_refuse_if_bad_length(
        self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        """413 for a body over this request's limit, 400 for a malformed length; else None."""
        path = start_line.path.partition("?")[0]  # the query may hold secrets
        declared = _declared_length(headers)
        if declared is None:
            if not _malformed_length(headers):
                return None  # unequal repeated values, Transfer-Encoding: Tornado refuses
            # RFC 9110 §8.6: Content-Length = 1*DIGIT. Tornado before 6.3.3
            # parsed it with int() ("+5", "1_0", " 7" passed); answer as later
            # versions do, on every version.
            log.info("400: %s %s declares a malformed Content-Length", start_line.method, path)
            return self._tk_refuse(_BAD_REQUEST)
        limit = connection_max_body_size(self._tk_request_conn)
        if limit is None or declared <= limit:
            return None
        log.info(
            "413: %s %s declares a %d-byte body, over the limit of %d bytes",
            start_line.method,
            path,
            declared,
            limit,
        )
        return self._tk_refuse(_problem_413(path, declared, limit))

    def _tk_refuse(self, response: bytes) -> Awaitable[None] | None:
        """Write *response* instead of reading the body, and close (None: cannot)."""
        conn = self._tk_request_conn
        started = response_started(conn)
        if started is None or not isinstance(conn, HTTP1Connection) or conn.stream is None:
            return None  # unknown internals, or detached: Tornado answers 400
        # Take the stream: Tornado then stops processing this request without
        # reading its body (and sends no "100 Continue").
        stream = conn.detach()
        self._tk_delegate.on_connection_close()  # a streaming handler stops waiting
        if started:  # the handler answered already (in prepare): flush that and close
            return _write_and_close(stream, b"")
        return _write_and_close(stream, response)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._tk_delegate.data_received(chunk)

    def finish(self) -> None:
        self._tk_delegate.finish()

    def on_connection_close(self) -> None:
        self._tk_delegate.on_connection_close()
