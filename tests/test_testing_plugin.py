"""The plugin in a user's own project: the docs snippet, every documented layout, no pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tornado_kit.testing
from tests._user_project import PLUGIN_LAYOUTS, assert_passed, run_pytest, write_layout
from tornado_kit.testing import _plugin, parse_sse


def test_docs_snippet_passes_under_pytest(tmp_path: Path) -> None:
    assert_passed(run_pytest(sys.executable, write_layout(tmp_path, "snippet")), 4)


def test_app_fixture_must_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "test_no_app.py").write_text(
        'pytest_plugins = ["tornado_kit.testing"]\n\nasync def test_x(base_url):\n    pass\n'
    )
    result = run_pytest(sys.executable, write_layout(tmp_path, "bare"), "test_no_app.py")
    assert result.returncode != 0
    assert "define an `app` fixture" in result.stdout + result.stderr


def test_docs_parse_sse_example() -> None:
    events = parse_sse("id: 7\ndata: first line\ndata: second line\n\n")
    assert events[0].data == "first line\nsecond line"
    assert events[0].id == "7"


@pytest.mark.parametrize(("layout", "args"), PLUGIN_LAYOUTS)
def test_documented_layouts_pass_with_no_warning(
    tmp_path: Path, layout: str, args: tuple[str, ...]
) -> None:
    # "module" imports the helpers before its pytest_plugins line: in 0.1 that
    # was "PytestAssertRewriteWarning: Module already imported", an error here.
    assert_passed(run_pytest(sys.executable, write_layout(tmp_path, layout), *args), 3)


def test_helpers_never_import_pytest(tmp_path: Path) -> None:
    # The script asserts that neither pytest nor pytest_asyncio got imported;
    # tests/test_packaging.py runs it where pytest is not even installed.
    result = subprocess.run(
        [sys.executable, "helpers_script.py"],
        cwd=write_layout(tmp_path, "script"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "helpers ok\n"


@pytest.mark.parametrize(
    "name",
    ["app", "base_url", "http_client", "http_server_options", "sse_fixture", "ws_connect_fixture"],
)
def test_fixtures_at_their_0_1_path_still_import_with_a_deprecation(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"tornado_kit.testing.{name} is deprecated"):
        fixture = getattr(tornado_kit.testing, name)
    assert fixture is getattr(_plugin, name)


def test_helpers_are_the_whole_public_surface() -> None:
    assert tornado_kit.testing.__all__ == ["parse_sse", "read_sse", "ws_connect"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tornado_kit.testing.nope  # type: ignore[attr-defined]
