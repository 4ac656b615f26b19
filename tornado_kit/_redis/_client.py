"""redis-py, imported on demand: the client factory and what "unreachable" means (private).

Nothing here runs at ``import tornado_kit``: redis-py is an optional extra,
imported when a :class:`~tornado_kit.RedisBroker` or
:class:`~tornado_kit.RedisEventLog` is constructed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

    from redis.asyncio import Redis

#: The logger of the Redis backend (a literal name: users configure it).
log = logging.getLogger("tornado_kit.redis")

INSTALL_HINT = "pip install 'tornado-kit[redis]'"


def import_redis() -> ModuleType:
    """Import ``redis.asyncio`` or raise an ImportError that names the extra."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:
        raise ImportError(
            f"tornado-kit's Redis backend needs redis-py (>= 5.0): {INSTALL_HINT}"
        ) from exc
    return aioredis


def connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "Redis is unreachable" (redis-py's and the OS's)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


def make_client(url: str, timeout: float, max_connections: int) -> Redis:
    """A client with bounded socket timeouts, a bounded pool and a single quick retry.

    The pool blocks (up to *timeout*) instead of failing when all of its
    *max_connections* connections are busy, so a burst of concurrent
    publishes queues up instead of opening a connection each. The retry
    covers a pooled connection that went stale across a Redis restart (the
    first command after recovery succeeds); timeouts are not retried, so a
    command is never sent twice because a reply was slow.
    """
    aioredis = import_redis()
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1, (RedisConnectionError,)),
    )
    client: Redis = aioredis.Redis.from_pool(pool)  # closes the pool with the client
    return client


def describe(client: Redis) -> str:
    """``host:port`` (or the socket path) of *client*, without credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def unreachable(what: str, client: Redis, exc: BaseException) -> ConnectionError:
    """The :class:`ConnectionError` for *what* failing (``"RedisBroker: cannot ..."``)."""
    return ConnectionError(f"{what}, Redis at {describe(client)} is unavailable: {exc}")
