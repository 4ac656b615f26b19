"""JSON encoding with orjson when installed, the standard library otherwise.

Both paths accept and produce the same JSON *values* (RFC 8259): compact
separators, UTF-8 text (no ``\\uXXXX`` escaping of non-ASCII), integers of
any size. ``NaN`` and ``Infinity`` are not JSON (§6): :func:`loads` refuses
them and :func:`dumps` writes them as ``null``. ``</`` is not escaped
(responses are ``application/json``, not HTML).
"""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

_orjson: ModuleType | None
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

HAVE_ORJSON = _orjson is not None

# orjson decodes integers outside [-2**63, 2**64) as floats, silently losing
# digits; such integers have 19 digits or more. Inputs with a run of digits
# that long (rare: big integers, long decimals) go to the standard library.
# The run is found by mapping digits to "0" and the rest to " ", then one
# substring search: a tenth of orjson's own time (a regex took longer than
# orjson itself).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def _stdlib_dumps(obj: Any) -> bytes:
    try:
        try:
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            # NaN or Infinity: written as null, like orjson (and JavaScript's
            # JSON.stringify); only this rare case pays for a copy.
            text = json.dumps(
                _non_finite_to_none(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
    except RecursionError:
        raise ValueError("value is circular or nested too deeply to encode as JSON") from None
    return text.encode("utf-8")


def _non_finite_to_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _non_finite_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_non_finite_to_none(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Encode *obj* as compact UTF-8 JSON bytes.

    NaN and infinities, which JSON cannot represent, are written as ``null``
    by either backend (as orjson and JavaScript's ``JSON.stringify`` do).
    Raises ``TypeError`` for values JSON cannot represent and ``ValueError``
    for circular or too deeply nested values.
    """
    if _orjson is not None:
        try:
            result: bytes = _orjson.dumps(obj)
            return result
        except _orjson.JSONEncodeError:
            # orjson is stricter than json (e.g. integers above 64 bits, depth
            # beyond 254); fall back so that the value encodes the same either way.
            return _stdlib_dumps(obj)
    return _stdlib_dumps(obj)


def dumps_str(obj: Any) -> str:
    """Like :func:`dumps` but returns ``str``."""
    return dumps(obj).decode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400: it could never be encoded back
        raise ValueError(f"number {text[:20]} is out of the range of a float")
    return value


def loads(data: bytes | str) -> Any:
    """Decode JSON text or UTF-8 bytes.

    Integers of any size decode exactly. Raises ``ValueError`` when the input
    is malformed, contains ``NaN``, ``Infinity`` or a number beyond the range
    of a float, or is nested too deeply; never ``RecursionError``.
    """
    if _orjson is not None:
        # (a lone surrogate passes encoding here, then orjson refuses it)
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_TO_ZERO):
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                # orjson rejects some inputs the stdlib accepts (e.g. lone
                # surrogate escapes): the standard library has the last word.
                pass
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON document is nested too deeply") from None
