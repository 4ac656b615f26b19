"""An HTTPServer that drains: idle keep-alive connections close, busy ones finish.

Used by :func:`tornado_kit.serve` for its graceful shutdown. Tornado's
``HTTPServer.close_all_connections()`` closes every connection at once, busy or
not, and nothing in Tornado tells an idle keep-alive connection from one with a
request in flight (Tornado #1791); :class:`DrainingHTTPServer` keeps that
bookkeeping through the public ``HTTPServerConnectionDelegate`` hooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer


class DrainingHTTPServer(HTTPServer):
    """An :class:`HTTPServer` that knows which connections are mid-request.

    ``HTTP1ServerConnection`` calls :meth:`start_request` when it is ready to
    read the next request on a connection (so the previous response on it is
    complete), and our wrapping delegate marks the connection busy once that
    request's headers have arrived. A connection that is not busy is idle
    keep-alive: shutdown closes it at once instead of waiting for it.
    A WebSocket detaches its stream from the HTTP connection, which then ends
    and leaves this bookkeeping; :func:`tornado_kit._lifecycle.shutdown` closes those.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._busy: dict[object, httputil.HTTPConnection] = {}
        self._idle: set[object] = set()
        self._draining = False
        self._drained: asyncio.Event | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self._busy.pop(server_conn, None)
        self._idle.add(server_conn)
        if self._draining:
            # The response on this connection is complete: do not wait for
            # another request on it.
            _close_server_conn(server_conn)
            self._check_drained()
        delegate = super().start_request(server_conn, request_conn)
        return _TrackingDelegate(delegate, self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._busy.pop(server_conn, None)
        self._idle.discard(server_conn)
        super().on_close(server_conn)
        self._check_drained()

    def _request_started(self, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self._idle.discard(server_conn)
        self._busy[server_conn] = request_conn
        if self._draining:
            _disconnect_after_response(request_conn)

    @property
    def in_flight(self) -> int:
        """Connections with a request whose response is not complete yet."""
        return len(self._busy)

    async def drain(self, timeout: float) -> bool:
        """Close idle connections, wait for busy ones; True when all finished in time."""
        self._draining = True
        self._drained = asyncio.Event()
        for server_conn in list(self._idle):
            _close_server_conn(server_conn)
        for request_conn in self._busy.values():
            _disconnect_after_response(request_conn)
        self._check_drained()
        if self._drained.is_set():  # nothing in flight: done, even with timeout 0
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _check_drained(self) -> None:
        if self._drained is not None and not self._busy:
            self._drained.set()


def _close_server_conn(server_conn: object) -> None:
    stream = getattr(server_conn, "stream", None)
    if stream is not None:
        stream.close()


def _disconnect_after_response(request_conn: httputil.HTTPConnection) -> None:
    # Tell the client not to reuse the connection ("Connection: close" on the
    # response, RFC 9112 §9.6) and close it once the response is written.
    # HTTP1Connection decides this when it reads the request headers and keeps
    # the decision in a private attribute; when it is missing (another Tornado
    # version) the connection is still closed by start_request above.
    if isinstance(request_conn, HTTP1Connection) and hasattr(request_conn, "_disconnect_on_finish"):
        request_conn._disconnect_on_finish = True


class _TrackingDelegate(httputil.HTTPMessageDelegate):
    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        server: DrainingHTTPServer,
        server_conn: object,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self._delegate = delegate
        self._server = server
        self._server_conn = server_conn
        self._request_conn = request_conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._server._request_started(self._server_conn, self._request_conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
