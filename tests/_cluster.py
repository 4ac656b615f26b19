"""A real Redis Cluster for tests: Debian's ``redis-server`` and ``redis-cli``.

``RedisCluster`` starts 3 masters and 3 replicas, one ``redis-server`` process
per node, on free loopback ports (each node's client port and cluster-bus port
are both picked, so nothing depends on ``port + 10000`` being free), in one
private temp directory; ``redis-cli --cluster create`` joins them. It waits
until every live node reports ``cluster_state:ok`` with all 16384 slots served
and every live node agrees on who owns which slot.

Roles change under a test (``kill_master_of`` promotes a replica, ``restart``
brings the old master back as a replica), so roles are never stored: they are
read from the cluster (``CLUSTER NODES``) each time they are asked for.

The control calls here are blocking. From an async test, run the slow ones
(``kill_master_of``, ``fail_over``, ``restart``, ``reset``) through ``asyncio.to_thread`` so the
test's event loop, and the clients under test on it, keep running during the
failover.

Teardown stops every process it started and removes the temp directory; if
starting fails half-way, the processes already started are stopped too.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

from tests._cluster_node import (
    ClusterNode,
    NodeView,
    SlotMap,
    free_ports,
    parse_nodes,
    slot_map,
    slot_of,
)
from tests._servers import stop_process

T = TypeVar("T")


class RedisCluster:
    """A real Redis Cluster of ``masters`` shards with ``replicas`` replicas each.

    ``with RedisCluster(server, cli) as cluster:`` starts it and tears it down.
    """

    def __init__(
        self,
        server_binary: str,
        cli_binary: str,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        timeout: float = 60.0,
    ) -> None:
        self.server_binary = server_binary
        self.cli_binary = cli_binary
        self.replicas_per_master = replicas
        self.node_timeout_ms = node_timeout_ms
        self.timeout = timeout
        self.dir = Path(tempfile.mkdtemp(prefix="tk-redis-cluster-"))
        count = masters * (1 + replicas)
        self.nodes: list[ClusterNode] = []
        for _ in range(count):
            self.nodes.append(self._new_node())

    # -- lifecycle -----------------------------------------------------------------

    def _new_node(self) -> ClusterNode:
        port, bus_port = free_ports(2)
        node_dir = self.dir / str(port)
        node_dir.mkdir()
        return ClusterNode(port, bus_port, node_dir, self.dir / f"nodes-{port}.conf")

    def _spawn(self, node: ClusterNode) -> None:
        """Start *node*'s process and wait until it answers as itself (its pid)."""
        node.proc = subprocess.Popen(
            [
                self.server_binary,
                "--port", str(node.port),
                "--cluster-port", str(node.bus_port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node.config_file),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # Fail over even when the replica lost its master a while ago:
                # a test that kills a master wants the promotion, every time.
                "--cluster-replica-validity-factor", "0",
                # A (re)started replica syncs at once, not after the 5 s default.
                "--repl-diskless-sync-delay", "0",
                "--appendonly", "no",
                "--save", "",
                "--dir", str(node.dir),
                "--logfile", str(node.dir / "redis.log"),
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait(lambda: self._answers_as_itself(node), f"node {node.address} to start")

    def _answers_as_itself(self, node: ClusterNode) -> bool:
        if not node.alive:
            log_file = node.dir / "redis.log"
            log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise RuntimeError(f"redis-server on {node.address} exited:\n{log}")
        try:
            info = node.command("INFO", "server")
        except redis.RedisError:
            return False
        return isinstance(info, dict) and info.get("process_id") == node.pid

    def start(self) -> None:
        """Start every node, join them into a cluster, and wait until it is ok."""
        for index, node in enumerate(self.nodes):
            for _attempt in range(5):
                try:
                    self._spawn(node)
                    break
                except RuntimeError:  # most likely a port taken since it was picked
                    self._stop(node)
                    shutil.rmtree(node.dir, ignore_errors=True)
                    node = self.nodes[index] = self._new_node()
            else:
                raise RuntimeError(f"could not start redis-server {self.server_binary}")
        create = subprocess.run(
            [
                self.cli_binary,
                "--cluster", "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas_per_master),
                "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                f"{create.stdout[-2000:]}{create.stderr[-2000:]}"
            )
        self.wait_ok()

    def _stop(self, node: ClusterNode) -> None:
        if node.proc is not None:
            stop_process(node.proc, timeout=10)
            node.proc.wait()  # reaped even when it had died already
            node.proc = None

    def cleanup(self) -> None:
        """Stop every node and remove the temp directory."""
        for node in self.nodes:
            self._stop(node)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- waiting -------------------------------------------------------------------

    def _wait(self, check: Callable[[], T | None], what: str, timeout: float | None = None) -> T:
        """Poll *check* until it returns something other than None/False; return that."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            result = check()
            if result is not None and result is not False:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}: {self.describe()}")
            time.sleep(0.05)

    def describe(self) -> str:
        """One line per node, for error messages: port, pid, and how the cluster sees it."""
        try:
            views = {view.port: view for view in self.topology()}
        except (redis.RedisError, RuntimeError) as exc:
            views, note = {}, f" (no topology: {exc})"
        else:
            note = ""
        lines = [f"cluster in {self.dir}{note}"]
        for node in self.nodes:
            view = views.get(node.port)
            seen = f"{','.join(sorted(view.flags))} {view.slots}" if view else "unknown"
            lines.append(f"  {node.address} pid={node.pid} alive={node.alive}: {seen}")
        return "\n".join(lines)

    def topology(self, node: ClusterNode | None = None) -> list[NodeView]:
        """``CLUSTER NODES`` as *node* (by default the first live node) sees it."""
        if node is None:
            node = next((n for n in self.nodes if n.alive), None)
            if node is None:
                raise RuntimeError("no node of the cluster is running")
        return parse_nodes(str(node.command("CLUSTER", "NODES")))

    def _agreed_slot_map(self) -> SlotMap | None:
        """The slot map every live node sees as ok, if they all see the same one."""
        try:
            maps = {
                slot_map(str(node.command("CLUSTER", "INFO")), self.topology(node))
                for node in self.nodes
                if node.alive
            }
        except redis.RedisError:
            return None
        return maps.pop() if len(maps) == 1 else None

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every live node says ``cluster_state:ok`` and all agree on the slots."""
        self._wait(self._agreed_slot_map, "cluster_state:ok on every node", timeout)

    # -- who is who ----------------------------------------------------------------

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def masters(self) -> list[ClusterNode]:
        """The live masters that serve slots, in port order."""
        ports = {v.port for v in self.topology() if v.is_master and not v.failing and v.slots}
        return [node for node in self.nodes if node.port in ports and node.alive]

    def replicas(self) -> list[ClusterNode]:
        """The live replicas, in port order."""
        ports = {v.port for v in self.topology() if "slave" in v.flags and not v.failing}
        return [node for node in self.nodes if node.port in ports and node.alive]

    def master_of(self, key_or_slot: str | bytes | int) -> ClusterNode:
        """The live master that serves the slot of *key_or_slot*."""
        slot = slot_of(key_or_slot)
        for view in self.topology():
            serves = any(start <= slot <= end for start, end in view.slots)
            if view.is_master and not view.failing and serves:
                return self.node(view.port)
        raise LookupError(f"no live master serves slot {slot}: {self.describe()}")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of a live master (a seed for a cluster client)."""
        return self.masters()[0].url

    # -- changing it ---------------------------------------------------------------

    def flushall(self) -> None:
        """Empty every master (the replicas follow)."""
        for node in self.masters():
            node.command("FLUSHALL")

    def _replica_ports(self, master: ClusterNode) -> list[int]:
        master_id = str(master.command("CLUSTER", "MYID"))
        ports = [v.port for v in self.topology() if v.master_id == master_id and not v.failing]
        if not ports:
            raise RuntimeError(f"{master.address} has no replica: {self.describe()}")
        return ports

    def kill_master_of(
        self, key_or_slot: str | bytes | int, *, sync_replica: bool = True
    ) -> tuple[ClusterNode, ClusterNode]:
        """SIGKILL the master serving *key_or_slot*; wait for its replica to take over.

        With *sync_replica* (the default) the master first waits (``WAIT``) until
        its replica has every write made so far, so a test sees no data lost by
        the failover itself. Returns ``(old_master, new_master)`` once every live
        node says ``cluster_state:ok`` and agrees that *new_master* owns the slot.
        The old master stays down until ``restart(old_master)`` (or ``reset()``).
        """
        slot = slot_of(key_or_slot)
        old = self.master_of(slot)
        candidates = self._replica_ports(old)
        if sync_replica:
            self._wait(
                lambda: old.command("WAIT", "1", "1000") == 1, f"{old.address}'s replica to sync"
            )
        assert old.proc is not None
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        new = self._wait(
            lambda: self._promoted(slot, candidates), f"a replica of {old.address} to take over"
        )
        return old, new

    def fail_over(self, key_or_slot: str | bytes | int) -> tuple[ClusterNode, ClusterNode]:
        """A manual failover of the shard serving *key_or_slot*: nothing is killed.

        ``CLUSTER FAILOVER`` on the replica swaps the roles: the old master keeps
        running as the new master's replica. Returns ``(old_master, new_master)``
        once every node agrees and the old master is an in-sync replica.
        """
        slot = slot_of(key_or_slot)
        old = self.master_of(slot)
        replica = self.node(self._replica_ports(old)[0])
        replica.command("CLUSTER", "FAILOVER")
        new = self._wait(
            lambda: self._promoted(slot, [replica.port]), f"{replica.address} to take over"
        )
        self._wait(lambda: self._rejoined(old), f"{old.address} to follow {new.address}")
        return old, new

    def _promoted(self, slot: int, candidates: list[int]) -> ClusterNode | None:
        agreed = self._agreed_slot_map()
        if agreed is None:
            return None
        owner = next(port for start, end, port in agreed if start <= slot <= end)
        return self.node(owner) if owner in candidates else None

    def restart(self, node: ClusterNode) -> None:
        """Start a stopped *node* again (same port and node id); wait until it is back in.

        A restarted old master comes back as a replica of the master that took
        its slots; this waits until that replica is in sync.
        """
        if node.alive:
            raise RuntimeError(f"{node.address} is running; kill it before restarting it")
        self._spawn(node)
        self._wait(lambda: self._rejoined(node), f"{node.address} to rejoin")

    def _rejoined(self, node: ClusterNode) -> bool:
        """Every live node sees *node* healthy: a master with slots, or an in-sync replica."""
        if self._agreed_slot_map() is None:
            return False
        is_master = False
        try:
            for viewer in self.nodes:
                if not viewer.alive:
                    continue
                view = next((v for v in self.topology(viewer) if v.port == node.port), None)
                if view is None or view.failing or not view.connected:
                    return False
                # An old master without slots is still on its way to being a replica.
                if not (view.slots if view.is_master else "slave" in view.flags):
                    return False
                is_master = view.is_master
            info = node.command("INFO", "replication")
        except redis.RedisError:
            return False
        return is_master or (isinstance(info, dict) and info.get("master_link_status") == "up")

    def reset(self) -> None:
        """Restart every node that is down (so each shard has a replica again), empty it all."""
        for node in self.nodes:
            if not node.alive:
                self.restart(node)
        self.wait_ok()
        self.flushall()
