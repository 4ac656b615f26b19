"""A job on its way through a BoundedExecutor: checked before it is queued, awaited after.

Both ends are about not losing a job silently. Before: a process-pool job
whose callable or arguments cannot be pickled would only fail in the pool's
feeder thread, after it took a slot; :func:`check_picklable` refuses it at
once with a :class:`TypeError` that says what to change. After: a request
that stops waiting (timeout, disconnect, shutdown) must neither lose the
job's outcome nor turn a cancelled job into a cancellation of its own task;
:func:`await_job` hands the result over through a loop future of its own and
logs what nobody awaits any more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

from tornado.web import RequestHandler

__all__ = ["await_job", "check_picklable", "describe"]

log = logging.getLogger("tornado_kit.executor")

T = TypeVar("T")

_ALWAYS_PICKLABLE = frozenset({bytes, str, int, float, bool, complex, type(None)})


def check_picklable(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise a clear :class:`TypeError` before queuing a job a worker can never receive."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and isinstance(owner, RequestHandler):
        raise TypeError(
            f"process-pool job {describe(fn)} is a bound method of a request handler, "
            "which cannot be pickled and sent to a worker process: use a module-level "
            "function and pass it the data it needs"
        )
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"process-pool job {describe(fn)} cannot be pickled ({exc}): "
            "use a module-level function (not a lambda, a local function or a bound method)"
        ) from exc
    for label, value in [(f"argument {i}", a) for i, a in enumerate(args)] + [
        (f"argument {k}=", v) for k, v in kwargs.items()
    ]:
        if type(value) in _ALWAYS_PICKLABLE:
            continue  # e.g. a large request body: do not copy it once more on the loop
        try:
            pickle.dumps(value)
        except Exception as exc:
            raise TypeError(
                f"{label} of process-pool job {describe(fn)} cannot be pickled "
                f"({type(value).__name__}: {exc})"
            ) from exc


def describe(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a job's callable, for messages and logs."""
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


async def await_job(
    future: concurrent.futures.Future[T],
    name: str,
    fn: Callable[..., Any],
    shut_down: Callable[[str], BaseException],
) -> T:
    """Await a concurrent future without losing its outcome if we stop waiting.

    Unlike :func:`asyncio.wrap_future`, a job cancelled by the executor's
    shutdown raises ``shut_down(message)`` (``ExecutorShutdown``, which lives
    with the executor) instead of cancelling the awaiting task, and an outcome
    nobody awaits any more is logged. Cancelling the awaiting task cancels a
    job that has not started yet.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def deliver(job: concurrent.futures.Future[T]) -> None:
        if waiter.done():  # the awaiter gave up: discard, but say so
            _log_discarded(job, name, fn)
            return
        if job.cancelled():
            waiter.set_exception(shut_down(f"executor {name!r} shut down before the job ran"))
            return
        exc = job.exception()
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(job.result())

    def on_done(job: concurrent.futures.Future[T]) -> None:
        try:
            loop.call_soon_threadsafe(deliver, job)
        except RuntimeError:  # the loop is closed: nobody can await it any more
            _log_discarded(job, name, fn)

    future.add_done_callback(on_done)
    try:
        return await waiter
    except asyncio.CancelledError:
        future.cancel()  # only succeeds while the job is still waiting
        raise


def _log_discarded(job: concurrent.futures.Future[Any], name: str, fn: Callable[..., Any]) -> None:
    if job.cancelled():
        return
    exc = job.exception()
    if exc is not None:
        log.warning(
            "executor %r: job %s failed after its caller stopped waiting; discarded",
            name,
            describe(fn),
            exc_info=exc,
        )
    else:
        log.info(
            "executor %r: job %s finished after its caller stopped waiting; result discarded",
            name,
            describe(fn),
        )
