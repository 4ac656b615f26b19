"""The benchmark scripts still run and print what they promise (no performance assertion).

A benchmark nobody runs rots: an API change breaks it silently. These tests
run a script with a tiny workload and parse its output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
CALLGRIND_TOOLS = ("valgrind", "callgrind_control", "callgrind_annotate")


@pytest.mark.slow
@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in CALLGRIND_TOOLS),
    reason="valgrind is not installed (apt-get install valgrind)",
)
def test_http_instructions_prints_a_figure_per_run_and_the_top_functions() -> None:
    requests, top = 5, 3
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "http_instructions.py"),
            "--requests",
            str(requests),
            "--warmup",
            "2",
            "--repeat",
            "1",
            "--variants",
            "ours",
            "--functions",
            str(top),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    assert f"N={requests} requests per run" in out
    # the table row: variant, one figure per run, spread, ratio to bare (not run: "-")
    row = re.search(r"^ours\s+([\d,]+)\s+([\d.]+)%\s+-\s+-$", out, re.MULTILINE)
    assert row is not None, out
    per_request = int(row.group(1).replace(",", ""))
    assert per_request > 0
    assert float(row.group(2)) == 0.0  # a single run has no spread
    # --functions: without naive there is no diff, but ours' top functions are listed
    assert "--functions: variant naive was not run" in out
    for kind in ("exclusive", "inclusive"):
        section = out.split(f"ours: top {top} functions by {kind} instructions per request\n")[1]
        lines = section.splitlines()[:top]
        costs = [int(line.split()[0].replace(",", "")) for line in lines]
        assert len(costs) == top, out
        assert costs == sorted(costs, reverse=True)
        if kind == "exclusive":
            # Exclusive costs are the functions' own: none holds the whole
            # process (calls in progress at the dump are not counted as the
            # caller's own cost, which would put everything under main()).
            assert costs[0] < per_request * 0.6, out
            assert sum(costs) <= per_request


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in CALLGRIND_TOOLS),
    reason="valgrind is not installed (apt-get install valgrind)",
)
def test_callgrind_functions_counts_calls_in_progress_as_calls(tmp_path: Path) -> None:
    # A process instrumented from its start, zeroed, given work, dumped while
    # it sleeps: main() and every frame down to the work were in progress at
    # the zero, so their call counts restart at 0 ("calls=0" in the dump).
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import callgrind_functions, callgrind_total
    finally:
        sys.path.remove(str(BENCHMARKS))
    out_file = tmp_path / "work.callgrind"
    script = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(sum(i * i for i in range(20000)), flush=True)\n"
        "time.sleep(600)\n"
    )
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    with subprocess.Popen(
        [*valgrind, sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            control = ["callgrind_control", "-z", str(proc.pid)]
            subprocess.run(control, check=True, capture_output=True)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"{sum(i * i for i in range(20000))}\n"
            control[1] = "-d"
            subprocess.run(control, check=True, capture_output=True)
        finally:
            proc.kill()
    dump = str(out_file) + ".1"
    assert "calls=0 " in Path(dump).read_text(errors="replace")  # what this test is about
    total = callgrind_total(dump)
    exclusive = callgrind_functions(dump, inclusive=False)
    inclusive = callgrind_functions(dump, inclusive=True)
    assert exclusive["main"] < total * 0.01  # its own cost, not the whole process
    assert inclusive["main"] >= total * 0.99
