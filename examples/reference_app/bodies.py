"""Request bodies with a limit per route, refused before they are read.

Tornado reads a whole request body into memory before a handler runs, up to
the server's ``max_body_size`` (100 MB unless told otherwise), and refuses a
larger one with a bare ``400`` before any handler code can answer. The
reference app therefore serves with ``max_body_size`` set to its JSON limit
(:func:`~examples.reference_app.app.server_options`) and streams every body
through :class:`BoundedBodyMixin`, which sees the headers first:

* a declared ``Content-Length`` over the route's limit is a 413 problem
  document before one byte of the body is read;
* the limit of this one request is set on its connection
  (``HTTP1Connection.set_max_body_size``), so a route that takes more than
  the server-wide limit (the image upload) can, and Tornado still cuts off
  a chunked body (no ``Content-Length``) the moment it passes the route's
  limit: the connection is closed after a bare 400, nothing is buffered
  beyond the limit.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable

from tornado.http1connection import HTTP1Connection
from tornado.web import RequestHandler, stream_request_body

from tornado_kit import APIError

# RFC 9110 §8.6: Content-Length = 1*DIGIT (ASCII digits only; str.isdigit()
# also accepts "²", which int() then refuses).
_DIGITS = re.compile(r"[0-9]+")
# More significant digits than this is more than any limit (and int() of a
# 5,000-digit string raises ValueError: Python's integer string limit).
_MAX_DIGITS = 18


def declared_length(value: str | None) -> int | None:
    """The ``Content-Length`` header as a number; ``None`` when absent or malformed.

    A malformed one is left to Tornado, which refuses it with a 400 before
    reading a body. A length with more than 18 significant digits is
    returned as ``10**18``: above every limit, without converting the digits.
    """
    if value is None or not _DIGITS.fullmatch(value):
        return None
    digits = value.lstrip("0")
    return int(digits or "0") if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def body_too_large(limit: int) -> APIError:
    """The 413 problem for a body over *limit* bytes (``max_bytes`` as in ``JSONBodyMixin``)."""
    return APIError(413, f"the request body exceeds {limit} bytes", max_bytes=limit)


@stream_request_body
class BoundedBodyMixin(RequestHandler):
    """Stream the request body into memory, at most ``settings[body_limit_setting]`` bytes.

    ``prepare()`` sets the request's limit on its connection and refuses a
    declared ``Content-Length`` over it (413); :meth:`request_body` returns
    the body once it is complete. Put it left of ``RequestHandler`` in the
    bases of every route that reads a body.
    """

    #: The application setting that holds this route's body limit in bytes.
    body_limit_setting = "max_json_bytes"

    _chunks: list[bytes] | None = None
    _received = 0

    @property
    def body_limit(self) -> int:
        """This route's limit, in bytes."""
        limit: int = self.settings[self.body_limit_setting]
        return limit

    def prepare(self) -> Awaitable[None] | None:
        """Set this request's limit and refuse an oversized ``Content-Length`` (413)."""
        limit = self.body_limit
        declared = declared_length(self.request.headers.get("Content-Length"))
        refused = declared is not None and declared > limit
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            # When refused, the connection closes as soon as the 413 is written
            # (the app finished before the body was read); allowing the declared
            # length meanwhile keeps Tornado from also reporting the body as a
            # "Malformed HTTP message" and writing a stray 400 after the 413.
            connection.set_max_body_size(declared if refused and declared else limit)
        if refused:
            raise body_too_large(limit)
        self._chunks = []
        return super().prepare()

    def data_received(self, chunk: bytes) -> None:
        """Keep *chunk*; past the limit (which Tornado enforces too) count bytes, store none."""
        if self._chunks is None:
            return
        self._received += len(chunk)
        if self._received <= self.body_limit:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()

    def request_body(self) -> bytes:
        """The complete body (``b""`` for none); 413 if it grew past the limit."""
        if self._received > self.body_limit:
            raise body_too_large(self.body_limit)
        body = b"".join(self._chunks or ())
        self._chunks = [body]
        return body

    def discard_body(self) -> None:
        """Drop the stored body (once it has been handed on)."""
        self._chunks = []
