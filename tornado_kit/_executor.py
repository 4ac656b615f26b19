"""Offload blocking or CPU-bound work with back-pressure.

The seed pattern ``await loop.run_in_executor(pool, fn, data)`` queues without
bound: under overload every request waits longer and memory grows. A
:class:`BoundedExecutor` admits at most ``max_workers`` running jobs plus
``max_pending`` waiting ones and *refuses* the next one at once
(:class:`ExecutorFull`), which :class:`ExecutorMixin` turns into
``503 Service Unavailable`` with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3).
Accepted requests therefore keep a bounded latency while the excess is shed
cheaply, and the event loop stays free to answer other requests.

Exception tree::

    RuntimeError
     ├── ExecutorFull       max_pending jobs are already waiting (-> 503)
     └── ExecutorShutdown   the executor was shut down (-> 503)
    TypeError               a process-pool job cannot be pickled

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
import concurrent.futures
import contextvars
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tornado_kit._access import add_access_field
from tornado_kit._compat.process import pool_processes
from tornado_kit._errors import APIError, APIErrorHeadersMixin
from tornado_kit._lifecycle import PHASE_RESOURCES, state_for
from tornado_kit._process_pool import close, make_pool, stop
from tornado_kit._settings import resolve

if TYPE_CHECKING:
    from tornado.web import Application

__all__ = [
    "BoundedExecutor",
    "ExecutorFull",
    "ExecutorMixin",
    "ExecutorShutdown",
    "executor_for",
]

log = logging.getLogger("tornado_kit.executor")

T = TypeVar("T")

_DEFAULT_KEY = "executor.default"
_REGISTERED_KEY = "executor.registered"


class ExecutorFull(RuntimeError):
    """Raised by :meth:`BoundedExecutor.submit` when ``max_pending`` jobs already wait.

    ``retry_after`` is the executor's suggested ``Retry-After`` in seconds.
    Nothing was queued when it is raised. Outside a handler::

        try:
            future = pool.submit(render, page)
        except ExecutorFull as exc:
            schedule_retry(after=exc.retry_after)

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExecutorShutdown(RuntimeError):
    """Raised for jobs submitted after, or still queued at, :meth:`BoundedExecutor.shutdown`.

    ``ExecutorMixin`` answers it with 503 and ``Retry-After``::

        pool.shutdown()
        pool.submit(render, page)  # raises ExecutorShutdown

    .. versionadded:: 0.1
    """


def _cpu_count() -> int:
    getter = getattr(os, "process_cpu_count", None)  # Python 3.13+: honours affinity
    count = getter() if getter is not None else os.cpu_count()
    return count or 1


