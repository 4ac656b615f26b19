"""Redis-backed broker and event log, shared by every server process.

:class:`RedisBroker` implements the :class:`~tornado_kit.Broker`
protocol with Redis pub/sub, so that WebSocket rooms and SSE feeds reach the
clients of every process behind a load balancer. :class:`RedisEventLog`
implements the SSE :class:`~tornado_kit.EventLog` protocol with a Redis
Stream, so that an ``EventSource`` resumes with ``Last-Event-ID`` on any
process, and across restarts.

Both need redis-py (``pip install 'tornado-kit[redis]'``). It is imported when
one of them is constructed, never when ``tornado_kit`` is imported, and
nothing connects before first use: build them in your application factory,
inside the serving process (after ``fork()``).

Example::

    broker = RedisBroker("redis://127.0.0.1:6379/0")
    log = RedisEventLog(broker=broker)          # reuses the broker's client
    app = Application(routes, broker=broker, event_log=log)

Failure model (see ``docs/brokers.md``):

* One pub/sub connection per broker multiplexes every topic. When it is lost
  it is re-established with capped exponential backoff and every topic that
  still has local subscribers is subscribed again. Subscriptions stay open
  across the outage; messages published meanwhile are lost for pub/sub (an
  SSE client recovers them from the event log). The outage is logged once as
  a warning on the ``tornado_kit.redis`` logger, the recovery as info.
* :meth:`RedisBroker.publish`, :meth:`RedisBroker.subscribe` and the event
  log's methods raise the built-in :class:`ConnectionError` while Redis is
  unreachable, after at most a few socket timeouts (``timeout``), never hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from tornado_kit import _json
from tornado_kit._broker import DEFAULT_MAXSIZE, Broker, Subscription, check_broker
from tornado_kit._checks import argument, check_instance, check_int, check_number
from tornado_kit._sse import EventLogGap, ServerSentEvent, encode_broker_message

if TYPE_CHECKING:
    from types import ModuleType

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

__all__ = ["RedisBroker", "RedisEventLog"]

log = logging.getLogger("tornado_kit.redis")

_INSTALL_HINT = "pip install 'tornado-kit[redis]'"

# Connection states of the pub/sub reader.
_CONNECTING = "connecting"
_UP = "up"
_DOWN = "down"


def _import_redis() -> ModuleType:
    """Import ``redis.asyncio`` or raise an ImportError that names the extra."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:
        raise ImportError(
            f"tornado-kit's Redis backend needs redis-py (>= 5.0): {_INSTALL_HINT}"
        ) from exc
    return aioredis


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "Redis is unreachable" (redis-py's and the OS's)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


def _make_client(url: str, timeout: float, max_connections: int) -> Redis:
    """A client with bounded socket timeouts, a bounded pool and a single quick retry.

    The pool blocks (up to *timeout*) instead of failing when all of its
    *max_connections* connections are busy, so a burst of concurrent
    publishes queues up instead of opening a connection each. The retry
    covers a pooled connection that went stale across a Redis restart (the
    first command after recovery succeeds); timeouts are not retried, so a
    command is never sent twice because a reply was slow.
    """
    aioredis = _import_redis()
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


