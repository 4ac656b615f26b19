"""RFC 9457 problem details for every error response (private; exported by ``tornado_kit``).

:class:`JSONErrorMixin` renders every error of a handler as an
``application/problem+json`` document (:func:`build_problem` makes its
members, :func:`write_problem` writes it and never raises), and
:class:`NotFoundHandler` answers requests no route matches. The exception
and its headers are in ``_apierror``; ``APIError`` and
``APIErrorHeadersMixin`` are importable from here too. ``JSONBodyMixin`` is
in ``_body``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from http.client import responses
from typing import Any

from tornado.web import HTTPError, RequestHandler

from tornado_kit import _json
from tornado_kit._access import AccessHooks, add_access_field
from tornado_kit._apierror import APIError, APIErrorHeadersMixin, reason_phrase
from tornado_kit._compat.handler import (
    discard_pending_body,
    finished,
    headers_written,
    http_error_message,
    is_unimplemented,
    log_request,
    mark_finished,
    reason,
    response_headers,
)

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "APIError",
    "APIErrorHeadersMixin",
    "JSONErrorMixin",
    "NotFoundHandler",
    "build_problem",
    "write_problem",
]

_log = logging.getLogger("tornado_kit.errors")

#: RFC 9457 §3: the media type of a problem details document.
PROBLEM_CONTENT_TYPE = "application/problem+json"
_INTERNAL_DETAIL = "internal server error"


def _fallback_body(status_code: int) -> bytes:
    """A problem document built only from the status code (nothing can fail)."""
    title = reason_phrase(status_code)
    return b'{"type":"about:blank","title":"%s","status":%d}' % (title.encode(), status_code)


def _title(handler: RequestHandler, status_code: int) -> str:
    """The reason phrase ``set_status`` chose, in its RFC 9110 spelling when it is the default."""
    chosen = reason(handler)
    if not chosen or chosen == responses.get(status_code):
        return reason_phrase(status_code)
    return chosen


def _no_body(status_code: int) -> bool:
    """1xx, 204 and 304 responses have no content (RFC 9110 §6.4.1)."""
    return status_code in (204, 304) or 100 <= status_code < 200


def _allowed_methods(handler: RequestHandler) -> str:
    """The ``Allow`` value for a 405: methods the handler class implements."""
    cls = type(handler)
    return ", ".join(
        method for method in cls.SUPPORTED_METHODS if not is_unimplemented(cls, method)
    )


def write_problem(
    handler: RequestHandler,
    status_code: int,
    exc_info: Any,
    build: Callable[[int, Any], dict[str, Any]],
) -> None:
    """Write *handler*'s error response as a problem document and finish; never raises.

    *build* makes the members (:func:`build_problem`, or a handler's
    ``build_problem`` override). When it or the encoding fails, the error is
    logged and a minimal document built from the status code is sent.
    """
    try:
        if _no_body(status_code):
            handler.finish()
            return
        body = _json.dumps(build(status_code, exc_info))
    except Exception:
        _log.error(
            "could not render the problem document for %d %s",
            status_code,
            handler.request.path,
            exc_info=True,
        )
        write_fallback(handler, status_code)
        return
    handler.set_header("Content-Type", PROBLEM_CONTENT_TYPE)
    try:
        handler.finish(body)
    except Exception:  # e.g. the connection failed while writing
        _log.error("could not send the problem document", exc_info=True)


def build_problem(
    handler: RequestHandler, status_code: int, exc_info: Any = None
) -> dict[str, Any]:
    """The RFC 9457 members for an error response of *handler* (see :class:`JSONErrorMixin`).

    Also sets ``Allow`` on a 405. An :class:`APIError`'s headers are
    :class:`APIErrorHeadersMixin`'s to set (every tornado-kit handler that
    renders problems derives from it), never here.
    """
    exception = exc_info[1] if exc_info else None
    problem: dict[str, Any]
    if isinstance(exception, APIError):
        # Its headers were set by APIErrorHeadersMixin (a base of every
        # tornado-kit handler that renders problems) right after send_error()'s clear().
        problem = exception.problem(handler.request.path)
    else:
        problem = {
            "type": "about:blank",
            "title": _title(handler, status_code),
            "status": status_code,
            "instance": handler.request.path,
        }
        serve_traceback = bool(handler.settings.get("serve_traceback"))
        if isinstance(exception, HTTPError):
            # log_message is server-side only unless serve_traceback is on.
            if serve_traceback and exception.log_message:
                problem["detail"] = http_error_message(exception)
            elif status_code == 500:
                problem["detail"] = _INTERNAL_DETAIL
        elif status_code == 500:
            problem["detail"] = _INTERNAL_DETAIL
        if serve_traceback and exc_info and exception is not None:
            problem["traceback"] = "".join(traceback.format_exception(*exc_info))
    if status_code == 405 and "Allow" not in response_headers(handler):
        handler.set_header("Allow", _allowed_methods(handler))
    request_id = handler._tk_request_id_if_any() if isinstance(handler, AccessHooks) else None
    if request_id:
        problem["request_id"] = request_id
    return problem


def write_fallback(handler: RequestHandler, status_code: int) -> None:
    """Finish *handler* with the minimal problem document of *status_code*; never raises."""
    if finished(handler):
        return
    try:
        discard_pending_body(handler)
        handler.set_header("Content-Type", PROBLEM_CONTENT_TYPE)
        handler.finish(_fallback_body(status_code))
    except Exception:
        _log.error("could not send the fallback problem document", exc_info=True)


class JSONErrorMixin(APIErrorHeadersMixin, AccessHooks):
    """Render every error response as RFC 9457 ``application/problem+json``.

    Mix it in to the left of ``RequestHandler`` (any order with the other
    tornado-kit mixins works)::

        class UserHandler(JSONErrorMixin, RequestHandler):
            async def get(self, user_id: str) -> None:
                if user_id != "alice":
                    raise APIError(404, "no such user", user_id=user_id)
                self.write({"id": user_id})

    The body has ``type`` (``"about:blank"`` unless the :class:`APIError` says
    otherwise), ``title`` (the reason phrase), ``status``, ``detail`` when
    there is one, ``instance`` (the request path), ``request_id`` when the
    class has :class:`~tornado_kit.TimingMixin`, and the extension
    members of an :class:`APIError`. A ``405`` also gets the ``Allow`` header
    (RFC 9110 §15.5.6).

    What reaches the client:

    * :class:`APIError`: its ``detail``, ``title``, ``type``, extension
      members and ``headers`` (set by :class:`APIErrorHeadersMixin`, a base
      of this mixin).
    * a plain :class:`~tornado.web.HTTPError`: status and reason only; its
      ``log_message`` goes to the log, and to the client only as ``detail``
      when the ``serve_traceback`` setting is on.
    * any other exception: ``500`` with ``detail`` ``"internal server
      error"``; with ``serve_traceback`` on, a ``traceback`` member too.

    ``write_error`` never raises: if building the body fails (an extension
    member JSON cannot encode, say) the error is logged on the
    ``tornado_kit.errors`` logger and a minimal body built from the status
    code alone is sent. The same happens when an override of ``write_error``
    in a subclass raises. An error raised after the response headers were
    flushed cannot be reported to the client (the status line is gone): the
    error is logged and the connection is closed, so that the client sees a
    truncated response instead of a complete-looking one.

    ``write_error`` is the terminal renderer: it does not call
    ``super().write_error()`` (which would append Tornado's HTML page).
    Mixins that need to act on the error path override ``write_error``, do
    their work and call ``super()``; they must sit to the left of this mixin
    for that, or set headers in ``clear()`` instead.

    .. versionadded:: 0.1
    """

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Send the error response for *status_code* (see :meth:`write_error`).

        Tornado's :meth:`~tornado.web.RequestHandler.send_error` does the
        work (``clear()``, the status and reason, ``write_error()``,
        ``finish()``); this adds two things around it. An error after the
        headers were flushed closes the connection, where Tornado would
        finish the truncated body as if it were whole. And an exception from
        ``write_error`` (an override in a subclass) produces the minimal
        problem document, where Tornado would log it and finish with an
        empty ``text/html`` body: the override sits before this mixin in the
        MRO, so for the time of Tornado's call the instance gets its own
        ``write_error`` attribute (Python finds an instance attribute before
        any method of the class), which runs the class's ``write_error`` and
        catches what it raises. No part of Tornado's method is copied.
        """
        if headers_written(self):
            self._tk_abort_partial_response(status_code, kwargs)
            return
        self.__dict__["write_error"] = self._tk_write_error_or_fallback
        try:
            super().send_error(status_code, **kwargs)
        finally:
            self.__dict__.pop("write_error", None)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the RFC 9457 problem document for this error and finish.

        Runs from ``send_error()``, after ``clear()`` reset the headers, for
        exceptions (``kwargs["exc_info"]``) and for direct ``send_error()``
        calls. It never raises.
        """
        write_problem(self, status_code, kwargs.get("exc_info"), self.build_problem)

    def build_problem(self, status_code: int, exc_info: Any = None) -> dict[str, Any]:
        """Return the problem members for this error (override to add members).

        Also sets ``Allow`` on a 405. Called by :meth:`write_error`; an
        exception here is caught there.
        """
        return build_problem(self, status_code, exc_info)

    def _tk_write_error_or_fallback(self, status_code: int, **kwargs: Any) -> None:
        # What send_error() calls instead of write_error() (see there).
        try:
            type(self).write_error(self, status_code, **kwargs)
        except Exception:
            _log.error(
                "write_error raised for %d %s; sent a minimal problem document",
                status_code,
                self.request.path,
                exc_info=True,
            )
            write_fallback(self, status_code)

    def _tk_abort_partial_response(self, status_code: int, kwargs: dict[str, Any]) -> None:
        # The status line and headers are on the wire: we cannot report the
        # error. Closing the connection (instead of finishing a chunked body)
        # tells the client the response is truncated (RFC 9112 §8).
        exc_info = kwargs.get("exc_info")
        _log.error(
            "error %d after the response headers of %s %s were sent (%s); closing the connection",
            status_code,
            self.request.method,
            self.request.path,
            type(exc_info[1]).__name__ if exc_info else "send_error",
        )
        if finished(self):
            return
        add_access_field(self, "aborted", True)
        connection = self.request.connection
        try:
            connection.set_close_callback(None)  # type: ignore[union-attr]
            connection.close()  # type: ignore[union-attr]
        except Exception:  # pragma: no cover - defensive
            _log.debug("closing the connection failed", exc_info=True)
        # The tail of finish(): access record, on_finish, without writing.
        mark_finished(self)
        try:
            log_request(self)
            self.on_finish()
        except Exception:
            _log.error("on_finish raised after an aborted response", exc_info=True)


class _AnyMethod(tuple[str, ...]):
    """A ``SUPPORTED_METHODS`` that contains every method (404 beats 405)."""

    def __contains__(self, item: object) -> bool:
        return True


class NotFoundHandler(JSONErrorMixin, RequestHandler):
    """404 ``application/problem+json`` for requests no route matches.

    Use it as the application's ``default_handler_class``; every method,
    even one Tornado does not know, gets the 404::

        app = Application(routes, default_handler_class=NotFoundHandler)

    To give unmatched requests a request id and an access record too,
    combine it with the timing mixin::

        class NotFound(TimingMixin, NotFoundHandler):
            pass

    .. versionadded:: 0.1
    """

    SUPPORTED_METHODS = _AnyMethod(RequestHandler.SUPPORTED_METHODS)

    def prepare(self) -> Awaitable[None] | None:
        """Raise the 404 before any verb method runs."""
        raise APIError(404)
