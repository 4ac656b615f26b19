"""Shared fixtures: the tornado-kit pytest plugin, real redis-server and cluster, leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests._servers import RedisServer, find_binary

if TYPE_CHECKING:  # it imports redis, which a run without the redis extra lacks
    from tests._cluster import RedisCluster

pytest_plugins = ["tornado_kit.testing"]


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = find_binary("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@pytest.fixture(scope="session")
def redis_server_session(redis_binary: str) -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests flush it through `redis_url`)."""
    with RedisServer(redis_binary) as server:
        yield server


@pytest.fixture
def redis_url(redis_server_session: RedisServer) -> str:
    """URL of the session's real redis-server, emptied before the test."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(redis_server_session.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server_session.url


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """A private redis-server the test may stop and start (outage tests)."""
    with RedisServer(redis_binary) as server:
        yield server


@pytest_asyncio.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """After every async test and its fixtures, no task may be left running."""
    yield
    current = asyncio.current_task()
    for _ in range(20):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"tasks leaked by the test: {leftover!r}")


@pytest.fixture(scope="session")
def redis_cluster(redis_binary: str) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 masters, 3 replicas) for the whole session.

    Tests may kill and restart its nodes; ``redis_cluster_url`` repairs and
    empties it before each test that asks for it.
    """
    from tests._cluster import RedisCluster

    cli = find_binary("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (apt-get install redis-tools)")
    with RedisCluster(redis_binary, cli) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """A seed URL of the session's cluster, every node up and every master empty."""
    redis_cluster.reset()
    return redis_cluster.url