def _describe(client: Redis) -> str:
    """``host:port`` (or the socket path) of *client*, without credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class RedisBroker:
    """A :class:`~tornado_kit.Broker` over Redis pub/sub.

    Every process that builds a ``RedisBroker`` on the same Redis (and the same
    *channel_prefix*) shares topics: a message published in one process reaches
    the subscribers of every process. Topic ``t`` is the Redis channel
    ``channel_prefix + t``.

    :param url: ``redis://`` / ``rediss://`` / ``unix://`` URL. Ignored when
        *client* is given.
    :param client: an existing ``redis.asyncio.Redis`` used for ``PUBLISH``
        (and by :class:`RedisEventLog`); the pub/sub connection is a separate
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
        aioredis = _import_redis()
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._dirty: asyncio.Event | None = None
        self._conn: AbstractConnection | None = None
        self._state = _CONNECTING
        self._last_error: BaseException | None = None
        self._ping_requested = False
        # topic -> local subscriptions; channel -> topic for the channels wanted.
        self._subs: dict[str, set[Subscription]] = {}
        self._channels: dict[bytes, str] = {}
        # Channels whose last command sent was SUBSCRIBE, and those confirmed.
        self._sent: set[bytes] = set()
        self._active: set[bytes] = set()
        # Subscribers waiting for a confirmation: not yet sent / per SUBSCRIBE sent.
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self._inflight: dict[bytes, deque[list[asyncio.Future[None]]]] = {}

    # -- public API ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is established."""
        return self._state == _UP

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` client used for commands (created on first use)."""
        if self._client is None:
            self._client = _make_client(self.url, self.timeout, self.max_connections)
        return self._client

    def subscriber_count(self, topic: str | None = None) -> int:
        """Number of open local subscriptions (on *topic*, or on every topic)."""
        if topic is not None:
            return len(self._subs.get(topic, ()))
        return sum(len(subs) for subs in self._subs.values())

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
        except _connection_errors() as exc:
            raise ConnectionError(
                f"RedisBroker: cannot publish on {topic!r}, "
                f"Redis at {_describe(client)} is unavailable: {exc}"
            ) from exc

    async def subscribe(self, topic: str, *, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Subscribe to *topic*; returns once Redis confirmed the subscription.

        A message published (from any process) after this returns is received.
        The first call starts the pub/sub connection on the running loop.

        :raises ConnectionError: Redis is unreachable, or did not confirm
            within ``2 * timeout`` seconds.
        :raises RuntimeError: the broker is closed.
        """
        self._check_open()
        self._ensure_started()
        if self._state == _DOWN:
            raise self._unavailable(f"cannot subscribe to {topic!r}")
        sub = Subscription(topic, maxsize, self._remove)
        channel = self._channel(topic)
        subs = self._subs.get(topic)
        if subs is None:
            subs = self._subs[topic] = set()
            self._channels[channel] = topic
        subs.add(sub)
        if channel in self._active:
            return sub
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        inflight = self._inflight.get(channel)
        if channel in self._sent and inflight:
            # A SUBSCRIBE for this channel is on its way: its reply suffices.
            inflight[-1].append(waiter)
        else:
            self._waiting.setdefault(channel, []).append(waiter)
            self._wake_writer()
        try:
            await asyncio.wait_for(waiter, 2 * self.timeout)
        except asyncio.TimeoutError:
            sub.close()
            raise self._unavailable(f"no confirmation of SUBSCRIBE {topic!r}") from None
        except BaseException:
            sub.close()
            raise
        return sub

    async def close(self) -> None:
        """Close every subscription, stop the tasks, close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fail_waiters(RuntimeError("RedisBroker is closed"))
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
        tasks = {t for t in (self._reader, self._writer) if t is not None}
        self._wake_writer()
        while tasks:
            # Cancel again if needed: asyncio.wait_for() inside redis-py can
            # swallow a cancellation (Python < 3.12); the loops also stop on
            # their own once they see the broker closed.
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=1.0)
        self._reader = self._writer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"<RedisBroker {self.channel_prefix!r} {self._state}"
            f"{' closed' if self._closed else ''} topics={len(self._subs)}"
            f" subscriptions={self.subscriber_count()}>"
        )

    # -- internals ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("RedisBroker is closed")

    def _channel(self, topic: str) -> bytes:
        return (self.channel_prefix + topic).encode()

    def _unavailable(self, what: str) -> ConnectionError:
        cause = f": {self._last_error}" if self._last_error is not None else ""
        return ConnectionError(
            f"RedisBroker: {what}, Redis at {_describe(self.client)} is unavailable{cause}"
        )

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._dirty = asyncio.Event()
            self._reader = loop.create_task(self._run_reader(), name="tornado-kit redis reader")
            self._writer = loop.create_task(self._run_writer(), name="tornado-kit redis writer")
        elif self._loop is not loop:
            raise RuntimeError(
                "RedisBroker is bound to the event loop it was first used on; "
                "create one broker per process (after fork) and per loop"
            )

    def _wake_writer(self) -> None:
        if self._dirty is not None:
            self._dirty.set()

    def _remove(self, sub: Subscription) -> None:
        """``on_close`` of every subscription: drop it, unsubscribe an unused channel."""
        subs = self._subs.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.topic]
            channel = self._channel(sub.topic)
            self._channels.pop(channel, None)
            # Waiters of a channel nobody wants any more: release them.
            for waiter in self._waiting.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if not self._closed:
                self._wake_writer()

    def _fail_waiters(self, exc: BaseException) -> None:
        groups = list(self._waiting.values())
        for queue in self._inflight.values():
            groups.extend(queue)
        self._waiting.clear()
        self._inflight.clear()
        for waiters in groups:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)

    def _new_connection(self) -> AbstractConnection:
        """A dedicated pub/sub connection with the client's settings.

        RESP2, raw bytes, no built-in health check or retry: the reader task
        owns reconnection and health checks.
        """
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool = self.client.connection_pool
        # Maintenance notifications (redis-py 7+) need RESP3: not for this connection.
        kwargs = {
            k: v
            for k, v in pool.connection_kwargs.items()
            if not k.startswith("maint_notifications")
        }
        kwargs.update(
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
            protocol=2,
            socket_timeout=self.timeout,
        )
        if kwargs.get("socket_connect_timeout") is None:
            kwargs["socket_connect_timeout"] = self.timeout
        conn: AbstractConnection = pool.connection_class(**kwargs)
        return conn

    def _backoff(self, attempt: int) -> float:
        delay = min(self.reconnect_max_delay, 0.05 * 2.0 ** min(attempt, 16))
        return delay * random.uniform(0.5, 1.0)

    async def _run_reader(self) -> None:
        """Connect, read, dispatch; on loss, back off and reconnect (until cancelled).

        Any failure (refused, timed out, reset, authentication, a confused
        parser) counts as an outage: one warning when it starts, one info line
        when a connection succeeds again.
        """
        attempt = 0
        outage = False
        while not self._closed:
            self._state = _CONNECTING
            conn: AbstractConnection | None = None
            try:
                conn = self._new_connection()
                await cast("Callable[[], Awaitable[None]]", conn.connect)()
            except Exception as exc:
                if conn is not None:
                    await conn.disconnect(nowait=True)
                self._mark_down(exc)
                if not outage:
                    outage = True
                    log.warning(
                        "Redis at %s is unreachable (%s); retrying with backoff",
                        _describe(self.client),
                        exc,
                    )
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if outage:
                outage = False
                log.info(
                    "Redis at %s is reachable again; re-subscribing %d channel(s)",
                    _describe(self.client),
                    len(self._channels),
                )
            attempt = 0
            self._last_error = None
            self._conn = conn
            self._state = _UP
            self._wake_writer()
            try:
                await self._read_loop(conn)
            except Exception as exc:
                outage = True
                self._mark_down(exc)
                log.warning(
                    "lost the Redis pub/sub connection to %s (%s); reconnecting",
                    _describe(self.client),
                    exc,
                )
            finally:
                if self._conn is conn:
                    self._conn = None
                await conn.disconnect(nowait=True)
            # A short pause: a connection that drops right after connecting
            # must not spin.
            await asyncio.sleep(self._backoff(0))

    def _mark_down(self, exc: BaseException) -> None:
        """The pub/sub connection is gone: nothing is subscribed server-side."""
        self._state = _DOWN
        self._last_error = exc
        self._conn = None
        self._sent.clear()
        self._active.clear()
        self._ping_requested = False
        self._fail_waiters(self._unavailable("the pub/sub connection was lost"))

    async def _read_loop(self, conn: AbstractConnection) -> None:
        ping_pending = False
        while not self._closed:
            response = await conn.read_response(
                timeout=self.health_check_interval, disconnect_on_error=False
            )
            if response is None:  # idle for a whole interval
                if ping_pending:
                    raise ConnectionError(f"no reply to PING within {self.health_check_interval}s")
                ping_pending = True
                self._ping_requested = True
                self._wake_writer()
                continue
            ping_pending = False
            if not isinstance(response, list) or len(response) < 2:
                continue  # b"PONG" outside subscribed mode
            kind = response[0]
            if kind == b"message":
                topic = self._channels.get(response[1])
                if topic is not None:
                    subs = self._subs.get(topic)
                    if subs:
                        message = response[2].decode("utf-8", "replace")
                        for sub in tuple(subs):
                            sub.deliver(message)
            elif kind == b"subscribe":
                self._confirm(response[1])

    def _confirm(self, channel: bytes) -> None:
        queue = self._inflight.get(channel)
        if not queue:
            return
        waiters = queue.popleft()
        if not queue:
            del self._inflight[channel]
            if channel in self._sent:
                self._active.add(channel)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _run_writer(self) -> None:
        """Reconcile the server-side subscriptions with the local ones (until cancelled)."""
        assert self._dirty is not None
        dirty = self._dirty
        while not self._closed:
            await dirty.wait()
            dirty.clear()
            conn = self._conn
            if conn is None or self._state != _UP:
                continue
            wanted = set(self._channels)
            to_unsubscribe = self._sent - wanted
            to_subscribe = wanted - self._sent
            ping, self._ping_requested = self._ping_requested, False
            for channel in to_subscribe:
                self._inflight.setdefault(channel, deque()).append(self._waiting.pop(channel, []))
            self._sent -= to_unsubscribe
            self._active -= to_unsubscribe
            self._sent |= to_subscribe
            try:
                if to_unsubscribe:
                    await conn.send_command("UNSUBSCRIBE", *to_unsubscribe, check_health=False)
                if to_subscribe:
                    await conn.send_command("SUBSCRIBE", *to_subscribe, check_health=False)
                if ping:
                    await conn.send_command("PING", check_health=False)
            except Exception as exc:
                # The reader notices the broken connection and reconnects.
                log.debug("Redis pub/sub write failed: %r", exc)
                if self._conn is conn:
                    await conn.disconnect(nowait=True)


# Redis stream ids are "<milliseconds>-<sequence>", two unsigned 64-bit integers.
_STREAM_ID = re.compile(r"\A([0-9]{1,20})-([0-9]{1,20})\Z")
_U64_MAX = 2**64 - 1

# XADD + PUBLISH, atomically. KEYS[1]: stream; ARGV: maxlen, approximate (1/0),
# channel, message head, message tail (the broker message around the id),
# data, [event].
_APPEND_LUA = """
local xadd = {KEYS[1], 'MAXLEN'}
if ARGV[2] == '1' then xadd[#xadd + 1] = '~' end
xadd[#xadd + 1] = ARGV[1]
xadd[#xadd + 1] = '*'
xadd[#xadd + 1] = 'data'
xadd[#xadd + 1] = ARGV[6]
if #ARGV >= 7 then
  xadd[#xadd + 1] = 'event'
  xadd[#xadd + 1] = ARGV[7]
end
local id = redis.call('XADD', unpack(xadd))
redis.call('PUBLISH', ARGV[3], ARGV[4] .. id .. ARGV[5])
return id
"""
_ID_PLACEHOLDER = "0-0"


def _parse_stream_id(value: str) -> tuple[int, int] | None:
    """``(ms, seq)`` of a stream id, or ``None`` when *value* is not one."""
    match = _STREAM_ID.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _U64_MAX or seq > _U64_MAX:
        return None
    return ms, seq


def _next_stream_id(parsed: tuple[int, int]) -> str:
    """The smallest stream id greater than *parsed* (the maximum id maps to itself)."""
    ms, seq = parsed
    if seq < _U64_MAX:
        return f"{ms}-{seq + 1}"
    if ms < _U64_MAX:
        return f"{ms + 1}-0"
    return f"{ms}-{seq}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisEventLog:
    """An :class:`~tornado_kit.EventLog` in Redis Streams, shared by every process.

    Each topic is the stream ``key_prefix + topic``. :meth:`append` adds an
    entry with ``XADD`` (trimmed to *maxlen* entries) and publishes the event
    on *broker*; the stream entry id (``"1764200000000-0"``) is the event id,
    so ids increase across processes and survive restarts of the servers.
    :meth:`since` reads ``XRANGE key (last_id +``.

    :param url_or_client: a Redis URL or a ``redis.asyncio.Redis`` client.
        Leave it out to share the client of a :class:`RedisBroker` *broker*.
    :param broker: the broker :meth:`append` publishes on (any
        :class:`~tornado_kit.Broker`; a :class:`RedisBroker` reaches
        every process).
    :param maxlen: entries kept per topic.
    :param approximate: trim with ``MAXLEN ~`` (the default, much cheaper:
        Redis keeps at least *maxlen* entries and trims whole internal nodes,
        usually up to 100 more); ``False`` keeps exactly *maxlen*.
    :param key_prefix: namespace of the stream keys.
    :param timeout: socket timeouts of a client created from a URL.
    :param max_connections: pool size of a client created from a URL.
    :raises TypeError: for an argument of the wrong kind (a *broker* that is
        not a :class:`~tornado_kit.Broker`, a non-``int`` *maxlen*, ...).
    :raises ValueError: for a non-positive number, or neither a URL/client
        nor a :class:`RedisBroker` to take the client from.

    :meth:`since` raises :class:`~tornado_kit.EventLogGap` when it cannot
    prove the replay is complete: ``"malformed"`` for anything that is not a
    stream id, ``"unknown"`` for an id newer than the newest entry (or any id
    when the stream is empty, e.g. wiped), ``"expired"`` for an id older than
    the oldest entry still retained. Its ``events`` hold every retained event.
    Redis errors surface as :class:`ConnectionError`.

    Example::

        broker = RedisBroker("redis://127.0.0.1:6379/0")
        log = RedisEventLog(broker=broker, maxlen=1000)
        first = await log.append("news", {"title": "hello"})
        await log.append("news", "second")
        [e.data for e in await log.since("news", first.id)]  # ["second"]

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        url_or_client: str | Redis | None = None,
        *,
        broker: Broker,
        maxlen: int = 10000,
        approximate: bool = True,
        key_prefix: str = "tk:log:",
        timeout: float = 5.0,
        max_connections: int = 20,
    ) -> None:
        aioredis = _import_redis()
        arg = functools.partial(argument, "RedisEventLog")
        if url_or_client is not None:
            check_instance(
                url_or_client,
                (str, aioredis.Redis),
                arg("url_or_client"),
                "a Redis URL (str) or a redis.asyncio.Redis",
            )
        self._broker: Broker = check_broker(broker, arg("broker"))
        self.maxlen = check_int(maxlen, arg("maxlen"), minimum=1)
        self.approximate = check_instance(approximate, bool, arg("approximate"), "a bool")
        self.key_prefix = check_instance(key_prefix, str, arg("key_prefix"), "a str")
        self.timeout = check_number(timeout, arg("timeout"), positive=True)
        self.max_connections = check_int(max_connections, arg("max_connections"), minimum=1)
        if url_or_client is None and not isinstance(broker, RedisBroker):
            raise ValueError(
                "RedisEventLog needs a Redis URL or client unless broker is a RedisBroker"
            )
        self._url: str | None = None
        self._client: Redis | None = None
        self._owns_client = False
        self._script: AsyncScript | None = None
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._owns_client = True
        elif url_or_client is not None:
            self._client = url_or_client

    @property
    def broker(self) -> Broker:
        """The broker on which :meth:`append` publishes."""
        return self._broker

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` client (created on first use from a URL)."""
        if self._client is None:
            if self._url is not None:
                self._client = _make_client(self._url, self.timeout, self.max_connections)
            else:
                assert isinstance(self._broker, RedisBroker)
                return self._broker.client
        return self._client

    def _key(self, topic: str) -> str:
        return self.key_prefix + topic

    async def append(self, topic: str, data: Any, *, event: str | None = None) -> ServerSentEvent:
        """Store an event (``XADD``), publish it on the broker, return it with its id.

        ``data`` that is not a ``str`` is JSON-encoded. Invalid ``event``
        values raise :class:`ValueError` before anything is stored.

        When the log shares its :class:`RedisBroker`'s client (built without a
        URL or client, the recommended setup) both happen in one Lua script:
        one round trip, never stored without being published, and live
        subscribers of every process receive a topic's events in id order
        even when several processes append concurrently. Otherwise the event
        is stored, then published with ``broker.publish()``.

        :raises ConnectionError: Redis is unreachable (nothing was stored, or,
            with a separate broker, the event was stored but not published).
        """
        text = data if isinstance(data, str) else _json.dumps_str(data)
        draft = ServerSentEvent(text, event=event)  # validates before storing
        client = self.client
        broker = self._broker
        try:
            if isinstance(broker, RedisBroker) and client is broker.client:
                atomic = self._atomic_parts(draft)
                if atomic is not None:
                    broker._check_open()
                    entry_id = await self._append_atomic(client, broker, topic, draft, atomic)
                    return dataclasses.replace(draft, id=_text(entry_id))
            fields: dict[str, str] = {"data": text}
            if event is not None:
                fields["event"] = event
            entry_id = await client.xadd(
                self._key(topic),
                fields,  # type: ignore[arg-type]
                maxlen=self.maxlen,
                approximate=self.approximate,
            )
        except _connection_errors() as exc:
            raise ConnectionError(
                f"RedisEventLog: cannot append to {topic!r}, "
                f"Redis at {_describe(client)} is unavailable: {exc}"
            ) from exc
        stored = dataclasses.replace(draft, id=_text(entry_id))
        await broker.publish(topic, encode_broker_message(stored))
        return stored

    @staticmethod
    def _atomic_parts(draft: ServerSentEvent) -> tuple[str, str] | None:
        """The broker message of *draft* split around its id (``None``: cannot split)."""
        text = encode_broker_message(dataclasses.replace(draft, id=_ID_PLACEHOLDER))
        # Inside a JSON string every '"' is escaped, so this marker can only be
        # the id member itself.
        marker = f'"id":"{_ID_PLACEHOLDER}"'
        at = text.find(marker)
        if at < 0:
            return None
        return text[: at + len('"id":"')], text[at + len(marker) - 1 :]

    async def _append_atomic(
        self,
        client: Redis,
        broker: RedisBroker,
        topic: str,
        draft: ServerSentEvent,
        parts: tuple[str, str],
    ) -> Any:
        """XADD and PUBLISH in one Lua script: one round trip, and live order = id order.

        With several processes appending to one topic, separate XADD and
        PUBLISH calls could publish in a different order than the ids were
        issued; a client that reconnects would then get an event twice.
        """
        if self._script is None:
            self._script = client.register_script(_APPEND_LUA)
        args: list[str | int] = [
            self.maxlen,
            1 if self.approximate else 0,
            broker._channel(topic).decode(),
            parts[0],
            parts[1],
            draft.data,
        ]
        if draft.event is not None:
            args.append(draft.event)
        return await self._script(keys=[self._key(topic)], args=args)

    async def since(self, topic: str, last_id: str) -> list[ServerSentEvent]:
        """Return the events of *topic* after *last_id*, oldest first.

        :raises EventLogGap: the list cannot be proven complete (see the class
            docstring for the reasons).
        :raises ConnectionError: Redis is unreachable.
        """
        parsed = _parse_stream_id(last_id)
        if parsed is None:
            raise EventLogGap("malformed", await self._range(topic, "-"), last_id)
        key = self._key(topic)
        client = self.client
        try:
            async with client.pipeline(transaction=True) as pipe:
                # Exclusive start: the smallest id after last_id (as "(id" does).
                pipe.xrange(key, _next_stream_id(parsed), "+")
                pipe.xrange(key, "-", "+", count=1)
                pipe.xrevrange(key, "+", "-", count=1)
                after, first, newest = await pipe.execute()
        except _connection_errors() as exc:
            raise ConnectionError(
                f"RedisEventLog: cannot read {topic!r}, "
                f"Redis at {_describe(client)} is unavailable: {exc}"
            ) from exc
        events = [self._event(entry) for entry in after]
        if parsed == (_U64_MAX, _U64_MAX):
            events = []  # nothing can come after the largest id
        if not first:
            # Nothing retained: the id cannot be one of ours (wiped or foreign).
            raise EventLogGap("unknown", [], last_id)
        if parsed > self._id_of(newest[0]):
            raise EventLogGap("unknown", await self._range(topic, "-"), last_id)
        if parsed < self._id_of(first[0]):
            # Entries after last_id may have been trimmed: ``after`` is everything.
            raise EventLogGap("expired", events, last_id)
        # Every entry newer than the oldest retained one is still retained.
        return events

    async def _range(self, topic: str, start: str) -> list[ServerSentEvent]:
        client = self.client
        try:
            entries = await client.xrange(self._key(topic), start, "+")
        except _connection_errors() as exc:
            raise ConnectionError(
                f"RedisEventLog: cannot read {topic!r}, "
                f"Redis at {_describe(client)} is unavailable: {exc}"
            ) from exc
        return [self._event(entry) for entry in entries or ()]

    @staticmethod
    def _id_of(entry: Any) -> tuple[int, int]:
        parsed = _parse_stream_id(_text(entry[0]))
        assert parsed is not None, entry
        return parsed

    @staticmethod
    def _event(entry: Any) -> ServerSentEvent:
        entry_id, raw = entry
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return ServerSentEvent(
            fields.get("data", ""), event=fields.get("event"), id=_text(entry_id)
        )

    async def close(self) -> None:
        """Close the client this log created from a URL (a shared client stays open)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return f"<RedisEventLog {self.key_prefix!r} maxlen={self.maxlen}>"
