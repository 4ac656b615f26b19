"""One public surface: ``tornado_kit.__all__`` is exactly the public names, sorted.

Like httpx's ``tests/test_exported_members.py``: every public name is
importable from the package, nothing else public hangs off it, the only
public submodule is ``tornado_kit.testing``, and the 0.1 module paths are
deprecated stubs that forward with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import warnings

import pytest

import tornado_kit

#: DESIGN.md's table, plus the names 0.1 exposed only in submodules that users need.
PUBLIC = {
    # token auth
    "TokenAuthMixin",
    "StaticTokenVerifier",
    "SignedTokenVerifier",
    "JWTVerifier",
    "allow_anonymous",
    "require_scopes",
    "redact_query",
    # JSON errors and bodies
    "JSONErrorMixin",
    "APIError",
    "APIErrorHeadersMixin",
    "JSONBodyMixin",
    "NotFoundHandler",
    # timing and access log
    "TimingMixin",
    "JSONLinesFormatter",
    "JSONLinesFileHandler",
    "add_access_field",
    "PrometheusMetrics",
    "MetricsHandler",
    # WebSocket
    "HeartbeatMixin",
    "JSONMessageMixin",
    "BroadcastMixin",
    "AllowedOriginsMixin",
    # pub/sub
    "Broker",
    "LocalBroker",
    "RedisBroker",
    "Subscription",
    "SubscriptionClosed",
    "broker_for",
    # SSE
    "SSEMixin",
    "ServerSentEvent",
    "EventLog",
    "EventLogGap",
    "MemoryEventLog",
    "RedisEventLog",
    # executor
    "ExecutorMixin",
    "BoundedExecutor",
    "ExecutorFull",
    "ExecutorShutdown",
    "executor_for",
    # upstream fan-out
    "fetch_all",
    "UpstreamResult",
    "upstream_client",
    # serving
    "serve",
    "shutdown",
}

#: The 0.1 modules, kept as deprecated stubs until 0.3.
DEPRECATED_MODULES = {
    "auth",
    "broker",
    "errors",
    "executor",
    "metrics",
    "redis_backend",
    "server",
    "sse",
    "timing",
    "upstream",
    "websocket",
}


def test_all_is_sorted() -> None:
    assert tornado_kit.__all__ == sorted(tornado_kit.__all__)


def test_all_is_exactly_the_public_surface() -> None:
    assert set(tornado_kit.__all__) == PUBLIC


def test_every_name_is_importable_and_documented() -> None:
    for name in tornado_kit.__all__:
        obj = getattr(tornado_kit, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_no_other_public_attributes() -> None:
    public = {
        name
        for name, value in vars(tornado_kit).items()
        if not name.startswith("_") and not isinstance(value, type(tornado_kit))
    }
    assert public == PUBLIC


def test_testing_is_the_only_public_submodule() -> None:
    names = {info.name for info in pkgutil.iter_modules(tornado_kit.__path__)}
    public = {name for name in names if not name.startswith("_")}
    assert public - DEPRECATED_MODULES == {"testing"}
    assert public >= DEPRECATED_MODULES


def test_importing_the_package_imports_no_deprecated_module() -> None:
    # A fresh interpreter with every warning an error: the package, its
    # testing helpers and the CLI import only private modules.
    code = (
        "import sys, warnings; warnings.simplefilter('error');"
        "import tornado_kit, tornado_kit.testing, tornado_kit.__main__;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[-1] in {sorted(DEPRECATED_MODULES)!r}"
        " and m.startswith('tornado_kit.'));"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", sorted(DEPRECATED_MODULES))
def test_a_0_1_path_forwards_a_public_name_with_a_deprecation_warning(module: str) -> None:
    stub = importlib.import_module(f"tornado_kit.{module}")
    forwarded = [name for name in dir(stub) if name in PUBLIC]
    assert forwarded, f"tornado_kit.{module} forwards no public name"
    for name in forwarded:
        with pytest.warns(DeprecationWarning, match="import it from tornado_kit") as caught:
            value = getattr(stub, name)
        assert value is getattr(tornado_kit, name)
        assert f"tornado_kit.{module}.{name} is deprecated" in str(caught[0].message)
        assert caught[0].filename == __file__  # points at the caller


def test_a_0_1_path_forwards_a_private_name_saying_it_goes_away() -> None:
    from tornado_kit import sse

    with pytest.warns(DeprecationWarning, match="private since tornado-kit 0.2"):
        encode = sse.encode_broker_message
    assert callable(encode)


def test_from_import_of_a_0_1_path_works_and_warns() -> None:
    with pytest.warns(DeprecationWarning, match="tornado_kit.timing.JSONLinesFormatter"):
        from tornado_kit.timing import JSONLinesFormatter
    assert JSONLinesFormatter is tornado_kit.JSONLinesFormatter


def test_a_0_1_path_has_no_modules_or_unknown_names() -> None:
    from tornado_kit import auth

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            auth.logging  # noqa: B018 - a module the implementation imports
        with pytest.raises(AttributeError):
            auth.NoSuchThing  # noqa: B018
