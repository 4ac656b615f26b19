"""WebSocket mixins (private package): heartbeats, JSON messages, rooms, origin allow-lists.

Mix them into your own :class:`~tornado.websocket.WebSocketHandler`, in any
order::

    class ChatHandler(AllowedOriginsMixin, HeartbeatMixin, JSONMessageMixin,
                      BroadcastMixin, WebSocketHandler):
        allowed_origins = ["https://chat.example.com", "https://*.example.com"]

        def open(self, room: str) -> None:
            self.room = room
            self.join(room)

        async def on_json(self, data: dict[str, Any]) -> None:
            await self.broadcast(self.room, {"text": data.get("text")})

Every handler that uses one of these mixins is registered in the
application's connection registry while it is open, so that the shutdown hook
(:func:`tornado_kit.shutdown`, called by ``serve()`` and the
testing plugin) closes it with code 1001 "Going Away" (RFC 6455 §7.4.1).
For each of them, a refused handshake is an RFC 9457 problem document, and
``max_pending_bytes`` bounds every write to the connection: a client that
stops reading is closed with 1013 "Try Again Later" (see
``TrackedWebSocket`` in ``_base.py``).

Shared state (the heartbeat timer, the rooms, the relay subscriptions) lives
in the application's state (``state_for(app)``), never in
module globals, so applications and ``fork_processes`` children never share
it by accident.

Modules: ``_base`` (what every mixin shares: registration, cleanup, the
write bound, the handshake checks of ``_handshake``), ``_frames`` (server
frames and pre-built writes), ``_heartbeat``, ``_rooms`` (the per-application
state, memberships, relays), ``_messages``, ``_broadcast``, ``_origins``.
"""

from tornado_kit._ws._broadcast import BroadcastMixin
from tornado_kit._ws._heartbeat import HeartbeatMixin
from tornado_kit._ws._messages import JSONMessageMixin
from tornado_kit._ws._origins import AllowedOriginsMixin

__all__ = ["AllowedOriginsMixin", "BroadcastMixin", "HeartbeatMixin", "JSONMessageMixin"]
