"""Resolution of per-handler knobs: class attribute, then setting, then default.

DESIGN.md: "the class attribute wins when set; otherwise the setting;
otherwise the default". A class attribute counts as *set* when it is not
``None``, so every mixin declares its knobs as ``name: T | None = None``.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def resolve(handler: Any, name: str, default: T) -> T:
    """Return the effective value of knob *name* for *handler*.

    *handler* is a ``RequestHandler`` (anything with ``settings``). The class
    attribute of the same name wins when it is not ``None``; then
    ``Application.settings[name]`` when present and not ``None``; then
    *default*.
    """
    value = getattr(type(handler), name, None)
    if value is not None:
        return value  # type: ignore[no-any-return]
    value = handler.settings.get(name)
    if value is not None:
        return value  # type: ignore[no-any-return]
    return default
