"""Quoted evidence: one format for a run's numbers in the report, and a checker for prose that quotes them.

The report's findings and seed-spread tables quote each run as `node 12: R² 0.999120 (held-out R² 0.998500, data
seed 0)`. Hand-written text about a study (docs/landscape/README.md) quotes the same way, with as many digits as it
likes (`node 12: R² 0.99912`). `check_quotes` reads every such quote of a markdown text and checks it against the
study's journal: the node exists, finished ok, and carries that R² (and held-out R², data seed) to the printed
digits. So a number in prose cannot drift from the run it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.reporting.report_data import RunRecord, Study
from agent.study.tree import format_r2

QUOTE_RE = re.compile(r"node (\d+): R² (-?\d+(?:\.\d+)?)(?: \(([^)]*)\))?")
HELDOUT_RE = re.compile(r"held-out R² (-?\d+(?:\.\d+)?)")
SEED_RE = re.compile(r"data seed (\d+)")


def quote(run: RunRecord) -> str:
    """`node N: R² x (held-out R² y, data seed k)`, or `node N: <status>` for a run that did not finish ok."""
    if run.r2 is None:
        return f"node {run.node_id}: {run.status} (data seed {run.data_seed})"
    extra = ([f"held-out R² {format_r2(run.holdout_r2)}"] if run.holdout_r2 is not None else []) + [
        f"data seed {run.data_seed}"]
    return f"node {run.node_id}: R² {format_r2(run.r2)} ({', '.join(extra)})"


@dataclass(frozen=True)
class Quote:
    line: int
    node_id: int
    r2: str
    holdout_r2: str | None
    data_seed: int | None
    text: str


def quotes(markdown: str) -> list[Quote]:
    """Every `node N: R² x [(held-out R² y, data seed k)]` of a text, with its line number."""
    out = []
    for i, line in enumerate(markdown.splitlines(), 1):
        for m in QUOTE_RE.finditer(line):
            inner = m.group(3) or ""
            held, seed = HELDOUT_RE.search(inner), SEED_RE.search(inner)
            out.append(Quote(i, int(m.group(1)), m.group(2), held.group(1) if held else None,
                             int(seed.group(1)) if seed else None, m.group(0)))
    return out


def _same(printed: str, value: float) -> bool:
    """The value printed with as many decimals as `printed` has reads the same."""
    digits = len(printed.partition(".")[2])
    return f"{value:.{digits}f}" == printed


def check_quotes(markdown: str, study: Study) -> list[str]:
    """One line per quote that the journal does not bear out (empty: every quote checks)."""
    runs = {r.node_id: r for r in study.runs}
    problems = []
    for q in quotes(markdown):
        where = f"line {q.line}: \"{q.text}\""
        run = runs.get(q.node_id)
        if run is None:
            problems.append(f"{where}: node {q.node_id} is not a run of study {study.name}")
            continue
        if run.r2 is None:
            problems.append(f"{where}: node {q.node_id} did not finish ok ({run.status})")
            continue
        if not _same(q.r2, run.r2):
            problems.append(f"{where}: the journal has R² {format_r2(run.r2)}")
        if q.holdout_r2 is not None and (run.holdout_r2 is None or not _same(q.holdout_r2, run.holdout_r2)):
            problems.append(f"{where}: the journal has held-out R² {format_r2(run.holdout_r2)}"
                            if run.holdout_r2 is not None else f"{where}: node {q.node_id} held no frames out")
        if q.data_seed is not None and q.data_seed != run.data_seed:
            problems.append(f"{where}: node {q.node_id} trained on data seed {run.data_seed}")
    return problems
