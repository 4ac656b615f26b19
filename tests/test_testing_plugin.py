"""The testing page's snippet runs as a user's own test module, through pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tornado_kit.testing import parse_sse

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "docs" / "snippets" / "test_with_plugin.py"


def _run_pytest(target: Path) -> subprocess.CompletedProcess[str]:
    """A fresh pytest process outside this suite's conftest, like a user's project."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--asyncio-mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-W",
            "error",
            str(target),
        ],
        cwd=target.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docs_snippet_passes_under_pytest(tmp_path: Path) -> None:
    target = tmp_path / "test_user_project.py"
    target.write_text(SNIPPET.read_text())
    result = _run_pytest(target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_app_fixture_must_be_overridden(tmp_path: Path) -> None:
    target = tmp_path / "test_no_app.py"
    target.write_text(
        'pytest_plugins = ["tornado_kit.testing"]\n\nasync def test_x(base_url):\n    pass\n'
    )
    result = _run_pytest(target)
    assert result.returncode != 0
    assert "define an `app` fixture" in result.stdout + result.stderr


def test_docs_parse_sse_example() -> None:
    events = parse_sse("id: 7\ndata: first line\ndata: second line\n\n")
    assert events[0].data == "first line\nsecond line"
    assert events[0].id == "7"
