"""Builders of synthetic study journals for the report, time-model and W&B-study tests (no tests here).

A synthetic study goes through the real Journal writer and the real event schema (agent.loop.explorer's events), with
metrics shaped like Contract 2, so the code under test cannot tell it from a recorded one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.study.journal import Journal

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "docs" / "studies" / "study_tiny"
COMPONENTS = {"Jp": 1, "F": 4, "S": 4, "C": 4}


def metrics(field: str = "Jp", inr: str = "lagrangian", r2: float = 0.99, time_s: float = 10.0, steps: int = 200,
            hidden: int = 64, layers: int = 3, latent: int = 8, batch: int = 2, n_particles: int = 900,
            frames: int = 48, holdout_every: int = 0, holdout_r2: float | None = None, device: str = "cpu",
            dataset: str = "/nonexistent/discs_small_seed0", total_params: int = 10000, lr: float = 1e-3,
            seed: int = 0, svd_r2: dict[int, float] | None = None,
            same_params: tuple[int, float] | None = None, fingerprint: str | None = None,
            baselines: dict[str, tuple[Point | None, Point | None]] | None = None,
            codec_bytes: int | None = None) -> dict[str, Any]:
    """A metrics.json-like dict (Contract 2) for a run with these settings; same_params: (rank, R²) of the SVD
    within the run's parameter count, recorded as `svd.same_params` (absent, as in older runs, if None);
    fingerprint: the dataset's, in `dataset_provenance` (absent if None); baselines: method (svd, sz3, zfp) ->
    its (bytes, R²) at the run's R² and within its bytes (None: none qualified), recorded as the `baselines`
    block with its flat keys and `model_bytes` (all absent, as in older runs, if None); codec_bytes: the run
    wrote a codec file of that size (model_bytes is then its size)."""
    c = COMPONENTS[field]
    model_bytes = codec_bytes or 4 * total_params
    hold = [k for k in range(frames) if holdout_every and k % holdout_every == holdout_every // 2
            and 0 < k < frames - 1]
    n_values = (frames - len(hold)) * n_particles * c
    svd_r2 = svd_r2 or {1: 0.9, 2: 0.99, 4: 0.999}
    cols = n_particles * c
    t = frames - len(hold)
    return {
        "status": "ok", "error": None, "field": field, "inr_type": inr, "n_training_frames": frames,
        "dataset": dataset, "device": device, "final_r2": r2, "slope": 0.999, "compression_ratio": n_values / total_params,
        "total_params": total_params, "n_values": n_values, "training_time": time_s, "steps": steps,
        "holdout_r2": holdout_r2, "holdout_frames": hold,
        "svd": {"rank_for_0.995": next((k for k, v in sorted(svd_r2.items()) if v >= 0.995), None),
                "r2_rank": {str(k): v for k, v in svd_r2.items()},
                "compression_rank": {str(k): n_values / (k * (t + cols + 1)) for k in svd_r2}, "time_s": 0.05,
                **({} if same_params is None else {"same_params": {
                    "rank": same_params[0], "r2": same_params[1],
                    "compression": n_values / (same_params[0] * (t + cols + 1))}})},
        **({} if fingerprint is None else {"dataset_provenance": {"fingerprint": fingerprint}}),
        **({} if codec_bytes is None else {"codec_bytes": codec_bytes, "codec_ratio": 4 * n_values / codec_bytes,
                                           "codec_r2": r2 - 1e-5}),
        **({} if baselines is None else baselines_block(baselines, r2, model_bytes, 4 * n_values, field, frames,
                                                        holdout_every, fingerprint)),
        "config": {"model.name": inr, "model.hidden_dim": hidden, "model.n_layers": layers,
                   "model.latent_dim": latent, "model.decoder": "bilinear", "model.decoder_hidden": 64,
                   "model.n_levels": 16, "model.features_per_level": 2, "optimizer.lr": lr,
                   "train.batch_size": batch, "train.total_steps": steps, "data.holdout_every": holdout_every,
                   "data.n_training_frames": frames, "field.name": field, "seed": seed},
    }


Point = tuple[int, float]  # (bytes, R²) of one matched baseline point


def baselines_block(points: dict[str, tuple[Point | None, Point | None]], r2: float, model_bytes: int,
                    raw_bytes: int, field: str, frames: int, holdout_every: int,
                    fingerprint: str | None) -> dict[str, Any]:
    """metrics.json's `baselines` block (Contract 2) with these matched points, its flat keys and model_bytes."""
    def entry(method: str, point: Point | None, k: int) -> dict[str, Any] | None:
        if point is None:
            return None
        setting = {"rank": k + 1} if method == "svd" else {"eps": 0.5 ** (k + 1)}
        return {**setting, "bytes": point[0], "compression": raw_bytes / point[0], "r2": point[1],
                "r2_per_component": [point[1]] * COMPONENTS[field]}

    block: dict[str, Any] = {"target_r2": r2, "model_bytes": model_bytes, "raw_bytes": raw_bytes,
                             "window": {"fingerprint": fingerprint, "field": field, "frames": [100, 100 + frames],
                                        "holdout_every": holdout_every}, "time_s": 0.1}
    flat: dict[str, Any] = {"baselines": block, "model_bytes": model_bytes}
    for method, (accurate, sized) in points.items():
        block[method] = {"matched_accuracy": entry(method, accurate, 1), "matched_size": entry(method, sized, 0),
                         "time_s": 0.01}
        flat[f"{method}_ratio_same_r2"] = None if accurate is None else raw_bytes / accurate[0]
        flat[f"{method}_r2_same_bytes"] = None if sized is None else sized[1]
    return flat


