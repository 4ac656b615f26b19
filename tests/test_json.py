"""tornado_kit._json: orjson and the standard library agree on JSON values."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tornado_kit import _json

BACKENDS = ["orjson", "stdlib"] if _json.HAVE_ORJSON else ["stdlib"]


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run the block with the given backend (the stdlib one by hiding orjson)."""
    saved = _json._orjson
    if name == "stdlib":
        _json._orjson = None
    try:
        yield
    finally:
        _json._orjson = saved


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: well beyond 64 bits
    | st.integers(min_value=2**63 - 4, max_value=2**64 + 4)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_both_backends_encode_and_decode_the_same_value(value: Any) -> None:
    encoded = {}
    for name in BACKENDS:
        with backend(name):
            data = _json.dumps(value)
            encoded[name] = data
            assert _json.dumps_str(value) == data.decode("utf-8")
            assert _json.loads(data) == value
            assert _json.loads(data.decode("utf-8")) == value
    # Each backend's output is plain JSON that the other backend (and the
    # standard library) decodes to the same value.
    for data in encoded.values():
        assert json.loads(data) == value
        for name in BACKENDS:
            with backend(name):
                assert _json.loads(data) == value


@pytest.mark.parametrize("name", BACKENDS)
def test_integers_beyond_64_bits(name: str) -> None:
    with backend(name):
        for number in (2**64, -(2**63) - 1, 10**40):
            assert _json.dumps([number]) == f"[{number}]".encode()
            assert _json.loads(f'{{"n":{number}}}') == {"n": number}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a":-Infinity}', "[1,NaN]"])
def test_nan_and_infinity_are_not_accepted(name: str, text: str) -> None:
    with backend(name), pytest.raises(ValueError):
        _json.loads(text)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), b"null"),
        ([float("inf"), 1.5, None], b"[null,1.5,null]"),
        ({"a": [1, {"b": -float("inf")}]}, b'{"a":[1,{"b":null}]}'),
        ((None, float("nan"), 2**64), b"[null,null,18446744073709551616]"),
    ],
)
def test_nan_and_infinity_are_written_as_null_by_both_backends(
    name: str, value: Any, expected: bytes
) -> None:
    # They are not JSON: like orjson and JavaScript's JSON.stringify, null.
    with backend(name):
        assert _json.dumps(value) == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_deep_nesting_is_a_value_error_not_a_recursion_error(name: str) -> None:
    depth = 100_000
    with backend(name):
        with pytest.raises(ValueError):
            _json.loads("[" * depth + "]" * depth)
        with pytest.raises(ValueError):
            _json.loads(b'{"a":' * depth + b"1" + b"}" * depth)
        nested: Any = []
        for _ in range(depth):
            nested = [nested]
        with pytest.raises(ValueError):
            _json.dumps(nested)
        # Moderate nesting (beyond orjson's own limit of 254) still round-trips.
        moderate: Any = 1
        for _ in range(300):
            moderate = [moderate]
        assert _json.loads(_json.dumps(moderate)) == moderate


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("text", [b"", b"{", b"[1,]", b"\xff", b"{'a': 1}", b"01"])
def test_malformed_input_is_a_value_error(name: str, text: bytes) -> None:
    with backend(name), pytest.raises(ValueError):
        _json.loads(text)


@pytest.mark.parametrize("name", BACKENDS)
def test_unrepresentable_values_are_a_type_error_circular_ones_a_value_error(name: str) -> None:
    with backend(name), pytest.raises(TypeError):
        _json.dumps({"a": object()})
    circular: list[Any] = [1.0]
    circular.append(circular)
    with backend(name), pytest.raises(ValueError):
        _json.dumps(circular)


@pytest.mark.parametrize("name", BACKENDS)
def test_output_is_compact_utf8(name: str) -> None:
    with backend(name):
        assert _json.dumps({"é": ["</", 1]}) == '{"é":["</",1]}'.encode()


@pytest.mark.parametrize("name", BACKENDS)
def test_numbers_beyond_the_float_range_are_refused(name: str) -> None:
    with backend(name), pytest.raises(ValueError):
        _json.loads("[1e400]")
    with backend(name):
        assert _json.loads("[1e300, 0.1234567890123456789012]") == [1e300, 0.1234567890123456789012]


@pytest.mark.parametrize("name", BACKENDS)
def test_lone_surrogates_are_refused_the_same_on_both_paths(name: str) -> None:
    # (0.1 decoded them on the stdlib path; tests/test_hostile_json.py has the rest.)
    with backend(name):
        with pytest.raises(ValueError, match="lone surrogate"):
            _json.loads('["\\ud800"]')  # an escaped lone surrogate
        with pytest.raises(ValueError, match="lone surrogate"):
            _json.loads('["\ud800"]')  # a str that holds one
        assert _json.loads('["\\ud83d\\ude00"]') == ["\U0001f600"]  # a valid pair


def _reference_depth(text: str) -> int:
    """Nesting depth of JSON *text*, by a plain character loop that skips strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_nested = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(alphabet='[]{}"\\ab', max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(value=_nested, wrap=st.integers(min_value=1000, max_value=1100))
@settings(max_examples=60, deadline=None)
def test_depth_check_agrees_with_a_plain_scan(value: Any, wrap: int) -> None:
    text = "[" * wrap + json.dumps(value) + "]" * wrap
    assert _json._too_deep(text) == (_reference_depth(text) > _json.MAX_DEPTH)


@pytest.mark.parametrize("name", ["orjson", "stdlib"])
def test_nesting_beyond_the_limit_is_refused_by_both_backends(name: str) -> None:
    # Python 3.13's json parses thousands of levels on its own: the limit is
    # ours, the same as orjson's, on every Python.
    deep = '{"a":' * 600 + "[" * 600 + '"[[[["' + "]" * 600 + "}" * 600
    with backend(name):
        with pytest.raises(ValueError, match="nested too deeply"):
            _json.loads(deep)
        wide = "[" + ",".join(['{"a":[1,{"b":"[[["}]}'] * 3000) + "]"
        assert len(_json.loads(wide)) == 3000
