"""Test helpers and a pytest plugin that runs your app on a real server.

Enable the plugin in your ``conftest.py`` and override the ``app`` fixture::

    pytest_plugins = ["tornado_kit.testing"]

    @pytest.fixture
    def app():
        return make_app()

    async def test_home(base_url, http_client):
        response = await http_client.fetch(base_url + "/")
        assert response.code == 200

Fixtures (function scope, running on the test's event loop; async tests need
pytest-asyncio, which the plugin uses):

``app``
    The :class:`~tornado.web.Application` under test. **Override it.**
``http_server_options``
    Keyword arguments for :class:`~tornado.httpserver.HTTPServer` (default ``{}``).
``base_url``
    ``"http://127.0.0.1:PORT"`` of a real ``HTTPServer`` serving ``app`` on a
    free port. At teardown the server stops, tornado-kit's shutdown hook runs
    (WebSockets closed with 1001, SSE streams ended, brokers closed) and every
    connection is closed.
``http_client``
    A private :class:`~tornado.httpclient.AsyncHTTPClient`, closed at teardown.
``sse``
    ``await sse("/path", count=2, timeout=5, headers=...)`` reads the first
    events of a server-sent event stream of the test server (see
    :func:`tornado_kit.testing.read_sse`) and closes the connection.
``ws_connect``
    ``await ws_connect("/path?x=1", headers=...)`` opens a WebSocket to the
    test server (see :func:`tornado_kit.testing.ws_connect`); every connection
    is closed at teardown, before the server stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application

from tornado_kit._lifecycle import shutdown
from tornado_kit._redact import install_for_settings
from tornado_kit.testing._sse import parse_sse, read_sse, sse_fixture
from tornado_kit.testing._ws import ws_connect, ws_connect_fixture

__all__ = [
    "app",
    "base_url",
    "http_client",
    "http_server_options",
    "parse_sse",
    "read_sse",
    "sse_fixture",
    "ws_connect",
    "ws_connect_fixture",
]


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
