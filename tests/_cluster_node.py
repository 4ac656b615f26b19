"""One node of the tests' Redis Cluster: its ports and process, and what it reports.

``ClusterNode`` is a ``redis-server`` the cluster started (or will restart);
``NodeView`` / ``slot_map`` parse what a node says about the cluster
(``CLUSTER NODES``, ``CLUSTER INFO``), so ``tests/_cluster.py`` can tell roles,
slot owners and health apart while nodes are killed, promoted and restarted.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

SLOTS = 16384
#: ``(first slot, last slot, master port)`` ranges covering every slot, sorted.
SlotMap = tuple[tuple[int, int, int], ...]


def free_ports(count: int) -> list[int]:
    """*count* distinct free loopback ports (all held open while picking)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


@dataclass
class ClusterNode:
    """One ``redis-server`` of the cluster: fixed ports and directory, a process or none."""

    port: int
    bus_port: int
    dir: Path
    config_file: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this node: short timeouts, no retries."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def command(self, *args: str | int) -> object:
        """Run one command on this node (and only this node) and return its reply."""
        with self.client() as client:
            return client.execute_command(*args)


def slot_of(key_or_slot: str | bytes | int) -> int:
    """The hash slot of a key (its ``{hash tag}`` if it has one), or a slot number as is."""
    if isinstance(key_or_slot, int):
        if not 0 <= key_or_slot < SLOTS:
            raise ValueError(f"slot {key_or_slot} is outside 0..{SLOTS - 1}")
        return key_or_slot
    key = key_or_slot.encode() if isinstance(key_or_slot, str) else key_or_slot
    return int(key_slot(key))


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: how the answering node sees a node."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    @classmethod
    def parse(cls, line: str) -> NodeView:
        node_id, address, flags, master, _ping, _pong, _epoch, link, *slots = line.split()
        ranges: list[tuple[int, int]] = []
        for item in slots:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            start, _, end = item.partition("-")
            ranges.append((int(start), int(end or start)))
        return cls(
            id=node_id,
            port=int(address.split("@")[0].rsplit(":", 1)[1]),
            flags=frozenset(flags.split(",")),
            master_id=None if master == "-" else master,
            connected=link == "connected",
            slots=tuple(sorted(ranges)),
        )


def parse_nodes(reply: str) -> list[NodeView]:
    """The reply of ``CLUSTER NODES``, one view per line."""
    return [NodeView.parse(line) for line in reply.splitlines() if line.strip()]


def slot_map(info: str, views: list[NodeView]) -> SlotMap | None:
    """Who serves which slot, from one node's ``CLUSTER INFO`` and ``CLUSTER NODES``.

    None unless that node says ``cluster_state:ok``, every slot is ok, and its
    healthy masters' slots cover all 16384 slots.
    """
    fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
    if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != str(SLOTS):
        return None
    ranges = sorted(
        (start, end, view.port)
        for view in views
        if view.is_master and not view.failing
        for start, end in view.slots
    )
    if sum(end - start + 1 for start, end, _port in ranges) != SLOTS:
        return None
    return tuple(ranges)
