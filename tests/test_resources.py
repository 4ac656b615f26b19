"""The ownership rule: what tornado-kit creates it closes; what the settings give it, too.

Unless ``close_resources_on_shutdown`` is False. Each test uses real objects
(a LocalBroker, a RedisBroker on a real redis-server, BoundedExecutors with
real threads) and the real ``tornado_kit.shutdown``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

import tornado_kit
from tests._servers import serve_app
from tornado_kit import (
    BoundedExecutor,
    ExecutorMixin,
    ExecutorShutdown,
    LocalBroker,
    RedisBroker,
    broker_for,
    executor_for,
    serve,
    upstream_client,
)
from tornado_kit._lifecycle import state_for


class CountingBroker(LocalBroker):
    """A real LocalBroker that counts the calls of its close()."""

    def __init__(self) -> None:
        super().__init__()
        self.close_calls = 0

    async def close(self) -> None:
        self.close_calls += 1
        await super().close()


class CountingExecutor(BoundedExecutor):
    """A real thread BoundedExecutor that counts the calls of its aclose()."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, name="counting")
        self.aclose_calls = 0

    async def aclose(self) -> None:
        self.aclose_calls += 1
        await super().aclose()


async def test_the_settings_broker_and_executor_are_closed_at_shutdown_even_unused() -> None:
    broker, executor = LocalBroker(), BoundedExecutor(max_workers=1)
    subscription = await broker.subscribe("news")
    app = Application(broker=broker, executor=executor)
    await tornado_kit.shutdown(app, timeout=5)
    assert broker.closed
    assert subscription.closed
    assert executor.stats()["closed"]
    with pytest.raises(ExecutorShutdown):
        executor.submit(print)


async def test_a_redis_broker_in_the_settings_releases_its_connections_at_shutdown(
    redis_url: str,
) -> None:
    probe = redis.Redis.from_url(redis_url)
    try:
        before = len(probe.client_list())
        broker = RedisBroker(redis_url)
        app = Application(broker=broker)
        subscription = await broker_for(app).subscribe("tk:test:news")  # pub/sub connection
        await broker_for(app).publish("tk:test:news", "hello")  # a pool connection
        assert await asyncio.wait_for(subscription.get(), 5) == "hello"
        assert len(probe.client_list()) > before
        await tornado_kit.shutdown(app, timeout=5)
        assert subscription.closed
        assert len(probe.client_list()) == before  # no hand-written close_broker needed
    finally:
        probe.close()


async def test_close_resources_on_shutdown_false_leaves_the_users_resources_open() -> None:
    broker, executor = LocalBroker(), BoundedExecutor(max_workers=1)

    class Own(ExecutorMixin, RequestHandler):
        executor = BoundedExecutor(max_workers=1, name="class attribute")

    app = Application(broker=broker, executor=executor, close_resources_on_shutdown=False)
    assert executor_for(app) is executor  # used: still not closed
    client = upstream_client(app)  # made by tornado-kit: closed all the same
    await tornado_kit.shutdown(app, timeout=5)
    assert not broker.closed
    assert await executor.run(pow, 3, 2) == 9
    with pytest.raises(RuntimeError, match="closed AsyncHTTPClient"):
        await client.fetch("http://127.0.0.1:1/")
    await broker.close()
    await executor.aclose()
    await Own.executor.aclose()  # type: ignore[union-attr]


async def test_the_default_resources_are_closed_whatever_the_setting() -> None:
    app = Application(close_resources_on_shutdown=False)
    broker, executor = broker_for(app), executor_for(app)
    await tornado_kit.shutdown(app, timeout=5)
    assert broker.closed
    assert executor.stats()["closed"]


async def test_one_object_under_two_settings_and_a_class_attribute_is_closed_once(
    http_client: AsyncHTTPClient,
) -> None:
    broker, executor = CountingBroker(), CountingExecutor()

    class Square(ExecutorMixin, RequestHandler):
        async def get(self, n: str) -> None:
            self.write(str(await self.run_in_executor(pow, int(n), 2)))

    Square.executor = executor  # the class attribute, and the setting below
    app = Application(
        [(r"/square/(\d+)", Square)], broker=broker, channel_log=broker, executor=executor
    )
    async with serve_app(app) as url:
        assert (await http_client.fetch(url + "/square/4")).body == b"16"
    assert executor_for(app) is executor
    await tornado_kit.shutdown(app, timeout=5, max_phase=10)  # serve()'s first step
    await tornado_kit.shutdown(app, timeout=5)
    await tornado_kit.shutdown(app, timeout=5)
    assert broker.close_calls == 1
    assert executor.aclose_calls == 1


async def test_a_broker_shared_by_two_apps_is_closed_by_the_first_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = CountingBroker()
    first, second = Application(broker=broker), Application(broker=broker)
    subscription = await broker_for(second).subscribe("news")
    await tornado_kit.shutdown(first, timeout=5)
    assert broker.closed
    assert subscription.closed  # the second app lost it: the documented trade-off
    with caplog.at_level(logging.WARNING, logger="tornado_kit"):
        await tornado_kit.shutdown(second, timeout=5)  # finds it closed: nothing fails
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert broker.close_calls == 2  # called again, and idempotent (Broker.close's contract)


async def test_a_broker_shared_by_two_apps_with_the_setting_false_outlives_the_first() -> None:
    broker = LocalBroker()
    first = Application(broker=broker, close_resources_on_shutdown=False)
    second = Application(broker=broker, close_resources_on_shutdown=False)
    subscription = await broker_for(second).subscribe("news")
    await tornado_kit.shutdown(first, timeout=5)
    await broker_for(second).publish("news", "still here")
    assert await asyncio.wait_for(subscription.get(), 5) == "still here"
    await tornado_kit.shutdown(second, timeout=5)
    assert not broker.closed
    await broker.close()  # after the last application: the owner closes it


async def test_a_plain_pool_in_the_executor_setting_is_not_ours_to_close() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        app = Application(executor=pool)  # kept for Tornado's @run_on_executor
        await tornado_kit.shutdown(app, timeout=5)
        assert pool.submit(pow, 2, 3).result(timeout=5) == 8


async def test_a_close_resources_on_shutdown_that_is_no_bool_keeps_them_open_with_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, executor = LocalBroker(), BoundedExecutor(max_workers=1)
    app = Application(broker=broker, executor=executor, close_resources_on_shutdown="no")
    with caplog.at_level(logging.ERROR, logger="tornado_kit"):
        for _ in range(3):
            executor_for(app)
        await tornado_kit.shutdown(app, timeout=5)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "tornado-kit: the 'close_resources_on_shutdown' setting must be a bool, not str; "
        "the resources of the settings are left open"
    ]
    assert not broker.closed
    assert not executor.stats()["closed"]
    await broker.close()
    await executor.aclose()


def test_serve_refuses_a_close_resources_on_shutdown_that_is_no_bool_at_startup() -> None:
    def make_app() -> Application:
        return Application(close_resources_on_shutdown=1)

    with pytest.raises(TypeError, match="'close_resources_on_shutdown' setting must be a bool"):
        serve(make_app, port=0, address="127.0.0.1")


def test_once_is_true_the_first_time_per_application_and_key() -> None:
    a, b = Application(), Application()
    assert state_for(a).once("tornado_kit.test:flag")
    assert not state_for(a).once("tornado_kit.test:flag")
    assert state_for(a).once("tornado_kit.test:other")
    assert state_for(b).once("tornado_kit.test:flag")
