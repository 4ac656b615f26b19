"""Shared helpers for the reference app tests (API, browser, deploy)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from examples.reference_app import Config, close_app, make_app, server_options
from tests._servers import serve_app
from tests._threaded_server import ThreadedServer

REPO = Path(__file__).resolve().parent.parent
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
    """Serve an app built from *config* on a free port, as ``__main__`` does; yield its base URL.

    The server gets the app's own options (``server_options``: ``max_body_size``).
    """
    application = make_app(config)
    try:
        async with serve_app(application, **server_options(config)) as url:
            yield url
    finally:
        await close_app(application)


def start_reference_app(port: int, log_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """``python -m examples.reference_app`` on 127.0.0.1:*port*; its output goes to *log_path*."""
    argv = [sys.executable, "-m", "examples.reference_app", "--port", str(port)]
    env = dict(os.environ, REFERENCE_APP_SECRET=SECRET)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [*argv, "--address", "127.0.0.1", *options],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def threaded_refapp(tmp_path: Path, user: str = "hypo") -> Iterator[tuple[ThreadedServer, str]]:
    """The app served from a background thread (hypothesis examples are sync).

    Yields the server and the token of *user*, signed in.
    """
    app = make_app(app_config(tmp_path))
    try:
        with ThreadedServer(app) as server:
            response = server.request(
                "POST",
                "/api/token",
                body=json.dumps({"name": user}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status == 201, response.body
            yield server, json.loads(response.body)["token"]
    finally:
        asyncio.run(close_app(app))
