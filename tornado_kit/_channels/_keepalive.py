"""Keepalive groups: ONE timer per application and interval for every idle member (private).

An SSE stream that wrote nothing for a while gets a ``: keepalive`` comment,
so that proxies and the browser keep the connection. The timer belongs to
the group of every member with the same interval, never to a member. (The
channels issue folds the groups into the application's one ticker.)
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from tornado.ioloop import PeriodicCallback

__all__ = ["KeepaliveGroup", "Swept"]

# The package logger (filtered by the redaction filter): shared by both transports.
_log = logging.getLogger("tornado_kit")


class Swept(Protocol):
    """What a keepalive group drives: an SSE stream."""

    def sweep(self, threshold: float) -> None:
        """Write a keepalive when nothing was written since *threshold* (``time.monotonic()``).

        Never raises.
        """


class KeepaliveGroup:
    """Every member with one keepalive interval, driven by ONE timer.

    The timer ticks every ``interval / 2``; a member that wrote nothing for
    ``0.75 * interval`` gets a keepalive, so an idle one gets one every
    ``interval`` and is never silent for much longer than that. The timer
    runs while the group has members; the last one to leave removes the
    group from *groups* (its owner's table, interval -> group).
    """

    def __init__(self, groups: dict[float, KeepaliveGroup], interval: float) -> None:
        self.groups = groups
        self.interval = interval
        self.streams: set[Swept] = set()
        self.timer = PeriodicCallback(self.tick, interval * 500.0)

    def add(self, member: Swept) -> None:
        self.streams.add(member)
        if not self.timer.is_running():
            self.timer.start()

    def discard(self, member: Swept) -> None:
        self.streams.discard(member)
        if not self.streams:
            self.timer.stop()
            if self.groups.get(self.interval) is self:
                del self.groups[self.interval]

    def tick(self) -> None:
        threshold = time.monotonic() - self.interval * 0.75
        for member in tuple(self.streams):
            try:
                member.sweep(threshold)
            except Exception:  # never let one member stop the timer
                _log.exception("keepalive failed for %r", member)


def group_for(groups: dict[float, KeepaliveGroup], interval: float) -> KeepaliveGroup:
    """The group of *interval* in *groups*, created on first use."""
    group = groups.get(interval)
    if group is None:
        group = groups[interval] = KeepaliveGroup(groups, interval)
    return group
