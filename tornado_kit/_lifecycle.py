"""Per-application runtime state and the shutdown hook.

tornado-kit keeps no module-level mutable state (it would be shared across
``fork_processes`` children and bound to the wrong event loop). Everything a
mixin needs to share across handlers of one application (the default broker,
the heartbeat timer, the registry of open WebSockets and SSE streams, the
default executor) hangs off the ``Application`` object in an :class:`AppState`
created lazily on first use, i.e. inside the serving process, after any fork.

:func:`shutdown` is the hook that :func:`tornado_kit.serve` (and the testing
plugin) calls when a server stops: it runs the registered callbacks in phase
order (close connections first, then release shared resources).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tornado.web import Application

from tornado_kit._redact import install_for_settings

log = logging.getLogger("tornado_kit")

_ATTR = "_tornado_kit_state"

#: Shutdown phases, run in increasing order. Callbacks in one phase run concurrently.
PHASE_CONNECTIONS = 10  # close WebSockets with 1001, end SSE streams
PHASE_RESOURCES = 20  # brokers, executors, HTTP clients
#: Seconds a callback cancelled for overrunning the timeout gets to clean up.
_CANCEL_GRACE = 1.0

ShutdownCallback = Callable[[], "Awaitable[Any] | None"]
T = TypeVar("T")


class AppState:
    """Shared runtime objects of one :class:`~tornado.web.Application`.

    ``resources`` is a plain dict that modules use with their own private keys
    (``"broker"``, ``"heartbeat"``, ...). ``connections`` holds every open
    long-lived handler (WebSocket or SSE) so that shutdown can reach them.
    """

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self.connections: set[Any] = set()
        self._callbacks: list[tuple[int, int, ShutdownCallback]] = []
        self._seq = 0
        self.shutting_down = False

    def resource(
        self,
        key: str,
        factory: Callable[[], T],
        *,
        close: Callable[[T], Awaitable[Any] | None] | None = None,
        phase: int = PHASE_RESOURCES,
    ) -> T:
        """Return the resource kept under *key*, made by ``factory()`` on first use.

        The one way every per-application resource is created (the default
        broker, the default executor, the upstream client, the WebSocket and
        SSE runtime state...): inside the serving process, on first use, never
        at import or construction time. With *close*, ``close(resource)`` runs
        once at shutdown in *phase*: what the library creates, it closes.
        Keys are module-private strings (``"tornado_kit.broker"``).
        """
        resources = self.resources
        if key in resources:
            value: T = resources[key]
            return value
        value = factory()
        resources[key] = value
        if close is not None:
            self.on_shutdown(lambda: close(value), phase)
        return value

    def on_shutdown(self, callback: ShutdownCallback, phase: int = PHASE_RESOURCES) -> None:
        """Register *callback* (sync or async) to run once at shutdown in *phase*."""
        self._seq += 1
        self._callbacks.append((phase, self._seq, callback))

    async def shutdown(self, timeout: float | None = None, *, max_phase: int | None = None) -> None:
        """Run registered callbacks once, phase by phase.

        A callback that raises is logged and does not stop the others. With
        *timeout*, each phase is given at most that many seconds. With
        *max_phase*, only the phases up to it run now; the later ones stay
        registered for a following call (``serve()`` closes connections,
        waits for in-flight requests, and only then releases executors and
        brokers that those requests may still be using).
        """
        self.shutting_down = True
        callbacks = sorted(c for c in self._callbacks if max_phase is None or c[0] <= max_phase)
        self._callbacks = [c for c in self._callbacks if c not in callbacks]
        phases = sorted({phase for phase, _, _ in callbacks})
        for phase in phases:
            pending = []
            for cb_phase, _, callback in callbacks:
                if cb_phase != phase:
                    continue
                try:
                    result = callback()
                except Exception:
                    log.exception("tornado-kit shutdown callback %r failed", callback)
                    continue
                if inspect.isawaitable(result):
                    pending.append(asyncio.ensure_future(result))
            if pending:
                done, not_done = await asyncio.wait(pending, timeout=timeout)
                for task in not_done:
                    task.cancel()
                    log.warning("tornado-kit shutdown callback did not finish in time: %r", task)
                if not_done:
                    # Let the cancelled callbacks run their cleanup before the
                    # next phase (briefly: one that ignores cancellation is left).
                    await asyncio.wait(not_done, timeout=_CANCEL_GRACE)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error(
                            "tornado-kit shutdown callback failed",
                            exc_info=task.exception(),
                        )


def state_for(app: Application) -> AppState:
    """Return the :class:`AppState` of *app*, creating it on first use.

    Creating it also gives the secret query argument names of *app*'s
    settings to the filter on Tornado's loggers (``tornado_kit._redact``),
    so that every handler of the app, plain Tornado ones included, logs
    none of their values from then on.
    """
    state: AppState | None = app.__dict__.get(_ATTR)
    if state is None:
        state = AppState()
        app.__dict__[_ATTR] = state
        install_for_settings(app.settings)
    return state


async def shutdown(
    app: Application, timeout: float | None = None, *, max_phase: int | None = None
) -> None:
    """Shut down tornado-kit's runtime objects of *app*, as ``serve()`` does at exit.

    The registered shutdown callbacks (WebSockets closed with 1001, SSE
    streams ended, executors and brokers released) run once, phase by phase;
    one that raises is logged and does not stop the others. With *timeout*,
    each phase is given at most that many seconds; with *max_phase*, only the
    phases up to it run now, the later ones on a following call. The state is
    created when absent, so that a long-lived handler that starts after the
    shutdown still sees ``shutting_down``.
    """
    await state_for(app).shutdown(timeout, max_phase=max_phase)
