"""BroadcastMixin: rooms, and one message to every member in every process (private).

The rooms themselves (members, relay subscriptions, the delivery loop) are
the application's WebSocket state (``_rooms.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado_kit import _json
from tornado_kit._broker import LocalBroker, broker_for
from tornado_kit._compat.handler import close_called
from tornado_kit._ws._base import TrackedWebSocket
from tornado_kit._ws._rooms import ROOM_TOPIC_PREFIX, done_future, envelope, ws_state

__all__ = ["BroadcastMixin"]


class BroadcastMixin(TrackedWebSocket):
    """Rooms: :meth:`join`, :meth:`leave` and :meth:`broadcast` to every member.

    :meth:`broadcast` encodes the message once (``str`` as text, ``bytes`` as
    a binary frame, anything else as JSON), builds the WebSocket frame once and
    writes it to every member's socket without a task or future per
    connection. Members that are closing are skipped silently. A member whose
    unsent data would exceed ``max_pending_bytes`` (default 1 MiB; class
    attribute or setting; it bounds every other write too) is closed with
    1013 "Try Again Later" instead of buffering without bound. Memberships
    end when the connection closes.

    Rooms span processes when the ``broker`` setting is a shared broker such
    as :class:`~tornado_kit.RedisBroker`: each process subscribes once per
    room to the topic ``"tk:room:<room>"`` and delivers what arrives to its
    own members. With the default :class:`~tornado_kit.LocalBroker` delivery
    is direct (no broker round trip) and rooms are per application.

    Example::

        class Chat(JSONMessageMixin, BroadcastMixin, WebSocketHandler):
            def open(self) -> None:
                self.join("lobby")

            async def on_json(self, data: dict[str, Any]) -> None:
                await self.broadcast("lobby", {"text": data["text"]})

    .. versionadded:: 0.1
    """

    def join(self, room: str) -> asyncio.Future[None]:
        """Add this connection to *room*. Idempotent.

        Returns a future that resolves once the room's broker subscription is
        active (immediately with a ``LocalBroker``); awaiting it is optional.
        A connection that has already closed is not added.
        """
        if close_called(self):
            return done_future()
        return ws_state(self.application).join(self, room)

    def leave(self, room: str) -> None:
        """Remove this connection from *room* (no error when not a member)."""
        ws_state(self.application).leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection has joined."""
        member = ws_state(self.application).members.get(self)
        return frozenset(member.rooms) if member is not None else frozenset()

    async def broadcast(self, room: str, message: Any, exclude_self: bool = True) -> None:
        """Send *message* to every connection in *room* (in every process).

        ``str`` is sent as a text frame, ``bytes`` as a binary frame, any
        other value is JSON-encoded once. With ``exclude_self`` (the default)
        this connection does not receive its own message. Never raises for a
        closed or closing recipient. A string holding a lone surrogate (not
        Unicode text) raises ``ValueError`` before anything is sent.
        """
        if isinstance(message, str):
            opcode, payload = 0x1, _json.encode_utf8(message, "the broadcast message")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = 0x2, bytes(message)
        else:
            opcode, payload = 0x1, _json.dumps(message)
        ws = ws_state(self.application)
        broker = broker_for(self.application)
        if type(broker) is LocalBroker:
            ws.deliver(room, opcode, payload, self if exclude_self else None)
            return
        origin = ws.conn_id(self) if exclude_self else ""
        await broker.publish(ROOM_TOPIC_PREFIX + room, envelope(opcode, origin, payload))
