"""The bench's compression table: ours against the classical compressors at the same R², in bytes.

Per field and dataset seed, on the window our default recipe trained on: ours as float32 parameters (at its own
training R²) and as the codec file at each target R² (`outputs.codec=true codec.target_r2=<t>`, encoded from the
same trained network, so one training serves every target), and the SVD (per-component centred), SZ3 and ZFP at
each target (`mpm_inr.baselines.classical_baselines`, matched accuracy: the smallest stored size reaching it).
Every ratio is raw float32 bytes of the training frames / stored bytes. The baselines' cache of the window (the
training run filled it at its own R²) serves the later targets' search points.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from mpm_inr.baselines import BaselineSource, cache_dirs, classical_baselines
from mpm_inr.codec.encode import CodecSettings, encode_model
from mpm_inr.codec.rundir import load_run
from mpm_inr.data.dataset import open_dataset

COMPARE_TARGETS = (0.995, 0.999)
METHODS = {"svd": "SVD (centred)", "sz3": "SZ3", "zfp": "ZFP"}


def compare_run(run_dir: Path, metrics: dict[str, Any], targets: tuple[float, ...], device: str) -> dict[str, Any]:
    """One trained run (its run dir holds the checkpoint) against the baselines of its window at each target."""
    started = time.perf_counter()
    cfg, window, network = load_run(run_dir)
    data = cfg["data"]
    source = BaselineSource.from_dataset(open_dataset(cfg["dataset"]), window.field, data["n_training_frames"],
                                         data["holdout_every"])
    float32_bytes = 4 * int(metrics["total_params"])
    out: dict[str, Any] = {"raw_bytes": source.raw_bytes,
                           "ours": {"r2": metrics["final_r2"], "bytes": float32_bytes,
                                    "ratio": source.raw_bytes / float32_bytes},
                           "targets": {}}
    for target in targets:
        settings = CodecSettings.from_config({**(cfg.get("codec") or {}), "target_r2": target})
        codec = encode_model(network, cfg["model"], window, data["t_period"], run_dir / f"model_{target}.mpmc",
                             settings)
        block = classical_baselines(source, target, float32_bytes, cache_dirs(cfg["dataset"]), device=device)
        row: dict[str, Any] = {"codec": {"bytes": codec["bytes"], "ratio": source.raw_bytes / codec["bytes"],
                                         "r2": codec["r2"], "target_met": codec["target_met"]}}
        for method in METHODS:
            point = (block.get(method) or {}).get("matched_accuracy")
            row[method] = None if point is None else {
                "bytes": point["bytes"], "ratio": point["compression"], "r2": point["r2"],
                "setting": f"rank {point['rank']}" if "rank" in point else f"eps {point['eps']:.3g}"}
        row["baselines_time_s"] = block.get("time_s")
        out["targets"][str(target)] = row
    out["time_s"] = time.perf_counter() - started  # encoding and baselines: what this table adds to the bench
    return out


def _median(cells: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Median ratio and R² over the seeds that have the cell, and how many do."""
    have = [c for c in cells if c is not None]
    if not have:
        return None
    return {"ratio": statistics.median(c["ratio"] for c in have), "r2": statistics.median(c["r2"] for c in have),
            "seeds": len(have)}


def summarise(field: str, per_seed: list[dict[str, Any]], targets: tuple[float, ...]) -> dict[str, Any]:
    """The field's table: per seed (None where the run failed) and the medians over seeds."""
    ok = [r for r in per_seed if r.get("comparison")]
    median: dict[str, Any] = {"ours": _median([r["comparison"]["ours"] for r in ok]), "targets": {}}
    for target in map(str, targets):
        median["targets"][target] = {key: _median([r["comparison"]["targets"][target][key] for r in ok])
                                     for key in ("codec", *METHODS)}
    return {"field": field, "targets": list(targets), "seeds": per_seed, "median": median}


def _cell(c: dict[str, Any] | None, n_seeds: int | None = None, extra: str = "") -> str:
    if c is None:
        return "none reaches it" if n_seeds is None else "-"
    notes = [f"R² {c['r2']:.5f}"] + ([extra] if extra else [])
    if n_seeds is not None and c["seeds"] < n_seeds:
        notes.append(f"{c['seeds']} of {n_seeds} seeds")
    return f"{c['ratio']:.3g}× ({', '.join(notes)})"


def markdown(tables: list[dict[str, Any]]) -> list[str]:
    """One table per field: rows ours (float32, codec at each target), SVD, SZ3, ZFP; columns the seeds and the
    median over seeds."""
    if not tables:
        return []
    lines = ["", "## Compression at the same R²: ours vs SVD, SZ3 and ZFP (default recipe, every seed)", "",
             ("Ratios are raw float32 bytes of the training frames / stored bytes. Ours, float32: 4 bytes per "
              "parameter, at its own training R². Ours, codec: the same trained model written as a file "
              "(`outputs.codec=true codec.target_r2=<target>`), R² decoded from it; \"target missed\": the decoded "
              "R² falls short of the target (where the model itself does not reach it, the file keeps the model's "
              "accuracy). SVD, SZ3, ZFP: the smallest stored "
              "size whose training R² reaches the target (`mpm_inr.baselines.classical_baselines`, matched "
              "accuracy); \"none reaches it\": no rank or bound tried does. Median over the seeds that have a "
              "value.")]
    for t in tables:
        lines += _field_table(t)
    return lines


def _field_table(t: dict[str, Any]) -> list[str]:
    seeds = [r["seed"] for r in t["seeds"]]
    n = len(seeds)
    lines = ["", f"### Field {t['field']}", "",
             "| method | target R² | " + " | ".join(f"seed {s}" for s in seeds) + " | median |",
             "|---|---|" + "---|" * (n + 1)]

    def row(name: str, target: str, cells: list[str], median: str) -> None:
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + f" | {median} |")

    comps = [r.get("comparison") for r in t["seeds"]]
    failed = [f"failed: {r.get('error')}" for r in t["seeds"]]
    row("ours, float32 parameters", "its own", [_cell(c["ours"]) if c else f for c, f in zip(comps, failed)],
        _cell(t["median"]["ours"], n))
    for target in map(str, t["targets"]):
        med = t["median"]["targets"][target]
        codec = [_cell(c["targets"][target]["codec"], extra="" if c["targets"][target]["codec"]["target_met"]
                       else "target missed") if c else f for c, f in zip(comps, failed)]
        row("ours, codec file", target, codec, _cell(med["codec"], n))
        for method, name in METHODS.items():
            cells = []
            for c, f in zip(comps, failed):
                point = c["targets"][target][method] if c else None
                cells.append(f if not c else _cell(point, extra=point["setting"] if point else ""))
            row(name, target, cells, _cell(med[method], n))
    return lines
