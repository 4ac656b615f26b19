"""The package exposes exactly DESIGN.md's public surface, in one sorted ``__all__``."""

import tornado_kit

PUBLIC = {
    # token auth
    "TokenAuthMixin",
    "StaticTokenVerifier",
    "SignedTokenVerifier",
    "JWTVerifier",
    "allow_anonymous",
    "require_scopes",
    # JSON errors and bodies
    "JSONErrorMixin",
    "APIError",
    "JSONBodyMixin",
    "NotFoundHandler",
    # timing and access log
    "TimingMixin",
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
    # SSE
    "SSEMixin",
    "ServerSentEvent",
    "EventLog",
    "MemoryEventLog",
    "RedisEventLog",
    # executor
    "ExecutorMixin",
    "BoundedExecutor",
    # upstream fan-out
    "fetch_all",
    "UpstreamResult",
    # serving
    "serve",
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
        for name in vars(tornado_kit)
        if not name.startswith("_")
        and not isinstance(getattr(tornado_kit, name), type(tornado_kit))  # submodules
    }
    assert public == PUBLIC
