"""The Redis Cluster fixture, used for real: slots, hash tags, sharded pub/sub, failover, teardown.

These also pin the Redis 7.0 behaviours a cluster-mode broker will rely on:
a key's slot can be computed client-side, a channel's stream / presence /
pub/sub share a shard when they share a hash tag, a subscriber of a killed
master sees a connection error (not silence), and a demoted master pushes
``sunsubscribe`` to its shard subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import string
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from tests._cluster import RedisCluster
from tests._cluster_node import SLOTS, ClusterNode, slot_of
from tests._servers import find_binary

pytestmark = pytest.mark.redis

# Text keys of any kind (a key is bytes to Redis; these go over the wire as UTF-8).
KEY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=30)
# A hash tag: non-empty, without braces (the tag ends at the first "}").
TAG_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="{}"), min_size=1, max_size=20
)


def plain_client(node: ClusterNode) -> aredis.Redis:
    """An asyncio client of one node: no retries, so a dead node fails at once."""
    return aredis.Redis(
        host="127.0.0.1", port=node.port, retry=Retry(NoBackoff(), 0), decode_responses=True
    )


@contextlib.asynccontextmanager
async def shard_subscriber(
    node: ClusterNode, channel: str
) -> AsyncIterator[tuple[aredis.Redis, PubSub]]:
    """A plain connection to *node* that has SSUBSCRIBEd *channel* (confirmation read)."""
    client = plain_client(node)
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(channel)
        confirm = await pubsub.get_message(timeout=5)
        assert confirm == {"type": "ssubscribe", "pattern": None, "channel": channel, "data": 1}
        yield client, pubsub
    finally:
        await pubsub.aclose()
        await client.aclose()


def channel_on(cluster: RedisCluster, master: ClusterNode, prefix: str) -> str:
    """A hash-tagged channel name whose slot *master* serves."""
    for i in range(10_000):
        channel = f"{{{prefix}:{i}}}"
        if cluster.master_of(channel).port == master.port:
            return channel
    raise AssertionError(f"no channel of {master.address} found")


def running_servers(ports: list[int]) -> list[psutil.Process]:
    """redis-server processes serving one of *ports* (redis-server retitles itself "ADDR:PORT")."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "redis-server" in f"{proc.info['name']} {cmdline}" and any(
            f":{port} " in f"{cmdline} " or f"--port {port} " in f"{cmdline} " for port in ports
        ):
            found.append(proc)
    return found


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def cluster_binaries() -> tuple[str, str]:
    server, cli = find_binary("redis-server"), find_binary("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed (apt-get install redis-server)")
    return server, cli


# -- layout -----------------------------------------------------------------------


def test_every_slot_is_served_by_one_master_with_one_replica(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    assert redis_cluster_url == redis_cluster.masters()[0].url
    for node in redis_cluster.nodes:
        info = node.command("CLUSTER", "INFO")
        assert isinstance(info, str)
        assert "cluster_state:ok" in info.split()
        assert f"cluster_slots_ok:{SLOTS}" in info.split()
    views = redis_cluster.topology()
    masters = [v for v in views if v.is_master]
    replicas = [v for v in views if "slave" in v.flags]
    assert len(masters) == 3
    assert len(replicas) == 3
    assert sorted(r.master_id for r in replicas) == sorted(m.id for m in masters)
    ranges = sorted(r for m in masters for r in m.slots)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == SLOTS - 1
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end + 1  # no gap, no overlap
    assert {n.port for n in redis_cluster.masters()} == {m.port for m in masters}
    assert all(n.alive and n.pid for n in redis_cluster.nodes)


# -- hash tags --------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=KEY_TEXT)
def test_the_client_computes_the_slot_the_server_computes(
    redis_cluster: RedisCluster, key: str
) -> None:
    node = redis_cluster.nodes[0]
    assert node.command("CLUSTER", "KEYSLOT", key) == key_slot(key.encode()) == slot_of(key)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=TAG_TEXT)