def make_study(d: Path, blocks: list[list[dict[str, Any]]], name: str = "syn",
               config: dict[str, Any] | None = None) -> Path:
    """Write a study journal: `blocks` is a list of blocks, each a list of run specs
    {parent (index in the block or None), status, metrics, overrides, changes, error}."""
    j = Journal(d)
    cfg = config or {"name": name, "policy": {"name": "heuristic"}, "agent": {"min_compression": 1.0}}
    j.append({"event": "study_start", "name": name, "schema": 1, "config": cfg, "instructions": "", "t": 1000.0})
    nid, it, rnd = 0, 0, 0
    for b, runs in enumerate(blocks, 1):
        field = (runs[0].get("metrics") or {}).get("field", "Jp")
        frames = (runs[0].get("metrics") or {}).get("n_training_frames", 48)
        j.append({"event": "block_start", "block": b, "field": field, "n_training_frames": frames,
                  "base_overrides": [f"field={field}", f"data.n_training_frames={frames}"], "ucb_c": 1.414,
                  "n_iter_block": len(runs), "first_iteration": it + 1})
        ids: list[int] = []
        for spec in runs:
            nid += 1
            it += 1
            rnd += 1
            parent = spec.get("parent")
            m = spec.get("metrics") or {}
            ov = spec.get("overrides") or [f"field={field}", f"data.n_training_frames={frames}"]
            run_dir = d / "runs" / f"round_{rnd:04d}" / f"node_{nid:04d}"
            j.append({"event": "planned", "node_id": nid, "parent_id": ids[parent] if parent is not None else None,
                      "block": b, "iteration": it, "round": rnd, "slot": 0, "strategy": spec.get("strategy", "exploit"),
                      "overrides": ov, "changes": spec.get("changes") or {}, "mutation": spec.get("mutation", ""),
                      "config_hash": str(nid), "policy": "heuristic"})
            j.append({"event": "launched", "round": rnd, "node_ids": [nid], "run_dirs": {str(nid): str(run_dir)}})
            status = spec.get("status", "ok")
            j.append({"event": "finished", "node_id": nid, "status": status, "error": spec.get("error"),
                      "metrics": m if status == "ok" else {**m, "status": status}, "run_dir": str(run_dir)})
            ids.append(nid)
        j.append({"event": "block_end", "block": b, "decision": {"summary": ""}, "stats": {}})
    return d


def journal_events(d: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (d / "journal.jsonl").read_text().splitlines() if line.strip()]


def md_tables(md: str, header_start: str) -> list[list[list[str]]]:
    """Rows of every markdown table whose header line starts with `header_start` (cells stripped)."""
    lines = md.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split(" | ")])
            tables.append(rows)
    return tables


def md_table(md: str, header_start: str) -> list[list[str]]:
    """Rows of the first markdown table whose header line starts with `header_start`."""
    tables = md_tables(md, header_start)
    if not tables:
        raise AssertionError(f"no table starting with {header_start!r}")
    return tables[0]
