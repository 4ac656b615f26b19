"""Shared helpers for the reference app tests (API, browser, deploy)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from PIL import Image
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from examples.reference_app import Config, close_app, make_app

SECRET = "reference-app-test-secret-0123456789"
MAX_IMAGE = 64 * 1024


def app_config(tmp_path: Path, **overrides: Any) -> Config:
    """A config on a fresh SQLite file, with short heartbeat/keepalive intervals."""
    values: dict[str, Any] = {
        "db_path": str(tmp_path / "app.db"),
        "secret": SECRET,
        "max_image_bytes": MAX_IMAGE,
        "image_workers": 1,
        "image_max_pending": 2,
        "heartbeat_interval": 0.5,
        "heartbeat_timeout": 5.0,
        "sse_keepalive_interval": 0.5,
    }
    values.update(overrides)
    return Config(**values)


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[str]:
    """Serve an app built from *config* on a free port; yield its base URL."""
    application = make_app(config)
    sock, port = bind_unused_port()
    server = HTTPServer(application)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await server.close_all_connections()
        await close_app(application)


class ThreadedApp:
    """The app on a real server in a background thread, for sync (hypothesis) tests.

    Each hypothesis example drives it from its own ``asyncio.run()``; the
    server's loop lives in the thread for the whole test.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="refapp-server", daemon=True)

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the app server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from tornado_kit._lifecycle import shutdown

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        application = make_app(self.config)
        sock, port = bind_unused_port()
        server = HTTPServer(application)
        server.add_sockets([sock])
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.stop()
            await shutdown(application, timeout=5)
            await server.close_all_connections()
            await close_app(application)
