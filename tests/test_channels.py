"""The channel hub and the replay splice, the parts the WebSocket rooms will hang off too.

SSE streams are the hub's only members today (tests/test_sse*.py exercise
them through a real server). These tests pin the contract a second kind of
member relies on, with members that record what they get, on a real
``LocalBroker`` and a real ``RedisBroker``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.web import Application

from tests._servers import eventually
from tornado_kit import LocalBroker, RedisBroker, ServerSentEvent
from tornado_kit._channels._delivery import Delivery
from tornado_kit._channels._hub import ChannelHub, hub_for
from tornado_kit._channels._splice import Splice
from tornado_kit._lifecycle import shutdown, state_for
from tornado_kit._sse import encode_broker_message


class Recorder:
    """A channel member that keeps what it is given."""

    conn_id = ""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.got: list[Delivery] = []
        self.lost: list[str] = []

    def deliver(self, delivery: Delivery) -> None:
        if self.fail:
            raise RuntimeError("a broken member")
        self.got.append(delivery)

    def channel_lost(self, reason: str) -> None:
        self.lost.append(reason)


async def test_one_subscription_per_channel_and_one_delivery_for_all_members() -> None:
    broker = LocalBroker()
    hub = ChannelHub()
    channel = hub.channel(broker, "news")
    assert hub.channel(broker, "news") is channel
    members = [Recorder(), Recorder(), Recorder()]
    for member in members:
        await channel.join(member)
    assert broker.subscriber_count("news") == 1
    event = ServerSentEvent("hello", id="7")
    await broker.publish("news", encode_broker_message(event))
    await broker.publish("news", "plain text")
    await eventually(lambda: all(len(m.got) == 2 for m in members))
    first, second = members[0].got
    assert all(m.got[0] is first and m.got[1] is second for m in members)  # decoded once
    assert (first.sse_chunk, first.id) == (event.encode(), "7")
    assert (second.sse_chunk, second.id) == (ServerSentEvent("plain text").encode(), None)
    for member in members:
        channel.leave(member)
    assert broker.subscriber_count() == 0  # the last one out closes the subscription
    assert not hub.channels
    await hub.close()


async def test_a_member_that_raises_never_stops_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = LocalBroker()
    hub = ChannelHub()
    channel = hub.channel(broker, "t")
    broken, healthy = Recorder(fail=True), Recorder()
    await channel.join(broken)
    await channel.join(healthy)
    with caplog.at_level(logging.ERROR, logger="tornado_kit"):
        await broker.publish("t", "one")
        await broker.publish("t", "two")
        await eventually(lambda: len(healthy.got) == 2)
    assert "delivery to" in caplog.text
    channel.leave(broken)
    channel.leave(healthy)
    await hub.close()


async def test_a_closed_broker_tells_every_member_the_channel_is_lost() -> None:
    broker = LocalBroker()
    hub = ChannelHub()
    channel = hub.channel(broker, "t")
    members = [Recorder(), Recorder()]
    for member in members:
        await channel.join(member)
    await broker.close()
    await eventually(lambda: all(m.lost == ["closed"] for m in members))
    assert not hub.channels  # a new member gets a new subscription
    await hub.close()


async def test_members_joining_while_the_broker_subscribes_share_its_error() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", timeout=0.2, reconnect_max_delay=0.1)
    hub = ChannelHub()
    channel = hub.channel(broker, "t")
    try:
        outcomes = await asyncio.gather(
            *(channel.join(Recorder()) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
        assert not hub.channels  # the next member makes a new attempt
        assert broker.subscriber_count() == 0
    finally:
        await broker.close()
        await hub.close()


async def test_the_hub_is_one_resource_per_application_closed_at_shutdown() -> None:
    app = Application(broker=LocalBroker())
    hub = hub_for(app)
    assert hub_for(app) is hub
    assert state_for(app).resources["tornado_kit.channels"] is hub
    member = Recorder()
    await hub.channel(app.settings["broker"], "t").join(member)
    await shutdown(app)
    assert member.lost == ["closed"]
    assert app.settings["broker"].subscriber_count() == 0


def _delivery(n: int, with_id: bool = True) -> Delivery:
    return Delivery(b"data: %d\n\n" % n, str(n) if with_id else None, 0.0)


def test_splice_hands_over_the_queued_deliveries_minus_the_replayed_in_order() -> None:
    splice = Splice(limit=10)
    queued = [_delivery(n) for n in range(5)] + [_delivery(9, with_id=False)]
    assert all(splice.hold(d) for d in queued)
    assert splice.finish({"1", "3"}) == [queued[0], queued[2], queued[4], queued[5]]
    assert not splice.active
    assert splice.duplicate(_delivery(3))  # a live copy that arrives after the replay
    assert not splice.duplicate(_delivery(5))
    assert not splice.duplicate(_delivery(3, with_id=False))


def test_splice_refuses_a_delivery_beyond_its_limit() -> None:
    splice = Splice(limit=2)
    assert splice.hold(_delivery(1))
    assert splice.hold(_delivery(2))
    assert not splice.hold(_delivery(3))
    assert [d.id for d in splice.finish(())] == ["1", "2"]


@given(
    st.lists(st.integers(0, 50), max_size=30),
    st.sets(st.integers(0, 50).map(str), max_size=30),
)
def test_splice_never_loses_or_repeats_a_delivery(ids: list[int], replayed: set[str]) -> None:
    splice = Splice(limit=100)
    queued = [_delivery(n) for n in ids]
    for d in queued:
        splice.hold(d)
    out = splice.finish(replayed)
    assert out == [d for d in queued if d.id not in replayed]