def _check_type(name: str, value: object, kind: type, *, optional: bool = False) -> None:
    """``TypeError`` naming the parameter when *value* is not a *kind* (bools are no ints)."""
    if value is None and optional:
        return
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = f"{kind.__name__} or None" if optional else kind.__name__
        raise TypeError(f"{name} must be {_article(expected)}, not {type(value).__name__}")


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _default_mp_context() -> BaseContext:
    # Never "fork": the serving process has a running event loop, helper threads
    # (Tornado's resolver, other pools) and listening sockets. A forked worker
    # would inherit all of them in whatever state they were in (locks held by
    # other threads deadlock the child, the epoll fd and the listening socket are
    # shared with the parent). "forkserver" forks workers from a small, clean,
    # single-threaded server process; "spawn" starts fresh interpreters and is the
    # portable fallback.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class BoundedExecutor:
    """A thread or process pool with a bound on the jobs it will queue.

    :param max_workers: jobs that run at once. Default: ``min(32, CPUs + 4)``
        for threads (like :class:`~concurrent.futures.ThreadPoolExecutor`),
        the number of CPUs for processes.
    :param max_pending: jobs allowed to *wait* for a worker. When
        ``max_pending`` jobs are already waiting, :meth:`submit` raises
        :class:`ExecutorFull` instead of queuing. The executor therefore holds at
        most ``max_workers + max_pending`` jobs, and an accepted job waits for
        at most ``ceil(max_pending / max_workers)`` jobs ahead of it on its
        worker. ``0`` admits only as many jobs as there are workers. Default:
        ``max_workers`` (one waiting job per worker).
    :param kind: ``"thread"`` or ``"process"``. Pure-Python CPU-bound work
        needs ``"process"`` to use more than one core; jobs must then be
        picklable module-level functions with picklable arguments.
    :param name: label in metrics and logs. Default: *kind*.
    :param retry_after: seconds suggested to rejected clients in ``Retry-After``.
    :param mp_context: multiprocessing context or start method name for process
        pools. Default ``"forkserver"`` where available, else ``"spawn"``;
        never ``"fork"`` (see the module source for why).

    The underlying pool is created lazily on the first :meth:`submit`, never at
    construction, so an executor can be built in an application factory before
    ``fork_processes``. A process pool broken by a dying worker is replaced on
    the next submission (the jobs that were running on it fail with
    :class:`~concurrent.futures.process.BrokenProcessPool`).

    Thread workers run each job in a copy of the submitter's
    :mod:`contextvars` context (Tornado #2758); process workers cannot (contexts
    are not picklable) and start from an empty context.

    Example::

        pool = BoundedExecutor(max_workers=2, max_pending=2, kind="process")
        result = await pool.run(hash_file, "/tmp/data.bin")
        pool.stats()  # {'running': 0, 'queued': 0, 'rejected': 0, ...}

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        max_workers: int | None = None,
        max_pending: int | None = None,
        kind: Literal["thread", "process"] = "thread",
        *,
        name: str | None = None,
        retry_after: int = 1,
        mp_context: BaseContext | str | None = None,
    ) -> None:
        _check_type("kind", kind, str)
        if kind not in ("thread", "process"):
            raise ValueError(f"kind must be 'thread' or 'process', not {kind!r}")
        _check_type("max_workers", max_workers, int, optional=True)
        _check_type("max_pending", max_pending, int, optional=True)
        _check_type("retry_after", retry_after, int)
        _check_type("name", name, str, optional=True)
        if not (mp_context is None or isinstance(mp_context, (str, BaseContext))):
            raise TypeError(
                "mp_context must be a multiprocessing context or a start method name, "
                f"not {type(mp_context).__name__}"
            )
        if (
            isinstance(mp_context, str)
            and mp_context not in multiprocessing.get_all_start_methods()
        ):
            raise ValueError(
                f"mp_context {mp_context!r} is not a start method of this platform "
                f"({', '.join(multiprocessing.get_all_start_methods())})"
            )
        if max_workers is None:
            max_workers = min(32, _cpu_count() + 4) if kind == "thread" else _cpu_count()
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if max_pending is None:
            max_pending = max_workers
        if max_pending < 0:
            raise ValueError("max_pending must be 0 or more")
        if retry_after < 0:
            raise ValueError("retry_after must be 0 or more")
        self.kind = kind
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.name = name or kind
        self.retry_after = retry_after
        self._mp_context = mp_context
        self._pool: concurrent.futures.Executor | None = None
        # Re-entrant: cancelling futures while holding it runs their done callbacks.
        self._lock = threading.RLock()
        self._inflight = 0
        self._submitted = 0
        self._completed = 0
        self._rejected = 0
        self._closed = False

    # -- counters ---------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs occupying a worker (accepted jobs up to ``max_workers``)."""
        return min(self._inflight, self.max_workers)

    @property
    def queued(self) -> int:
        """Accepted jobs waiting for a worker (the queue depth)."""
        return max(0, self._inflight - self.max_workers)

    @property
    def rejected(self) -> int:
        """Submissions refused with :class:`ExecutorFull` so far."""
        return self._rejected

    def stats(self) -> dict[str, Any]:
        """A snapshot of the executor's counters.

        Keys: ``name``, ``kind``, ``max_workers``, ``max_pending``, ``running``,
        ``queued``, ``rejected``, ``submitted``, ``completed``, ``started``
        (whether the pool exists yet), ``closed``.
        A job abandoned by its request (timeout) still counts as running until
        it really ends: it still occupies a worker.
        """
        with self._lock:
            return {
                "name": self.name,
                "kind": self.kind,
                "max_workers": self.max_workers,
                "max_pending": self.max_pending,
                "running": self.running,
                "queued": self.queued,
                "rejected": self._rejected,
                "submitted": self._submitted,
                "completed": self._completed,
                "started": self._pool is not None,
                "closed": self._closed,
            }

    # -- submission -------------------------------------------------------

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return a concurrent future.

        Safe to call from any thread. Raises, without queuing anything:

        - :class:`ExecutorFull` when ``max_pending`` jobs are already waiting;
        - :class:`TypeError` for a process pool when the callable or its
          arguments cannot be pickled (a bound handler method, a lambda, a
          local function, an open socket...);
        - :class:`ExecutorShutdown` after :meth:`shutdown`.
        """
        if self.kind == "process":
            _check_picklable(fn, args, kwargs)
        with self._lock:
            if self._closed:
                raise ExecutorShutdown(f"executor {self.name!r} is shut down")
            if self._inflight - self.max_workers >= self.max_pending:
                self._rejected += 1
                raise ExecutorFull(
                    f"executor {self.name!r} is full: {self.max_pending} jobs already waiting",
                    self.retry_after,
                )
            self._inflight += 1
            self._submitted += 1
            try:
                future = self._submit_locked(fn, args, kwargs)
            except BaseException:
                self._inflight -= 1
                self._submitted -= 1
                raise
        future.add_done_callback(self._job_done)
        return future

    def _submit_locked(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[T]:
        pool = self._pool
        if pool is None:
            pool = self._pool = self._make_pool()
        if self.kind == "thread":
            # Tornado #2758: run_in_executor drops contextvars; carry a copy.
            ctx = contextvars.copy_context()
            return pool.submit(ctx.run, fn, *args, **kwargs)
        try:
            return pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            log.warning("process pool of executor %r was broken; starting a new one", self.name)
            pool.shutdown(wait=False, cancel_futures=True)
            pool = self._pool = self._make_pool()
            return pool.submit(fn, *args, **kwargs)

    def _make_pool(self) -> concurrent.futures.Executor:
        prefix = f"tornado-kit-{self.name}"
        if self.kind == "thread":
            return concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix=prefix
            )
        ctx = self._mp_context
        if ctx is None:
            ctx = _default_mp_context()
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        return make_pool(self.max_workers, ctx)

    def _job_done(self, future: concurrent.futures.Future[Any]) -> None:
        # Runs in a worker thread, the pool's management thread, or the caller.
        with self._lock:
            self._inflight -= 1
            self._completed += 1

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result.

        Raises like :meth:`submit` before anything is queued, then whatever the
        job raises. If the awaiting task is cancelled (or a timeout around this
        call expires), a job that has not started yet is cancelled; a running
        one finishes in the background and its result is logged and discarded
        (no "exception was never retrieved" warning).
        """
        future = self.submit(fn, *args, **kwargs)
        return await _await_job(future, self.name, fn)

    # -- shutdown ---------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new jobs and release the pool.

        Like :meth:`concurrent.futures.Executor.shutdown`: with *wait*, block
        until the running jobs end; with *cancel_futures*, jobs still waiting
        are cancelled (their awaiters get :class:`ExecutorShutdown`). Calling it
        again is harmless. This blocks: from a coroutine use :meth:`aclose`.
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    async def aclose(self) -> None:
        """Refuse new jobs, let accepted ones finish, then release the pool.

        Runs as the executor's shutdown callback when the server stops, after
        WebSockets and SSE streams are closed: requests still waiting on a job
        get its result. A process pool's workers are then given a moment to
        exit and terminated (then killed) if they have not, so that none
        outlives the server. If the surrounding shutdown times out (this
        coroutine is cancelled), the jobs still waiting are cancelled and the
        pool is released without waiting for the running ones; for a process
        pool the workers still busy are terminated, so that a runaway job
        cannot keep the process alive (a thread cannot be stopped: a stuck
        thread job still delays interpreter exit).
        """
        with self._lock:
            self._closed = True
            pool = self._pool
        if pool is None:
            return
        try:
            while self._inflight:
                await asyncio.sleep(0.01)
        except BaseException:  # cancelled: the shutdown ran out of time
            if isinstance(pool, concurrent.futures.ProcessPoolExecutor):
                stop(pool_processes(pool))  # before shutdown(), which forgets the workers
            self.shutdown(wait=False, cancel_futures=True)
            raise
        with self._lock:
            self._pool = None
        if isinstance(pool, concurrent.futures.ProcessPoolExecutor):
            await close(pool)
        else:
            pool.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<BoundedExecutor {self.name!r} {self.kind} workers={self.max_workers} "
            f"pending<={self.max_pending} running={s['running']} queued={s['queued']}>"
        )


