"""IOStream and WebSocket internals, used by the WebSocket mixins (private).

Part of :mod:`tornado_kit._compat`: each function reads or drives a private
attribute of a Tornado object, guarded with ``getattr`` so that a release
that renames it breaks this module's tests (``tests/test_compat.py``) and
degrades to the documented fallback, never to an ``AttributeError`` in a
handler. Checked against Tornado 6.5 and 6.6 unless a docstring says more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.web import RequestHandler
from tornado.websocket import WebSocketProtocol


def pending_write_bytes(stream: IOStream | None) -> int:
    """How many bytes *stream* holds that the kernel has not accepted yet.

    ``IOStream.write`` appends to ``_write_buffer`` (a ``_StreamBuffer`` with
    ``__len__``) and hands as much as the socket takes to the kernel at once,
    so its length is the data queued in this process. Checked on Tornado 6.5
    and 6.6. Falls back to ``0`` (nothing known to be queued, so no bound is
    enforced) when the attribute is absent or, as after ``close()``, ``None``,
    and when there is no stream yet.
    """
    buffer = getattr(stream, "_write_buffer", None)
    if buffer is None:
        return 0
    try:
        return len(buffer)
    except TypeError:  # not a sized buffer: an IOStream this module does not know
        return 0


def queued_writes(stream: IOStream | None) -> int:
    """How many ``IOStream.write`` calls of *stream* wait for their data to be sent.

    Each holds a future in ``_write_futures`` (a deque of ``(index,
    future)``) until the kernel has taken its data; a WebSocket
    ``write_message`` adds a task for it too. Checked on Tornado 6.5 and
    6.6. Falls back to ``0`` when the attribute is absent (or there is no
    stream).
    """
    futures = getattr(stream, "_write_futures", None)
    if futures is None:
        return 0
    try:
        return len(futures)
    except TypeError:
        return 0


def prebuilt_buffer(stream: IOStream) -> Any:
    """The write buffer of *stream* if :func:`write_prebuilt` can use it, else ``None``.

    The fast path relies on ``IOStream`` internals that Tornado 6.5 and 6.6
    share (``_write_buffer``, ``_total_write_index``, ``_add_io_state``,
    ``write_to_fd``). A stream without them returns ``None``: the caller
    then uses ordinary ``write_message`` calls instead.
    """
    buffer = getattr(stream, "_write_buffer", None)
    if buffer is None or not hasattr(stream, "_total_write_index"):
        return None
    if not hasattr(stream, "_add_io_state") or not hasattr(stream, "write_to_fd"):
        return None
    return buffer


def write_prebuilt(stream: IOStream, buffer: Any, frame: bytes) -> OSError | None:
    """Write a ready frame to *stream* without a future (Tornado's ``write()`` makes one).

    *buffer* is the stream's write buffer from :func:`prebuilt_buffer`. When
    it holds earlier data the frame is queued behind it (order matters; the
    IOLoop's write handler is already registered). Otherwise the frame goes
    straight to the socket and only an unsent tail is queued, with the write
    handler registered, exactly as ``IOStream.write`` does in Tornado 6.5
    and 6.6. Returns the error of a broken connection, for the caller to
    close the stream after its loop.
    """
    size = len(frame)
    if len(buffer):
        buffer.append(frame)
        stream._total_write_index += size
        return None
    try:
        sent = stream.write_to_fd(frame)  # type: ignore[arg-type]
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        return exc
    if sent < size:
        buffer.append(frame[sent:])
        stream._total_write_index += size - sent
        stream._add_io_state(IOLoop.WRITE)
    return None


def compresses(proto: WebSocketProtocol) -> bool:
    """Whether *proto* negotiated permessage-deflate (RFC 7692) for what it sends.

    Reads ``WebSocketProtocol13._compressor`` (Tornado 6.5 and 6.6). Falls
    back to ``True`` when the attribute is absent, so that callers take the
    path that works for every connection (``write_message``).
    """
    return getattr(proto, "_compressor", True) is not None


def cross_origin_refusal(handler: RequestHandler, check: Callable[[str], bool]) -> str | None:
    """Why the WebSocket handshake of *handler* is cross-origin and refused, or ``None``.

    Tornado 6.6 decides in ``RequestHandler._check_cross_origin(check)``
    (``Sec-Fetch-Site``, then an ``Origin`` equal to the ``Host``, then
    *check*); this returns its answer. Tornado 6.5 and earlier have no such
    method; the fallback is their ``WebSocketHandler.get`` rule: the
    ``Origin`` (else ``Sec-Websocket-Origin``) header, when present, must
    pass *check* (there the default ``check_origin`` compares it with the
    ``Host`` itself).
    Either may raise ``ValueError`` for an origin ``urlsplit`` cannot parse
    (Tornado's own comparison with the ``Host`` does not guard it).
    """
    decide = getattr(handler, "_check_cross_origin", None)
    if decide is not None:
        answer: str | None = decide(check)
        return answer
    headers = handler.request.headers
    origin = headers.get("Origin", headers.get("Sec-Websocket-Origin"))
    if origin is None:
        return None
    return None if check(origin) else f"Origin {origin!r} not allowed"
