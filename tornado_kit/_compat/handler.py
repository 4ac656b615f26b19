"""``RequestHandler`` and ``HTTPError`` internals, used by the mixins (private).

Part of :mod:`tornado_kit._compat` (see its docstring for the rules). Tornado
keeps a handler's response state in private attributes (``_finished``,
``_status_code``, ``_headers``, ``_write_buffer``, ``_transforms``...) and
offers public accessors for only some of it. Each function here is the one
place tornado-kit reads or changes one of them. Every attribute used here
exists with the same meaning in Tornado 6.2, 6.4, 6.5 and 6.6 (read in
their ``tornado/web.py``), except where a docstring says otherwise;
``tests/test_compat_handler.py`` pins each function, fallbacks included.
"""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPHeaders
from tornado.web import HTTPError, OutputTransform, RequestHandler


def finished(handler: RequestHandler) -> bool:
    """Whether ``finish()`` has run (or the response was abandoned): ``_finished``.

    Tornado sets it in ``finish()`` and checks it before every write. No
    public accessor exists. Fallback: ``False``.
    """
    return bool(getattr(handler, "_finished", False))


def mark_finished(handler: RequestHandler) -> None:
    """Record that the response is over without writing anything (an aborted response).

    Tornado's ``finish()`` sets ``_finished``; a response whose connection
    was closed on purpose must look finished too, so that later writes are
    refused as Tornado refuses them.
    """
    handler._finished = True


def headers_written(handler: RequestHandler) -> bool:
    """Whether the status line and headers were flushed: ``_headers_written``.

    Fallback: ``False``.
    """
    return bool(getattr(handler, "_headers_written", False))


def status_code(handler: RequestHandler) -> int:
    """The response status, without a method call: ``_status_code``.

    ``get_status()`` returns the same value; this skips the call on paths
    that run for every request. Fallback: ``get_status()``.
    """
    value = getattr(handler, "_status_code", None)
    return value if isinstance(value, int) else handler.get_status()


def reason(handler: RequestHandler) -> str:
    """The reason phrase ``set_status`` chose: ``_reason``. Fallback: ``""``."""
    value = getattr(handler, "_reason", "")
    return value if isinstance(value, str) else ""


def response_headers(handler: RequestHandler) -> HTTPHeaders:
    """The live response header table: ``_headers``.

    ``set_header`` validates its value on every call; tornado-kit writes a
    few headers it built itself (a validated request id, ``Server-Timing``
    from token characters and numbers) straight into this table, and reads
    it to see whether a header is set (there is no public ``has_header``).
    No fallback: every response has the table from ``clear()`` on.
    """
    headers: HTTPHeaders = handler._headers
    return headers


def pending_body(handler: RequestHandler) -> list[bytes]:
    """The body chunks written since the last flush: ``_write_buffer`` (a list of bytes).

    Fallback: an empty list (nothing known to be pending).
    """
    chunks: list[bytes] = getattr(handler, "_write_buffer", [])
    return chunks


def discard_pending_body(handler: RequestHandler) -> None:
    """Drop what was written but not flushed (a failed error page starts again).

    Tornado's own ``clear()`` and ``finish()`` (on a 304) do the same.
    """
    handler._write_buffer = []


def remove_transforms(handler: RequestHandler, kind: type[OutputTransform]) -> None:
    """Remove the output transforms of class *kind* (e.g. gzip) from this response.

    Tornado builds ``_transforms`` when the request starts and applies them at
    the first flush; there is no public way to switch compression off for one
    response (an event stream must not be buffered in a compressor).
    """
    transforms = getattr(handler, "_transforms", None)
    if transforms is not None:
        handler._transforms = [t for t in transforms if not isinstance(t, kind)]


def log_request(handler: RequestHandler) -> None:
    """Run the handler's access-log hook: ``_log()`` (what ``finish()`` calls).

    Fallback when a Tornado release drops ``_log``:
    ``Application.log_request(handler)``, what ``_log`` does.
    """
    hook = getattr(handler, "_log", None)
    if hook is None:
        handler.application.log_request(handler)
    else:
        hook()


class AccessLogHook(RequestHandler):
    """A base whose ``_tk_log_request()`` replaces Tornado's per-request log line.

    Tornado's ``finish()`` calls ``self._log()`` once the response was
    handed to the connection and before ``on_finish()`` (6.2 to 6.6); the
    default logs through ``Application.log_request``. A subclass overrides
    :meth:`_tk_log_request` to log something else there instead. Fallback:
    a release that no longer calls ``_log()`` never calls the hook, and
    Tornado's own line comes back; ``TimingMixin`` then emits its record
    from ``on_finish``.
    """

    def _log(self) -> None:
        self._tk_log_request()

    def _tk_log_request(self) -> None:
        """Log the finished request (default: Tornado's ``Application.log_request``)."""
        super()._log()


def user_if_resolved(handler: RequestHandler) -> Any:
    """``current_user`` if it was already resolved or set, else ``None``, never resolving it.

    The ``current_user`` property calls ``get_current_user()`` on first use,
    which may do I/O or raise; the access record must not. Tornado keeps the
    value in the instance attribute ``_current_user`` once known (the
    property's setter and getter, 6.2 to 6.6). Fallback: ``None``.
    """
    return handler.__dict__.get("_current_user")


def is_unimplemented(handler_class: type[RequestHandler], method: str) -> bool:
    """Whether *handler_class* leaves the verb *method* to Tornado's 405 default.

    Tornado's verbs default to ``RequestHandler._unimplemented_method``.
    Fallback: a verb is implemented when the class defines it.
    """
    default = getattr(RequestHandler, "_unimplemented_method", None)
    implementation = getattr(handler_class, method.lower(), None)
    if default is None:
        return implementation is None
    return implementation is None or implementation is default


def close_called(handler: RequestHandler) -> bool:
    """Whether a WebSocket handler's ``on_close`` already ran: ``_on_close_called``.

    Fallback: ``False``.
    """
    return bool(getattr(handler, "_on_close_called", False))


def http_error_message(error: HTTPError) -> str | None:
    """The formatted ``log_message`` of *error* (``log_message % args``), or ``None``.

    ``HTTPError.get_message()`` exists from Tornado 6.5. Before that (6.2 to
    6.4) ``log_message`` is stored with ``%`` doubled when there are no
    ``args``, and ``str(error)`` formats it with ``log_message % args``:
    the fallback does the same, which gives what 6.5's ``get_message()``
    gives.
    """
    get_message = getattr(error, "get_message", None)
    if get_message is not None:
        message: str | None = get_message()
        return message
    stored: str | None = error.log_message
    return None if stored is None else stored % error.args
