"""tornado-kit: composable, standards-correct mixins for Tornado handlers.

Every public name is importable from this package (``tornado_kit.testing`` is
its own module)::

    from tornado.web import RequestHandler
    from tornado_kit import JSONErrorMixin, TimingMixin, TokenAuthMixin

    class UserHandler(TokenAuthMixin, JSONErrorMixin, TimingMixin, RequestHandler):
        async def get(self, user_id: str) -> None:
            ...

Exceptions::

    tornado.web.HTTPError
     └── APIError            (RFC 9457 problem details that reach the client)
"""

from tornado_kit import _redact
from tornado_kit.auth import (
    JWTVerifier,
    SignedTokenVerifier,
    StaticTokenVerifier,
    TokenAuthMixin,
    allow_anonymous,
    require_scopes,
)
from tornado_kit.broker import Broker, LocalBroker
from tornado_kit.errors import APIError, JSONBodyMixin, JSONErrorMixin, NotFoundHandler
from tornado_kit.executor import BoundedExecutor, ExecutorMixin
from tornado_kit.metrics import MetricsHandler, PrometheusMetrics
from tornado_kit.redis_backend import RedisBroker, RedisEventLog
from tornado_kit.server import serve
from tornado_kit.sse import EventLog, MemoryEventLog, ServerSentEvent, SSEMixin
from tornado_kit.timing import TimingMixin
from tornado_kit.upstream import UpstreamResult, fetch_all
from tornado_kit.websocket import (
    AllowedOriginsMixin,
    BroadcastMixin,
    HeartbeatMixin,
    JSONMessageMixin,
)

# Tornado's loggers redact secret query values from the start (see _redact.install).
_redact.install()

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AllowedOriginsMixin",
    "BoundedExecutor",
    "BroadcastMixin",
    "Broker",
    "EventLog",
    "ExecutorMixin",
    "HeartbeatMixin",
    "JSONBodyMixin",
    "JSONErrorMixin",
    "JSONMessageMixin",
    "JWTVerifier",
    "LocalBroker",
    "MemoryEventLog",
    "MetricsHandler",
    "NotFoundHandler",
    "PrometheusMetrics",
    "RedisBroker",
    "RedisEventLog",
    "SSEMixin",
    "ServerSentEvent",
    "SignedTokenVerifier",
    "StaticTokenVerifier",
    "TimingMixin",
    "TokenAuthMixin",
    "UpstreamResult",
    "allow_anonymous",
    "fetch_all",
    "require_scopes",
    "serve",
]
