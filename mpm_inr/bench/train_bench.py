"""`python -m mpm_inr.bench train`: time to R² >= target per field, ours vs the reference recipe, plus SVD.

All three run in this process, on the same window and the same device. Ours runs the default per-field
recipe with early stop at the target (R² estimated on a schedule, then measured on every value at the end).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.reference_recipe import train_reference


def bench_field(field: str, scenario: str, device: str, target: float, ref_cap_s: float, seed: int,
                frames: int, root: str) -> dict[str, Any]:
    from mpm_inr.data.dataset import open_dataset
    from mpm_inr.data.generate import ensure_dataset
    from mpm_inr.data.window import FieldWindow
    from mpm_inr.metrics.svd import svd_baseline
    from mpm_inr.training.run import run_training

    trainer = "gpu" if device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"field={field}", f"scenario={scenario}", f"data.seed={seed}", f"data.root={root}",
                     f"data.n_training_frames={frames}", "logger=none", f"trainer={trainer}",
                     f"train.target_r2={target}", "outputs.plot=false", "outputs.checkpoint=false"]
        cfg = compose_train_config(overrides, tmp)
        t0 = time.perf_counter()
        ours = run_training(cfg, tmp, overrides, progress=False)
        ours_wall = time.perf_counter() - t0
    ds = open_dataset(ensure_dataset(cfg["scenario"], seed, root, device=device, progress=False))
    window = FieldWindow.from_dataset(ds, field, frames, 0, normalize=False)
    svd = svd_baseline(window.values, normalize=True)
    values = torch.from_numpy(window.values).to(device)
    positions = torch.from_numpy(window.positions).to(device)
    ref = train_reference(values, positions, field, target, ref_cap_s)
    ours_time = ours["training_time"]
    return {
        "field": field, "target_r2": target,
        "ours": {"final_r2": ours["final_r2"], "slope": ours["slope"], "compression_ratio": ours["compression_ratio"],
                 "training_time_s": ours_time, "end_to_end_s": ours_wall, "steps": ours["steps"],
                 "inr_type": ours["inr_type"], "reached": ours["final_r2"] >= target},
        "reference": {"r2": ref.r2, "seconds": ref.seconds, "steps": ref.steps, "reached": ref.reached_target,
                      "time_cap_s": ref_cap_s, "trace": ref.trace},
        "speedup": (ref.seconds / ours_time) if ref.reached_target and ours_time > 0 else None,
        "speedup_lower_bound": (ref.seconds / ours_time) if not ref.reached_target and ours_time > 0 else None,
        "svd": {"rank_for_target": svd.rank_for(target), "seconds": svd.time_s,
                "r2_by_rank": {str(r): svd.r2(r) for r in svd.ranks},
                "compression_at_target": svd.compression(svd.rank_for(target)) if svd.rank_for(target) else None},
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Training benchmark — {results['device']} — torch {results['torch']} — {results['date']}", "",
             f"scenario `{results['scenario']}`, {results['frames']} frames, dataset seed {results['seed']}, "
             f"target R² {results['target_r2']}", "",
             "| field | ours: type | ours: time to target [s] | ours: R² | compression | reference: time [s] | "
             "reference: R² | speed-up | SVD rank for target |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["fields"]:
        o, ref = r["ours"], r["reference"]
        ref_time = f"{ref['seconds']:.1f}" if ref["reached"] else f"not reached in {ref['time_cap_s']:.0f}"
        speed = f"{r['speedup']:.0f}x" if r["speedup"] else (
            f">{r['speedup_lower_bound']:.0f}x" if r["speedup_lower_bound"] else "-")
        lines.append(f"| {r['field']} | {o['inr_type']} | {o['training_time_s']:.1f} | {o['final_r2']:.5f} | "
                     f"{o['compression_ratio']:.1f} | {ref_time} | {ref['r2']:.4f} | {speed} | "
                     f"{r['svd']['rank_for_target']} |")
    return "\n".join(lines) + "\n"


def run(fields: list[str], scenario: str | None, device: str | None, target: float, ref_cap_s: float, seed: int,
        frames: int, root: str, out_dir: str) -> dict[str, Any]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    scenario = scenario or ("discs_3types" if device == "cuda" else "discs_small")
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
               "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
               "scenario": scenario, "frames": frames, "seed": seed, "target_r2": target,
               "fields": [bench_field(f, scenario, device, target, ref_cap_s, seed, frames, root) for f in fields]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_bench.json").write_text(json.dumps(results, indent=2))
    (out / "train_bench.md").write_text(markdown(results))
    print(markdown(results))
    return results
