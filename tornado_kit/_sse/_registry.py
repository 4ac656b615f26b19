"""The open SSE streams of one application and their keepalive groups (private).

One :class:`SSERegistry` per application (``state_for(app).resource``): the
streams that shutdown must end, and ONE keepalive timer per interval. Its
shutdown callback (``PHASE_CONNECTIONS``) ends every stream and waits until
each has finished.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tornado_kit._channels._keepalive import KeepaliveGroup, group_for
from tornado_kit._lifecycle import PHASE_CONNECTIONS, state_for

if TYPE_CHECKING:
    from tornado.web import Application

    from tornado_kit._sse._stream import SSEStream

__all__ = ["SSERegistry", "registry_for"]

_log = logging.getLogger("tornado_kit.sse")

RESOURCE_KEY = "tornado_kit.sse"


class SSERegistry:
    """Open SSE streams of one application (in ``state_for(app).resources``)."""

    def __init__(self) -> None:
        self.streams: set[SSEStream] = set()
        self.groups: dict[float, KeepaliveGroup] = {}
        self._drained: asyncio.Future[None] | None = None

    def add(self, stream: SSEStream, interval: float) -> KeepaliveGroup:
        """Register *stream*; return the keepalive group of *interval* it joined."""
        self.streams.add(stream)
        group = group_for(self.groups, interval)
        group.add(stream)
        return group

    def discard(self, stream: SSEStream, group: KeepaliveGroup) -> None:
        """Forget *stream* (and leave *group*); the last one wakes a waiting shutdown."""
        group.discard(stream)
        self.streams.discard(stream)
        if not self.streams and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def shutdown(self) -> None:
        """End every open stream, then wait until each has finished (PHASE_CONNECTIONS)."""
        for stream in tuple(self.streams):
            try:
                stream.end("shutdown")
            except Exception:
                _log.exception("could not end SSE stream %r", stream)
        if self.streams:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        for group in tuple(self.groups.values()):
            group.timer.stop()


def registry_for(app: Application) -> SSERegistry:
    """The :class:`SSERegistry` of *app*, created (with its shutdown callback) on first use."""
    return state_for(app).resource(
        RESOURCE_KEY, SSERegistry, close=SSERegistry.shutdown, phase=PHASE_CONNECTIONS
    )
