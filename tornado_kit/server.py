"""Run an application in one or more processes with a graceful shutdown.

:func:`serve` is the production entry point (``python -m tornado_kit serve
module:factory`` calls it). It does three things Tornado leaves to the user:

* **Supervision.** With ``processes`` other than 1 the listening sockets are
  bound in the parent, then the parent forks the workers and stays behind as a
  small supervisor: it restarts a worker that crashes (with a restart-rate
  limit), forwards SIGTERM/SIGINT to every worker and waits for them, and makes
  sure no worker outlives it (``PR_SET_PDEATHSIG`` on Linux plus a periodic
  ``getppid()`` check everywhere). :func:`tornado.process.fork_processes` is
  not used: it leaves orphans when the parent is killed (Tornado #1912) and
  cannot stop its children cleanly.
* **No event loop before the fork.** The application factory is called in
  each worker after the fork, so the app, its broker and its executors are
  built on the worker's own loop.
* **Graceful shutdown** in every serving process (Tornado #1791): on SIGTERM
  (or SIGINT) stop accepting, run :func:`tornado_kit._lifecycle.shutdown`
  (WebSockets closed with 1001, SSE streams ended, executors and brokers shut
  down), let in-flight requests finish up to ``shutdown_timeout`` while idle
  keep-alive connections are closed at once, then close what is left and exit
  with status 0.

Exit statuses (of :func:`serve` as a process, and of the CLI):

======  ===========================================================
0       clean stop (first SIGTERM/SIGINT, or every worker exited 0)
1       a worker failed to start (the factory raised), or workers
        crashed more than ``max_restarts`` times in a minute
2       CLI usage error (bad arguments, factory path not importable)
128+N   forced stop by a second signal N (130 for SIGINT, 143 for SIGTERM)
======  ===========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application

from tornado_kit._lifecycle import shutdown as lifecycle_shutdown

__all__ = ["serve"]

log = logging.getLogger("tornado_kit.server")

AppFactory = Callable[[], Application | Awaitable[Application]]
LoopKind = Literal["auto", "asyncio", "uvloop"]

#: A worker exits with this status when the app factory (or binding) failed:
#: the supervisor does not restart it, since it would fail the same way.
_EXIT_STARTUP_FAILED = 3
#: Seconds the supervisor waits beyond ``shutdown_timeout`` before SIGKILL.
_KILL_MARGIN = 5.0
#: The window over which ``max_restarts`` is counted.
_RESTART_WINDOW = 60.0
#: How often a worker checks that its parent is still alive (the portable
#: fallback of ``PR_SET_PDEATHSIG``).
_PARENT_CHECK_INTERVAL = 1.0


class _StartupError(Exception):
    """The application could not be built or its sockets bound."""


def serve(
    app_factory: AppFactory,
    *,
    port: int,
    address: str = "",
    processes: int = 1,
    shutdown_timeout: float = 10.0,
    reuse_port: bool = False,
    xheaders: bool = False,
    loop: LoopKind = "asyncio",
    max_restarts: int = 10,
    http_server_options: dict[str, Any] | None = None,
    on_shutdown: Callable[[Application], Awaitable[None] | None] | None = None,
) -> None:
    """Serve the application built by *app_factory* until SIGTERM or SIGINT.

    Blocks until the server has stopped; call it from the main thread of a
    process that has no running event loop (it creates its own, after the
    fork)::

        from tornado.web import Application
        from tornado_kit import serve

        def make_app() -> Application:
            return Application([(r"/", MainHandler)])

        if __name__ == "__main__":
            serve(make_app, port=8888, processes=0)

    :arg app_factory: a callable returning a :class:`~tornado.web.Application`
        (or an awaitable of one). It runs once in each serving process, after
        the fork and inside that process's event loop, so the app's broker,
        executor and clients belong to that process.
    :arg port: the TCP port. ``0`` picks a free port (only when the sockets are
        bound once in the parent, i.e. not with ``reuse_port`` and several
        processes).
    :arg address: the address to bind (``""``: every interface).
    :arg processes: ``1`` serves in this process without forking; ``N > 1``
        forks N workers; ``0`` forks one per CPU.
    :arg shutdown_timeout: seconds a serving process gives in-flight requests
        (and the shutdown callbacks) after SIGTERM before it closes the
        remaining connections. The supervisor SIGKILLs a worker that is still
        alive 5 seconds after that.
    :arg reuse_port: bind a separate ``SO_REUSEPORT`` socket in each worker
        instead of sharing one bound in the parent (the kernel then spreads
        connections evenly; also lets separately managed instances share a
        port).
    :arg xheaders: trust ``X-Real-IP``/``X-Forwarded-For`` and
        ``X-Scheme``/``X-Forwarded-Proto`` (set it behind nginx, never when
        clients connect directly).
    :arg loop: ``"asyncio"`` (default), ``"uvloop"`` (requires the ``fast``
        extra) or ``"auto"`` (uvloop when installed).
    :arg max_restarts: how many crashed workers the supervisor replaces within
        a minute; past that it stops every worker and exits with status 1.
    :arg http_server_options: further keyword arguments for
        :class:`~tornado.httpserver.HTTPServer` (``max_body_size``,
        ``idle_connection_timeout``, ``ssl_options``...).
    :arg on_shutdown: ``on_shutdown(app)`` (sync or async) runs in each
        serving process once its connections are closed, just before it
        exits: release what your factory opened (a database, a broker you
        passed in the settings). An exception is logged; the exit status
        stays 0.

    The first SIGTERM or SIGINT starts the graceful shutdown described in the
    module docstring; a second one ends the process at once with status
    128 + the signal number. With several processes only the supervisor reacts
    to SIGINT (a terminal's Ctrl-C reaches the whole process group; workers
    ignore it and get SIGTERM from the supervisor instead).

    When the stop is clean, :func:`serve` returns in the serving process
    (``processes=1``) and in the supervisor; a worker process never returns
    from it. A failure to build the app raises in the ``processes=1`` case and
    makes the supervisor exit with status 1 otherwise (see the module
    docstring for every exit status).

    .. versionadded:: 0.1
    """
    if processes < 0:
        raise ValueError(f"processes must be >= 0 (0 = one per CPU), not {processes}")
    if shutdown_timeout < 0:
        raise ValueError(f"shutdown_timeout must be >= 0, not {shutdown_timeout}")
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0, not {max_restarts}")
    _check_loop_kind(loop)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "serve() must be called without a running event loop: it creates its own "
            "in each process, after the fork"
        )
    if processes == 0:
        processes = os.cpu_count() or 1
    if processes > 1 and not hasattr(os, "fork"):
        raise RuntimeError("serve(processes != 1) needs os.fork(), which this platform lacks")
    if reuse_port and port == 0 and processes > 1:
        raise ValueError("port=0 with reuse_port and several processes would bind different ports")

    options = dict(http_server_options or {})
    options["xheaders"] = xheaders
    worker = _Worker(app_factory, options, shutdown_timeout, loop, on_shutdown)
    if processes == 1:
        sockets = bind_sockets(port, address, reuse_port=reuse_port)
        code = worker.run(sockets, parent_pid=None)
        if code == _EXIT_STARTUP_FAILED:
            assert worker.startup_exception is not None
            raise worker.startup_exception
        return

    # Sockets are bound once, here, so every worker accepts on the same port
    # (and a port conflict is reported before anything is forked).
    shared = None if reuse_port else bind_sockets(port, address)
    supervisor = _Supervisor(
        worker,
        processes=processes,
        sockets=shared,
        bind=(port, address),
        shutdown_timeout=shutdown_timeout,
        max_restarts=max_restarts,
    )
    code = supervisor.run()
    if code != 0:
        raise SystemExit(code)


def _check_loop_kind(loop: str) -> None:
    if loop not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f'loop must be "auto", "asyncio" or "uvloop", not {loop!r}')
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ImportError(
                "loop='uvloop' needs uvloop: pip install 'tornado-kit[fast]'"
            ) from None


def _new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            new_loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return new_loop
    return asyncio.new_event_loop()


def _run_loop(kind: str, main: Coroutine[Any, Any, int]) -> int:
    """Like :func:`asyncio.run`, on the chosen loop implementation (3.10 has no Runner)."""
    loop = _new_event_loop(kind)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _DrainingHTTPServer(HTTPServer):
    """An :class:`HTTPServer` that knows which connections are mid-request.

    ``HTTP1ServerConnection`` calls :meth:`start_request` when it is ready to
    read the next request on a connection (so the previous response on it is
    complete), and our wrapping delegate marks the connection busy once that
    request's headers have arrived. A connection that is not busy is idle
    keep-alive: shutdown closes it at once instead of waiting for it.
    A WebSocket detaches its stream from the HTTP connection, which then ends
    and leaves this bookkeeping; :func:`lifecycle_shutdown` closes those.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self._busy: dict[object, httputil.HTTPConnection] = {}
        self._idle: set[object] = set()
        self._draining = False
        self._drained: asyncio.Event | None = None

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self._busy.pop(server_conn, None)
        self._idle.add(server_conn)
        if self._draining:
            # The response on this connection is complete: do not wait for
            # another request on it.
            _close_server_conn(server_conn)
            self._check_drained()
        delegate = super().start_request(server_conn, request_conn)
        return _TrackingDelegate(delegate, self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._busy.pop(server_conn, None)
        self._idle.discard(server_conn)
        super().on_close(server_conn)
        self._check_drained()

    def _request_started(self, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self._idle.discard(server_conn)
        self._busy[server_conn] = request_conn
        if self._draining:
            _disconnect_after_response(request_conn)

    @property
    def in_flight(self) -> int:
        """Connections with a request whose response is not complete yet."""
        return len(self._busy)

    async def drain(self, timeout: float) -> bool:
        """Close idle connections, wait for busy ones; True when all finished in time."""
        self._draining = True
        self._drained = asyncio.Event()
        for server_conn in list(self._idle):
            _close_server_conn(server_conn)
        for request_conn in self._busy.values():
            _disconnect_after_response(request_conn)
        self._check_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _check_drained(self) -> None:
        if self._drained is not None and not self._busy:
            self._drained.set()


def _close_server_conn(server_conn: object) -> None:
    stream = getattr(server_conn, "stream", None)
    if stream is not None:
        stream.close()


def _disconnect_after_response(request_conn: httputil.HTTPConnection) -> None:
    # Tell the client not to reuse the connection ("Connection: close" on the
    # response, RFC 9112 §9.6) and close it once the response is written.
    # HTTP1Connection decides this when it reads the request headers and keeps
    # the decision in a private attribute; when it is missing (another Tornado
    # version) the connection is still closed by start_request above.
    if isinstance(request_conn, HTTP1Connection) and hasattr(request_conn, "_disconnect_on_finish"):
        request_conn._disconnect_on_finish = True


class _TrackingDelegate(httputil.HTTPMessageDelegate):
    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        server: _DrainingHTTPServer,
        server_conn: object,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self._delegate = delegate
        self._server = server
        self._server_conn = server_conn
        self._request_conn = request_conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._server._request_started(self._server_conn, self._request_conn)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()


class _Worker:
    """One serving process: build the app, serve, shut down gracefully."""

    def __init__(
        self,
        app_factory: AppFactory,
        server_options: dict[str, Any],
        shutdown_timeout: float,
        loop: str,
        on_shutdown: Callable[[Application], Awaitable[None] | None] | None = None,
    ) -> None:
        self.app_factory = app_factory
        self.on_shutdown = on_shutdown
        self.server_options = server_options
        self.shutdown_timeout = shutdown_timeout
        self.loop = loop
        self.startup_exception: BaseException | None = None

    def run(
        self,
        sockets: list[socket.socket] | None,
        *,
        parent_pid: int | None,
        bind: tuple[int, str] | None = None,
    ) -> int:
        """Serve until told to stop; return the process exit status."""
        return _run_loop(self.loop, self._serve(sockets, parent_pid, bind))

    async def _serve(
        self,
        sockets: list[socket.socket] | None,
        parent_pid: int | None,
        bind: tuple[int, str] | None,
    ) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        received: list[int] = []

        def on_signal(signum: int) -> None:
            received.append(signum)
            if len(received) > 1:
                log.warning("second %s: exiting at once", signal.Signals(signum).name)
                _flush_logs()
                os._exit(128 + signum)
            log.info("%s: shutting down gracefully", signal.Signals(signum).name)
            stop.set()

        # In a worker the supervisor owns SIGINT (Ctrl-C reaches the whole
        # process group); the worker only takes SIGTERM from it.
        handled = [signal.SIGTERM] if parent_pid is not None else [signal.SIGTERM, signal.SIGINT]
        for signum in handled:
            loop.add_signal_handler(signum, on_signal, signum)
        parent_check = None
        try:
            try:
                if sockets is None:
                    assert bind is not None
                    sockets = bind_sockets(bind[0], bind[1], reuse_port=True)
                app = await self._build_app()
            except Exception as exc:
                self.startup_exception = exc
                if parent_pid is not None:
                    log.error("worker %d failed to start", os.getpid(), exc_info=True)
                return _EXIT_STARTUP_FAILED
            server = _DrainingHTTPServer(app, **self.server_options)
            server.add_sockets(sockets)
            if parent_pid is not None:

                def check_parent() -> None:
                    if os.getppid() != parent_pid and not stop.is_set():
                        log.warning("supervisor %d is gone: shutting down", parent_pid)
                        stop.set()

                parent_check = PeriodicCallback(check_parent, _PARENT_CHECK_INTERVAL * 1000)
                parent_check.start()
                check_parent()
            log.info(
                "process %d serving on %s",
                os.getpid(),
                ", ".join(_sockname(s) for s in sockets),
            )
            await stop.wait()
            await self._shutdown(server, app)
            return 0
        finally:
            if parent_check is not None:
                parent_check.stop()
            for signum in handled:
                loop.remove_signal_handler(signum)

    async def _build_app(self) -> Application:
        app = self.app_factory()
        if inspect.isawaitable(app):
            app = await app
        if not isinstance(app, Application):
            raise TypeError(
                f"the app factory {_describe(self.app_factory)} returned {type(app).__name__!s}, "
                "not a tornado.web.Application"
            )
        return app

    async def _shutdown(self, server: _DrainingHTTPServer, app: Application) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        server.stop()  # stop accepting: the listening sockets are closed
        await lifecycle_shutdown(app, self.shutdown_timeout)
        remaining = max(0.0, deadline - time.monotonic())
        if not await server.drain(remaining):
            log.warning(
                "%d request(s) still running after %.1f s: closing their connections",
                server.in_flight,
                self.shutdown_timeout,
            )
        await server.close_all_connections()
        if self.on_shutdown is not None:
            try:
                result = self.on_shutdown(app)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_shutdown callback %s failed", _describe(self.on_shutdown))
        log.info("process %d stopped", os.getpid())


def _describe(factory: object) -> str:
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None)
    return f"{module}:{name}" if module and name else repr(factory)


def _sockname(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, tuple):
        host = f"[{name[0]}]" if ":" in name[0] else name[0]
        return f"{host}:{name[1]}"
    return str(name)


def _flush_logs() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (prctl(2))."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):  # no libc symbol: the getppid check remains
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)


