"""The one pub/sub connection of a :class:`~tornado_kit.RedisBroker`: reader, writer, reconcile.

:class:`PubSub` keeps the local subscriptions of every topic and makes the
server-side subscriptions follow them. Two tasks, started on the running loop
by the first ``subscribe``:

* the *reader* connects, reads every reply (messages, SUBSCRIBE
  confirmations, PONGs) and, when the connection is lost, backs off and
  reconnects;
* the *writer* wakes on ``dirty`` and sends the UNSUBSCRIBE / SUBSCRIBE /
  PING commands that bring the server's channels in line with the wanted
  ones (``channels``).

Closing a subscription is synchronous (a set update and a wake-up): the
writer unsubscribes later. ARCHITECTURE.md ("Redis broker") draws it.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from tornado_kit._broker import Subscription
from tornado_kit._redis._client import describe, log

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

# Connection states of the pub/sub reader.
CONNECTING = "connecting"
UP = "up"
DOWN = "down"


class PubSub:
    """Local subscriptions of one broker and the pub/sub connection that feeds them.

    *client* returns the broker's command client, whose settings the pub/sub
    connection copies. *prefix* namespaces the Redis channels.
    """

    def __init__(
        self,
        client: Callable[[], Redis],
        prefix: str,
        *,
        timeout: float,
        reconnect_max_delay: float,
        health_check_interval: float,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.timeout = timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.health_check_interval = health_check_interval
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._dirty: asyncio.Event | None = None
        self._conn: AbstractConnection | None = None
        self.state = CONNECTING
        self._last_error: BaseException | None = None
        self._ping_requested = False
        # topic -> local subscriptions; channel -> topic for the channels wanted.
        self.subs: dict[str, set[Subscription]] = {}
        self.channels: dict[bytes, str] = {}
        # Channels whose last command sent was SUBSCRIBE, and those confirmed.
        self._sent: set[bytes] = set()
        self._active: set[bytes] = set()
        # Subscribers waiting for a confirmation: not yet sent / per SUBSCRIBE sent.
        self._waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self._inflight: dict[bytes, deque[list[asyncio.Future[None]]]] = {}

    def channel(self, topic: str) -> bytes:
        """The Redis channel of *topic*."""
        return (self.prefix + topic).encode()

    def unavailable(self, what: str) -> ConnectionError:
        """``ConnectionError`` saying that *what* failed, with the last connection error."""
        cause = f": {self._last_error}" if self._last_error is not None else ""
        return ConnectionError(
            f"RedisBroker: {what}, Redis at {describe(self._client())} is unavailable{cause}"
        )

    # -- subscriptions ------------------------------------------------------

    async def subscribe(self, topic: str, maxsize: int) -> Subscription:
        """A new subscription to *topic*, once Redis confirmed the channel (see the broker)."""
        self._ensure_started()
        if self.state == DOWN:
            raise self.unavailable(f"cannot subscribe to {topic!r}")
        sub = Subscription(topic, maxsize, self._remove)
        channel = self.channel(topic)
        subs = self.subs.get(topic)
        if subs is None:
            subs = self.subs[topic] = set()
            self.channels[channel] = topic
        subs.add(sub)
        if channel in self._active:
            return sub
        assert self.loop is not None
        waiter: asyncio.Future[None] = self.loop.create_future()
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
            raise self.unavailable(f"no confirmation of SUBSCRIBE {topic!r}") from None
        except BaseException:
            sub.close()
            raise
        return sub

    def _remove(self, sub: Subscription) -> None:
        """``on_close`` of every subscription: drop it, unsubscribe an unused channel."""
        subs = self.subs.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.subs[sub.topic]
            channel = self.channel(sub.topic)
            self.channels.pop(channel, None)
            # Waiters of a channel nobody wants any more: release them.
            for waiter in self._waiting.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)
            if not self.closed:
                self._wake_writer()

    async def close(self) -> None:
        """Close every subscription, stop both tasks, drop the connection."""
        self.closed = True
        self._fail_waiters(RuntimeError("RedisBroker is closed"))
        for subs in list(self.subs.values()):
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

    # -- the tasks ----------------------------------------------------------

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            self._dirty = asyncio.Event()
            self._reader = loop.create_task(self._run_reader(), name="tornado-kit redis reader")
            self._writer = loop.create_task(self._run_writer(), name="tornado-kit redis writer")
        elif self.loop is not loop:
            raise RuntimeError(
                "RedisBroker is bound to the event loop it was first used on; "
                "create one broker per process (after fork) and per loop"
            )

    def _wake_writer(self) -> None:
        if self._dirty is not None:
            self._dirty.set()

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

        pool = self._client().connection_pool
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
        while not self.closed:
            self.state = CONNECTING
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
                        describe(self._client()),
                        exc,
                    )
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            if outage:
                outage = False
                log.info(
                    "Redis at %s is reachable again; re-subscribing %d channel(s)",
                    describe(self._client()),
                    len(self.channels),
                )
            attempt = 0
            self._last_error = None
            self._conn = conn
            self.state = UP
            self._wake_writer()
            try:
                await self._read_loop(conn)
            except Exception as exc:
                outage = True
                self._mark_down(exc)
                log.warning(
                    "lost the Redis pub/sub connection to %s (%s); reconnecting",
                    describe(self._client()),
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
        self.state = DOWN
        self._last_error = exc
        self._conn = None
        self._sent.clear()
        self._active.clear()
        self._ping_requested = False
        self._fail_waiters(self.unavailable("the pub/sub connection was lost"))

    async def _read_loop(self, conn: AbstractConnection) -> None:
        ping_pending = False
        while not self.closed:
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
                topic = self.channels.get(response[1])
                if topic is not None:
                    subs = self.subs.get(topic)
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
        while not self.closed:
            await dirty.wait()
            dirty.clear()
            conn = self._conn
            if conn is None or self.state != UP:
                continue
            wanted = set(self.channels)
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
