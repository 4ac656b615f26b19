"""How long a Redis Cluster shard failover takes, as a sharded pub/sub client sees it.

Usage::

    .venv/bin/python benchmarks/cluster_failover.py [--rounds 5] [--node-timeout-ms 1000]

Starts the tests' local cluster (3 masters + 3 replicas of ``redis-server``,
``tests/_cluster.py``), then, each round, SIGKILLs the master of one channel's
shard (``RedisCluster.kill_master_of``, in a thread) while this thread probes
every 10 ms:

* ``ROLE`` of the shard's replica: when it turns master;
* ``XADD`` on another shard's master: refused with CLUSTERDOWN while the
  failed master still owns slots (``cluster-require-full-coverage yes``);
* ``SPUBLISH`` on that other master.

Printed per round and as median / min / max over the rounds, in ms from the
SIGKILL: when the replica was promoted, when the other shard's
XADD was refused first and accepted again, whether the other shard's
SPUBLISH was ever refused, and when ``kill_master_of`` returned (every node
agrees on the new owner). The killed node is restarted between rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests._cluster import RedisCluster
from tests._cluster_node import ClusterNode
from tests._servers import find_binary

CHANNEL = "{bench:failover}"


def accepted(node: ClusterNode, *command: str) -> bool:
    try:
        node.command(*command)
    except redis.RedisError:
        return False
    return True


def one_round(cluster: RedisCluster) -> dict[str, float | None]:
    master = cluster.master_of(CHANNEL)
    replica = next(n for n in cluster.replicas() if n.command("ROLE")[2] == master.port)  # type: ignore[index]
    other = next(n for n in cluster.masters() if n is not master)
    other_key = next(f"{{b{i}}}" for i in range(10_000) if cluster.master_of(f"{{b{i}}}") is other)
    master.command("WAIT", "1", "1000")  # so kill_master_of's own WAIT returns at once

    done = threading.Event()
    failure: list[BaseException] = []

    def kill() -> None:
        try:
            cluster.kill_master_of(CHANNEL)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    result: dict[str, float | None] = dict.fromkeys(
        ("replica_promoted", "other_xadd_refused", "other_xadd_back", "other_spublish_refused")
    )
    start = time.monotonic()
    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    while not done.is_set():
        now = (time.monotonic() - start) * 1000
        if result["replica_promoted"] is None and replica.command("ROLE")[0] == "master":  # type: ignore[index]
            result["replica_promoted"] = now
        xadd_ok = accepted(other, "XADD", f"tk:{other_key}:log", "*", "d", "x")
        if not xadd_ok and result["other_xadd_refused"] is None:
            result["other_xadd_refused"] = now
        if (
            xadd_ok
            and result["other_xadd_refused"] is not None
            and result["other_xadd_back"] is None
        ):
            result["other_xadd_back"] = now
        if result["other_spublish_refused"] is None and not accepted(
            other, "SPUBLISH", other_key, "x"
        ):
            result["other_spublish_refused"] = now
        time.sleep(0.01)
    killer.join()
    if failure:
        raise failure[0]
    result["kill_master_of_returned"] = (time.monotonic() - start) * 1000
    old = next(n for n in cluster.nodes if not n.alive)
    cluster.restart(old)
    other.command("DEL", f"tk:{other_key}:log")
    return result


def fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--node-timeout-ms", type=int, default=1000)
    args = parser.parse_args()
    server, cli = find_binary("redis-server"), find_binary("redis-cli")
    if server is None or cli is None:
        sys.exit("needs redis-server and redis-cli (apt-get install redis-server)")
    started = time.monotonic()
    with RedisCluster(server, cli, node_timeout_ms=args.node_timeout_ms) as cluster:
        up = time.monotonic() - started
        print(f"cluster up in {up:.2f} s; node timeout {args.node_timeout_ms} ms")
        rounds = []
        for index in range(args.rounds):
            result = one_round(cluster)
            rounds.append(result)
            print(f"round {index + 1}: " + "  ".join(f"{k} {fmt(v)}" for k, v in result.items()))
    print("ms after SIGKILL, median / min / max over the rounds:")
    for key in rounds[0]:
        values = [r[key] for r in rounds if r[key] is not None]
        missing = len(rounds) - len(values)
        if values:
            summary = f"{statistics.median(values):6.0f} / {min(values):6.0f} / {max(values):6.0f}"
        else:
            summary = "   (none)"
        print(f"  {key:26} {summary}" + (f"   ({missing} rounds: never)" if missing else ""))


if __name__ == "__main__":
    main()
