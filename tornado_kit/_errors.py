"""RFC 9457 problem details for every error response.

Exception tree::

    tornado.web.HTTPError
     └── APIError   detail, extension members and headers reach the client

``JSONErrorMixin``, ``JSONBodyMixin`` and ``NotFoundHandler`` live here too.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from http.client import responses
from typing import Any

from tornado.web import HTTPError, RequestHandler

from tornado_kit import _json
from tornado_kit._access import add_access_field
from tornado_kit._settings import resolve

__all__ = ["APIError", "JSONBodyMixin", "JSONErrorMixin", "NotFoundHandler"]

_UNSET: Any = object()


class APIError(HTTPError):
    """An :class:`~tornado.web.HTTPError` whose details reach the client.

    ``detail``, ``title``, ``type`` and any extension members become members of
    the RFC 9457 ``application/problem+json`` body written by
    :class:`JSONErrorMixin`; ``headers`` are set on the error response (they
    survive the ``clear()`` that ``send_error()`` performs).

    Example::

        raise APIError(409, "user name taken", name="alice")
        raise APIError(429, "slow down", headers={"Retry-After": "30"})

    :param status: HTTP status code.
    :param detail: human-readable explanation for this occurrence (RFC 9457 §3.1.4).
    :param title: short summary; defaults to the status's reason phrase.
    :param type: URI identifying the problem type; defaults to ``"about:blank"``.
    :param headers: response headers to set on the error response.
    :param extensions: extra JSON members (RFC 9457 §3.2). They may not
        shadow the standard members.

    .. versionadded:: 0.1
    """

    #: Members an extension may not override (RFC 9457 §3.1).
    RESERVED = frozenset({"type", "title", "status", "detail", "instance"})

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        clash = self.RESERVED.intersection(extensions)
        if clash:
            raise TypeError(f"extension members may not be named {sorted(clash)}")
        reason = title if title is not None and _is_header_safe(title) else None
        # detail is for the client; log_message keeps it in the server log too.
        super().__init__(status, None if detail is None else "%s", detail, reason=reason)
        self.detail = detail
        self.title = title
        self.type = type
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions: dict[str, Any] = extensions

    def apply_headers(self, handler: RequestHandler) -> None:
        """Set this error's ``headers`` on *handler*'s (error) response."""
        for name, value in self.headers.items():
            handler.set_header(name, value)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """Return the RFC 9457 members this error contributes to the body."""
        body: dict[str, Any] = {
            "type": self.type or "about:blank",
            "title": self.title or responses.get(self.status_code, "Unknown Error"),
            "status": self.status_code,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        if instance is not None:
            body["instance"] = instance
        body.update(self.extensions)
        return body

    def __repr__(self) -> str:
        return f"APIError({self.status_code}, {self.detail!r})"


class APIErrorHeadersMixin(RequestHandler):
    """Put an :class:`APIError`'s ``headers`` back on its error response.

    Tornado's ``send_error()`` calls ``clear()`` before ``write_error()``, so
    headers set before an error are gone. Every tornado-kit mixin that raises
    an ``APIError`` with headers (``WWW-Authenticate``, ``Retry-After``)
    derives from this base, so that the headers reach the client whatever
    renders the body (``JSONErrorMixin`` or Tornado's default page). It
    appears once in any handler's MRO, however many such mixins it has.

    .. versionadded:: 0.1
    """

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Apply the headers of an ``APIError`` being rendered, then defer to ``super()``."""
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], APIError):
            exc_info[1].apply_headers(self)
        super().write_error(status_code, **kwargs)


def _is_header_safe(text: str) -> bool:
    return text.isprintable() and text.isascii()


# ---------------------------------------------------------------------------
# Rendering errors (RFC 9457)
# ---------------------------------------------------------------------------

_log = logging.getLogger("tornado_kit.errors")

#: RFC 9457 §3: the media type of a problem details document.
PROBLEM_CONTENT_TYPE = "application/problem+json"
_JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_INTERNAL_DETAIL = "internal server error"
_DEFAULT_MAX_BODY = 1024 * 1024


