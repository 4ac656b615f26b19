"""BoundedExecutor: a thread or process pool that refuses work instead of queuing it.

The seed pattern ``await loop.run_in_executor(pool, fn, data)`` queues without
bound: under overload every request waits longer and memory grows. A
:class:`BoundedExecutor` admits at most ``max_workers`` running jobs plus
``max_pending`` waiting ones and *refuses* the next one at once
(:class:`ExecutorFull`), which ``ExecutorMixin`` turns into
``503 Service Unavailable`` with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3).
Accepted requests therefore keep a bounded latency while the excess is shed
cheaply, and the event loop stays free to answer other requests.

Exception tree::

    RuntimeError
     ├── ExecutorFull       max_pending jobs are already waiting (-> 503)
     └── ExecutorShutdown   the executor was shut down (-> 503)
    TypeError               a process-pool job cannot be pickled

Example::

    from tornado_kit import BoundedExecutor

    app = Application(routes, executor=BoundedExecutor(kind="process", max_pending=4))

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Any, Literal, TypeVar

from tornado_kit._compat.process import pool_processes
from tornado_kit._executor_jobs import await_job, check_picklable
from tornado_kit._process_pool import close, make_pool, stop

__all__ = ["BoundedExecutor", "ExecutorFull", "ExecutorShutdown"]

log = logging.getLogger("tornado_kit.executor")

T = TypeVar("T")


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
        never ``"fork"`` (a forked worker would inherit the serving process's
        event loop, threads and sockets mid-state).

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
            check_picklable(fn, args, kwargs)
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
        return make_pool(self.max_workers, self._mp_context)

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
        return await await_job(future, self.name, fn, ExecutorShutdown)

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
