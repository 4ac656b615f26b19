"""The access record's hand-offs between mixins, typed (private but for ``add_access_field``).

Several mixins contribute to the one access record ``TimingMixin`` emits,
without knowing whether ``TimingMixin`` is in the class at all:

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

from typing import Any

from tornado.web import RequestHandler

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
