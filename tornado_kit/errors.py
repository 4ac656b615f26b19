"""RFC 9457 problem details for every error response.

Exception tree::

    tornado.web.HTTPError
     └── APIError   detail, extension members and headers reach the client

``JSONErrorMixin``, ``JSONBodyMixin`` and ``NotFoundHandler`` live here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.client import responses
from typing import Any

from tornado.web import HTTPError, RequestHandler

__all__ = ["APIError"]


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


def _is_header_safe(text: str) -> bool:
    return text.isprintable() and text.isascii()
