"""Server-sent events in tests: a spec-exact parser and a client that reads N events.

:func:`parse_sse` follows the WHATWG HTML Living Standard, section 9.2.6
"Interpreting an event stream"; :func:`read_sse` opens a real HTTP
connection and returns the first events it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from tornado import httputil
from tornado.httpclient import HTTPClientError
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from tornado_kit import ServerSentEvent

__all__ = ["SSEParser", "parse_sse", "read_sse"]

# 9.2.5: CRLF, a lone LF or a lone CR end a line; nothing else does.
_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Incremental WHATWG event-stream parser (feed text, collect events).

    State that the spec keeps for the whole stream (the last event ID buffer)
    persists across :meth:`feed` calls. A CR at the end of one chunk followed
    by LF at the start of the next is one line break.
    """

    def __init__(self) -> None:
        self.events: list[ServerSentEvent] = []
        self._pending = ""  # text of an unterminated line
        self._started = False  # the BOM check happens once, at the very start
        self._cr_pending = False  # previous chunk ended with CR: skip a leading LF
        self._data: list[str] = []
        self._type = ""
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, text: str) -> list[ServerSentEvent]:
        """Parse *text* (any prefix-closed slice of the stream); return new events."""
        before = len(self.events)
        if not self._started and (self._pending or text):
            self._started = True
            text = (self._pending + text).removeprefix("\ufeff")
            self._pending = ""
        if self._cr_pending and text.startswith("\n"):
            text = text[1:]
        self._cr_pending = False
        if not text:
            return []
        buffer = self._pending + text
        lines = _LINE_END.split(buffer)
        # The last element is an unterminated line (possibly empty).
        self._pending = lines.pop()
        if buffer.endswith("\r") and not self._pending:
            # The CR may be the first half of a CRLF split across chunks.
            self._cr_pending = True
        for line in lines:
            self._line(line)
        return self.events[before:]

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return  # a comment
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            # Python refuses int() of more than 4300 digits: such a delay
            # is meaningless anyway, so the field is ignored.
            with contextlib.suppress(ValueError):
                self._retry = int(value)
        # any other field name is ignored

    def _dispatch(self) -> None:
        data, event_type, retry = self._data, self._type, self._retry
        self._data, self._type, self._retry = [], "", None
        # The data buffer is "" only when no data field was seen: a "data"
        # line with an empty value still makes "\n", i.e. an event with "".
        if not data:
            return
        self.events.append(
            ServerSentEvent(
                "\n".join(data),
                event=event_type or None,
                id=self._last_id or None,
                retry=retry,
            )
        )


def parse_sse(text: str) -> list[ServerSentEvent]:
    """Parse a whole ``text/event-stream`` body the way a browser's ``EventSource`` does.

    WHATWG 9.2.6 rules: one leading BOM is dropped; lines end with CRLF, LF
    or CR; lines starting with ``:`` are comments; a line without a colon is
    a field with an empty value; one space after the colon is stripped;
    ``data`` lines accumulate, joined with LF; a blank line dispatches the
    event unless no ``data`` line was seen; an ``id`` containing NUL is
    ignored; ``retry`` counts only when it is all ASCII digits; unknown
    fields are ignored; an event not ended by a blank line is discarded.

    Each returned event has ``data``; ``event`` is the type (``None`` for the
    default ``"message"``); ``id`` is the stream's last event id at dispatch
    (it persists across events until an ``id`` field changes it; ``None``
    when empty); ``retry`` is the valid ``retry`` value given in the same
    block, if any (the browser applies it to the connection, not the event).
    Never raises on any ``str``.

    Example::

        parse_sse("id: 1\\ndata: a\\n\\ndata: b\\n\\n")
        # [ServerSentEvent(data='a', id='1'), ServerSentEvent(data='b', id='1')]

    .. versionadded:: 0.1
    """
    parser = SSEParser()
    parser.feed(text)
    return parser.events


async def read_sse(
    url: str,
    count: int,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> list[ServerSentEvent]:
    """Open an SSE stream at *url* and return its first *count* events.

    Speaks HTTP/1.1 over a plain socket (``https`` URLs use TLS with the
    default certificate checks) and parses the body with :func:`parse_sse`
    rules. The connection is closed as soon as *count* events have arrived,
    so the server sees the client leave. When the server ends the stream
    first, the events received so far are returned (possibly fewer than
    *count*). Raises :class:`TimeoutError` when *count* events did not
    arrive within *timeout* seconds, and
    :class:`tornado.httpclient.HTTPClientError` for a non-2xx response or one
    that is not ``text/event-stream``.

    Example::

        events = await read_sse(base_url + "/feed", count=2, timeout=5,
                                headers={"Last-Event-ID": "41"})

    .. versionadded:: 0.1
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"read_sse needs an http(s) URL, not {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {
        "Host": parts.netloc,
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "Connection": "close",
    }
    request_headers.update(headers or {})
    head = f"GET {target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in request_headers.items()
    )
    parser = SSEParser()
    tcp = TCPClient()
    holder: list[IOStream] = []

    async def run() -> None:
        stream = await tcp.connect(
            parts.hostname or "",
            port,
            ssl_options=ssl.create_default_context() if tls else None,
        )
        holder.append(stream)
        await stream.write((head + "\r\n").encode("utf-8"))
        raw = await stream.read_until_regex(b"\r?\n\r?\n", max_bytes=65536)
        first, _, rest = raw.decode("latin-1").partition("\n")
        status = httputil.parse_response_start_line(first.rstrip("\r"))
        response_headers = httputil.HTTPHeaders.parse(rest)
        if not 200 <= status.code < 300:
            raise HTTPClientError(status.code, f"{status.code} {status.reason}")
        content_type = response_headers.get("Content-Type", "")
        if not content_type.startswith("text/event-stream"):
            raise HTTPClientError(status.code, f"not an event stream: {content_type!r}")
        pending = bytearray()

        def feed(data: bytes) -> None:
            pending.extend(data)
            text, used = _decode_prefix(bytes(pending))
            del pending[:used]
            parser.feed(text)

        chunked = "chunked" in response_headers.get("Transfer-Encoding", "").lower()
        try:
            while len(parser.events) < count:
                if chunked:
                    size_line = await stream.read_until(b"\r\n", max_bytes=1024)
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return  # the server ended the stream
                    feed((await stream.read_bytes(size + 2))[:-2])
                else:
                    feed(await stream.read_bytes(65536, partial=True))
        except StreamClosedError:
            return  # the server closed the connection

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(
            f"read_sse: {len(parser.events)} of {count} events from {url} within {timeout} s"
        ) from None
    finally:
        for stream in holder:
            stream.close()
        tcp.close()
    return parser.events[:count]


def _decode_prefix(data: bytes) -> tuple[str, int]:
    """Decode the longest prefix of *data* that does not end inside a UTF-8 sequence."""
    end = len(data)
    # A UTF-8 sequence is at most 4 bytes: look back at most 3 for its lead byte.
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte < 0x80:
            break  # ASCII: everything up to here is complete
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                end -= back
            break
    return data[:end].decode("utf-8", "replace"), end
