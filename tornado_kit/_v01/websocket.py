"""0.1 names of ``tornado_kit.websocket`` that 0.2 spells differently (private)."""

from tornado_kit._ws._base import TrackedWebSocket as _TrackedWebSocket

__all__ = ["_TrackedWebSocket"]
