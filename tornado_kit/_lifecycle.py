"""Per-application runtime state, the resources it owns, and the shutdown hook.

tornado-kit keeps no module-level mutable state (it would be shared across
``fork_processes`` children and bound to the wrong event loop). Everything a
mixin needs to share across handlers of one application (the default broker,
the heartbeat timer, the registry of open WebSockets and SSE streams, the
default executor) hangs off the ``Application`` object in an :class:`AppState`
created lazily on first use, i.e. inside the serving process, after any fork.
:meth:`AppState.resource` is the one way such a resource is made and, with
*close*, released at shutdown.

The ownership rule: what tornado-kit creates, it closes; what the user passes
in the settings (``broker``, ``executor``, ``channel_log``) it closes too,
unless the setting ``close_resources_on_shutdown`` is ``False``
(:func:`close_at_shutdown`).

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

from tornado_kit._checks import check_instance, setting
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
        Keys name the module and the resource: ``"tornado_kit.executor:default"``.
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

    def once(self, key: str) -> bool:
        """True the first time it is called with *key* for this application, False after.

        For what must happen once per application, such as a warning
        (``"tornado_kit.auth:no_verifier_warned"``): the flag is a resource
        like the others, kept under *key*.
        """
        first = False

        def mark() -> bool:
            nonlocal first
            first = True
            return True

        self.resource(key, mark)
        return first

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


#: The settings that hold an object the user made and tornado-kit closes at
#: shutdown (unless ``close_resources_on_shutdown`` is False), with the name
#: of the method that closes it. An object without that method is not one of
#: ours (a ``ThreadPoolExecutor`` kept for Tornado's ``@run_on_executor``) and
#: is left alone.
OWNED_SETTINGS = (("broker", "close"), ("executor", "aclose"), ("channel_log", "close"))
_CLOSE_SETTING = "close_resources_on_shutdown"


def closes_user_resources(app: Application) -> bool:
    """The ``close_resources_on_shutdown`` setting of *app* (default True).

    :raises TypeError: when the setting is not a ``bool``.
    """
    value: bool = check_instance(
        app.settings.get(_CLOSE_SETTING, True), bool, setting(_CLOSE_SETTING), "a bool"
    )
    return value


def close_at_shutdown(
    app: Application, resource: T, close: Callable[[T], Awaitable[Any] | None]
) -> None:
    """Have ``close(resource)``, a resource the user made, run at *app*'s shutdown.

    Once per application and object, whatever the number of calls or the
    settings it appears under; not at all when ``close_resources_on_shutdown``
    is False (the resource is shared with other applications, or outlives
    this one). A ``close_resources_on_shutdown`` that is not a bool keeps the
    resource open, with an error logged: an application does not close what
    it was perhaps told to leave alone.
    """
    state = state_for(app)
    try:
        if not closes_user_resources(app):
            return
    except TypeError as exc:
        if state.once("tornado_kit.lifecycle:bad_close_setting"):
            log.error("tornado-kit: %s; the resources of the settings are left open", exc)
        return
    state.resource(f"tornado_kit.user:{id(resource)}", lambda: resource, close=close)


def _close_settings_at_shutdown(app: Application) -> None:
    for name, method in OWNED_SETTINGS:
        resource = app.settings.get(name)
        if resource is not None and callable(getattr(resource, method, None)):
            close_at_shutdown(app, resource, _calling(method))


def _calling(method: str) -> Callable[[Any], Awaitable[Any] | None]:
    def close(resource: Any) -> Awaitable[Any] | None:
        result: Awaitable[Any] | None = getattr(resource, method)()
        return result

    return close


async def shutdown(
    app: Application, timeout: float | None = None, *, max_phase: int | None = None
) -> None:
    """Close what tornado-kit holds for *app*: its connections, then its resources.

    :func:`tornado_kit.serve` calls it when it stops; so does the pytest
    plugin of :mod:`tornado_kit.testing`. Call it yourself when you run the
    application on an :class:`~tornado.httpserver.HTTPServer` of your own,
    after ``server.stop()`` and before ``server.close_all_connections()``::

        server.stop()
        await tornado_kit.shutdown(app, timeout=10)
        await server.close_all_connections()

    In this order, each step waiting for the previous one:

    1. **Connections.** Every open WebSocket of a tornado-kit handler is
       closed with code 1001 (going away) and every SSE stream is ended; a
       WebSocket handshake that arrives later is refused with 503, an SSE
       stream that begins later ends at once.
    2. **Resources.** Executors stop taking jobs, let the accepted ones
       finish and release their pools; then brokers, the upstream HTTP
       client and the other per-application resources are closed. That is
       what tornado-kit made (the default broker and executor, ...), and
       what you passed in the settings (``broker``, ``executor``,
       ``channel_log``) unless ``close_resources_on_shutdown`` is ``False``.
       An object shared by several applications is closed by the first of
       their shutdowns (closing is idempotent: the others find it closed);
       set ``close_resources_on_shutdown=False`` on them when one of them
       keeps serving, and close it yourself after the last.

    The callbacks of one step run concurrently. One that raises is logged
    and does not stop the others. With *timeout*, each step is given at most
    that many seconds: what is still running then is cancelled (and logged),
    given one more second to clean up, and the next step starts; so the
    whole call takes at most about ``2 * timeout + 2`` seconds. Without it,
    each step waits as long as its callbacks take.

    Every callback runs once: a second call does nothing, except release a
    resource made after the first one. *max_phase* is for ``serve()``, which
    closes connections, waits for requests in flight, and only then
    releases the resources those requests may still use; leave it out. The
    server itself (listening sockets, keep-alive connections) is not
    touched: that is ``HTTPServer.stop()`` and ``close_all_connections()``.

    .. versionadded:: 0.2
    """
    _close_settings_at_shutdown(app)
    await state_for(app).shutdown(timeout, max_phase=max_phase)