def test_keys_with_one_hash_tag_land_on_one_shard(redis_cluster: RedisCluster, tag: str) -> None:
    channel = f"{{{tag}}}"
    log, presence, meta = f"tk:{channel}:log", f"tk:{channel}:presence", f"tk:{channel}:meta"
    slots = {
        redis_cluster.nodes[0].command("CLUSTER", "KEYSLOT", k)
        for k in (channel, log, presence, meta)
    }
    assert slots == {key_slot(tag.encode())}
    # One script touching the stream, the presence set and the hash runs on
    # the channel's master: the server refuses keys of two slots (CROSSSLOT).
    script = (
        "redis.call('XADD', KEYS[1], '*', 'd', 'x');"
        "redis.call('ZADD', KEYS[2], 1, 'alice');"
        "redis.call('HSET', KEYS[3], 'k', 'v');"
        "local n = redis.call('SPUBLISH', ARGV[1], 'hi');"
        "local len = redis.call('XLEN', KEYS[1]);"
        "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]);"
        "return {len, n}"
    )
    owner = redis_cluster.master_of(channel)
    assert owner.command("EVAL", script, 3, log, presence, meta, channel) == [1, 0]


def test_an_empty_hash_tag_hashes_the_whole_key(redis_cluster: RedisCluster) -> None:
    node = redis_cluster.nodes[0]
    assert node.command("CLUSTER", "KEYSLOT", "{}a") == key_slot(b"{}a")
    assert node.command("CLUSTER", "KEYSLOT", "{}a") != node.command("CLUSTER", "KEYSLOT", "{}b")
    assert node.command("CLUSTER", "KEYSLOT", "x{a}y") == node.command("CLUSTER", "KEYSLOT", "a")


def test_a_key_of_another_shard_in_a_script_is_refused(redis_cluster: RedisCluster) -> None:
    first, second = redis_cluster.masters()[:2]
    here, there = channel_on(redis_cluster, first, "a"), channel_on(redis_cluster, second, "b")
    script = (
        "redis.call('XADD', KEYS[1], '*', 'd', 'x'); return redis.call('SPUBLISH', ARGV[1], 'm')"
    )
    with pytest.raises(redis.ResponseError, match="non local key"):
        first.command("EVAL", script, 1, f"tk:{here}:log", there)


# -- sharded pub/sub on a plain per-shard connection --------------------------------


