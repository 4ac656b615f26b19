"""A real Tornado server on its own thread, for sync (hypothesis) tests.

Hypothesis drives sync test functions; the server runs its own event loop on
a thread and the test talks to it over real sockets, either with
``http.client`` or with raw bytes (for header values a client library would
refuse to send).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Mapping

from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body


class ThreadedServer:
    def __init__(self, app: Application) -> None:
        self.app = app
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server thread did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock, self.port = bind_unused_port()
        server = HTTPServer(self.app)
        server.add_sockets([sock])
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    def raw(self, request: bytes) -> Response:
        """Send *request* bytes verbatim; read the response until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return parse_response(b"".join(chunks))


def parse_response(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Response(status, headers, body)


def raw_get(path: str, extra_headers: bytes = b"") -> bytes:
    """A minimal HTTP/1.1 GET with ``Connection: close`` and *extra_headers* verbatim."""
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: close\r\n" + extra_headers + b"\r\n"
    )
