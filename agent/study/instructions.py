"""The per-study instruction file: our own instructions for *this* system, in the spirit of the design document
(`landscape_study.md`).

Version 1 is generated when the study starts (from the allow-list, this study's ranges and settings) and stored
in the journal's `study_start` event, so later code changes cannot rewrite it. Each block end with instruction
edits adds a version: `instructions/<name>_instructions_v002.md`, ... ; `<name>_instructions.md` is the latest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.runs.overrides import Spec
from agent.study.mutations import MAGNITUDES


def _magnitude(key: str) -> str:
    steps = MAGNITUDES.get(key)
    if not steps:
        return "-"
    return ", ".join(f"x{a:g}" if op == "mul" else f"{a:+g}" for op, a in steps[0])


def base_instructions(name: str, cfg: Mapping[str, Any], specs: Mapping[str, Spec]) -> str:
    """Version 1 of the instructions for study `name` (markdown)."""
    agent = cfg.get("agent", {})
    frames = ", ".join(str(f) for f in specs["data.n_training_frames"].choices)
    rows = "\n".join(f"| `{k}` | {s.describe()} | {_magnitude(k)} | {s.doc} |" for k, s in sorted(specs.items()))
    base = ", ".join(cfg.get("train_overrides") or []) or "(none)"
    return f"""# Instructions: study `{name}` (version 1)

## Goal
Map the training landscape of INRs of MPM particle fields: which configurations reach R² > 0.995 (excellent),
with slope ~1.0, at what training time and compression ratio. Grades: excellent R² > 0.995, good 0.990-0.995,
moderate 0.90-0.99, poor < 0.90. R² is 1 - SS_res/SS_tot over every particle and training frame, original units
(docs/contracts.md); it can be negative. Read it beside `svd_r2_same_params`: the R² of the truncated SVD of the
same window that stores no more numbers than the model. A model below it has not beaten a linear baseline of its
own size, and the memory says "beaten by the same-size SVD". Judge R² on the nines scale, −log10(1 − R²): 0.999 →
0.9999 is as large a step as 0.99 → 0.999, and effects and plateaus are measured in nines.

## Loop
- A study is `n_blocks` = {cfg.get('n_blocks')} blocks of `n_iter_block` = {cfg.get('n_iter_block')} iterations.
  A block explores one regime: one field and one n_training_frames, starting from a base config.
- Each round runs `batch` = {cfg.get('batch')} child run(s) as one `python train.py --multirun` (launcher
  `{cfg.get('launcher', {}).get('name')}`); base training overrides for every run: {base}.
- Each child = a parent node of the current block's tree (or root = the block's base config) + changes.
  Change ONE parameter at a time (the journal records the actual diff).
- Parents are chosen on UCB1: UCB(k) = R_k + c * sqrt(ln N / n_k), N = runs in this block's tree, n_k = k plus
  its descendants, c = ucb_c (start {cfg.get('ucb_c')}, range 0.5-3.0). R_k = R² clipped to [0, 1]; a failed run
  (diverged, failed, timeout, crashed) scores 0, and so does a run with compression ratio below
  {agent.get('min_compression', 1.0)}. `ucb_scores.txt` is empty at a block start: parent=root.
- Failed configs are never re-run as they are; a config already run in this block is re-run only as a
  robustness-test.

## Overrides you may propose (anything else is rejected and never run)
Plain `key=value` only: no `hydra.*`, `_target_`, `${{...}}`, `+`/`~`/`++`, lists, sweeps or functions.
`field` and `data.n_training_frames` change only between blocks. n_training_frames progression: {frames}.

| key | allowed | mutation step | meaning |
|---|---|---|---|
{rows}

## Strategy table
| condition | strategy | action |
|---|---|---|
| block has no node yet | baseline | run the base config (parent=root) |
| default | exploit | highest-UCB node + one mutation |
| 3+ consecutive R² >= 0.95 | failure-probe | extreme value of one parameter to find the boundary |
| n_iter_block/4 consecutive successes | explore | a parent outside the recent chain |
| good config found (R² >= 0.99) | robustness-test | re-run the same config with another seed |
| 2+ nodes with R² > 0.95 at tree distance >= 2 | recombine | better node as parent, adopt one param of the other |
| all runs converged, branching < 10% | forced-branch | parent from the bottom half of the UCB list |
| same parameter mutated 4+ times in a row | switch-param | mutate a different parameter |
| all R² > 0.94, branching < 20% | random-branch | a node never used as a parent |
| re-run spread > 0.1 | stochastic-field | switch field at the block end |
With batch=k the slots are exploit (top UCB), exploit (2nd), explore, principle-test (challenge one
established principle; with none yet, probe a boundary). Mutations do not repeat across slots.

## Block end (every n_iter_block iterations)
1. Self-checks (computed by code: agent.study.stats): branching rate < 20% -> add an exploration rule; improvement rate
   < 30% -> exploit more, > 80% -> probe boundaries; R² plateau (±0.05 nines over 3 runs) -> forced branching, raise
   ucb_c to 2.0; > 4 consecutive same-parameter mutations -> switch dimension; search wandering -> ucb_c 1.0.
2. Next regime, ONE change: rotate the field Jp -> F -> S -> C (option A) or raise n_training_frames along the
   progression (option B); alternate, prefer untested (field, frames) cells; keep steps per frame when frames grow.
3. Memory: add a Regime Comparison Table row; principles need >= 3 consistent runs (1-2: open question; mixed:
   contradicted); replace Previous Block Summary (2-3 lines); state the next hypothesis.

## Evidence
Runs are stochastic: a single run proves nothing. Established = consistent in >= 3 runs; tentative = 1-2;
contradicted = conflicting. The journal links every principle to the runs behind it.
"""


def render_versions(base: str, edits: list[tuple[int, str]]) -> list[str]:
    """All versions: [v1 = base, v2 = v1 + edits of the first block end that had any, ...]."""
    versions = [base]
    text = base
    for block, edit in edits:
        if not edit.strip():
            continue
        n = len(versions) + 1
        text = text.replace(f"(version {n - 1})", f"(version {n})", 1)
        if "## Rules added at block ends" not in text:
            text += "\n## Rules added at block ends\n"
        text += f"\n### After block {block}\n{edit.strip()}\n"
        versions.append(text)
    return versions
