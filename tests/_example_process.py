"""The numbered examples in tests: run one as its own process, or import its module."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from tests._servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>`` (not a valid module name: ``04_websocket_chat.py``)."""
    path = ROOT / "examples" / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str) -> Iterator[str]:
    """Start ``examples/<name> --port N``, yield its base URL, SIGTERM it, expect exit 0."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / name), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        returncode = proc.wait(timeout=30)
    assert returncode == 0  # SIGTERM: a clean shutdown, workers and clients released
