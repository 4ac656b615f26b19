"""JSON encoding with orjson when installed, the standard library otherwise.

Both paths accept and produce the same JSON *values* (RFC 8259): compact
separators, UTF-8 text (no ``\\uXXXX`` escaping of non-ASCII), integers of
any size, and no ``NaN`` or ``Infinity`` in either direction (they are not
JSON, §6). ``</`` is not escaped (responses are ``application/json``, not
HTML).
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

_NON_FINITE = "Out of range float values are not JSON compliant (NaN, Infinity)"


def _stdlib_dumps(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ValueError("value is nested too deeply to encode as JSON") from None
    return text.encode("utf-8")


def _has_non_finite(obj: Any) -> bool:
    # Only called on values orjson encoded, hence nested at most 254 deep.
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(v) for v in obj)
    return False


def dumps(obj: Any) -> bytes:
    """Encode *obj* as compact UTF-8 JSON bytes.

    Raises ``TypeError`` for values JSON cannot represent and ``ValueError``
    for NaN or infinity and for values nested too deeply (with either
    backend; orjson alone would write NaN as ``null``).
    """
    if _orjson is not None:
        try:
            result: bytes = _orjson.dumps(obj)
        except _orjson.JSONEncodeError:
            # orjson is stricter than json (e.g. integers above 64 bits, depth
            # beyond 254); fall back so that the value encodes the same either way.
            return _stdlib_dumps(obj)
        if b"null" in result and _has_non_finite(obj):
            raise ValueError(_NON_FINITE)
        return result
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
