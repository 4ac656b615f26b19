"""JSONMessageMixin: every text message decoded as a JSON object (private)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from tornado_kit import _json
from tornado_kit._errors import APIError
from tornado_kit._ws._base import TrackedWebSocket

__all__ = ["JSONMessageMixin"]

log = logging.getLogger("tornado_kit.websocket")


class JSONMessageMixin(TrackedWebSocket):
    """Decode every text message as a JSON object and hand it to :meth:`on_json`.

    A message that is not valid JSON, is nested too deeply, is not an object,
    or arrives in a binary frame is answered with an error message and the
    connection stays open::

        {"error": {"status": 400, "detail": "message is not valid JSON"}}

    An :class:`~tornado_kit.APIError` raised by :meth:`on_json` is answered the
    same way with its status and detail. Messages larger than Tornado's
    ``websocket_max_message_size`` setting never reach this mixin: Tornado
    closes the connection with 1009 "Message Too Big" (RFC 6455 §7.4.1).

    Example::

        class Echo(JSONMessageMixin, WebSocketHandler):
            def on_json(self, data: dict[str, Any]) -> None:
                self.write_message({"echo": data})

    .. versionadded:: 0.1
    """

    def on_json(self, data: dict[str, Any]) -> Awaitable[None] | None:
        """Handle one decoded JSON object. Override it; it may be a coroutine.

        Like ``on_message``, the next message is not processed until a
        coroutine ``on_json`` has finished.
        """
        raise NotImplementedError

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Decode *message* and call :meth:`on_json` (runs for every data frame)."""
        if isinstance(message, bytes):
            self.send_json_error(400, "binary messages are not accepted; send JSON text")
            return None
        try:
            data = _json.loads(message)
        except _json.LoneSurrogateError:
            self.send_json_error(400, "message contains a lone surrogate (invalid Unicode)")
            return None
        except ValueError as exc:
            detail = "message is not valid JSON"
            if "deep" in str(exc) or "recursion" in str(exc).lower():
                detail = "message is nested too deeply"
            self.send_json_error(400, detail)
            return None
        if not isinstance(data, dict):
            self.send_json_error(400, "message must be a JSON object")
            return None
        try:
            result = self.on_json(data)
        except APIError as exc:
            self.send_json_error(exc.status_code, exc.detail)
            return None
        if result is None:
            return None
        return self._tk_await_json(result)

    async def _tk_await_json(self, result: Awaitable[None]) -> None:
        try:
            await result
        except APIError as exc:
            self.send_json_error(exc.status_code, exc.detail)

    def send_json_error(self, status: int, detail: str | None) -> None:
        """Send ``{"error": {"status": status, "detail": detail}}``; never raises.

        Does nothing when the connection is already closing, or closes it
        (1013) when the client is not reading (see ``max_pending_bytes``).
        A *detail* that JSON cannot carry is logged and left out.
        """
        try:
            message = _json.dumps({"error": {"status": status, "detail": detail}})
        except (TypeError, ValueError):
            log.error("cannot encode the error detail for status %s; sent without it", status)
            message = _json.dumps({"error": {"status": status}})
        self._tk_send_text(message)
