"""The pytest plugin of :mod:`tornado_kit.testing`: fixtures that serve your app on a real server.

pytest loads this module when a project enables ``tornado_kit.testing`` as a
plugin (``pytest_plugins = ["tornado_kit.testing"]`` or ``-p
tornado_kit.testing``), through that module's own ``pytest_plugins``. It is the
only part of :mod:`tornado_kit.testing` that imports pytest and pytest-asyncio
(the ``testing`` extra), so the helpers work without them. The fixtures are
described in :mod:`tornado_kit.testing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketClientConnection

from tornado_kit import ServerSentEvent, shutdown
from tornado_kit._redact import install_for_settings
from tornado_kit.testing._sse import read_sse
from tornado_kit.testing._ws import close_quietly, ws_connect

__all__ = [
    "SSEReader",
    "app",
    "base_url",
    "http_client",
    "http_server_options",
    "sse_fixture",
    "ws_connect_fixture",
]

SSEReader = Callable[..., Awaitable[list[ServerSentEvent]]]


@pytest.fixture
def app() -> Application:
    """The application under test: override this fixture in your ``conftest.py``."""
    raise pytest.UsageError(
        "tornado_kit.testing: define an `app` fixture that returns your tornado.web.Application"
    )


@pytest.fixture
def http_server_options() -> dict[str, Any]:
    """Keyword arguments passed to ``HTTPServer`` (override to set ``xheaders`` etc.)."""
    return {}


@pytest_asyncio.fixture
async def base_url(app: Application, http_server_options: dict[str, Any]) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port and yield its base URL."""
    install_for_settings(app.settings)  # as serve() does: its secret names are redacted
    sock, port = bind_unused_port()
    server = HTTPServer(app, **http_server_options)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await shutdown(app, timeout=5)
        await server.close_all_connections()


@pytest.fixture
def http_client() -> Iterator[AsyncHTTPClient]:
    """A private ``AsyncHTTPClient`` instance, closed after the test."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(name="sse")
def sse_fixture(base_url: str) -> SSEReader:
    """Read events from the test server: ``await sse("/path", count=1, timeout=10, headers=None)``.

    :func:`~tornado_kit.testing.read_sse` on ``base_url + path``.
    """

    async def reader(
        path: str,
        count: int = 1,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> list[ServerSentEvent]:
        return await read_sse(base_url + path, count, timeout, headers)

    return reader


@pytest_asyncio.fixture(name="ws_connect")
async def ws_connect_fixture(
    base_url: str,
) -> AsyncIterator[Callable[..., Awaitable[WebSocketClientConnection]]]:
    """Connect to a path of the test server: ``await ws_connect("/chat?room=1")``.

    Accepts the keyword arguments of :func:`~tornado_kit.testing.ws_connect`.
    Every connection it opened is closed (and its close handshake awaited) at
    teardown, before the server stops.
    """
    opened: list[WebSocketClientConnection] = []

    async def connect(path: str, **kwargs: Any) -> WebSocketClientConnection:
        url = path if "://" in path else base_url + path
        conn = await ws_connect(url, **kwargs)
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        await asyncio.gather(*(close_quietly(conn) for conn in opened))
