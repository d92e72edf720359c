"""The compression part of the bench as markdown: issue #19's goal table first, then per window and field the
numbers it reads (per seed and the median over seeds).

A block is one window of training frames: {"window": frames, "holdout_every": k, "fields": [compression_bench.
summarise(...) per field]}; k > 0 marks the held-out comparison of that window.
"""

from __future__ import annotations

from typing import Any

from mpm_inr.bench.compression_bench import (
    CENTRE_NOTES,
    GOAL_RIVALS,
    METHODS,
    QUANTISED_SVD,
    QUANTISED_SVD_PARTS,
    SPLIT_NOTES,
    coding_goal,
    slope_goal,
)

_NAMES = {QUANTISED_SVD: "SVD, quantised + lzma (as our codec)",
          QUANTISED_SVD_PARTS: "SVD, quantised + lzma, given the tensor parts (labelled comparison, not a goal rival)",
          **METHODS}
_SHORT = {QUANTISED_SVD: GOAL_RIVALS[QUANTISED_SVD], **{k: name.split(" ")[0] for k, name in METHODS.items()}}


def _rows(comps: list[dict[str, Any] | None], target: str) -> list[tuple[str, str]]:
    """The baselines' rows of a target: every one some seed ran (the tensor parts' SVD only for a tensor field)."""
    return [(method, name) for method, name in _NAMES.items()
            if any(c is not None and method in c["targets"][target] for c in comps)]


def ratio_text(ratio: float) -> str:
    """3 significant digits, but whole numbers from 1000 on (2880×, not 2.88e+03×)."""
    return f"{ratio:.3g}×" if ratio < 1000 else f"{ratio:.0f}×"


def window_label(block: dict[str, Any]) -> str:
    frames = f"{block['window']:,} frames".replace(",", " ")
    return f"{frames}, held-out (every {block['holdout_every']}th frame)" if block["holdout_every"] else frames


def markdown(blocks: list[dict[str, Any]]) -> list[str]:
    """The goal table, then one section per window (and per held-out window)."""
    if not blocks:
        return []
    blocks = sorted(blocks, key=lambda b: (b["holdout_every"] > 0, b["window"]))
    lines = goal_table(blocks)
    for block in blocks:
        held = block["holdout_every"]
        lines += ["", f"## Compression, {window_label(block)}: ours vs the quantised SVD, SVD, SZ3 and ZFP", "",
                  _HOLDOUT_NOTE if held else _WINDOW_NOTE]
        for table in block["fields"]:
            lines += (_holdout_table if held else _window_table)(table)
    return lines


_WINDOW_NOTE = (
    "Ratios are raw float32 bytes of the training frames / stored bytes. Ours, float32: 4 bytes per parameter, at "
    "its own training R². Ours, codec: the same trained model written as a file (`outputs.codec=true "
    "codec.target_r2=<target>`; a target whose `accuracy=r2_<digits>` option trains more, e.g. S and C at 0.999, "
    "from that training, shown in its own row), R² decoded from it; \"target missed\": the decoded R² falls short of the target "
    "(where the model itself does not reach it, the file keeps the model's accuracy). SVD, quantised: the "
    "truncated SVD with our codec's quantisation and lzma (`mpm_inr.codec.svd_baseline`), the smallest file "
    "reaching the target, written in our file's container (`mpm_inr.codec.svd_file`) beside the codec file in the "
    "run dir (`quantised_svd_<target>.mpmc`). SVD (float32), SZ3, ZFP: the smallest stored size whose training R² reaches the target "
    "(`mpm_inr.baselines.classical_baselines`, matched accuracy); \"none reaches it\": no rank or bound tried "
    "does. Median over the seeds that have a value.")
_HOLDOUT_NOTE = (
    "Every k-th frame of the window is never trained on. Ours: the codec file at each target (on the training "
    "frames), decoded at the held-out times. SVD (float32), SZ3, ZFP: the setting with the highest training R² "
    "within the codec file's bytes (matched size), its held-out frames interpolated in t (the SVD's temporal "
    "coefficients linearly or by a cubic spline, the better one shown; SZ3's and ZFP's decoded frames linearly); "
    "\"nothing fits\": no setting is that small.")


