"""Test helpers, and a pytest plugin that runs your app on a real server.

The helpers need nothing but Tornado: use them in any asyncio program or test
runner::

    from tornado_kit.testing import parse_sse, read_sse, ws_connect

    events = await read_sse("http://127.0.0.1:8000/feed", count=2, timeout=5)
    conn = await ws_connect("ws://127.0.0.1:8000/chat")

The pytest plugin needs the ``testing`` extra (pytest and pytest-asyncio:
``pip install "tornado-kit[testing]"``). Enable it in your ``conftest.py`` (or
a test module) and override the ``app`` fixture::

    pytest_plugins = ["tornado_kit.testing"]

    @pytest.fixture
    def app():
        return make_app()

    async def test_home(base_url, http_client):
        response = await http_client.fetch(base_url + "/")
        assert response.code == 200

Fixtures (function scope, running on the test's event loop):

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
    ``await sse("/path", count=2, timeout=5, headers=...)``: :func:`read_sse`
    on the test server.
``ws_connect``
    ``await ws_connect("/path?x=1", headers=...)``: :func:`ws_connect` to the
    test server; every connection is closed at teardown.

The fixtures live in a private module that only pytest loads, through this
module's ``pytest_plugins``. This module holds no assertions for pytest to
rewrite (``PYTEST_DONT_REWRITE``), so a test module may import the helpers
before or after it enables the plugin, with no warning.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from tornado_kit.testing._sse import parse_sse, read_sse
from tornado_kit.testing._ws import ws_connect

__all__ = ["parse_sse", "read_sse", "ws_connect"]

# Read by pytest when it loads this module as a plugin; inert otherwise.
pytest_plugins = ["tornado_kit.testing._plugin"]

# Fixture functions that 0.1 exported from this module (deprecated in 0.2).
_MOVED_TO_PLUGIN = frozenset(
    {"app", "base_url", "http_client", "http_server_options", "sse_fixture", "ws_connect_fixture"}
)


def __getattr__(name: str) -> Any:
    if name not in _MOVED_TO_PLUGIN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"tornado_kit.testing.{name} is deprecated: enable the plugin with "
        'pytest_plugins = ["tornado_kit.testing"] instead of importing its fixtures',
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("tornado_kit.testing._plugin"), name)
