"""The WebSocket opening handshake rules, checked before Tornado's (private).

Tornado's ``WebSocketHandler.get`` refuses a bad handshake with a plain-text
``finish()`` (or, for an unsupported version, an empty 426), bypassing
``write_error``. The tornado-kit mixins check the same conditions first, in
Tornado's order, and raise an :class:`~tornado_kit.APIError` instead, so that
every refusal is an RFC 9457 problem document. What reaches Tornado's own
checks then always passes them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from tornado.web import RequestHandler

from tornado_kit._compat.stream import cross_origin_refusal
from tornado_kit._errors import APIError

#: RFC 6455 §4.1: the only version of the protocol this server speaks.
WEBSOCKET_VERSION = "13"
CROSS_ORIGIN_DETAIL = "cross-origin WebSocket not allowed"
MALFORMED_ORIGIN_DETAIL = "malformed Origin header"


def handshake_refusal(
    handler: RequestHandler, origin_refusal: Callable[[], APIError | None]
) -> APIError | None:
    """The error that refuses *handler*'s handshake request, or ``None`` to accept it.

    RFC 6455 §4.2.1 and Tornado's order: ``Upgrade: websocket`` (400),
    ``Connection`` containing ``upgrade`` (400), the origin
    (*origin_refusal*, 403), ``Sec-WebSocket-Version: 13`` (426 with
    ``Sec-WebSocket-Version: 13``, §4.4), then ``Host`` and a
    ``Sec-WebSocket-Key`` that is the base64 encoding of 16 bytes (400).
    """
    headers = handler.request.headers
    if headers.get("Upgrade", "").lower() != "websocket":
        return APIError(400, 'a WebSocket handshake needs the header "Upgrade: websocket"')
    tokens = (token.strip().lower() for token in headers.get("Connection", "").split(","))
    if "upgrade" not in tokens:
        return APIError(
            400, 'the "Connection" header of a WebSocket handshake must include "Upgrade"'
        )
    refusal = origin_refusal()
    if refusal is not None:
        return refusal
    if headers.get("Sec-WebSocket-Version") != WEBSOCKET_VERSION:
        # RFC 6455 §4.4: say which version the server speaks.
        return APIError(
            426,
            "this server speaks WebSocket version 13 only",
            headers={"Sec-WebSocket-Version": WEBSOCKET_VERSION},
        )
    if not headers.get("Host"):
        return APIError(400, 'a WebSocket handshake needs a "Host" header')
    if not _is_nonce(headers.get("Sec-WebSocket-Key", "")):
        return APIError(
            400, '"Sec-WebSocket-Key" must be the base64 encoding of 16 bytes (RFC 6455 §4.1)'
        )
    return None


def tornado_origin_refusal(
    handler: RequestHandler, check: Callable[[str], bool]
) -> APIError | None:
    """Tornado's cross-origin rule for this handshake, as a 403 error or ``None``."""
    try:
        refused = cross_origin_refusal(handler, check)
    except ValueError:  # an Origin that urlsplit cannot parse (e.g. "https://[::1")
        return APIError(403, MALFORMED_ORIGIN_DETAIL)
    return None if refused is None else APIError(403, CROSS_ORIGIN_DETAIL)


def _is_nonce(key: str) -> bool:
    """RFC 6455 §4.2.1 item 5: base64 that decodes to exactly 16 bytes."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False
