"""Shared helpers for the reference app tests (API, browser, deploy)."""

from __future__ import annotations

import contextlib
import io
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
