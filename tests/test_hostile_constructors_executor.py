"""``BoundedExecutor`` checks its arguments when it is built, not at the first job.

A value of the wrong kind raises ``TypeError`` naming the parameter (bools
are refused where an int is meant: ``True`` workers is a mistake, not 1); a
value of the right kind but out of range keeps raising ``ValueError``.
Before, ``max_workers="2"`` failed with an unrelated comparison error and
``max_pending=1.5`` or ``retry_after=None`` were accepted, to fail later (a
``Retry-After: None`` header on the 503).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tornado_kit import BoundedExecutor


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": "2"}, "max_workers must be an int or None, not str"),
        ({"max_workers": 2.0}, "max_workers must be an int or None, not float"),
        ({"max_workers": True}, "max_workers must be an int or None, not bool"),
        ({"max_pending": 1.5}, "max_pending must be an int or None, not float"),
        ({"max_pending": False}, "max_pending must be an int or None, not bool"),
        ({"kind": 3}, "kind must be a str, not int"),
        ({"kind": None}, "kind must be a str, not NoneType"),
        ({"retry_after": None}, "retry_after must be an int, not NoneType"),
        ({"retry_after": "1"}, "retry_after must be an int, not str"),
        ({"retry_after": True}, "retry_after must be an int, not bool"),
        ({"name": 7}, "name must be a str or None, not int"),
        (
            {"mp_context": 3},
            "mp_context must be a multiprocessing context or a start method name, not int",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_a_type_error_naming_the_parameter(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as exc:
        BoundedExecutor(**kwargs)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "fiber"}, "kind must be 'thread' or 'process', not 'fiber'"),
        ({"max_workers": 0}, "max_workers must be at least 1"),
        ({"max_pending": -1}, "max_pending must be 0 or more"),
        ({"retry_after": -1}, "retry_after must be 0 or more"),
        ({"mp_context": "teleport"}, "mp_context 'teleport' is not a start method"),
    ],
)
def test_a_value_out_of_range_is_still_a_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BoundedExecutor(**kwargs)


def test_valid_arguments_are_kept() -> None:
    context = multiprocessing.get_context("spawn")
    pool = BoundedExecutor(2, 0, "process", name="images", retry_after=0, mp_context=context)
    assert (pool.max_workers, pool.max_pending, pool.kind) == (2, 0, "process")
    assert (pool.name, pool.retry_after) == ("images", 0)
    assert BoundedExecutor(mp_context="spawn").stats()["started"] is False


_NOT_INT = st.one_of(
    st.booleans(), st.floats(), st.text(), st.binary(), st.lists(st.integers()), st.just(object())
)


@given(name=st.sampled_from(["max_workers", "max_pending", "retry_after"]), value=_NOT_INT)
def test_any_non_int_count_is_refused_with_a_type_error(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"^{name} must be an int"):
        BoundedExecutor(**{name: value})