_ALWAYS_PICKLABLE = frozenset({bytes, str, int, float, bool, complex, type(None)})


def _check_picklable(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise a clear :class:`TypeError` before queuing a job a worker can never receive."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and _is_handler(owner):
        raise TypeError(
            f"process-pool job {_describe(fn)} is a bound method of a request handler, "
            "which cannot be pickled and sent to a worker process: use a module-level "
            "function and pass it the data it needs"
        )
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise TypeError(
            f"process-pool job {_describe(fn)} cannot be pickled ({exc}): "
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
                f"{label} of process-pool job {_describe(fn)} cannot be pickled "
                f"({type(value).__name__}: {exc})"
            ) from exc


def _is_handler(obj: Any) -> bool:
    from tornado.web import RequestHandler

    return isinstance(obj, RequestHandler)


def _describe(fn: Callable[..., Any]) -> str:
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


async def _await_job(future: concurrent.futures.Future[T], name: str, fn: Callable[..., Any]) -> T:
    """Await a concurrent future without losing its outcome if we stop waiting.

    Unlike :func:`asyncio.wrap_future`, a job cancelled by the executor's
    shutdown surfaces as :class:`ExecutorShutdown` (not as a cancellation of
    the awaiting task), and an outcome nobody awaits any more is logged.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def deliver(job: concurrent.futures.Future[T]) -> None:
        if waiter.done():  # the awaiter gave up: discard, but say so
            _log_discarded(job, name, fn)
            return
        if job.cancelled():
            waiter.set_exception(
                ExecutorShutdown(f"executor {name!r} shut down before the job ran")
            )
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
            _describe(fn),
            exc_info=exc,
        )
    else:
        log.info(
            "executor %r: job %s finished after its caller stopped waiting; result discarded",
            name,
            _describe(fn),
        )


def executor_for(app: Application) -> BoundedExecutor:
    """Return ``app.settings["executor"]``, else the app's shared default.

    Raises :class:`TypeError` when the setting holds something other than a
    :class:`BoundedExecutor`.

    The default is a thread :class:`BoundedExecutor` named ``"default"``, made
    on first use and kept per application (no module-level state). Either one
    is shut down when the app's server stops, also when it is used directly
    rather than through :class:`ExecutorMixin`::

        executor_for(app).stats()["queued"]

    .. versionadded:: 0.1
    """
    executor = app.settings.get("executor")
    if executor is not None:
        checked = _checked(executor)
        _register_shutdown(app, checked)
        return checked
    state = state_for(app)
    default: BoundedExecutor | None = state.resources.get(_DEFAULT_KEY)
    if default is None:
        default = state.resources[_DEFAULT_KEY] = BoundedExecutor(name="default")
        _register_shutdown(app, default)
    return default


def _checked(executor: Any) -> BoundedExecutor:
    if not isinstance(executor, BoundedExecutor):
        # e.g. a ThreadPoolExecutor kept in ``executor`` for Tornado's
        # @run_on_executor: it has no bound, no counters and no shutdown hook.
        raise TypeError(
            f"ExecutorMixin needs a BoundedExecutor in the `executor` class attribute "
            f"or setting, not {type(executor).__name__}"
        )
    return executor


def _register_shutdown(app: Application, executor: BoundedExecutor) -> None:
    """Shut *executor* down when *app*'s server stops (once per app and executor)."""
    state = state_for(app)
    registered: list[BoundedExecutor] = state.resources.setdefault(_REGISTERED_KEY, [])
    if any(known is executor for known in registered):
        return
    registered.append(executor)
    state.on_shutdown(executor.aclose, PHASE_RESOURCES)


class ExecutorMixin(APIErrorHeadersMixin):
    """Run blocking or CPU-bound work off the event loop, with back-pressure.

    ``await self.run_in_executor(fn, *args, **kwargs)`` runs on the executor
    named by the ``executor`` class attribute or setting (a
    :class:`BoundedExecutor`), else on a shared default thread executor made on
    first use per application. Every executor a handler uses is shut down when
    the server stops (the tornado-kit shutdown hook, resources phase).

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
            executor = _checked(own)
            _register_shutdown(self.application, executor)
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
            job = _await_job(future, executor.name, fn)
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
