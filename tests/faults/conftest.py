"""The fault-injection suite's summary: every test records its trials with the `fault_row` fixture, and the end
of the session prints one table (fault, trials, survived, runs lost, runs duplicated) and writes it to
`bench_results/faults.md` and `bench_results/faults.json`.

A row is recorded before the test asserts, so a failing fault still shows its numbers. Set MPM_FAULTS_SEED to
replay the random kill points of a run (the seed used is printed in the table). If `tests/test_sim_slow.py`
runs in the same session (`make faults ARGS=tests/test_sim_slow.py`), its seeds become the simulator row.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_results"
SEED = int(os.environ.get("MPM_FAULTS_SEED") or random.SystemRandom().randrange(1_000_000))
SIM_TEST = "tests/test_sim_slow.py::test_discs_3types_full_length_is_finite"

os.environ.setdefault("OMP_NUM_THREADS", "1")  # children inherit it: the machine is shared


@dataclass
class Row:
    fault: str
    trials: int
    survived: int
    lost: int
    duplicated: int
    notes: str
    test: str
    seconds: float


ROWS: list[Row] = []
_SIM: dict[str, list] = {"passed": [], "failed": [], "seconds": []}
_T0 = time.time()


@pytest.fixture
def fault_row(request):
    """`fault_row(fault, trials=, survived=, lost=0, duplicated=0, notes="")` adds a row to the summary."""
    t0 = time.time()

    def record(fault: str, *, trials: int, survived: int, lost: int = 0, duplicated: int = 0,
               notes: str = "") -> None:
        ROWS.append(Row(fault, int(trials), int(survived), int(lost), int(duplicated), " ".join(notes.split()),
                        request.node.nodeid, round(time.time() - t0, 1)))

    return record


@pytest.fixture
def rng(request) -> random.Random:
    """A per-test RNG derived from the session seed (stable under test selection)."""
    return random.Random(f"{SEED}:{request.node.name}")


def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid.startswith(SIM_TEST):
        _SIM["passed" if report.passed else "failed"].append(report.nodeid.split("[")[-1].rstrip("]"))
        _SIM["seconds"].append(report.duration)


def _table(rows: list[Row]) -> str:
    head = "| fault | trials | survived | runs lost | runs duplicated | notes |\n|---|---:|---:|---:|---:|---|\n"
    return head + "".join(f"| {r.fault} | {r.trials} | {r.survived} | {r.lost} | {r.duplicated} | {r.notes} |\n"
                          for r in rows)


def _commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False,
                           capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = list(ROWS)
    if _SIM["passed"] or _SIM["failed"]:
        n = len(_SIM["passed"]) + len(_SIM["failed"])
        rows.append(Row("simulator: discs_3types 10 000 steps, every field finite", n, len(_SIM["passed"]), 0, 0,
                        f"seeds {', '.join(sorted(_SIM['passed'] + _SIM['failed']))}; "
                        f"{sum(_SIM['seconds']):.0f} s in total", SIM_TEST, round(sum(_SIM["seconds"]), 1)))
    if not rows:
        return
    wall = time.time() - _T0
    sim_note = ("" if _SIM["passed"] or _SIM["failed"] else
                "\nThe simulator check (discs_3types, 10 000 steps, seeds 0-9: 50 s per seed on an idle CPU core, 8 min "
                "in all at best) "
                "is tests/test_sim_slow.py; it runs with `make test-slow`, or here with "
                "`make faults ARGS=tests/test_sim_slow.py`.\n")
    text = (f"# Fault-injection suite (`make faults`)\n\n{_table(rows)}\n"
            f"Seed {SEED} (replay with MPM_FAULTS_SEED={SEED}); {wall:.0f} s wall on {os.cpu_count()} cores; "
            f"commit {_commit()}; pytest exit status {int(exitstatus)}.\n{sim_note}")
    terminalreporter.write_sep("=", "fault-injection summary")
    terminalreporter.write_line(text)
    OUT.mkdir(exist_ok=True)
    (OUT / "faults.md").write_text(text)
    (OUT / "faults.json").write_text(json.dumps({
        "seed": SEED, "wall_s": round(wall, 1), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "commit": _commit(), "exit_status": int(exitstatus), "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
