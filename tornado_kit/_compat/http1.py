"""HTTP/1 connection internals (``tornado.http1connection``), used by ``_draining`` (private).

Part of :mod:`tornado_kit._compat` (see its docstring for the rules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado.http1connection import HTTP1Connection

if TYPE_CHECKING:
    from tornado import httputil


def connection_max_body_size(conn: httputil.HTTPConnection) -> int | None:
    """The body size limit in force for the request on *conn*, or ``None`` if unknown.

    ``HTTP1Connection`` keeps it in ``_max_body_size``: the server's
    ``max_body_size`` (else its ``max_buffer_size``), or what a handler set
    for this request with ``request.connection.set_max_body_size()``.
    Checked against Tornado 6.2, 6.4 and 6.6. ``None`` for any other
    connection class or when the attribute is missing: the caller then leaves
    the limit to Tornado (a bare 400).
    """
    if not isinstance(conn, HTTP1Connection):
        return None
    value = getattr(conn, "_max_body_size", None)
    return value if isinstance(value, int) else None


def response_started(conn: httputil.HTTPConnection) -> bool | None:
    """Whether a response's headers were already written on *conn* (``None``: unknown).

    ``HTTP1Connection.write_headers`` stores the status line in
    ``_response_start_line`` (``None`` until then). Checked against Tornado
    6.2, 6.4 and 6.6. ``None`` when the attribute is missing.
    """
    if not isinstance(conn, HTTP1Connection) or not hasattr(conn, "_response_start_line"):
        return None
    return conn._response_start_line is not None


def disconnect_after_response(conn: httputil.HTTPConnection) -> None:
    """Make *conn* answer ``Connection: close`` and close once its response is written.

    ``HTTP1Connection`` decides this when it reads the request headers and
    keeps the decision in ``_disconnect_on_finish``. Checked against Tornado
    6.2, 6.4 and 6.6. When the attribute is missing, nothing is changed (a
    draining server still closes the connection when its next request would
    start).
    """
    if isinstance(conn, HTTP1Connection) and hasattr(conn, "_disconnect_on_finish"):
        conn._disconnect_on_finish = True
