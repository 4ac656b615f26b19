"""tornado-kit: composable, standards-correct mixins for Tornado handlers.

Every public name is importable from this package (``tornado_kit.testing`` is
its own module)::

    from tornado.web import RequestHandler
    from tornado_kit import JSONErrorMixin, TimingMixin, TokenAuthMixin

    class UserHandler(TokenAuthMixin, JSONErrorMixin, TimingMixin, RequestHandler):
        async def get(self, user_id: str) -> None:
            ...

``tornado_kit.testing`` (``parse_sse``, ``read_sse``, ``ws_connect`` and the
pytest plugin) is the only public submodule. The 0.1 module paths
(``tornado_kit.auth``, ``tornado_kit.sse``, ...) still work with a
``DeprecationWarning`` until 0.3.

Exceptions::

    tornado.web.HTTPError
     └── APIError              RFC 9457 problem details that reach the client
    LookupError
     └── EventLogGap           an event log cannot prove a replay is complete
    RuntimeError
     ├── ExecutorFull          max_pending jobs already wait (503)
     └── ExecutorShutdown      the executor is shut down (503)
    Exception
     └── SubscriptionClosed    Subscription.get() after the subscription closed
"""

from tornado_kit import _redact
from tornado_kit._access import add_access_field
from tornado_kit._apierror import APIError, APIErrorHeadersMixin
from tornado_kit._auth import TokenAuthMixin, allow_anonymous, require_scopes
from tornado_kit._body import JSONBodyMixin
from tornado_kit._broker import Broker, LocalBroker, Subscription, SubscriptionClosed, broker_for
from tornado_kit._errors import JSONErrorMixin, NotFoundHandler
from tornado_kit._executor import BoundedExecutor, ExecutorFull, ExecutorShutdown
from tornado_kit._executor_mixin import ExecutorMixin, executor_for
from tornado_kit._jsonlog import JSONLinesFileHandler, JSONLinesFormatter
from tornado_kit._lifecycle import shutdown
from tornado_kit._metrics import MetricsHandler, PrometheusMetrics
from tornado_kit._redact import redact_query
from tornado_kit._redis import RedisBroker, RedisEventLog
from tornado_kit._server import serve
from tornado_kit._sse import EventLog, EventLogGap, MemoryEventLog, ServerSentEvent, SSEMixin
from tornado_kit._timing import TimingMixin
from tornado_kit._upstream import UpstreamResult, fetch_all, upstream_client
from tornado_kit._verifiers import JWTVerifier, SignedTokenVerifier, StaticTokenVerifier
from tornado_kit._ws import AllowedOriginsMixin, BroadcastMixin, HeartbeatMixin, JSONMessageMixin

# Tornado's loggers redact secret query values from the start (see _redact.install).
_redact.install()

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "APIErrorHeadersMixin",
    "AllowedOriginsMixin",
    "BoundedExecutor",
    "BroadcastMixin",
    "Broker",
    "EventLog",
    "EventLogGap",
    "ExecutorFull",
    "ExecutorMixin",
    "ExecutorShutdown",
    "HeartbeatMixin",
    "JSONBodyMixin",
    "JSONErrorMixin",
    "JSONLinesFileHandler",
    "JSONLinesFormatter",
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
    "Subscription",
    "SubscriptionClosed",
    "TimingMixin",
    "TokenAuthMixin",
    "UpstreamResult",
    "add_access_field",
    "allow_anonymous",
    "broker_for",
    "executor_for",
    "fetch_all",
    "redact_query",
    "require_scopes",
    "serve",
    "shutdown",
    "upstream_client",
]
