"""JSON encoding with orjson when installed, the standard library otherwise.

Both paths accept and produce the same JSON *values* (RFC 8259): compact
separators, UTF-8 text (no ``\\uXXXX`` escaping of non-ASCII), integers of
any size. ``NaN`` and ``Infinity`` are not JSON (§6): :func:`loads` refuses
them and :func:`dumps` writes them as ``null``. ``</`` is not escaped
(responses are ``application/json``, not HTML).

Strings are Unicode text on both paths: a lone UTF-16 surrogate
(``"\\ud800"`` without its pair, RFC 8259 §8.2) is refused with
:class:`LoneSurrogateError` by :func:`loads` and by :func:`dumps`, as
orjson refuses it, instead of decoding into a ``str`` that no later UTF-8
encode (a database, a WebSocket frame) accepts.
"""

from __future__ import annotations

import json
import math
import re
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

# A \u escape of a UTF-16 surrogate code unit, D800 to DFFF (hex digits in
# either case; JSON has no \U). Only text with one can decode to a lone
# surrogate, so only such text pays for the exact check below (the match
# may be half of a valid pair, or follow an escaped backslash: "\\ud800").
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
# The exact check, for text json.loads accepted: match from the start over
# plain characters and whole escapes (so that a backslash is always read as
# the start of an escape, as the decoder read it), valid pairs consumed as
# one unit, up to a surrogate escape that is not part of a pair. Runs of
# plain characters are matched atomically ((?=(X))\1: Python 3.10 has no
# possessive quantifiers), so a text without a lone surrogate fails in
# linear time; a pair is never split, so backtracking cannot misread one.
_HIGH = "[dD][89abAB][0-9a-fA-F]{2}"
_LOW = "[dD][c-fC-F][0-9a-fA-F]{2}"
_ESCAPE_OK = rf"\\(?:[^u]|u(?![dD][89a-fA-F])[0-9a-fA-F]{{4}}|u{_HIGH}\\u{_LOW})"
_LONE_ESCAPE = rf"\\u(?:{_HIGH}(?!\\u{_LOW})|{_LOW})"
_UP_TO_LONE_SURROGATE = re.compile(rf"(?:(?=([^\\]+))\1|{_ESCAPE_OK})*{_LONE_ESCAPE}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TEXT = "JSON text"


class LoneSurrogateError(ValueError):
    """JSON text or a value with a lone UTF-16 surrogate, which is not Unicode text.

    A ``ValueError``: code that handles malformed JSON handles this too.
    """


def lone_surrogate(what: str, index: int | None = None) -> LoneSurrogateError:
    """The error for a lone surrogate in *what* (at *index* of it, when known)."""
    where = "" if index is None else f" at index {index}"
    return LoneSurrogateError(f"{what} contains a lone surrogate (invalid Unicode){where}")


def encode_utf8(text: str, what: str = "text") -> bytes:
    """*text* as UTF-8; a :class:`LoneSurrogateError` naming *what* if it holds a surrogate."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise lone_surrogate(what, exc.start) from None


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
    return encode_utf8(text, "the value to encode as JSON")


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
    Raises ``TypeError`` for values JSON cannot represent, ``ValueError``
    for circular or too deeply nested values and :class:`LoneSurrogateError`
    (a ``ValueError``) for a string with a lone surrogate.
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
    of a float, or is nested too deeply (never ``RecursionError``), and
    :class:`LoneSurrogateError` (a ``ValueError``) when a string in it holds
    a lone surrogate: an escaped one (``"\\ud800"`` not followed by a low
    surrogate escape) or, in ``str`` input, a raw one. Valid escaped pairs
    (``"\\ud83d\\ude00"``) decode to their character.
    """
    if _orjson is not None:
        raw = encode_utf8(data, _JSON_TEXT) if isinstance(data, str) else bytes(data)
        if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_TO_ZERO):
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                # orjson rejects some inputs the stdlib accepts (e.g. UTF-16
                # bytes); the standard library has the last word. orjson
                # refuses lone surrogates, so a value it returned has none.
                pass
    return _stdlib_loads(data)


#: Deepest nesting either backend accepts: orjson's own limit. The standard
#: library's parser has none of its own (Python 3.13 parses 5000 levels;
#: 3.11 stops near its recursion limit of 1000), so it is checked here.
MAX_DEPTH = 1024
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _too_deep(text: str) -> bool:
    """Whether *text* nests arrays/objects more than :data:`MAX_DEPTH` levels deep.

    Only text with that many opening brackets is looked at. Strings are cut
    out (brackets inside them do not nest), then every innermost ``[]`` or
    ``{}`` pair is removed, one nesting level per pass, at C speed: as many
    passes as the actual depth, at most ``MAX_DEPTH``.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    for _ in range(MAX_DEPTH):
        shorter = _INNERMOST.sub("", brackets)
        if not shorter or shorter == brackets:
            return False  # flat enough, or malformed: the parser has the last word
        brackets = shorter
    return _INNERMOST.search(brackets) is not None


def _stdlib_loads(data: bytes | str) -> Any:
    if isinstance(data, str):
        text = data
        # str.isascii() is O(1); only non-ASCII text is searched.
        raw_surrogate = None if text.isascii() else _SURROGATE.search(text)
        if raw_surrogate is not None:
            raise lone_surrogate(_JSON_TEXT, raw_surrogate.start())
    else:
        # What json.loads does with bytes, but strict: it decodes with
        # "surrogatepass", which turns encoded surrogates (invalid UTF-8)
        # into raw ones.
        text = bytes(data).decode(json.detect_encoding(data))
    if _too_deep(text):
        raise ValueError("JSON document is nested too deeply")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON document is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) and _UP_TO_LONE_SURROGATE.match(text):
        raise lone_surrogate(_JSON_TEXT)
    return value
