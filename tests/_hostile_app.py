"""App factories that the hostile-input tests serve in real subprocesses.

``python -m tornado_kit serve tests._hostile_app:make_app`` gives:

- ``/job`` runs a job on a process-kind :class:`BoundedExecutor` (so the
  pool, its forkserver and the resource tracker really exist) and answers
  the serving pid and the pool worker's pid; ``?seconds=S`` makes the job
  sleep first;
- ``/block`` blocks the serving process (from ``tests/_serve_app.py``), so
  that the next request goes to another worker;
- ``/echo-length`` answers the length of the body it received;
- ``/private`` needs a bearer token (``secret-token``);
- ``/stream-big`` is a ``@stream_request_body`` handler that raises its own
  limit to 64 MiB in ``prepare()`` and counts what it receives;
- ``/stream-private`` is a streaming handler that needs a token (401 in
  ``prepare()``);
- anything else is a problem+json 404.
"""

from __future__ import annotations

import os
import time

from tornado.web import Application, RequestHandler, stream_request_body

from tests._serve_app import BlockHandler, _mark, _record_factory_call
from tornado_kit import (
    BoundedExecutor,
    ExecutorMixin,
    JSONErrorMixin,
    NotFoundHandler,
    StaticTokenVerifier,
    TokenAuthMixin,
)

STREAM_LIMIT = 64 * 1024 * 1024


def pool_job(seconds: float) -> int:
    """Runs in a pool worker: sleep (leaving a ``job-started`` marker), answer its pid."""
    if seconds:
        _mark("job-started", str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


class JobHandler(ExecutorMixin, JSONErrorMixin, RequestHandler):
    async def get(self) -> None:
        seconds = float(self.get_argument("seconds", "0"))
        job = await self.run_in_executor(pool_job, seconds)
        self.write({"worker": os.getpid(), "job": job})


class EchoLengthHandler(JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        self.write({"length": len(self.request.body)})


class PrivateHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    def post(self) -> None:
        self.write({"length": len(self.request.body)})


@stream_request_body
class StreamBigHandler(JSONErrorMixin, RequestHandler):
    def prepare(self) -> None:
        self.received = 0
        self.request.connection.set_max_body_size(STREAM_LIMIT)

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)

    def post(self) -> None:
        self.write({"length": self.received})


@stream_request_body
class StreamPrivateHandler(TokenAuthMixin, JSONErrorMixin, RequestHandler):
    """Answers 401 in prepare(), before any of the body arrives."""

    def data_received(self, chunk: bytes) -> None:
        pass

    def post(self) -> None:
        self.write({"ok": True})


def make_app() -> Application:
    return Application(
        [
            (r"/job", JobHandler),
            (r"/block", BlockHandler),
            (r"/echo-length", EchoLengthHandler),
            (r"/private", PrivateHandler),
            (r"/stream-big", StreamBigHandler),
            (r"/stream-private", StreamPrivateHandler),
        ],
        executor=BoundedExecutor(max_workers=1, kind="process"),
        token_verifier=StaticTokenVerifier({"secret-token": {"sub": "tester"}}),
        default_handler_class=NotFoundHandler,
        factory_pid=_record_factory_call(),  # also the marker Served.wait_ready() counts
    )
