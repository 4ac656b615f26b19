"""JSON request bodies and JSON responses (private; exported by ``tornado_kit``).

Bad bodies are refused with an :class:`~tornado_kit.APIError` (400, 413,
415), which ``JSONErrorMixin`` renders as a problem document.
"""

from __future__ import annotations

from typing import Any

from tornado.web import RequestHandler

from tornado_kit import _json
from tornado_kit._apierror import APIError
from tornado_kit._settings import resolve

__all__ = ["JSONBodyMixin"]

_UNSET: Any = object()
_JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_DEFAULT_MAX_BODY = 1024 * 1024


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