async def test_spublish_reaches_a_ssubscribe_on_the_shard_master(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    for index, master in enumerate(masters):
        channel = channel_on(redis_cluster, master, string.ascii_lowercase[index])
        async with shard_subscriber(master, channel) as (client, pubsub):
            assert await client.spublish(channel, f"hello {index}") == 1
            message = await pubsub.get_message(timeout=5)
            assert message == {
                "type": "smessage",
                "pattern": None,
                "channel": channel,
                "data": f"hello {index}",
            }
            # Another shard does not serve the channel: it points to the owner.
            other = masters[(index + 1) % len(masters)]
            other_client = plain_client(other)
            try:
                with pytest.raises(redis.exceptions.MovedError) as moved:
                    await other_client.spublish(channel, "misrouted")
            finally:
                await other_client.aclose()
            assert moved.value.slot_id == slot_of(channel)
            assert moved.value.node_addr == ("127.0.0.1", master.port)


# -- failover -----------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_master_of_promotes_its_replica_and_restart_brings_it_back(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    key = "tk:{room:kill}:log"
    doomed = redis_cluster.master_of(key)
    doomed_pid = doomed.pid
    replica_of_doomed = {
        n.port
        for n in redis_cluster.replicas()
        if n.command("INFO", "replication")["master_port"] == doomed.port  # type: ignore[index]
    }
    entry = doomed.command("XADD", key, "*", "d", "before")

    # In a thread, so this test's loop keeps running through the failover.
    old, new = await asyncio.to_thread(redis_cluster.kill_master_of, key)

    assert old is doomed
    assert not old.alive
    assert doomed_pid is not None
    assert not psutil.pid_exists(doomed_pid)
    assert {new.port} == replica_of_doomed
    assert redis_cluster.master_of(key) is new
    assert new.command("ROLE")[0] == "master"  # type: ignore[index]
    for node in redis_cluster.nodes:
        if node.alive:
            assert "cluster_state:ok" in str(node.command("CLUSTER", "INFO")).split()
    assert new.command("XRANGE", key, "-", "+") == [(entry, {"d": "before"})]

    await asyncio.to_thread(redis_cluster.restart, old)

    assert old.alive
    assert old.pid != doomed_pid
    role = old.command("ROLE")
    assert isinstance(role, list)
    assert role[0] == "slave"
    assert role[2] == new.port
    assert old.command("INFO", "replication")["master_link_status"] == "up"  # type: ignore[index]
    assert len(redis_cluster.masters()) == len(redis_cluster.replicas()) == 3
    assert redis_cluster.master_of(key) is new


@pytest.mark.slow
def test_a_restarted_master_is_every_nodes_replica_so_its_shard_can_fail_over_again(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    # restart() once returned while the other nodes still saw the restarted
    # node as an empty master: the next kill_master_of found no replica.
    key = "{room:twice}"
    for _ in range(2):
        old, new = redis_cluster.kill_master_of(key)
        redis_cluster.restart(old)
        for viewer in redis_cluster.nodes:
            view = next(v for v in redis_cluster.topology(viewer) if v.port == old.port)
            assert "slave" in view.flags, (viewer.port, view)
        assert old in redis_cluster.replicas()
    again, back = redis_cluster.kill_master_of(key)
    assert (again, back) == (new, old)
    redis_cluster.restart(again)


@pytest.mark.slow
async def test_a_shard_subscriber_of_a_killed_master_gets_a_connection_error_not_silence(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    channel = "{room:subscriber}"
    async with shard_subscriber(redis_cluster.master_of(channel), channel) as (_client, pubsub):
        _old, new = await asyncio.to_thread(redis_cluster.kill_master_of, channel)
        with pytest.raises(redis.ConnectionError):
            await asyncio.wait_for(pubsub.get_message(timeout=1), 10)
    # The recovery a broker does: find the new owner, subscribe there again.
    async with shard_subscriber(new, channel) as (client, pubsub):
        assert await client.spublish(channel, "after") == 1
        assert (await pubsub.get_message(timeout=5) or {})["data"] == "after"


@pytest.mark.slow
async def test_a_demoted_master_pushes_sunsubscribe_to_its_shard_subscribers(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    channel = "{room:demoted}"
    async with shard_subscriber(redis_cluster.master_of(channel), channel) as (_client, pubsub):
        old, new = await asyncio.to_thread(redis_cluster.fail_over, channel)
        assert old.alive
        assert redis_cluster.master_of(channel) is new
        # The old master is a replica now and drops its shard subscribers with a
        # push; the connection stays open, so silence would follow without it.
        pushed = await pubsub.get_message(timeout=5)
        assert pushed == {"type": "sunsubscribe", "pattern": None, "channel": channel, "data": 0}
        assert new.command("SPUBLISH", channel, "lost") == 0


def test_reset_restarts_dead_nodes_and_empties_every_master(
    redis_cluster: RedisCluster, redis_cluster_url: str
) -> None:
    for master in redis_cluster.masters():
        master.command("SET", channel_on(redis_cluster, master, "reset"), "x")
    replica = redis_cluster.replicas()[0]
    assert replica.proc is not None
    replica.proc.kill()
    replica.proc.wait()
    assert not replica.alive

    redis_cluster.reset()

    assert replica.alive
    assert len(redis_cluster.replicas()) == 3
    assert [m.command("DBSIZE") for m in redis_cluster.masters()] == [0, 0, 0]


# -- teardown -------------------------------------------------------------------------


@pytest.mark.slow
def test_teardown_leaves_no_process_or_file_behind() -> None:
    server, cli = cluster_binaries()
    with RedisCluster(server, cli) as cluster:
        ports = [n.port for n in cluster.nodes] + [n.bus_port for n in cluster.nodes]
        directory = cluster.dir
        assert len(running_servers(ports)) == 6
        old, _new = cluster.kill_master_of("{teardown}")  # one node is down at exit
        pids = [n.pid for n in cluster.nodes if n.alive]
        assert old.pid not in pids
        assert len(pids) == 5
    assert running_servers(ports) == []
    assert not any(psutil.pid_exists(pid) for pid in pids if pid is not None)
    assert all(refuses_connections(port) for port in ports)
    assert not Path(directory).exists()


def test_a_failed_start_leaves_no_process_or_file_behind(tmp_path: Path) -> None:
    server, cli = cluster_binaries()
    # A redis-cli stand-in that checks the nodes run (PING the first one), then fails.
    seen = tmp_path / "ping"
    failing_cli = tmp_path / "redis-cli"
    failing_cli.write_text(f'#!/bin/sh\n{cli} -h 127.0.0.1 -p "${{3##*:}}" PING > {seen}\nexit 3\n')
    failing_cli.chmod(0o755)
    cluster = RedisCluster(server, str(failing_cli))
    ports = [n.port for n in cluster.nodes]
    with pytest.raises(RuntimeError, match=r"cluster create failed \(3\)"), cluster:
        pass
    assert seen.read_text().strip() == "PONG"  # the servers were up when it failed
    assert running_servers(ports) == []
    assert all(refuses_connections(port) for port in ports)
    assert not cluster.dir.exists()
