"""RedisEventLog: the :class:`~tornado_kit.EventLog` in Redis Streams (private).

One stream per topic; ``append`` stores and publishes in one Lua script when
the log shares its :class:`~tornado_kit.RedisBroker`'s client (live order is
id order across processes), ``since`` decides in one ``MULTI`` whether the
replay is complete.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING, Any

from tornado_kit import _json
from tornado_kit._broker import Broker, check_broker
from tornado_kit._checks import argument, check_instance, check_int, check_number
from tornado_kit._redis._broker import RedisBroker
from tornado_kit._redis._client import connection_errors, import_redis, make_client, unreachable
from tornado_kit._sse._event import ServerSentEvent
from tornado_kit._sse._log import EventLogGap
from tornado_kit._sse._message import encode_broker_message

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

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
        aioredis = import_redis()
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
                self._client = make_client(self._url, self.timeout, self.max_connections)
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
        except connection_errors() as exc:
            raise unreachable(f"RedisEventLog: cannot append to {topic!r}", client, exc) from exc
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
        except connection_errors() as exc:
            raise unreachable(f"RedisEventLog: cannot read {topic!r}", client, exc) from exc
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
        except connection_errors() as exc:
            raise unreachable(f"RedisEventLog: cannot read {topic!r}", client, exc) from exc
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
