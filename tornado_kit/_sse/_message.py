"""The broker message format of SSE events (private).

What an :class:`~tornado_kit.EventLog` publishes on its broker and what
``SSEMixin.stream_topic()`` decodes: one JSON object
``{"sse": 1, "data": str, "id"?: str, "event"?: str, "retry"?: int}``. The
``"sse"`` marker tells an event published by a log from a plain text message
published with ``broker.publish()``, which ``stream_topic()`` sends as data.
Shared by :class:`~tornado_kit.MemoryEventLog` and
:class:`~tornado_kit.RedisEventLog`.
"""

from __future__ import annotations

from typing import Any

from tornado_kit import _json
from tornado_kit._sse._event import ServerSentEvent

__all__ = ["decode_broker_message", "encode_broker_message", "wire"]

_MARKER = "sse"


def encode_broker_message(event: ServerSentEvent) -> str:
    """Encode *event* as the text an :class:`EventLog` publishes on the broker.

    Example::

        encode_broker_message(ServerSentEvent("hi", id="3"))
        # '{"sse":1,"data":"hi","id":"3"}'

    .. versionadded:: 0.1
    """
    message: dict[str, Any] = {_MARKER: 1, "data": event.data}
    if event.id is not None:
        message["id"] = event.id
    if event.event is not None:
        message["event"] = event.event
    if event.retry is not None:
        message["retry"] = event.retry
    return _json.dumps_str(message)


def decode_broker_message(message: str) -> ServerSentEvent:
    """Decode text made by :func:`encode_broker_message`.

    Raises :class:`ValueError` when *message* is not such text (for example a
    plain string published directly on the broker).

    .. versionadded:: 0.1
    """
    if not message.startswith("{"):
        raise ValueError("not an SSE broker message")
    try:
        obj = _json.loads(message)
    except ValueError:
        raise ValueError("not an SSE broker message") from None
    if not isinstance(obj, dict) or obj.get(_MARKER) != 1 or not isinstance(obj.get("data"), str):
        raise ValueError("not an SSE broker message")
    try:
        return ServerSentEvent(
            obj["data"], event=obj.get("event"), id=obj.get("id"), retry=obj.get("retry")
        )
    except TypeError as exc:
        raise ValueError(f"invalid SSE broker message: {exc}") from None


def wire(message: str) -> tuple[bytes, str | None]:
    """Wire bytes and id of a broker message (plain text becomes the event data)."""
    try:
        event = decode_broker_message(message)
    except ValueError:
        event = ServerSentEvent(message)
    return event.encode(), event.id
