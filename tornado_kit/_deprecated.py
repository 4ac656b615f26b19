"""The 0.1 import paths (``tornado_kit.auth``, ``tornado_kit.sse``, ...), kept one release.

tornado-kit 0.1 had public implementation modules; 0.2 keeps them private
(``tornado_kit._auth``, ...) and exports every public name from
:mod:`tornado_kit` itself. Each 0.1 module is now a stub whose module
``__getattr__`` (PEP 562) comes from :func:`moved`: an attribute that the new
modules still define is returned with a :class:`DeprecationWarning`, one that
names where to import it from instead. The stubs are removed in 0.3.
"""

from __future__ import annotations

import importlib
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["moved"]

REMOVED_IN = "0.3"


def moved(old: str, targets: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for the 0.1 module *old*.

    *targets* are the private modules that now hold what *old* held, searched
    in order. A public name (one of ``tornado_kit.__all__``) warns "import it
    from tornado_kit"; any other name warns that it is private and goes away
    in 0.3. Modules imported by the targets (``logging``, ...) are not
    forwarded.
    """

    def find(name: str) -> Any:
        for target in targets:
            module = importlib.import_module(target)
            if name in vars(module):
                value = vars(module)[name]
                if not isinstance(value, types.ModuleType):
                    return value
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = find(name)
        package = importlib.import_module("tornado_kit")
        if name in package.__all__ and getattr(package, name) is value:
            message = (
                f"{old}.{name} is deprecated since tornado-kit 0.2: import it from "
                f"tornado_kit (`from tornado_kit import {name}`); {old} will be "
                f"removed in {REMOVED_IN}"
            )
        else:
            message = (
                f"{old}.{name} is private since tornado-kit 0.2 and will be removed in {REMOVED_IN}"
            )
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return value

    def __dir__() -> list[str]:
        names: set[str] = set()
        for target in targets:
            module = importlib.import_module(target)
            names.update(
                name
                for name, value in vars(module).items()
                if not name.startswith("__") and not isinstance(value, types.ModuleType)
            )
        return sorted(names)

    return __getattr__, __dir__
