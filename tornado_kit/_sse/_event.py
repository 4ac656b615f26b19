"""One server-sent event and the WHATWG field rules (private).

The wire format is the WHATWG HTML Living Standard, section 9.2 "Server-sent
events" (https://html.spec.whatwg.org/multipage/server-sent-events.html).
An event is a block of ``field: value`` lines ended by a blank line.

Example::

    event = ServerSentEvent("hello\\nworld", event="greeting", id="7")
    event.encode()
    # b'id: 7\\nevent: greeting\\ndata: hello\\ndata: world\\n\\n'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ServerSentEvent"]

# WHATWG 9.2.5: "Lines must be separated by either a U+000D CARRIAGE RETURN
# U+000A LINE FEED (CRLF) character pair, a single U+000A LINE FEED (LF)
# character, or a single U+000D CARRIAGE RETURN (CR) character." Nothing else
# ends a line (unlike ``str.splitlines``, which also splits on U+2028 etc.).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_field(name: str, value: str | None, *, nul: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"SSE {name} must be str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {name} must not contain CR or LF: {value!r}")
    # WHATWG 9.2.6: an id field whose value contains U+0000 NULL is ignored by
    # the client, so the server refuses to send one.
    if nul and "\0" in value:
        raise ValueError(f"SSE {name} must not contain NUL: {value!r}")


def _check_retry(retry: int | None) -> None:
    if retry is None:
        return
    # bool is an int subclass but "retry: True" is not what anyone means.
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise ValueError(f"SSE retry must be a non-negative integer, not {retry!r}")
    if retry < 0:
        raise ValueError(f"SSE retry must be a non-negative integer, not {retry!r}")


@dataclass(frozen=True)
class ServerSentEvent:
    """One server-sent event.

    ``data`` is the text of the event (it may contain line breaks: CR, LF and
    CRLF each start a new ``data:`` line). ``event`` is the event type
    (``None``: the client's default ``"message"``), ``id`` the id the client
    remembers and sends back as ``Last-Event-ID`` when it reconnects, and
    ``retry`` the reconnection delay in milliseconds.

    Construction validates the fields and raises :class:`ValueError` for CR or
    LF in ``event`` or ``id``, NUL in ``id``, or a ``retry`` that is not a
    non-negative integer (:class:`TypeError` for non-``str`` text fields).

    Example::

        ServerSentEvent("tick", event="clock", id="41", retry=5000).encode()
        # b'id: 41\\nevent: clock\\nretry: 5000\\ndata: tick\\n\\n'

    .. versionadded:: 0.1
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError(f"SSE data must be str, not {type(self.data).__name__}")
        _check_field("event", self.event)
        _check_field("id", self.id, nul=True)
        _check_retry(self.retry)

    def encode(self) -> bytes:
        """Return the event in the WHATWG wire format, UTF-8 encoded, blank line included.

        Every field is written as ``name: value`` (one space after the colon,
        which the client strips, so values that start with a space survive).
        Raises :class:`UnicodeEncodeError` (a :class:`ValueError`) when a
        field holds a lone surrogate, which UTF-8 cannot carry.
        """
        parts: list[str] = []
        if self.id is not None:
            parts.append(f"id: {self.id}\n" if self.id else "id\n")
        if self.event is not None:
            parts.append(f"event: {self.event}\n")
        if self.retry is not None:
            parts.append(f"retry: {self.retry}\n")
        for line in _LINE_BREAK.split(self.data):
            parts.append(f"data: {line}\n" if line else "data\n")
        parts.append("\n")
        return "".join(parts).encode("utf-8")
