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


def make_serve_app() -> object:
    """Factory for ``python -m tornado_kit serve tests._jobs:make_serve_app``.

    ``GET /pid`` answers the pid of the process-pool worker; ``GET /slow``
    runs a 1 s job in it; ``GET /stats`` shows the executor's counters.
    """
    from tornado.web import Application, RequestHandler

    from tornado_kit import BoundedExecutor, ExecutorMixin

    class PidHandler(ExecutorMixin, RequestHandler):
        async def get(self) -> None:
            self.write({"pid": await self.run_in_executor(worker_pid)})

    class SlowHandler(ExecutorMixin, RequestHandler):
        async def get(self) -> None:
            self.write({"result": await self.run_in_executor(sleep_then, 1.0)})

    executor = BoundedExecutor(max_workers=1, kind="process", name="served")

    class StatsHandler(RequestHandler):
        def get(self) -> None:
            self.write(executor.stats())

    return Application(
        [(r"/pid", PidHandler), (r"/slow", SlowHandler), (r"/stats", StatsHandler)],
        executor=executor,
    )
