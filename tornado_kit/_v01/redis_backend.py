"""0.1 names of ``tornado_kit.redis_backend`` that 0.2 spells differently (private)."""

from tornado_kit._redis._client import INSTALL_HINT as _INSTALL_HINT
from tornado_kit._redis._client import connection_errors as _connection_errors
from tornado_kit._redis._client import describe as _describe
from tornado_kit._redis._client import import_redis as _import_redis
from tornado_kit._redis._client import make_client as _make_client
from tornado_kit._redis._pubsub import CONNECTING as _CONNECTING
from tornado_kit._redis._pubsub import DOWN as _DOWN
from tornado_kit._redis._pubsub import UP as _UP

__all__ = [
    "_CONNECTING",
    "_DOWN",
    "_INSTALL_HINT",
    "_UP",
    "_connection_errors",
    "_describe",
    "_import_redis",
    "_make_client",
]
