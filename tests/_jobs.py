"""Module-level jobs for executor tests: importable by process-pool workers."""

from __future__ import annotations

import contextvars
import hashlib
import os
import threading
import time

#: Set by a handler before it offloads :func:`read_request_var`.
REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")

SECRET = "s3cr3t-db-password"


def square(x: int) -> int:
    return x * x


def worker_pid() -> int:
    return os.getpid()


def hash_loop(rounds: int) -> str:
    digest = b"tornado-kit"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def boom() -> None:
    raise ValueError(f"cannot connect with password {SECRET}")


def sleep_then(seconds: float, value: str = "done") -> str:
    time.sleep(seconds)
    return value


def sleep_then_fail(seconds: float) -> None:
    time.sleep(seconds)
    raise RuntimeError("late failure")


def wait_for(event: threading.Event, timeout: float = 10.0) -> str:
    event.wait(timeout)
    return "released"


def read_request_var() -> str:
    return REQUEST_VAR.get()


def die() -> None:
    os._exit(3)


def append_to(target: list[str], value: str) -> str:
    target.append(value)
    return value
