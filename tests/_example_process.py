"""The numbered examples in tests: run one as its own process, or import its module."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
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


class ExampleProcess:
    """``examples/<name> --port N`` running as its own process on a free port.

    Use it as a context manager: entering waits until the port answers,
    leaving sends SIGTERM and waits. With ``capture=True`` the process's
    ``stdout`` and ``stderr`` (bytes) are read when it stops; otherwise they
    are discarded.
    """

    def __init__(
        self, name: str, *, env: Mapping[str, str] | None = None, capture: bool = False
    ) -> None:
        port = free_port()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout = b""
        self.stderr = b""
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name), "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=out,
        )

    def __enter__(self) -> ExampleProcess:
        try:
            wait_for_port(self.port, timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM the example (once), collect its output, return its exit status."""
        if self.proc.returncode is None:
            self.proc.terminate()
            stdout, stderr = self.proc.communicate(timeout=30)
            self.stdout, self.stderr = stdout or b"", stderr or b""
        return self.proc.returncode


def run_example(name: str) -> Iterator[str]:
    """Start ``examples/<name> --port N``, yield its base URL, SIGTERM it, expect exit 0."""
    with ExampleProcess(name) as example:
        yield example.url
    assert example.proc.returncode == 0  # SIGTERM: a clean shutdown, workers and clients released