def _fallback_body(status_code: int) -> bytes:
    """A problem document built only from the status code (nothing can fail)."""
    title = responses.get(status_code, "Unknown Error")
    return b'{"type":"about:blank","title":"%s","status":%d}' % (title.encode(), status_code)


def _no_body(status_code: int) -> bool:
    """1xx, 204 and 304 responses have no content (RFC 9110 §6.4.1)."""
    return status_code in (204, 304) or 100 <= status_code < 200


def _allowed_methods(handler: RequestHandler) -> str:
    """The ``Allow`` value for a 405: methods the handler class implements."""
    cls = type(handler)
    unimplemented = RequestHandler._unimplemented_method
    return ", ".join(
        method
        for method in cls.SUPPORTED_METHODS
        if getattr(cls, method.lower(), unimplemented) is not unimplemented
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

    Also applies an :class:`APIError`'s headers and sets ``Allow`` on a 405.
    """
    exception = exc_info[1] if exc_info else None
    problem: dict[str, Any]
    if isinstance(exception, APIError):
        exception.apply_headers(handler)
        problem = exception.problem(handler.request.path)
    else:
        problem = {
            "type": "about:blank",
            "title": handler._reason,
            "status": status_code,
            "instance": handler.request.path,
        }
        serve_traceback = bool(handler.settings.get("serve_traceback"))
        if isinstance(exception, HTTPError):
            # log_message is server-side only unless serve_traceback is on.
            if serve_traceback and exception.log_message:
                problem["detail"] = exception.get_message()
            elif status_code == 500:
                problem["detail"] = _INTERNAL_DETAIL
        elif status_code == 500:
            problem["detail"] = _INTERNAL_DETAIL
        if serve_traceback and exc_info and exception is not None:
            problem["traceback"] = "".join(traceback.format_exception(*exc_info))
    if status_code == 405 and "Allow" not in handler._headers:
        handler.set_header("Allow", _allowed_methods(handler))
    request_id = getattr(handler, "request_id", None)
    if request_id:
        problem["request_id"] = request_id
    return problem


def write_fallback(handler: RequestHandler, status_code: int) -> None:
    """Finish *handler* with the minimal problem document of *status_code*; never raises."""
    if handler._finished:
        return
    try:
        handler._write_buffer = []
        handler.set_header("Content-Type", PROBLEM_CONTENT_TYPE)
        handler.finish(_fallback_body(status_code))
    except Exception:
        _log.error("could not send the fallback problem document", exc_info=True)


class JSONErrorMixin(RequestHandler):
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
    handler has one (:class:`~tornado_kit.TimingMixin`), and the extension
    members of an :class:`APIError`. A ``405`` also gets the ``Allow`` header
    (RFC 9110 §15.5.6).

    What reaches the client:

    * :class:`APIError`: its ``detail``, ``title``, ``type``, extension
      members and ``headers``.
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

        Same contract as :meth:`tornado.web.RequestHandler.send_error`, with
        two differences: an exception from ``write_error`` produces a minimal
        problem document instead of an empty ``text/html`` body, and an
        error after the headers were flushed closes the connection.
        """
        if self._headers_written:
            self._abort_partial_response(status_code, kwargs)
            return
        self.clear()
        reason = kwargs.get("reason")
        if "exc_info" in kwargs:
            exception = kwargs["exc_info"][1]
            if isinstance(exception, HTTPError) and exception.reason:
                reason = exception.reason
        self.set_status(status_code, reason=reason)
        if status_code != 304:
            try:
                self.write_error(status_code, **kwargs)
            except Exception:
                _log.error(
                    "write_error raised for %d %s; sent a minimal problem document",
                    status_code,
                    self.request.path,
                    exc_info=True,
                )
                exception = kwargs.get("exc_info", (None, None, None))[1]
                if isinstance(exception, APIError) and not self._finished:
                    # A challenge (WWW-Authenticate) must still reach the client.
                    with contextlib.suppress(Exception):
                        exception.apply_headers(self)
                write_fallback(self, status_code)
        if not self._finished:
            self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the RFC 9457 problem document for this error and finish.

        Runs from ``send_error()``, after ``clear()`` reset the headers, for
        exceptions (``kwargs["exc_info"]``) and for direct ``send_error()``
        calls. It never raises.
        """
        write_problem(self, status_code, kwargs.get("exc_info"), self.build_problem)

    def build_problem(self, status_code: int, exc_info: Any = None) -> dict[str, Any]:
        """Return the problem members for this error (override to add members).

        Also applies an :class:`APIError`'s headers and sets ``Allow`` on a
        405. Called by :meth:`write_error`; an exception here is caught there.
        """
        return build_problem(self, status_code, exc_info)

    def _abort_partial_response(self, status_code: int, kwargs: dict[str, Any]) -> None:
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
        if self._finished:
            return
        add_access_field(self, "aborted", True)
        connection = self.request.connection
        try:
            connection.set_close_callback(None)  # type: ignore[union-attr]
            connection.close()  # type: ignore[union-attr]
        except Exception:  # pragma: no cover - defensive
            _log.debug("closing the connection failed", exc_info=True)
        # The tail of finish(): access record, on_finish, without writing.
        self._finished = True
        try:
            self._log()
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


class JSONBodyMixin(RequestHandler):
    """Parse JSON request bodies and write JSON responses.

    ::

        class ItemsHandler(JSONBodyMixin, JSONErrorMixin, RequestHandler):
            def post(self) -> None:
                item = self.get_json_body()  # dict, or a 400/413/415 APIError
                self.write_json({"created": item["name"]}, status=201)

    ``json_body_max_bytes`` (class attribute or setting, default 1 MiB)
    bounds the body :meth:`get_json_body` accepts. Tornado has already
    buffered the body when a verb method runs (up to the server's
    ``max_body_size``), so set that lower too if large bodies should be
    refused before they are read.

    .. versionadded:: 0.1
    """

    #: Largest JSON body :meth:`get_json_body` accepts, in bytes (default 1 MiB).
    json_body_max_bytes: int | None = None

    _tk_json_body: Any = _UNSET

    def get_json_body(self, *, require_object: bool = True) -> Any:
        """Return the request body decoded as JSON.

        :raises APIError: 415 when a ``Content-Type`` other than
            ``application/json`` or ``application/*+json`` is given (a missing
            one is accepted); 413 when the ``Content-Length`` or the body
            exceeds ``json_body_max_bytes``; 400 when the body is not valid
            JSON (empty, invalid UTF-8, too deeply nested) or, with
            *require_object*, not a JSON object.

        The decoded value is cached, so a second call does not parse again.
        """
        value = self._tk_json_body
        if value is _UNSET:
            value = self._tk_json_body = self._decode_json_body()
        if require_object and not isinstance(value, dict):
            raise APIError(400, "the JSON body must be an object")
        return value

    def _decode_json_body(self) -> Any:
        request = self.request
        content_type = request.headers.get("Content-Type")
        if content_type is not None and not _is_json_media_type(content_type):
            raise APIError(415, "the request body must be application/json")
        limit = resolve(self, "json_body_max_bytes", _DEFAULT_MAX_BODY)
        declared = request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body exceeds {limit} bytes", max_bytes=limit)
        body = request.body
        if len(body) > limit:
            raise APIError(413, f"the request body exceeds {limit} bytes", max_bytes=limit)
        try:
            return _json.loads(body)
        except ValueError:
            raise APIError(400, "the request body is not valid JSON") from None

    def write_json(self, obj: Any, status: int | None = None) -> None:
        """Write *obj* as the JSON response body (orjson when installed).

        Sets ``Content-Type: application/json; charset=utf-8`` and, when
        given, the status. The encoded value is the same with orjson and
        with the standard library.

        :raises TypeError: for values JSON cannot represent.
        """
        data = _json.dumps(obj)
        if status is not None:
            self.set_status(status)
        self.set_header("Content-Type", _JSON_CONTENT_TYPE)
        self.write(data)


def _is_json_media_type(value: str) -> bool:
    """``application/json`` or ``application/<anything>+json`` (RFC 6839 §3.1)."""
    media_type = value.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return True
    return media_type.startswith("application/") and media_type.endswith("+json")
