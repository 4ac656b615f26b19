"""Every name the 0.1 realtime modules had still resolves through their deprecated paths.

0.2 split ``tornado_kit.sse``, ``tornado_kit.broker``,
``tornado_kit.websocket`` and ``tornado_kit.redis_backend`` into private
packages (``_sse``, ``_channels``, ``_ws``, ``_redis``). The lists below are
the module-level names of the 0.1 modules (``git show 4934b66:tornado_kit/<m>.py``:
their classes, functions, constants, and the names they imported from
tornado-kit), except ``__all__`` and the module ``_json`` (modules are never
forwarded). Each must resolve on the stub, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings

import pytest

import tornado_kit

NAMES_0_1 = {
    "sse": [
        "APIError",
        "APIErrorHeadersMixin",
        "DEFAULT_MAXSIZE",
        "EventLog",
        "EventLogGap",
        "LocalBroker",
        "MemoryEventLog",
        "Registry",
        "SSEMixin",
        "ServerSentEvent",
        "Stream",
        "_KEEPALIVE",
        "_LINE_BREAK",
        "_MARKER",
        "_TopicLog",
        "_check_field",
        "_check_retry",
        "_log",
        "_registry_for",
        "_wire",
        "add_access_field",
        "broker_for",
        "decode_broker_message",
        "encode_broker_message",
        "registry_for",
        "resolve",
        "state_for",
    ],
    "broker": [
        "Broker",
        "DEFAULT_MAXSIZE",
        "LocalBroker",
        "PHASE_RESOURCES",
        "Subscription",
        "SubscriptionClosed",
        "broker_for",
        "state_for",
    ],
    "websocket": [
        "APIError",
        "AllowedOriginsMixin",
        "Beat",
        "BroadcastMixin",
        "DEFAULT_HEARTBEAT_INTERVAL",
        "DEFAULT_HEARTBEAT_TIMEOUT",
        "Heartbeat",
        "HeartbeatMixin",
        "JSONMessageMixin",
        "LocalBroker",
        "PING_PAYLOAD",
        "ROOM_TOPIC_PREFIX",
        "STATE_KEY",
        "WSState",
        "_TrackedWebSocket",
        "add_access_field",
        "broker_for",
        "done_future",
        "envelope",
        "parse_origin",
        "parse_pattern",
        "resolve",
        "retrieve",
        "same_host",
        "state_for",
        "ws_state",
    ],
    "redis_backend": [
        "Broker",
        "DEFAULT_MAXSIZE",
        "EventLogGap",
        "RedisBroker",
        "RedisEventLog",
        "ServerSentEvent",
        "Subscription",
        "_APPEND_LUA",
        "_CONNECTING",
        "_DOWN",
        "_ID_PLACEHOLDER",
        "_INSTALL_HINT",
        "_STREAM_ID",
        "_U64_MAX",
        "_UP",
        "_connection_errors",
        "_describe",
        "_import_redis",
        "_make_client",
        "_next_stream_id",
        "_parse_stream_id",
        "_text",
        "encode_broker_message",
        "log",
    ],
}

CASES = [(module, name) for module, names in sorted(NAMES_0_1.items()) for name in names]


@pytest.mark.parametrize(("module", "name"), CASES)
def test_every_0_1_name_of_the_realtime_modules_still_resolves(module: str, name: str) -> None:
    stub = importlib.import_module(f"tornado_kit.{module}")
    with pytest.warns(DeprecationWarning, match=f"tornado_kit.{module}.{name} is ") as caught:
        value = getattr(stub, name)
    assert value is not None
    if name in tornado_kit.__all__:
        assert value is getattr(tornado_kit, name)
        assert "import it from tornado_kit" in str(caught[0].message)
    else:
        assert "private since tornado-kit 0.2" in str(caught[0].message)
    assert name in dir(stub)


def test_renamed_0_1_internals_resolve_to_their_0_2_successors() -> None:
    from tornado_kit._redis._client import make_client
    from tornado_kit._sse._registry import SSERegistry
    from tornado_kit._sse._stream import SSEStream
    from tornado_kit._ws._base import TrackedWebSocket

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from tornado_kit import redis_backend, sse, websocket

        assert sse.Stream is SSEStream
        assert sse.Registry is SSERegistry
        assert websocket._TrackedWebSocket is TrackedWebSocket
        assert redis_backend._make_client is make_client
