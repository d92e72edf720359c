"""`python -m mpm_inr.bench reference`: the reference recipe run to its documented step count (or a cap), alone.

The train bench races the reference against our default under a short cap, so its speed-ups are lower bounds.
This part answers the other question, what the original recipe really costs: each documented recipe of each
field trains until its true R² reaches the target, its documented steps run out, or the cap; the table gives
its real time to the target (training seconds, the R² checks excluded) or says that it never got there. It
needs no run of ours, so nothing of ours can stop it; on a CPU its 150 000 steps take hours, so it is meant for
a GPU (issue #18).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mpm_inr.bench.reference_recipe import REFERENCE_RECIPES, train_reference
from mpm_inr.bench.train_bench import (
    BenchSettings,
    bench_dataset,
    bench_window,
    device_name,
    reference_summary,
)
from mpm_inr.data.dataset import recorded_fingerprint


@dataclass(frozen=True)
class ReferenceSettings:
    fields: list[str]
    scenario: str
    device: str
    seed: int = 0
    frames: int = 100
    target: float = 0.995
    cap_s: float | None = None  # None: the documented steps decide alone
    check_every: int = 200
    root: str = "data"

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in REFERENCE_RECIPES]
        if unknown or not self.fields:
            raise ValueError(f"--fields {','.join(self.fields)}: choose from {', '.join(REFERENCE_RECIPES)}")
        if self.cap_s is not None and not self.cap_s > 0:
            raise ValueError(f"--cap {self.cap_s} must be a positive number of seconds")
        if self.check_every < 1:
            raise ValueError(f"--check-every {self.check_every} must be at least 1")
        if not 0 < self.target < 1:
            raise ValueError(f"--target {self.target} must lie in (0, 1)")

    def bench(self) -> BenchSettings:
        """The train bench's settings for the same dataset and window (its loaders are reused, not copied)."""
        return BenchSettings(fields=self.fields, scenario=self.scenario, device=self.device, target=self.target,
                             seeds=[self.seed], frames=self.frames, root=self.root, compare_targets=())


def run(s: ReferenceSettings, out_dir: str) -> dict[str, Any]:
    """Every recipe of every field, saved after each one (a killed run keeps what finished)."""
    bench = s.bench()
    results: dict[str, Any] = {
        "device": device_name(s.device), "torch": torch.__version__, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "scenario": s.scenario, "frames": s.frames, "seed": s.seed, "target_r2": s.target, "cap_s": s.cap_s,
        "check_every": s.check_every, "dataset": recorded_fingerprint(bench_dataset(bench, s.seed)), "recipes": []}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cap = float("inf") if s.cap_s is None else s.cap_s
    for field in s.fields:
        window = bench_window(bench, field, s.seed, 0)
        values = torch.from_numpy(window.values).to(s.device)
        positions = torch.from_numpy(window.positions).to(s.device)
        for recipe in REFERENCE_RECIPES[field]:
            ref = train_reference(values, positions, recipe, s.target, cap, check_every=s.check_every)
            summary = reference_summary(ref, cap, None)
            summary.update(field=field, steps_per_s=ref.steps / ref.seconds if ref.seconds > 0 else None,
                           time_cap_s=s.cap_s)
            results["recipes"].append(summary)
            (out / "reference_bench.json").write_text(json.dumps(results, indent=2))
            (out / "reference_bench.md").write_text(markdown(results))
    print(markdown(results))
    return results


def _outcome(r: dict[str, Any], target: float) -> str:
    """Time to the target in words, or why there is none."""
    if r["reached"]:
        return f"{r['seconds']:.1f} s (step {r['steps']:,})"
    if r["ended_by"] == "all steps":
        return f"never: all {r['total_steps']:,} documented steps ended at R² {r['r2']:.4g}"
    return f"not within the {r['time_cap_s']:g}-s cap ({r['steps']:,} of {r['total_steps']:,} steps)"


def markdown(results: dict[str, Any]) -> str:
    target = results["target_r2"]
    cap = "none (documented steps)" if results["cap_s"] is None else f"{results['cap_s']:g} s per recipe"
    lines = [(f"# Reference recipe to its documented steps — {results['device']} — torch {results['torch']} — "
             f"{results['date']}"), "",
             (f"scenario `{results['scenario']}`, dataset seed {results['seed']} (fingerprint "
              f"`{(results['dataset'] or 'not recorded')[:16]}`), {results['frames']} frames, target true R² "
              f"{target}, cap {cap}. Training seconds exclude the R² checks (at 25, 50, 100, ... steps, then every "
              f"{results['check_every']}), so the time to the target is known to within one check. R² is ours "
              "(1 − SS_res/SS_tot, per-component means); Pearson r² is the reference's own score."), "",
             (f"| field | recipe | params | lr, steps, schedule | time to R² ≥ {target} | steps run | steps/s | "
              f"R² at the end | Pearson r² at the end | first check with Pearson r² ≥ {target} |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["recipes"]:
        pearson_at = "-" if r["pearson_target_step"] is None else f"step {r['pearson_target_step']:,}"
        rate = "-" if r["steps_per_s"] is None else f"{r['steps_per_s']:.0f}"
        lines.append(f"| {r['field']} | {r['recipe']} | {r['params']:,} | {r['lr']:g}, {r['total_steps']:,}, "
                     f"{r['scheduler']} | {_outcome(r, target)} | {r['steps']:,} | {rate} | {r['r2']:.5g} | "
                     f"{r['pearson_r2']:.5g} | {pearson_at} |")
    return "\n".join(lines) + "\n"
