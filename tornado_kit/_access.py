"""Extra fields for the access record, shared between mixins.

Any mixin may attach fields to the current request's access record (for
example ``ExecutorMixin`` adds the executor queue depth); ``TimingMixin``
includes them in the one structured record it emits in ``on_finish``. The
fields live on the handler instance, so nothing is shared between requests.
"""

from __future__ import annotations

from typing import Any

_KEY = "_tornado_kit_access_fields"


def add_access_field(handler: Any, name: str, value: Any) -> None:
    """Attach ``name=value`` to *handler*'s access record."""
    handler.__dict__.setdefault(_KEY, {})[name] = value


def access_fields(handler: Any) -> dict[str, Any]:
    """Return the extra fields attached to *handler* (an empty dict when none)."""
    fields: dict[str, Any] = handler.__dict__.get(_KEY, {})
    return fields
