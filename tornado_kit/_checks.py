"""Argument checks: a value of the wrong kind is a ``TypeError`` naming the parameter.

DESIGN.md (Hardening): "A constructor given a value of the wrong kind
(``MemoryEventLog(100)``) raises ``TypeError`` naming the parameter." The same
holds for settings read while serving (``token_verifier``, ``broker``) and for
arguments of methods such as ``stream_topic(log=...)``: the mistake is
reported where the value is first used, not as an ``AttributeError`` deep
inside a later call.

Every check takes *what*, the name as the message shows it: build it with
:func:`argument` (``MemoryEventLog() argument 'broker'``) or :func:`setting`
(``the 'broker' setting``). A value that has the right kind but an
unacceptable value (``maxlen=0``) is a ``ValueError``, also naming it.
Messages give the type of the value, never the value itself: it may be a
secret.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def argument(owner: str, name: str) -> str:
    """``"Owner() argument 'name'"``: how a message names a parameter."""
    return f"{owner}() argument {name!r}"


def setting(name: str) -> str:
    """``"the 'name' setting"``: how a message names an application setting."""
    return f"the {name!r} setting"


def _kind(value: object) -> str:
    if isinstance(value, type):
        return f"the class {value.__qualname__} (pass an instance)"
    return "None" if value is None else type(value).__name__


def wrong_kind(what: str, expected: str, value: object) -> TypeError:
    """The ``TypeError`` for *value*, which is not *expected*."""
    return TypeError(f"{what} must be {expected}, not {_kind(value)}")


def check_instance(value: T, types: type | tuple[type, ...], what: str, expected: str) -> T:
    """Return *value* when it is an instance of *types* (never a ``bool`` posing as an int)."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise wrong_kind(what, expected, value)
    if not isinstance(value, types):
        raise wrong_kind(what, expected, value)
    return value


def check_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    """Return *value*, an ``int`` (not a ``bool``) that is at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_kind(what, "an int", value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}")
    return value


def check_number(value: Any, what: str, *, positive: bool = False) -> float:
    """Return *value*, a finite real number (not a ``bool``); above zero when *positive*."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_kind(what, "a number", value)
    if not math.isfinite(value) or (positive and value <= 0):
        qualifier = "a positive" if positive else "a finite"
        raise ValueError(f"{what} must be {qualifier} number, not {value!r}")
    return float(value)


def check_str_sequence(value: Any, what: str) -> list[str]:
    """Return *value* as a list: a list or tuple of ``str`` (a lone ``str`` is refused)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise wrong_kind(what, "a list of str", value)
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise wrong_kind(f"each item of {what}", "a str", item)
    return items


def _is_async_callable(method: Any) -> bool:
    if not callable(method):
        return False
    # A Python function that is not ``async def`` returns no awaitable in any
    # protocol implementation we know of; other callables (partials of a
    # coroutine function, objects with ``__call__``) are given the benefit.
    if inspect.isfunction(method) or inspect.ismethod(method):
        return inspect.iscoroutinefunction(method)
    return True


def check_async_methods(value: T, what: str, kind: str, methods: Sequence[str]) -> T:
    """Return *value* when it is an instance whose *methods* are all ``async`` callables."""
    if isinstance(value, type) or not all(
        _is_async_callable(getattr(value, name, None)) for name in methods
    ):
        expected = f"{kind} (an object with async {', '.join(methods)} methods)"
        raise wrong_kind(what, expected, value)
    return value
