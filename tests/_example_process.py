"""Run a numbered example as its own process on a free port (examples 06 and 07)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests._servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


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
