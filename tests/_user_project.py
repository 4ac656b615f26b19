"""A user's own project that uses tornado_kit.testing, in a directory of its own.

Each layout is one documented way to enable the pytest plugin next to an
import of the helpers; :func:`run_pytest` runs it in a fresh pytest process
(outside this suite's conftest) with warnings as errors, as the user would.
The ``script`` layout is the docs' plain asyncio program that uses the
helpers without pytest.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The configuration docs/testing.md tells users to put in their pyproject.toml.
PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

APP = """\
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from tornado_kit import SSEMixin


class Hello(RequestHandler):
    def get(self):
        self.write("hello")


class Echo(WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class Ticks(SSEMixin, RequestHandler):
    async def get(self):
        for tick in range(3):
            await self.send_event(f"tick {tick}", id=str(tick))


def make_app():
    return Application([("/hello", Hello), ("/echo", Echo), ("/ticks", Ticks)])
"""

# Every fixture of the plugin, and every helper called directly.
TESTS = """\
async def test_http(base_url, http_client):
    response = await http_client.fetch(base_url + "/hello")
    assert response.body == b"hello"


async def test_sse_fixture_and_helpers(base_url, sse):
    assert [e.id for e in await sse("/ticks", count=3, timeout=5)] == ["0", "1", "2"]
    events = await read_sse(base_url + "/ticks", count=2, timeout=5)
    assert [e.data for e in events] == ["tick 0", "tick 1"]
    assert parse_sse("data: a\\n\\n")[0].data == "a"


async def test_websocket_fixture_and_helper(base_url, ws_connect):
    conn = await ws_connect("/echo")
    await conn.write_message("hi")
    assert await conn.read_message() == "hi"
    other = await tk_ws_connect(base_url + "/echo")
    await other.write_message("ho")
    assert await other.read_message() == "ho"
    other.close()
    assert await other.read_message() is None
"""

HELPERS = """\
from tornado_kit.testing import parse_sse, read_sse
from tornado_kit.testing import ws_connect as tk_ws_connect
"""

APP_FIXTURE = """\
import pytest

from userapp import make_app


@pytest.fixture
def app():
    return make_app()
"""

PLUGIN = 'pytest_plugins = ["tornado_kit.testing"]\n'

# A plain asyncio program from docs/testing.md: the helpers against a tiny server.
SCRIPT = (ROOT / "docs" / "snippets" / "helpers_without_pytest.py").read_text()

# name -> {file name: text}
LAYOUTS: dict[str, dict[str, str]] = {
    # Just the configuration and the app module: the test adds its own files.
    "bare": {},
    # The testing page's own example module (4 tests).
    "snippet": {
        "test_user_project.py": (ROOT / "docs" / "snippets" / "test_with_plugin.py").read_text()
    },
    # A plain asyncio program that uses the helpers, for a venv without pytest.
    "script": {"helpers_script.py": SCRIPT},
    # The plugin enabled in conftest.py; a test module imports the helpers.
    "conftest": {
        "conftest.py": APP_FIXTURE + "\n" + PLUGIN,
        "test_user.py": HELPERS + "\n\n" + TESTS,
    },
    # One test module imports the helpers first, then enables the plugin.
    "module": {
        "test_user.py": HELPERS + APP_FIXTURE + "\n" + PLUGIN + "\n\n" + TESTS,
    },
    # No pytest_plugins at all: the user passes ``-p tornado_kit.testing``.
    "cmdline": {
        "conftest.py": APP_FIXTURE,
        "test_user.py": HELPERS + "\n\n" + TESTS,
    },
}


# Each way to enable the plugin: (layout, extra pytest arguments).
PLUGIN_LAYOUTS: list[tuple[str, tuple[str, ...]]] = [
    ("conftest", ()),
    ("module", ()),
    ("cmdline", ("-p", "tornado_kit.testing")),
]


def write_layout(directory: Path, layout: str) -> Path:
    """Write the user project *layout* into *directory* (created) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"pyproject.toml": PYPROJECT, "userapp.py": APP, **LAYOUTS[layout]}
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def plain_env() -> dict[str, str]:
    """This process's environment without what pytest or this suite set for itself."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.pop("PYTHONPATH", None)
    return env


def run_pytest(python: str | Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest -W error`` in *project*, with the environment of a plain shell."""
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=project,
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    """*count* tests passed, nothing failed, and pytest printed no warning at all."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{count} passed" in result.stdout, output
    assert "warning" not in output.lower(), output
