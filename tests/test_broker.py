"""LocalBroker, Subscription and broker_for (the embedded pub/sub default)."""

from __future__ import annotations

import asyncio

import pytest
from tornado.web import Application

from tornado_kit import Broker, LocalBroker
from tornado_kit._broker import Subscription, SubscriptionClosed, broker_for
from tornado_kit._lifecycle import shutdown, state_for


async def test_publish_reaches_every_subscriber_of_the_topic_in_order() -> None:
    broker = LocalBroker()
    assert isinstance(broker, Broker)
    a = await broker.subscribe("news")
    b = await broker.subscribe("news")
    other = await broker.subscribe("sport")
    for i in range(3):
        await broker.publish("news", f"m{i}")
    assert [await a.get() for _ in range(3)] == ["m0", "m1", "m2"]
    assert [await b.get() for _ in range(3)] == ["m0", "m1", "m2"]
    assert other.qsize() == 0
    assert broker.subscriber_count("news") == 2
    assert broker.subscriber_count() == 3
    await broker.publish("nobody", "lost")  # no subscriber: dropped, no error
    await broker.close()


async def test_get_waits_for_the_next_message_and_iteration_ends_on_close() -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    broker.publish_nowait("t", "late")
    assert await asyncio.wait_for(waiter, 5) == "late"

    received: list[str] = []

    async def consume() -> None:
        async for message in sub:
            received.append(message)

    task = asyncio.ensure_future(consume())
    broker.publish_nowait("t", "x")
    await asyncio.sleep(0.01)
    sub.close()  # wakes the waiting consumer: the loop ends
    await asyncio.wait_for(task, 5)
    assert received == ["x"]
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    await broker.close()


async def test_get_nowait() -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    assert sub.get_nowait() is None
    broker.publish_nowait("t", "a")
    broker.publish_nowait("t", "b")
    assert sub.qsize() == 2
    assert sub.get_nowait() == "a"
    sub.close()
    assert sub.get_nowait() is None  # queued messages are discarded on close
    assert sub.qsize() == 0
    await broker.close()


async def test_overflow_closes_only_the_slow_subscription() -> None:
    broker = LocalBroker()
    slow = await broker.subscribe("t", maxsize=3)
    fast = await broker.subscribe("t", maxsize=3)
    for i in range(4):
        broker.publish_nowait("t", str(i))
        assert fast.get_nowait() == str(i)
    assert slow.overflowed
    assert slow.closed
    assert "overflowed" in repr(slow)
    assert [m async for m in slow] == []  # iteration ends at once
    assert not fast.closed
    assert broker.subscriber_count("t") == 1
    broker.publish_nowait("t", "after")
    assert fast.get_nowait() == "after"
    await broker.close()


async def test_close_is_idempotent_and_unsubscribes() -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    assert "open" in repr(sub)
    sub.close()
    sub.close()
    assert sub.closed
    assert not sub.overflowed
    assert "closed" in repr(sub)
    assert broker.subscriber_count() == 0
    broker.publish_nowait("t", "ignored")
    sub.deliver("ignored too")  # a closed subscription drops deliveries
    assert sub.qsize() == 0
    await broker.close()


async def test_broker_close_ends_subscriptions_and_refuses_more() -> None:
    broker = LocalBroker()
    subs = [await broker.subscribe(f"t{i % 2}") for i in range(4)]
    waiting = asyncio.ensure_future(subs[0].get())
    await asyncio.sleep(0)
    await broker.close()
    await broker.close()  # idempotent
    assert broker.closed
    assert all(s.closed for s in subs)
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiting, 5)
    assert broker.subscriber_count() == 0
    assert "subscriptions=0" in repr(broker)
    with pytest.raises(RuntimeError, match="closed"):
        await broker.publish("t0", "x")
    with pytest.raises(RuntimeError, match="closed"):
        broker.publish_nowait("t0", "x")
    with pytest.raises(RuntimeError, match="closed"):
        await broker.subscribe("t0")


@pytest.mark.parametrize("message", [b"bytes", 1, None, {"a": 1}])
async def test_non_text_messages_are_a_type_error(message: object) -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    with pytest.raises(TypeError, match="broker messages are str"):
        await broker.publish("t", message)  # type: ignore[arg-type]
    assert sub.qsize() == 0
    await broker.close()


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Subscription("t", maxsize=0)


async def test_broker_for_creates_one_default_and_closes_it_at_shutdown() -> None:
    app = Application()
    broker = broker_for(app)
    assert type(broker) is LocalBroker
    assert broker_for(app) is broker  # created once per application
    assert broker_for(Application()) is not broker  # never shared between apps
    sub = await broker.subscribe("t")
    await shutdown(app, timeout=5)
    assert broker.closed
    assert sub.closed


async def test_broker_setting_wins_and_is_closed_at_shutdown() -> None:
    mine = LocalBroker()
    app = Application(broker=mine)
    assert broker_for(app) is mine
    assert "broker" not in state_for(app).resources  # no default made beside it
    await shutdown(app, timeout=5)
    assert mine.closed  # the ownership rule: the settings' resources are closed too


async def test_concurrent_consumers_share_messages_and_all_wake_on_close() -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    consumers = [asyncio.ensure_future(sub.get()) for _ in range(3)]
    await asyncio.sleep(0)
    broker.publish_nowait("t", "a")
    broker.publish_nowait("t", "b")
    await asyncio.sleep(0.01)
    done = [c for c in consumers if c.done()]
    assert sorted(c.result() for c in done) == ["a", "b"]  # each message taken once
    sub.close()  # the consumer still waiting wakes up too
    (last,) = [c for c in consumers if c not in done]
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(last, 5)
    await broker.close()


async def test_cancelling_one_consumer_leaves_the_others_waiting() -> None:
    broker = LocalBroker()
    sub = await broker.subscribe("t")
    cancelled = asyncio.ensure_future(sub.get())
    waiting = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    broker.publish_nowait("t", "still delivered")
    assert await asyncio.wait_for(waiting, 5) == "still delivered"
    assert await asyncio.wait_for(asyncio.ensure_future(_next_after(broker, sub)), 5) == "next"
    await broker.close()


async def _next_after(broker: LocalBroker, sub: Subscription) -> str:
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    broker.publish_nowait("t", "next")
    return await getter
