"""Every name of the 0.1 modules executor, upstream and server still resolves, with a warning.

The names are those the modules defined at module level in 0.1.0 (commit
4934b66: ``git show 4934b66:tornado_kit/executor.py``), public ones only:
the implementation moved to private modules (``_executor``,
``_executor_mixin``, ``_upstream``, ``_server``, ``_worker``) and the stubs
must find each name wherever it went.
"""

from __future__ import annotations

import importlib
import logging

import pytest

import tornado_kit

NAMES_0_1 = {
    "executor": [
        "BoundedExecutor",
        "ExecutorFull",
        "ExecutorMixin",
        "ExecutorShutdown",
        "T",
        "executor_for",
        "log",
    ],
    "upstream": [
        "DEFAULT_MAX_BODY_SIZE",
        "DEFAULT_MAX_CLIENTS",
        "UpstreamResult",
        "fetch_all",
        "upstream_client",
    ],
    "server": ["AppFactory", "LoopKind", "log", "serve"],
}

CASES = [(module, name) for module, names in NAMES_0_1.items() for name in names]


@pytest.mark.parametrize(("module", "name"), CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_a_0_1_name_resolves_with_a_deprecation_warning(module: str, name: str) -> None:
    stub = importlib.import_module(f"tornado_kit.{module}")
    with pytest.warns(DeprecationWarning, match=f"tornado_kit.{module}.{name} is") as caught:
        value = getattr(stub, name)
    message = str(caught[0].message)
    if name in tornado_kit.__all__:
        assert value is getattr(tornado_kit, name)
        assert "import it from tornado_kit" in message
    else:
        assert "private since tornado-kit 0.2 and will be removed in 0.3" in message
    assert name in dir(stub)


def test_the_loggers_keep_their_0_1_names() -> None:
    with pytest.warns(DeprecationWarning, match="tornado_kit.executor.log is private"):
        from tornado_kit.executor import log as executor_log
    with pytest.warns(DeprecationWarning, match="tornado_kit.server.log is private"):
        from tornado_kit.server import log as server_log
    assert executor_log is logging.getLogger("tornado_kit.executor")
    assert server_log is logging.getLogger("tornado_kit.server")


def test_the_0_1_constants_keep_their_values() -> None:
    with pytest.warns(DeprecationWarning, match="DEFAULT_MAX_CLIENTS is private"):
        from tornado_kit.upstream import DEFAULT_MAX_CLIENTS
    with pytest.warns(DeprecationWarning, match="DEFAULT_MAX_BODY_SIZE is private"):
        from tornado_kit.upstream import DEFAULT_MAX_BODY_SIZE
    assert (DEFAULT_MAX_CLIENTS, DEFAULT_MAX_BODY_SIZE) == (10, 10 * 1024 * 1024)
