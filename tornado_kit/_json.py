"""JSON encoding with orjson when installed, the standard library otherwise.

Both paths produce the same JSON *value*: compact separators, UTF-8 text
(no ``\\uXXXX`` escaping of non-ASCII), and ``</`` escaped as ``<\\/`` by
neither (responses are ``application/json``, not HTML).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

_orjson: ModuleType | None
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

HAVE_ORJSON = _orjson is not None


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def dumps(obj: Any) -> bytes:
    """Encode *obj* as compact UTF-8 JSON bytes.

    Raises ``TypeError`` for values JSON cannot represent (with either
    backend) and ``ValueError`` for NaN or infinity with the standard library.
    """
    if _orjson is not None:
        try:
            result: bytes = _orjson.dumps(obj)
            return result
        except _orjson.JSONEncodeError:
            # orjson is stricter than json (e.g. integers above 64 bits, non-str
            # keys); fall back so that the value encodes the same either way.
            return _stdlib_dumps(obj)
    return _stdlib_dumps(obj)


def dumps_str(obj: Any) -> str:
    """Like :func:`dumps` but returns ``str``."""
    return dumps(obj).decode("utf-8")


def loads(data: bytes | str) -> Any:
    """Decode JSON text or UTF-8 bytes.

    Raises ``ValueError`` (``json.JSONDecodeError`` or a subclass) when the
    input is malformed or nested too deeply; never ``RecursionError``.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            # orjson rejects some inputs the stdlib accepts (e.g. integers
            # beyond 64 bits); keep both paths agreeing on what is valid.
            pass
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON document is nested too deeply") from None
