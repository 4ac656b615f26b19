"""Run an application in one or more processes with a graceful shutdown.

:func:`serve` is the production entry point (``python -m tornado_kit serve
module:factory`` calls it). It does three things Tornado leaves to the user:

* **Supervision.** With ``processes`` other than 1 the listening sockets are
  bound in the parent, then the parent forks the workers and stays behind as a
  small supervisor: it restarts a worker that crashes (with a restart-rate
  limit), turns SIGTERM/SIGINT into a SIGTERM to every worker and waits, and makes
  sure no worker outlives it (``PR_SET_PDEATHSIG`` on Linux plus a periodic
  ``getppid()`` check everywhere). :func:`tornado.process.fork_processes` is
  not used: it leaves orphans when the parent is killed (Tornado #1912) and
  cannot stop its children cleanly.
* **No event loop before the fork.** The application factory is called in
  each worker after the fork, so the app, its broker and its executors are
  built on the worker's own loop.
* **Graceful shutdown** in every serving process (Tornado #1791): on SIGTERM
  (or SIGINT) stop accepting, run :func:`tornado_kit.shutdown`
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
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from tornado.netutil import bind_sockets
from tornado.web import Application

from tornado_kit._draining import DEFAULT_MAX_BODY_SIZE
from tornado_kit._supervisor import EXIT_STARTUP_FAILED, Supervisor
from tornado_kit._worker import AppFactory, ServingWorker

__all__ = ["serve"]

log = logging.getLogger("tornado_kit.server")

LoopKind = Literal["auto", "asyncio", "uvloop"]


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
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
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
    :arg max_body_size: the largest request body, in bytes, that a serving
        process accepts (default 10 MiB), whatever the route and whether or
        not the request is authenticated. A request that declares a larger
        ``Content-Length`` gets ``413 Content Too Large`` (problem+json) before
        any of its body is read; a chunked body that grows past it is cut off
        (a bare 400 and the connection closed). A ``@stream_request_body``
        handler may allow more for its own requests with
        ``self.request.connection.set_max_body_size(n)`` in ``prepare()``.
        ``max_body_size`` in *http_server_options* wins over this argument.
    :arg http_server_options: further keyword arguments for
        :class:`~tornado.httpserver.HTTPServer` (``idle_connection_timeout``,
        ``ssl_options``...). Unless given here, ``max_buffer_size`` (how much a
        connection may read ahead) is set to the larger of ``max_body_size``
        and the app's ``websocket_max_message_size``, plus room for headers.
    :arg on_shutdown: ``on_shutdown(app)`` (sync or async) runs in each
        serving process once its connections are closed, just before it
        exits: release what your factory opened (a database, a broker you
        passed in the settings). An exception is logged; the exit status
        stays 0.

    The first SIGTERM or SIGINT starts the graceful shutdown described in the
    module docstring; a second one ends the process at once with status
    128 + the signal number. With several processes only the supervisor
    decides that: a terminal's Ctrl-C or systemd's SIGTERM reach the whole
    process group, so workers ignore SIGINT, act on the first SIGTERM only,
    and are SIGKILLed by the supervisor on its second signal.

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
    if not isinstance(max_body_size, int) or isinstance(max_body_size, bool):
        raise TypeError(f"max_body_size must be an int, not {type(max_body_size).__name__}")
    if max_body_size < 0:
        raise ValueError(f"max_body_size must be >= 0, not {max_body_size}")
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
    options.setdefault("max_body_size", max_body_size)
    worker = ServingWorker(app_factory, options, shutdown_timeout, loop, on_shutdown)
    if processes == 1:
        sockets = bind_sockets(port, address, reuse_port=reuse_port)
        try:
            code = worker.run(sockets, parent_pid=None)
        finally:
            for sock in sockets:  # closed already, unless the app failed to start
                sock.close()
        if code == EXIT_STARTUP_FAILED:
            assert worker.startup_exception is not None
            raise worker.startup_exception
        return

    # Sockets are bound once, here, so every worker accepts on the same port
    # (and a port conflict is reported before anything is forked).
    shared = None if reuse_port else bind_sockets(port, address)
    supervisor = Supervisor(
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