def goal_table(blocks: list[dict[str, Any]]) -> list[str]:
    """Rows: windows (and held-out windows); columns: fields; a cell: met, or how far, at each target."""
    fields = list(dict.fromkeys(t["field"] for b in blocks for t in b["fields"]))
    lines = ["", "## Goal (issue #19): the codec file against SZ3 and the quantised SVD, medians over seeds", "",
             ("Windows: the codec file's median ratio must be at least SZ3's and the quantised SVD's at the same R² "
              "(met), with the target reached on every seed; else how far: the lowest R² reached, and the codec's "
              "ratio as a share of the best rival's. Held-out: the codec file's median held-out R² must be at "
              "least the quantised SVD's, the float32 SVD's, SZ3's and ZFP's with interpolation at the codec's "
              "bytes; else how far behind the best. Details per seed in the sections below."), "",
             "| window | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields)]
    for block in blocks:
        by_field = {t["field"]: t for t in block["fields"]}
        cells = []
        for name in fields:
            table = by_field.get(name)
            cells.append("not run" if table is None else "<br>".join(
                f"{target}: {goal_text(table['goal'][str(target)])}" for target in table["targets"]))
        lines.append(f"| {window_label(block)} | " + " | ".join(cells) + " |")
    return lines + coding_text(coding_goal(blocks)) + slope_text(slope_goal(blocks))


def coding_text(goal: dict[str, Any] | None) -> list[str]:
    """The coding-time bound under the goal table: met, or how far (compression_bench.coding_goal)."""
    if goal is None:
        return []
    where = f"{goal['field']}, seed {goal['seed']}, R² {goal['target']}"
    verdict = "**met**" if goal["met"] else "no"
    threads = "one thread" if goal["threads"] == 1 else f"{goal['threads']} threads"
    return ["", (f"Encode + decode of a {goal['frames']}-frame window within {goal['limit_s']:g} s on one CPU "
                 f"thread: {verdict}, the slowest of {goal['files']} files took {goal['seconds']:.1f} s ({where}; "
                 f"{threads}).")]


def slope_text(goal: dict[str, Any] | None) -> list[str]:
    """The slope bound under the goal table: met, or where it is not (compression_bench.slope_goal)."""
    if goal is None:
        return []
    low, high = goal["bounds"]
    w = goal["where"]
    where = f"{w['field']}, {window_label(w)}, seed {w['seed']}, R² {w['target']}, {w['frames']} frames"
    verdict = "**met**" if goal["met"] else "no"
    return ["", (f"Slope of the decoded values on the truth within [{low:g}, {high:g}] for every file: {verdict}, "
                 f"{goal['lowest']:.4f} to {goal['highest']:.4f} over {goal['slopes']} slopes (the farthest from 1: "
                 f"{goal['farthest']:.4f}, {where}).")]


def goal_text(goal: dict[str, Any]) -> str:
    """One goal cell in words: met, or how far (compression_bench.window_goal / holdout_goal)."""
    if not goal["ran"]:
        return "no run finished"
    text = _holdout_goal_text(goal) if "holdout_r2" in goal else _window_goal_text(goal)
    return text + (f" ({goal['ran']} of {goal['seeds']} seeds ran)" if goal["ran"] < goal["seeds"] else "")


def _window_goal_text(goal: dict[str, Any]) -> str:
    rivals = ", ".join(f"{GOAL_RIVALS[k]} " + ("none reaches it" if r is None else ratio_text(r))
                       for k, r in goal["rivals"].items())
    if goal["met"]:
        return f"**met**: {ratio_text(goal['ratio'])} vs {rivals}"
    how_far = []
    if goal["missed_seeds"]:
        seeds = f" ({goal['missed_seeds']} of {goal['ran']} seeds miss)" if goal["ran"] > 1 else ""
        how_far.append(f"R² {goal['lowest_r2']:.5f} reached{seeds}")
    if goal["ratio_of_best"] is not None and goal["ratio_of_best"] < 1:
        how_far.append(f"ratio {goal['ratio_of_best']:.2g}× the best rival's")
    return f"no, {'; '.join(how_far)}: {ratio_text(goal['ratio'])} vs {rivals}"


def _holdout_goal_text(goal: dict[str, Any]) -> str:
    rivals = ", ".join(f"{_SHORT[k]} " + ("nothing fits" if r is None else f"{r:.5f}")
                       for k, r in goal["rivals"].items())
    ours = f"R² {goal['holdout_r2']:.5f} at {ratio_text(goal['ratio'])}"
    if goal["met"]:
        return f"**met**: {ours} vs {rivals}"
    return f"no, {goal['r2_behind_best']:.2g} R² behind: {ours} vs {rivals}"


def _cell(c: dict[str, Any] | None, n_seeds: int | None = None, extra: str = "") -> str:
    if c is None:
        return "none reaches it" if n_seeds is None else "-"
    notes = [f"R² {c['r2']:.5f}"] + ([extra] if extra else []) + _coding_note(c)
    if n_seeds is not None and c["seeds"] < n_seeds:
        notes.append(f"{c['seeds']} of {n_seeds} seeds")
    return f"{ratio_text(c['ratio'])} ({', '.join(notes)})"


def _holdout_cell(c: dict[str, Any] | None, n_seeds: int | None = None, extra: str = "") -> str:
    if c is None:
        return "nothing fits" if n_seeds is None else "-"
    notes = [ratio_text(c["ratio"]), f"training R² {c['r2']:.5f}"] + ([extra] if extra else []) + _coding_note(c)
    if n_seeds is not None and c["seeds"] < n_seeds:
        notes.append(f"{c['seeds']} of {n_seeds} seeds")
    return f"held-out R² {c['holdout_r2']:.5f} ({', '.join(notes)})"


def _coding_note(c: dict[str, Any]) -> list[str]:
    """A codec file's centre where it is not the mean, its layout where it codes the components apart, its
    decoded slopes and its encode + decode seconds, where the cell has them (a median cell does not)."""
    return ([CENTRE_NOTES[c["centre"]]] if c.get("centre") in CENTRE_NOTES else []) + (
        [SPLIT_NOTES[c["components"]]] if c.get("components") in SPLIT_NOTES else []) + (
        [f"slope {c['slope']:.4f}"] if c.get("slope") is not None else []) + (
        [f"held-out slope {c['holdout_slope']:.4f}"] if c.get("holdout_slope") is not None else []) + (
        [f"coded in {c['coding_s']:.1f} s"] if "coding_s" in c else [])


def _header(t: dict[str, Any]) -> tuple[list[str], list[dict[str, Any] | None], list[str]]:
    seeds = [r["seed"] for r in t["seeds"]]
    lines = ["", f"### Field {t['field']}", "",
             "| method | target R² | " + " | ".join(f"seed {s}" for s in seeds) + " | median |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    training = [_training(r) for r in t["seeds"]]
    lines.append("| ours, training | - | " + " | ".join(training) + " | |")
    return lines, [r.get("comparison") for r in t["seeds"]], [f"failed: {r.get('error')}" for r in t["seeds"]]


#: a seed's training cell, and its float32 model's, where its file was encoded with no model
#: (bench.train_bench.window_compared)
NO_MODEL = "no model: the window's own file (encode-window)"


def _training(r: dict[str, Any]) -> str:
    run = r.get("training")
    if r.get("window_only") and r.get("comparison"):
        return NO_MODEL
    if not run:
        return f"failed: {r.get('error')}"
    return f"R² {run['final_r2']:.5f}, {run['training_time_s']:.1f} s, {run['steps']} steps"


def _own_training(t: dict[str, Any], comps: list[dict[str, Any] | None], failed: list[str],
                  target: str) -> list[str]:
    """A row for the training behind `target` where it is not the seeds' first training (an accuracy option that
    trains more for it, e.g. accuracy=r2_0999: bench.train_bench.trainings_for); none otherwise."""
    first = str(t["targets"][0])
    trained = [c["targets"][target].get("training") if c else None for c in comps]
    if all(run is None or run == c["targets"][first].get("training") for run, c in zip(trained, comps)):
        return []
    cells = [f if run is None else f"R² {run['final_r2']:.5f}, {run['training_time_s']:.1f} s, {run['steps']} steps"
             for run, f in zip(trained, failed)]
    option = next(run["accuracy"] for run in trained if run is not None)
    return [f"| ours, training (accuracy={option}) | {target} | " + " | ".join(cells) + " | |"]


def _window_table(t: dict[str, Any]) -> list[str]:
    lines, comps, failed = _header(t)
    n = len(comps)

    def row(name: str, target: str, cells: list[str], median: str) -> None:
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + f" | {median} |")

    row("ours, float32 parameters", "its own", [(_cell(c["ours"]) if c["ours"] else NO_MODEL) if c else f
                                                for c, f in zip(comps, failed)], _cell(t["median"]["ours"], n))
    for target in map(str, t["targets"]):
        lines += _own_training(t, comps, failed, target)
        med = t["median"]["targets"][target]
        codec = [_cell(c["targets"][target]["codec"], extra="" if c["targets"][target]["codec"]["target_met"]
                       else "target missed") if c else f for c, f in zip(comps, failed)]
        row("ours, codec file", target, codec, _cell(med["codec"], n))
        for method, name in _rows(comps, target):
            cells = []
            for c, f in zip(comps, failed):
                point = c["targets"][target].get(method) if c else None
                cells.append(f if not c else _cell(point, extra=point["setting"] if point else ""))
            row(name, target, cells, _cell(med.get(method), n))
    return lines


def _holdout_table(t: dict[str, Any]) -> list[str]:
    lines, comps, failed = _header(t)
    n = len(comps)
    for target in map(str, t["targets"]):
        lines += _own_training(t, comps, failed, target)
        med = t["median"]["targets"][target]
        for method, name in (("codec", "ours, codec file"), *_rows(comps, target)):
            cells = []
            for c, f in zip(comps, failed):
                point = c["targets"][target].get(method) if c else None
                cells.append(f if not c else _holdout_cell(point, extra=(point or {}).get("setting", "")))
            lines.append(f"| {name} | {target} | " + " | ".join(cells) + f" | {_holdout_cell(med.get(method), n)} |")
    return lines
