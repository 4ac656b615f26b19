"""Replay-then-live: the hand-over from a log replay to the live deliveries (private).

A member that resumes (an SSE stream with ``Last-Event-ID``; in the channels
issue, a WebSocket ``join(since=...)``) must see no gap and no duplicate.
The order that guarantees it:

1. register the member with its :class:`Splice` active;
2. await the channel's subscription (from now on every publication reaches
   the member);
3. read the log after the client's last id and write that replay;
4. :meth:`Splice.finish` with the replayed ids: the live deliveries queued
   meanwhile, minus those already replayed, in order.

A publication made between steps 2 and 3 arrives twice (live, and in the
replay); one whose live copy arrives only after step 4 (Redis delivers
pub/sub and command replies on different connections) is recognised by
:meth:`Splice.duplicate`. The queue is bounded: a member that would hold
more than *limit* deliveries must end (SSE: ``"overflow"``, the client
resumes from the log).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from tornado_kit._channels._delivery import Delivery

__all__ = ["Splice"]


class Splice:
    """The replay hand-over of one member: a bounded queue, then the replayed ids."""

    __slots__ = ("active", "limit", "queue", "replayed")

    def __init__(self, limit: int) -> None:
        self.active = True
        self.limit = limit
        self.queue: deque[Delivery] = deque()
        self.replayed: frozenset[str] = frozenset()

    def hold(self, delivery: Delivery) -> bool:
        """Queue a live *delivery* while the replay runs; ``False`` when the queue is full."""
        if len(self.queue) >= self.limit:
            return False
        self.queue.append(delivery)
        return True

    def finish(self, replayed: Collection[str]) -> list[Delivery]:
        """End the replay: the queued deliveries whose id was not *replayed*, in order."""
        self.active = False
        self.replayed = frozenset(replayed)
        queued, self.queue = self.queue, deque()
        if not self.replayed:
            return list(queued)
        return [d for d in queued if d.id not in self.replayed]

    def duplicate(self, delivery: Delivery) -> bool:
        """Whether a live *delivery* that came after :meth:`finish` was already replayed."""
        return delivery.id is not None and delivery.id in self.replayed
