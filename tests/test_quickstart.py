"""The README's quick start: `make demo` serves the reference app on the embedded defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests._servers import find_binary, free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_make_demo_serves_the_page(tmp_path: Path) -> None:
    make = find_binary("make")
    if make is None:
        pytest.skip("make is not installed")
    # Run `make demo` with the virtual environment running this test (CI runs
    # the suite in .venv, .venv-tornado62 and .venv-tornado64). Its stamp must be current:
    # the test must never reinstall packages.
    venv = ["VENV=" + sys.prefix]
    stale = subprocess.run([make, "--question", *venv, "venv"], cwd=REPO, check=False)
    assert stale.returncode == 0, f"{sys.prefix} is not up to date: run `make venv` first"

    port = free_port()
    env = dict(os.environ, REFERENCE_APP_DB=str(tmp_path / "demo.db"))
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [make, "demo", f"PORT={port}", *venv],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make and python
        )
    try:
        wait_for_port(port, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200
            assert b"tornado-kit reference app" in page.read()
        # Stop the server as a supervisor would (SIGTERM to the python process);
        # make then exits with the server's status.
        for child in psutil.Process(proc.pid).children(recursive=True):
            if "examples.reference_app" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text(errors="replace")
    assert "pip install" not in output, output
    assert proc.returncode == 0, output
    # The embedded default: an SQLite file in WAL mode.
    assert (tmp_path / "demo.db").exists()
