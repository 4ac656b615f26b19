"""Runnable snippets of the docs pages: find them, run each as its own process.

A page marks a Python block as runnable with a MyST comment line (rendered as
nothing) right above its fence::

    % runnable: auth-after
    ```python
    ...
    ```

A server snippet is a complete module that serves on the port in the
``PORT`` environment variable (8888 when unset), as a reader would run it
with ``python myapp.py``. :class:`SnippetProcess` runs one that way on a free
port and, at the end, kills whatever is left of it: every process whose
command line is the snippet's file, forked workers and orphans included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests._servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]

_MARKED = re.compile(r"^% runnable: ([\w-]+)\n```python\n(.*?)^```$", re.M | re.S)
_PYTHON_FENCE = re.compile(r"^```python$", re.M)


def runnable_snippets(page: str) -> dict[str, str]:
    """The marked blocks of ``docs/<page>``, by name (a name used twice is an error)."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for name, code in _MARKED.findall(text):
        assert name not in found, f"{page}: two snippets are named {name!r}"
        found[name] = code
    return found


def python_fence_count(page: str) -> int:
    """How many ```` ```python ```` blocks ``docs/<page>`` has, marked or not."""
    return len(_PYTHON_FENCE.findall((ROOT / "docs" / page).read_text(encoding="utf-8")))


def shortened(code: str, replacements: dict[str, str]) -> str:
    """*code* with each key replaced by its value; each key must occur exactly once.

    For the snippets whose intervals are minutes or tens of seconds: the test
    runs them with shorter ones, and fails when the page no longer has the
    text it replaces.
    """
    for old, new in replacements.items():
        assert code.count(old) == 1, f"{old!r} occurs {code.count(old)} times in the snippet"
        code = code.replace(old, new)
    return code


class SnippetProcess:
    """``python <directory>/<module>.py`` with ``PORT`` set to a free port.

    Its stdout and stderr go to files in *directory* (``stdout``/``stderr``
    read them). :meth:`close` kills every process still running the file.
    """

    def __init__(
        self,
        code: str,
        directory: Path,
        *,
        module: str = "myapp",
        env: dict[str, str] | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"{module}.py"
        self.path.write_text(code, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._out = open(directory / "stdout.txt", "wb")  # noqa: SIM115 (closed in close())
        self._err = open(directory / "stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(self.path)],
            cwd=directory,
            env={**os.environ, "PORT": str(self.port), **(env or {})},
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )

    @property
    def stdout(self) -> str:
        return (self.directory / "stdout.txt").read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return (self.directory / "stderr.txt").read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the port accepts connections; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the snippet exited with {self.proc.returncode}:\n{self.stderr}"
                )
            try:
                wait_for_port(self.port, timeout=0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def processes(self) -> list[psutil.Process]:
        """Every live process running the snippet's file (the first one and its forks)."""
        running = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(self.path) in (proc.info["cmdline"] or []):
                running.append(proc)
        return running

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send *signum* to the first process and return its exit status."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


async def silent_websocket_client(port: int, path: str) -> tuple[int | None, int]:
    """Open a WebSocket that never answers a ping; return (close code, pings seen).

    A peer whose network went away looks like this to the server: the
    connection is open but nothing comes back. The close code is ``None``
    when the server's close frame has no status code.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        pings = 0
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F  # a server's frames are not masked (RFC 6455 §5.1)
            if length >= 126:
                length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
            payload = await reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: never answered
                pings += 1
            elif opcode == 0x8:  # close
                return (int.from_bytes(payload[:2]) if len(payload) >= 2 else None), pings
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
