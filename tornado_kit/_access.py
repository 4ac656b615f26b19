"""The access record: its fields, its hand-offs between mixins, its emission (private).

``TimingMixin`` emits one access record per request (:func:`emit_record`).
Several mixins contribute to it without knowing whether ``TimingMixin`` is
in the class at all:

- any code attaches extra fields with :func:`add_access_field` (public; for
  example ``ExecutorMixin`` adds the queue depth, ``SSEMixin`` the events sent);
- long-lived handlers (WebSocket, SSE) say when the connection has ended, so
  that the record is written then, not at the handshake:
  ``self._tk_end_access()``;
- the error renderer includes the request id when there is one:
  ``self._tk_request_id_if_any()``.

The last two are methods of :class:`AccessHooks`, a base that every mixin
involved derives from. It appears once in any handler's MRO, after all of
them, so its no-op defaults run only when no ``TimingMixin`` overrides them,
whatever the order of the mixins. This replaces 0.1's
``getattr(self, "_tk_log_access", None)`` hand-offs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tornado.web import RequestHandler

from tornado_kit._compat.handler import status_code, user_if_resolved
from tornado_kit._lifecycle import state_for
from tornado_kit._redact import loggable_uri
from tornado_kit._settings import resolve

#: The logger of the access records (its 0.1 name: users configure it).
access_log = logging.getLogger("tornado_kit.access")

_KEY = "_tornado_kit_access_fields"


def add_access_field(handler: RequestHandler, name: str, value: Any) -> None:
    """Attach ``name=value`` to *handler*'s access record.

    ``TimingMixin`` writes the extra fields after its own (which win on a
    clash); without ``TimingMixin`` the fields are kept and ignored. Call it
    any time before the request ends (a WebSocket or SSE connection: before
    it closes)::

        class Search(TimingMixin, RequestHandler):
            async def get(self) -> None:
                hits = await search(self.get_argument("q"))
                add_access_field(self, "hits", len(hits))
                self.write({"hits": hits})

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Importable from ``tornado_kit`` (0.1 had it in a private module only).
    """
    handler.__dict__.setdefault(_KEY, {})[name] = value


def access_fields(handler: RequestHandler) -> dict[str, Any]:
    """Return the extra fields attached to *handler* (an empty dict when none)."""
    fields: dict[str, Any] = handler.__dict__.get(_KEY, {})
    return fields


class AccessHooks(RequestHandler):
    """No-op defaults of the access-record hand-offs; ``TimingMixin`` overrides them."""

    def _tk_end_access(self) -> None:
        """A long-lived connection has ended: write its access record now (idempotent)."""

    def _tk_request_id_if_any(self) -> str | None:
        """The request id when ``TimingMixin`` provides one, else ``None``."""
        return None


def emit_record(
    handler: RequestHandler, request_id: str, bytes_sent: int, spans: dict[str, float] | None
) -> None:
    """Observe *handler*'s request into the ``metrics`` setting and log its access record.

    The record (see ``TimingMixin``) goes to :data:`access_log` at ``INFO``
    below 400, ``WARNING`` below 500, ``ERROR`` otherwise; *spans* are in
    seconds. It may raise (``TimingMixin`` catches and logs).
    """
    # The app's secret names reach the filter on Tornado's loggers when its
    # state is created: from here on for an app served without serve() or
    # the testing plugin (a dict lookup afterwards).
    state_for(handler.application)
    request = handler.request
    status = status_code(handler)
    seconds = request.request_time()
    metrics: Any = resolve(handler, "metrics", None)
    if metrics is not None:
        metrics.observe_request(type(handler).__name__, request.method or "", status, seconds)
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    path = loggable_uri(handler)
    user = user_if_resolved(handler)
    # dict first: its exact-type check is cheaper than the ABC's.
    sub = user.get("sub") if isinstance(user, (dict, Mapping)) else None
    duration_ms = round(seconds * 1000.0, 3)
    record: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "request_id": request_id,
        "user": sub,
        "bytes": bytes_sent,
        "remote_ip": request.remote_ip,
        "handler": type(handler).__name__,
    }
    if spans:
        record["spans"] = {name: round(value * 1000.0, 3) for name, value in spans.items()}
    extra = access_fields(handler)
    if extra:
        # Core fields first and winning: an extra field cannot overwrite them.
        record = {**record, **extra, **record}
    # makeRecord + handle instead of log(): the caller's file and line are
    # meaningless for an access record, and finding them (walking the
    # stack) is a measurable part of the per-request cost.
    log_record = access_log.makeRecord(
        access_log.name,
        level,
        "(access)",
        0,
        "%d %s %s %.2fms %s",
        (status, request.method, path, duration_ms, request_id),
        None,
    )
    # What extra={"access": record} would do, without its per-key checks
    # ("access" is not a LogRecord attribute).
    log_record.__dict__["access"] = record
    access_log.handle(log_record)
