"""`python -m mpm_inr.bench sim`: simulator steps/s on CPU (and CUDA when present), written as JSON + markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import torch

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench_sim import bench_sim


def run(scenario: str, device: str | None, n_steps: int, out_dir: str) -> list[dict]:
    cfg = compose_train_config([f"scenario={scenario}"])["scenario"]
    devices = [device] if device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    # One thread on CPU, as generation uses: a second OpenMP thread gains ~1.5x idle but loses 6x under load.
    results = [bench_sim(cfg, d, n_steps=n_steps, **({"threads": 1} if d == "cpu" else {})) for d in devices]
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [f"# Simulator benchmark — {scenario} — {date}", "",
             "| device | particles | grid | steps/s | ms/step | time for all frames [s] | threads |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['device_name']} ({r['device']}) | {r['n_particles']} | {r['n_grid']} | "
                     f"{r['steps_per_s']:.1f} | {r['ms_per_step']:.2f} | {r['extrapolated_s_for_n_frames']:.0f} | "
                     f"{r['torch_threads']} |")
    if "cuda" not in devices:
        lines += ["", "CUDA: unmeasured (no GPU on this machine)."]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_bench.json").write_text(json.dumps({"date": date, "results": results}, indent=2))
    (out / "sim_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results
