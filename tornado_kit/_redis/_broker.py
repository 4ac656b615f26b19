"""RedisBroker: the :class:`~tornado_kit.Broker` over Redis pub/sub (private).

The public methods and their argument checks; the pub/sub connection behind
``subscribe`` is ``PubSub`` (``_pubsub.py``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from tornado_kit._broker import DEFAULT_MAXSIZE, Subscription
from tornado_kit._checks import argument, check_instance, check_int, check_number
from tornado_kit._redis._client import connection_errors, import_redis, make_client, unreachable
from tornado_kit._redis._pubsub import UP, PubSub

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisBroker:
    """A :class:`~tornado_kit.Broker` over Redis pub/sub.

    Every process that builds a ``RedisBroker`` on the same Redis (and the same
    *channel_prefix*) shares topics: a message published in one process reaches
    the subscribers of every process. Topic ``t`` is the Redis channel
    ``channel_prefix + t``.

    :param url: ``redis://`` / ``rediss://`` / ``unix://`` URL. Ignored when
        *client* is given.
    :param client: an existing ``redis.asyncio.Redis`` used for ``PUBLISH``
        (and by :class:`~tornado_kit.RedisEventLog`); the pub/sub connection is a separate
        connection built from the same settings. The broker does not close a
        client it was given.
    :param channel_prefix: namespace of the Redis channels.
    :param timeout: socket connect/read/write timeout in seconds of the
        connections the broker creates; also bounds how long ``subscribe``
        waits for Redis to confirm.
    :param reconnect_max_delay: cap of the exponential reconnect backoff.
    :param max_connections: size of the command connection pool created from
        *url* (concurrent publishes beyond it wait up to *timeout* for a free
        connection).
    :param health_check_interval: an idle pub/sub connection is pinged after
        this many seconds and considered lost when the reply does not arrive
        within the same time (catches half-open TCP connections).
    :raises TypeError: for an argument of the wrong kind (a non-``str``
        *url*, a *client* that is not a ``redis.asyncio.Redis``, ...).
    :raises ValueError: for a non-positive number.

    Nothing happens at construction (redis-py is imported, that is all): the
    pub/sub connection and its two tasks (reader and writer) start on the
    running event loop at the first ``subscribe``. The broker is bound to
    that loop. One pub/sub connection multiplexes every topic; Redis
    subscribes a channel when its first local subscriber appears and
    unsubscribes it when the last one leaves.

    Order: messages that one process publishes one after another (awaiting
    each ``publish``) arrive in that order at every subscriber.

    Example::

        broker = RedisBroker("redis://127.0.0.1:6379/0")
        sub = await broker.subscribe("room:42")
        await broker.publish("room:42", "hello")   # from any process
        print(await sub.get())                      # "hello"
        await broker.close()

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Redis | None = None,
        channel_prefix: str = "tk:",
        timeout: float = 5.0,
        reconnect_max_delay: float = 5.0,
        health_check_interval: float = 30.0,
        max_connections: int = 20,
    ) -> None:
        aioredis = import_redis()
        arg = functools.partial(argument, "RedisBroker")
        self.url = check_instance(url, str, arg("url"), "a Redis URL (str)")
        if client is not None:
            check_instance(client, aioredis.Redis, arg("client"), "a redis.asyncio.Redis")
        self.channel_prefix = check_instance(channel_prefix, str, arg("channel_prefix"), "a str")
        self.timeout = check_number(timeout, arg("timeout"), positive=True)
        self.reconnect_max_delay = check_number(
            reconnect_max_delay, arg("reconnect_max_delay"), positive=True
        )
        self.health_check_interval = check_number(
            health_check_interval, arg("health_check_interval"), positive=True
        )
        self.max_connections = check_int(max_connections, arg("max_connections"), minimum=1)
        self._client = client
        self._owns_client = client is None
        self._closed = False
        self._pubsub = PubSub(
            lambda: self.client,
            self.channel_prefix,
            timeout=self.timeout,
            reconnect_max_delay=self.reconnect_max_delay,
            health_check_interval=self.health_check_interval,
        )

    # -- public API ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is established."""
        return self._pubsub.state == UP

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` client used for commands (created on first use)."""
        if self._client is None:
            self._client = make_client(self.url, self.timeout, self.max_connections)
        return self._client

    def subscriber_count(self, topic: str | None = None) -> int:
        """Number of open local subscriptions (on *topic*, or on every topic)."""
        subs = self._pubsub.subs
        if topic is not None:
            return len(subs.get(topic, ()))
        return sum(len(s) for s in subs.values())

    async def publish(self, topic: str, message: str) -> None:
        """Publish *message* on *topic* to the subscribers of every process.

        :raises ConnectionError: Redis is unreachable (after at most about two
            socket timeouts).
        :raises RuntimeError: the broker is closed.
        """
        self._check_open()
        if not isinstance(message, str):
            raise TypeError(f"broker messages are str, not {type(message).__name__}")
        client = self.client
        try:
            await client.publish(self._channel(topic), message)
        except connection_errors() as exc:
            raise unreachable(f"RedisBroker: cannot publish on {topic!r}", client, exc) from exc

    async def subscribe(self, topic: str, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to *topic*; returns once Redis confirmed the subscription.

        A message published (from any process) after this returns is received.
        The first call starts the pub/sub connection on the running loop.

        :raises ConnectionError: Redis is unreachable, or did not confirm
            within ``2 * timeout`` seconds.
        :raises RuntimeError: the broker is closed.
        """
        self._check_open()
        return await self._pubsub.subscribe(topic, maxsize)

    async def close(self) -> None:
        """Close every subscription, stop the tasks, close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pubsub.close()
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"<RedisBroker {self.channel_prefix!r} {self._pubsub.state}"
            f"{' closed' if self._closed else ''} topics={len(self._pubsub.subs)}"
            f" subscriptions={self.subscriber_count()}>"
        )

    # -- for RedisEventLog ----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("RedisBroker is closed")

    def _channel(self, topic: str) -> bytes:
        return self._pubsub.channel(topic)
