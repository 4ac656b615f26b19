"""Server-Sent Events (private package): wire format, broker messages, event logs, the mixin.

Modules, one concept each: ``_event`` (:class:`~tornado_kit.ServerSentEvent`
and the WHATWG field rules), ``_message`` (the broker message format),
``_log`` (:class:`~tornado_kit.EventLog`, :class:`~tornado_kit.EventLogGap`,
:class:`~tornado_kit.MemoryEventLog`), ``_registry`` (the open streams of an
application and their keepalive groups), ``_stream`` (``SSEStream``: one
open stream, its state and behaviour) and ``_mixin``
(:class:`~tornado_kit.SSEMixin`). The fan-out behind ``stream_topic()`` is the
application's channel hub (``tornado_kit._channels``).
"""

# The leaf modules first: the channel hub imports the broker message format.
from tornado_kit._sse._event import ServerSentEvent
from tornado_kit._sse._log import EventLog, EventLogGap, MemoryEventLog
from tornado_kit._sse._message import decode_broker_message, encode_broker_message
from tornado_kit._sse._mixin import SSEMixin

__all__ = [
    "EventLog",
    "EventLogGap",
    "MemoryEventLog",
    "SSEMixin",
    "ServerSentEvent",
    "decode_broker_message",
    "encode_broker_message",
]
