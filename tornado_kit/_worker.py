"""One serving process: its event loop and signals, the app built after the fork, the drain.

:func:`tornado_kit.serve` runs a :class:`ServingWorker` in its own process
(``processes=1``) or hands it to the supervisor, which runs one in every
forked worker. The worker makes its event loop (asyncio or uvloop), builds
the application there, serves it on a
:class:`~tornado_kit._draining.DrainingHTTPServer`, and on the first
SIGTERM (or SIGINT when it is not a supervised worker) shuts down in this
order: stop accepting, close WebSockets and SSE streams, let requests in
flight finish within ``shutdown_timeout``, close what is left, release the
executors and brokers, run the user's ``on_shutdown``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application

from tornado_kit._compat.process import helper_pids
from tornado_kit._draining import DrainingHTTPServer, with_buffer_size
from tornado_kit._lifecycle import PHASE_CONNECTIONS, closes_user_resources, shutdown
from tornado_kit._process_pool import stop_helpers
from tornado_kit._redact import install_for_settings
from tornado_kit._supervisor import EXIT_STARTUP_FAILED, flush_logs

__all__ = ["AppFactory", "ServingWorker", "install_signal_handlers", "new_event_loop", "run_loop"]

log = logging.getLogger("tornado_kit.server")

AppFactory = Callable[[], Application | Awaitable[Application]]

#: How often a worker checks that its parent is still alive (the portable
#: fallback of ``PR_SET_PDEATHSIG``).
_PARENT_CHECK_INTERVAL = 1.0


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of *kind* (``"asyncio"``, ``"uvloop"`` or ``"auto"``)."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:  # "auto"; for "uvloop" serve() checked it is there
            pass
        else:
            new_loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return new_loop
    return asyncio.new_event_loop()


def run_loop(kind: str, main: Coroutine[Any, Any, int]) -> int:
    """Like :func:`asyncio.run`, on the chosen loop implementation (3.10 has no Runner)."""
    loop = new_event_loop(kind)
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


class ServingWorker:
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
        return run_loop(self.loop, self._serve(sockets, parent_pid, bind))

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
                if parent_pid is not None:
                    # A worker gets SIGTERM twice when the whole process group
                    # or cgroup is signalled (systemd's default KillMode,
                    # `kill -- -PGID`) and the supervisor forwards it too: only
                    # the supervisor decides on a forced stop (SIGKILL).
                    return
                log.warning("second %s: exiting at once", signal.Signals(signum).name)
                flush_logs()
                os._exit(128 + signum)
            log.info("%s: shutting down gracefully", signal.Signals(signum).name)
            stop.set()

        # In a worker the supervisor owns SIGINT (Ctrl-C reaches the whole
        # process group); the worker only takes SIGTERM, once.
        handled = [signal.SIGTERM] if parent_pid is not None else [signal.SIGTERM, signal.SIGINT]
        restore = install_signal_handlers(loop, handled, on_signal)
        parent_check = None
        helpers = helper_pids()  # the multiprocessing helpers that are not ours to stop
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
                return EXIT_STARTUP_FAILED
            server = DrainingHTTPServer(app, **with_buffer_size(self.server_options, app))
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
            restore()
            # The executors are shut down: stop the forkserver and resource
            # tracker their process pools started, so that none outlives us.
            stop_helpers(helpers)

    async def _build_app(self) -> Application:
        app = self.app_factory()
        if inspect.isawaitable(app):
            app = await app
        if not isinstance(app, Application):
            raise TypeError(
                f"the app factory {_describe(self.app_factory)} returned {type(app).__name__!s}, "
                "not a tornado.web.Application"
            )
        install_for_settings(app.settings)  # its secret names, before the first request
        closes_user_resources(app)  # a close_resources_on_shutdown that is no bool: TypeError
        return app

    async def _shutdown(self, server: DrainingHTTPServer, app: Application) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        server.stop()  # stop accepting: the listening sockets are closed
        # Close WebSockets (1001) and end SSE streams first, then let in-flight
        # requests finish; executors and brokers they may still use are
        # released only after that.
        await shutdown(app, self.shutdown_timeout, max_phase=PHASE_CONNECTIONS)
        remaining = max(0.0, deadline - time.monotonic())
        if not await server.drain(remaining):
            log.warning(
                "%d request(s) still running after %.1f s: closing their connections",
                server.in_flight,
                self.shutdown_timeout,
            )
        await server.close_all_connections()
        await shutdown(app, max(1.0, deadline - time.monotonic()))
        if self.on_shutdown is not None:
            try:
                result = self.on_shutdown(app)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_shutdown callback %s failed", _describe(self.on_shutdown))
        log.info("process %d stopped", os.getpid())


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop, signums: list[signal.Signals], callback: Callable[[int], None]
) -> Callable[[], None]:
    """Run *callback(signum)* on *loop* for each signal; return an undo function.

    ``loop.add_signal_handler`` where the loop supports it (Unix; uvloop);
    otherwise (Windows' proactor loop) a plain ``signal.signal`` handler that
    hands the signal over to the loop thread.
    """
    try:
        for signum in signums:
            loop.add_signal_handler(signum, callback, signum)
    except NotImplementedError:
        previous = {
            signum: signal.signal(
                signum, lambda num, frame: loop.call_soon_threadsafe(callback, num)
            )
            for signum in signums
        }

        def restore_plain() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore_plain

    def restore() -> None:
        for signum in signums:
            loop.remove_signal_handler(signum)

    return restore


def _describe(factory: object) -> str:
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None)
    return f"{module}:{name}" if module and name else repr(factory)


def _sockname(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]  # bind_sockets: IPv4 or IPv6 TCP only
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
