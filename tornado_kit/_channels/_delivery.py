"""One broker message as the members of a channel receive it (private).

The channel's reader turns each message into ONE :class:`Delivery` and hands
that same object to every member: the message is decoded, and its SSE chunk
built, once per message per process, whatever the number of members.

Today the only format on a channel is the SSE broker message (an event
published by an :class:`~tornado_kit.EventLog`, or plain text published with
``broker.publish()``); the channels issue replaces it with the one wire
format of both transports and adds the WebSocket frame to this object.
"""

from __future__ import annotations

from tornado_kit._sse._message import wire

__all__ = ["Delivery", "WireCache"]

#: Decoded broker messages kept by a :class:`WireCache` (then it starts over).
WIRE_CACHE_SIZE = 256


class Delivery:
    """One message: its SSE chunk, its log id (``None``: not from a log), when it arrived."""

    __slots__ = ("at", "id", "sse_chunk")

    def __init__(self, sse_chunk: bytes, id: str | None, at: float) -> None:
        self.sse_chunk = sse_chunk
        self.id = id
        self.at = at  # time.monotonic() when the channel received it

    def __repr__(self) -> str:
        return f"<Delivery id={self.id!r} {len(self.sse_chunk)} bytes>"


class WireCache:
    """Broker message -> (SSE chunk, id), decoded once per message.

    A channel sees each message once anyway; the cache also covers the same
    text published on several channels of the application.
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes, str | None]] = {}

    def delivery(self, message: str, at: float) -> Delivery:
        """The :class:`Delivery` of *message*, received at *at*."""
        hit = self._cache.get(message)
        if hit is None:
            hit = wire(message)
            if len(self._cache) >= WIRE_CACHE_SIZE:
                self._cache.clear()
            self._cache[message] = hit
        return Delivery(hit[0], hit[1], at)