class _Supervisor:
    """The parent process: fork workers, replace crashed ones, stop them all.

    Signals are turned into bytes on a self-pipe (``signal.set_wakeup_fd``)
    and handled in a plain ``select`` loop, so the parent never runs an event
    loop and never does work inside a signal handler.
    """

    def __init__(
        self,
        worker: _Worker,
        *,
        processes: int,
        sockets: list[socket.socket] | None,
        bind: tuple[int, str],
        shutdown_timeout: float,
        max_restarts: int,
    ) -> None:
        self.worker = worker
        self.processes = processes
        self.sockets = sockets
        self.bind = bind
        self.shutdown_timeout = shutdown_timeout
        self.max_restarts = max_restarts
        self.children: dict[int, int] = {}  # pid -> worker index
        self.pending: dict[int, float] = {}  # worker index -> restart time
        self.restarts: deque[float] = deque()
        self.stopping = False
        self.stop_deadline = 0.0
        self.killed = False
        self.exit_code = 0

    def run(self) -> int:
        parent_pid = os.getpid()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        watched = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
        previous = {s: signal.signal(s, _noop_handler) for s in watched}
        old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        try:
            for index in range(self.processes):
                self._spawn(index, parent_pid, (rfd, wfd), previous)
            while self.children or (self.pending and not self.stopping):
                with contextlib.suppress(InterruptedError):
                    select.select([rfd], [], [], self._select_timeout())
                for signum in _drain_signals(rfd):
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        self._on_stop_signal(signum)
                self._reap()
                now = time.monotonic()
                if not self.stopping:
                    for index, when in list(self.pending.items()):
                        if when <= now:
                            del self.pending[index]
                            self._spawn(index, parent_pid, (rfd, wfd), previous)
                elif not self.killed and now >= self.stop_deadline:
                    log.warning("workers still alive after %.1f s: SIGKILL", self.shutdown_timeout)
                    self._signal_children(signal.SIGKILL)
                    self.killed = True
            return self.exit_code
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(rfd)
            os.close(wfd)
            self._close_sockets()

    def _select_timeout(self) -> float:
        now = time.monotonic()
        if self.stopping:
            return max(0.0, min(1.0, self.stop_deadline - now)) if not self.killed else 1.0
        if self.pending:
            return max(0.0, min(self.pending.values()) - now)
        return 1.0

    def _spawn(
        self,
        index: int,
        parent_pid: int,
        pipe: tuple[int, int],
        handlers: dict[signal.Signals, Any],
    ) -> None:
        # Signals stay blocked across the fork until the child has reset the
        # supervisor's handlers and wakeup fd: a SIGTERM meant for the new
        # child must not be written into the supervisor's pipe (where it
        # would read as a signal to the supervisor itself).
        blocked = set(handlers)
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            self.children[pid] = index
            log.info("started worker %d (pid %d)", index, pid)
            return
        # In the child: never return into the caller's code.
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(pipe[0])
            os.close(pipe[1])
            for signum in handlers:
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor owns Ctrl-C
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            _set_parent_death_signal()
            if os.getppid() != parent_pid:  # the parent died before prctl
                code = 0
            else:
                code = self.worker.run(self.sockets, parent_pid=parent_pid, bind=self.bind)
        except BaseException:
            log.exception("worker %d crashed", index)
        finally:
            _flush_logs()
            os._exit(code)

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            log.warning("second %s: killing the workers and exiting at once", name)
            self._signal_children(signal.SIGKILL)
            self.killed = True
            self.exit_code = 128 + signum
            return
        log.info("%s: stopping %d worker(s)", name, len(self.children))
        self._begin_stop()

    def _begin_stop(self) -> None:
        self.stopping = True
        self.pending.clear()
        self.stop_deadline = time.monotonic() + self.shutdown_timeout + _KILL_MARGIN
        # Our copies of the listening sockets would keep the port accepting
        # into the backlog after every worker has stopped.
        self._close_sockets()
        self._signal_children(signal.SIGTERM)

    def _close_sockets(self) -> None:
        for sock in self.sockets or ():
            sock.close()

    def _signal_children(self, signum: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            index = self.children.pop(pid)
            self._on_exit(index, pid, status)

    def _on_exit(self, index: int, pid: int, status: int) -> None:
        desc = _describe_status(status)
        if self.stopping:
            log.info("worker %d (pid %d) %s", index, pid, desc)
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            log.info("worker %d (pid %d) exited cleanly; not replaced", index, pid)
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _EXIT_STARTUP_FAILED:
            log.error(
                "worker %d (pid %d) failed to start (see the error above); "
                "not restarting it, stopping",
                index,
                pid,
            )
            self.exit_code = 1
            self._begin_stop()
            return
        now = time.monotonic()
        while self.restarts and self.restarts[0] < now - _RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            log.error(
                "worker %d (pid %d) %s; %d restarts in the last %.0f s: giving up",
                index,
                pid,
                desc,
                len(self.restarts),
                _RESTART_WINDOW,
            )
            self.exit_code = 1
            self._begin_stop()
            return
        # The first crash in the window is replaced at once, later ones after
        # a doubling delay (capped), so a crash loop cannot spin the CPU.
        delay = 0.0 if not self.restarts else min(0.1 * 2 ** len(self.restarts), 10.0)
        self.restarts.append(now)
        log.warning("worker %d (pid %d) %s; restarting in %.1f s", index, pid, desc, delay)
        self.pending[index] = now + delay


def _noop_handler(signum: int, frame: object) -> None:
    """Installed so that the signal reaches the wakeup fd; the loop does the work."""


def _drain_signals(fd: int) -> list[int]:
    signums: list[int] = []
    while True:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return signums
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not data:
            return signums
        signums.extend(data)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
