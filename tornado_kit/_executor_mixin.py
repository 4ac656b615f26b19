"""Executors in an application: ``executor_for`` and ``ExecutorMixin``.

:class:`~tornado_kit.BoundedExecutor` knows nothing of Tornado; this module
gives an application its executor (the ``executor`` setting, else a default
made on first use), shuts it down with the application (the ownership rule
of :func:`tornado_kit.shutdown`), and lets a handler run a job on it with
``await self.run_in_executor(fn, ...)``, which answers 503 with
``Retry-After`` when the executor is full or shut down and 504 when the job
outlives ``executor_timeout``.

Example::

    from tornado_kit import BoundedExecutor, ExecutorMixin, JSONErrorMixin

    def thumbnail(data: bytes) -> bytes:  # module level: picklable
        ...

    class ThumbHandler(ExecutorMixin, JSONErrorMixin, RequestHandler):
        executor_timeout = 5.0

        async def post(self) -> None:
            self.write(await self.run_in_executor(thumbnail, self.request.body))

    app = Application(
        [(r"/thumb", ThumbHandler)],
        executor=BoundedExecutor(kind="process", max_pending=4),
    )

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tornado_kit._access import add_access_field
from tornado_kit._errors import APIError, APIErrorHeadersMixin
from tornado_kit._executor import BoundedExecutor, ExecutorFull, ExecutorShutdown
from tornado_kit._executor_jobs import await_job
from tornado_kit._lifecycle import close_at_shutdown, state_for
from tornado_kit._settings import resolve

if TYPE_CHECKING:
    from tornado.web import Application

__all__ = ["ExecutorMixin", "executor_for"]

T = TypeVar("T")

_DEFAULT_KEY = "tornado_kit.executor:default"


def executor_for(app: Application) -> BoundedExecutor:
    """Return ``app.settings["executor"]``, else the app's shared default.

    Raises :class:`TypeError` when the setting holds something other than a
    :class:`BoundedExecutor`.

    The default is a thread :class:`BoundedExecutor` named ``"default"``, made
    on first use and kept per application (no module-level state). Either one
    is shut down by :func:`tornado_kit.shutdown` (the setting's unless
    ``close_resources_on_shutdown`` is False), also when it is used directly
    rather than through ``ExecutorMixin``::

        executor_for(app).stats()["queued"]

    .. versionadded:: 0.1
    """
    executor = app.settings.get("executor")
    if executor is not None:
        return close_with_app(app, checked(executor))
    return state_for(app).resource(
        _DEFAULT_KEY, lambda: BoundedExecutor(name="default"), close=_aclose
    )


def checked(executor: Any) -> BoundedExecutor:
    """*executor*, when it is a :class:`BoundedExecutor` (else a ``TypeError``)."""
    if not isinstance(executor, BoundedExecutor):
        # e.g. a ThreadPoolExecutor kept in ``executor`` for Tornado's
        # @run_on_executor: it has no bound, no counters and no shutdown hook.
        raise TypeError(
            f"ExecutorMixin needs a BoundedExecutor in the `executor` class attribute "
            f"or setting, not {type(executor).__name__}"
        )
    return executor


def close_with_app(app: Application, executor: BoundedExecutor) -> BoundedExecutor:
    """Shut *executor*, the user's, down at *app*'s shutdown; return it.

    For the ``executor`` setting and an ``ExecutorMixin.executor`` class
    attribute alike: once per application and executor, and not when
    ``close_resources_on_shutdown`` is False.
    """
    close_at_shutdown(app, executor, _aclose)
    return executor


def _aclose(executor: BoundedExecutor) -> Awaitable[None]:
    # The object's own method: a subclass may extend aclose().
    return executor.aclose()


class ExecutorMixin(APIErrorHeadersMixin):
    """Run blocking or CPU-bound work off the event loop, with back-pressure.

    ``await self.run_in_executor(fn, *args, **kwargs)`` runs on the executor
    named by the ``executor`` class attribute or setting (a
    :class:`BoundedExecutor`), else on a shared default thread executor made on
    first use per application. Every executor a handler uses is shut down when
    the server stops (:func:`tornado_kit.shutdown`, resources phase; the
    user's executors unless ``close_resources_on_shutdown`` is False).

    Errors, as :class:`~tornado_kit.APIError` (rendered by ``JSONErrorMixin``):

    - executor full or shut down: ``503`` with ``Retry-After``;
    - the job outlives ``executor_timeout`` seconds (counted from submission,
      queueing included; class attribute or setting; default none): ``504``.
      The request returns at once; a job still waiting is cancelled, a running
      one finishes in the background and its result is logged and discarded.

    A job that raises propagates its exception unchanged: without a handler of
    your own it becomes a ``500`` whose body says nothing of the exception.

    The access record (``TimingMixin``) gets ``executor_queue`` (jobs waiting
    when this one was submitted) and ``executor_rejected`` (bool). When the
    ``metrics`` setting holds a :class:`~tornado_kit.PrometheusMetrics`, the
    queue depth gauge and the rejection counter are updated.

    Example::

        class ReportHandler(ExecutorMixin, JSONErrorMixin, RequestHandler):
            executor_timeout = 2.0

            async def get(self) -> None:
                self.write(await self.run_in_executor(build_report, self.get_argument("q")))

    .. versionadded:: 0.1
    """

    #: The :class:`BoundedExecutor` to use (else the ``executor`` setting, else the default).
    executor: BoundedExecutor | None = None
    #: Seconds before a job's request gets 504 (else the setting; default: no limit).
    executor_timeout: float | None = None

    application: Application
    settings: dict[str, Any]

    async def run_in_executor(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the handler's executor and return its result.

        May be called from any verb method or ``prepare``; the handler's own
        methods are fine on a thread executor, but a process executor needs a
        picklable module-level function (else :class:`TypeError`, a 500).
        """
        own = type(self).executor  # the class attribute wins over the setting
        if own is None:
            executor = executor_for(self.application)
        else:
            executor = close_with_app(self.application, checked(own))
        timeout: float | None = resolve(self, "executor_timeout", None)
        metrics: Any = resolve(self, "metrics", None)
        depth = executor.queued
        add_access_field(self, "executor_queue", depth)
        try:
            future = executor.submit(fn, *args, **kwargs)
        except (ExecutorFull, ExecutorShutdown) as exc:
            add_access_field(self, "executor_rejected", True)
            if metrics is not None and isinstance(exc, ExecutorFull):
                metrics.inc_executor_rejected(executor.name)
            # RFC 9110 §15.6.4 (503) and §10.2.3 (Retry-After: delay-seconds).
            raise APIError(
                503,
                "server busy: the work queue is full, retry later"
                if isinstance(exc, ExecutorFull)
                else "server is shutting down",
                headers={"Retry-After": str(executor.retry_after)},
            ) from exc
        add_access_field(self, "executor_rejected", False)
        if metrics is not None:
            metrics.set_executor_queue_depth(executor.name, executor.queued)
        try:
            job = await_job(future, executor.name, fn, ExecutorShutdown)
            if timeout is None:
                return await job
            try:
                return await asyncio.wait_for(job, timeout)
            except asyncio.TimeoutError:
                raise APIError(504, f"the job took longer than {timeout:g} s") from None
        except ExecutorShutdown as exc:
            raise APIError(
                503, "server is shutting down", headers={"Retry-After": str(executor.retry_after)}
            ) from exc
        finally:
            if metrics is not None:
                metrics.set_executor_queue_depth(executor.name, executor.queued)
