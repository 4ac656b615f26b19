"""Redis-backed broker and event log, shared by every server process (private package).

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

Modules: ``_client`` (redis-py import, client factory, connection errors),
``_broker`` (:class:`~tornado_kit.RedisBroker`), ``_pubsub`` (its one pub/sub
connection), ``_eventlog`` (:class:`~tornado_kit.RedisEventLog`).
"""

from tornado_kit._redis._broker import RedisBroker
from tornado_kit._redis._eventlog import RedisEventLog

__all__ = ["RedisBroker", "RedisEventLog"]
