"""The error that reaches the client, and its headers (private; exported by ``tornado_kit``).

Exception tree::

    tornado.web.HTTPError
     └── APIError   detail, extension members and headers reach the client

An ``APIError``'s ``headers`` are applied in one place,
:class:`APIErrorHeadersMixin`, a base of ``JSONErrorMixin`` and of every
tornado-kit mixin that raises one: at the ``clear()`` that ``send_error()``
starts with, once, whatever the order of the mixins. Rendering the error
(RFC 9457 problem documents) is ``_errors``'s part.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.client import responses
from typing import Any

from tornado.web import HTTPError, RequestHandler

from tornado_kit._access import AccessHooks

__all__ = ["APIError", "APIErrorHeadersMixin", "reason_phrase"]


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
            "title": self.title or reason_phrase(self.status_code),
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


#: RFC 9110 §15 reason phrases where Python before 3.13 still has RFC 7231's:
#: a problem's title is the same on every Python.
_RFC_9110_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def reason_phrase(status: int) -> str:
    """The RFC 9110 reason phrase of *status* (``"Unknown Error"`` for an unknown code)."""
    return _RFC_9110_PHRASES.get(status) or responses.get(status, "Unknown Error")


class APIErrorHeadersMixin(AccessHooks):
    """Put an :class:`APIError`'s ``headers`` on its error response, once.

    Tornado's ``send_error()`` starts with ``clear()``, so headers set before
    an error are gone. Every tornado-kit mixin that raises an ``APIError``
    with headers (``WWW-Authenticate``, ``Retry-After``) derives from this
    base, and so does ``JSONErrorMixin``: it appears once in any handler's
    MRO, however many such mixins it has, and sets the headers right after
    that ``clear()``, before ``write_error()`` renders the body (with
    ``JSONErrorMixin`` or Tornado's default page). So they reach the client
    in every order of the mixins, and a ``write_error`` override sees them.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       The headers are set in ``send_error()``'s ``clear()`` (0.1: in
       ``write_error()``, and again by ``JSONErrorMixin``).
    """

    _tk_error_with_headers: APIError | None = None

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Send the error response as the next class does, with the ``APIError``'s headers."""
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        self._tk_error_with_headers = error if isinstance(error, APIError) else None
        try:
            super().send_error(status_code, **kwargs)
        finally:
            self._tk_error_with_headers = None

    def clear(self) -> None:
        """Reset the response; in ``send_error()``, then set the ``APIError``'s headers."""
        super().clear()
        error = self._tk_error_with_headers
        if error is not None:
            self._tk_error_with_headers = None  # once, even if clear() runs again
            error.apply_headers(self)


def _is_header_safe(text: str) -> bool:
    return text.isprintable() and text.isascii()
