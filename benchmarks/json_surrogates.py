"""What refusing lone surrogates costs ``_json.loads`` on a 1 MiB body.

``_json.loads`` refuses strings with a lone UTF-16 surrogate on both backends.
orjson refuses them itself, so its path pays nothing. The standard-library
path searches the text for a ``\\u`` escape in the D800 to DFFF range and only
then walks the decoded value. This script times, on 1 MiB bodies (bytes, as
``JSONBodyMixin`` passes them):

* ``plain``: ASCII objects, no escape;
* ``utf-8``: the same with non-ASCII text as raw UTF-8;
* ``escapes``: non-ASCII text as ``\\u00e9`` escapes (not surrogates): the
  search runs, no walk;
* ``pairs``: emoji as escaped surrogate pairs (what an ASCII-only encoder
  such as ``json.dumps`` writes by default): the search matches, the walk
  runs;

each through ``_json.loads`` with and without orjson, against what 0.1's
``_json.loads`` did on that path (written out below: the long-digit-run
test, then ``orjson.loads``; ``json.loads`` with the same hooks). Medians
of ``--repeat`` runs, in milliseconds.

Run: ``.venv/bin/python benchmarks/json_surrogates.py [--repeat 41]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tornado_kit import _json

SIZE = 1024 * 1024


def body(text: str, ensure_ascii: bool) -> bytes:
    """About 1 MiB of JSON: a list of small user objects carrying *text*."""
    item = {"id": 123456, "name": "user", "email": "user@example.com", "bio": text, "ok": True}
    one = len(json.dumps(item, ensure_ascii=ensure_ascii, separators=(",", ":")).encode()) + 1
    items = [dict(item, id=i) for i in range(SIZE // one + 1)]
    return json.dumps(items, ensure_ascii=ensure_ascii, separators=(",", ":")).encode()


BODIES = {
    "plain": body("a plain ascii biography of some length", ensure_ascii=True),
    "utf-8": body("une biographie écrite en français", ensure_ascii=False),
    "escapes": body("une biographie écrite en français", ensure_ascii=True),
    "pairs": body("a biography with emoji \U0001f600\U0001f680", ensure_ascii=True),
}


def medians_ms(before: Callable[[], Any], after: Callable[[], Any], repeat: int) -> list[float]:
    """Median times of *before* and *after*, run alternately (a busy machine drifts)."""
    times: list[list[float]] = [[], []]
    for _ in range(repeat):
        for i, fn in enumerate((before, after)):
            start = time.perf_counter()
            fn()
            times[i].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def orjson_01(data: bytes) -> Any:
    """What 0.1's orjson path did with bytes (the same as now: orjson refuses surrogates)."""
    assert _json._orjson is not None
    raw = bytes(data)
    if _json._LONG_DIGIT_RUN not in raw.translate(_json._DIGITS_TO_ZERO):
        return _json._orjson.loads(raw)
    return stdlib_01(data)


def stdlib_01(data: bytes) -> Any:
    """What 0.1's standard-library path did (no surrogate check)."""
    return json.loads(data, parse_constant=_json._reject_constant, parse_float=_json._finite_float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args()
    orjson = _json._orjson
    print(f"{'body':<8} {'bytes':>8}  {'path':<7} {'0.1':>9} {'now':>9} {'cost':>7}")
    for name, data in BODIES.items():
        assert _json.loads(data) == json.loads(data)
        rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
        if orjson is not None:
            rows.append(("orjson", lambda d=data: orjson_01(d), lambda d=data: _json.loads(d)))

        def without_orjson(d: bytes = data) -> Any:
            _json._orjson = None
            try:
                return _json.loads(d)
            finally:
                _json._orjson = orjson

        rows.append(("stdlib", lambda d=data: stdlib_01(d), without_orjson))
        for path, before, after in rows:
            old, new = medians_ms(before, after, args.repeat)
            print(
                f"{name:<8} {len(data):>8}  {path:<7} {old:>7.2f}ms {new:>7.2f}ms "
                f"{(new - old) / old * 100:>+6.1f}%"
            )


if __name__ == "__main__":
    main()
