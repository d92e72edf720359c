"""`python -m mpm_inr.bench train`: per field, ours vs the reference recipe vs SVD, on one device, in one process.

Three parts, all in the same process, on the same windows and the same device:
1. speed (first seed): time to R² >= target for our default recipe (early stop at the target, R² estimated on a
   schedule, then measured on every value at the end) and for the reference recipe (capped), with the SVD rank
   the target needs;
2. seeds: our default recipe on every dataset seed, with medians (R², slope, compression, time);
   compression: per window of `windows` (the one of `frames` reuses the seeds part's runs) and per field, the
   table in bytes at each of `compare_targets`: ours (float32 parameters; the codec file) vs the quantised SVD,
   SVD, SZ3 and ZFP at the same R², and with held-out frames the codec decoded at the held-out times vs the
   baselines interpolated at its bytes; issue #19's goal table on top (compression_bench, compression_tables);
3. held-out frames (`holdout_every=k`): training-frame and held-out R² for SVD (temporal coefficients
   interpolated linearly and by a cubic spline), our default (Lagrangian) recipe, and the best Eulerian type
   trained under the same wall-time cap for every Eulerian type.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from mpm_inr.bench import compression_bench, compression_tables, fixed_cost
from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.reference_recipe import (
    REFERENCE_RECIPES,
    ReferenceResult,
    train_reference,
)
from mpm_inr.bench.resume import Previous, previous_results
from mpm_inr.config import choices
from mpm_inr.errors import UserError
from mpm_inr.files import write_atomic
from mpm_inr.threads import AUTO, resolve_threads

# Eulerian recipes raced in the held-out comparison: each type's config defaults plus what made it train at
# all in our measurements (ngp: a larger lr and more frames per step; see README "ngp").
EULERIAN_RECIPES: dict[str, list[str]] = {
    "siren_txy": [],
    "ngp": ["optimizer.lr=1e-2", "train.batch_size=8", "model.log2_table_size=16"],
}


@dataclass
class BenchSettings:
    fields: list[str]
    scenario: str
    device: str
    target: float = 0.995
    ref_cap_s: float = 60.0
    seeds: list[int] = dc_field(default_factory=lambda: [0, 1, 2])
    frames: int = 100
    root: str = "data"
    holdout_every: int = 4
    eulerian: list[str] = dc_field(default_factory=lambda: list(EULERIAN_RECIPES))
    eulerian_cap_s: float = 30.0
    reference: bool = True
    compare_targets: tuple[float, ...] = compression_bench.COMPARE_TARGETS
    fixed_cost: bool = True  # part 4: wall ÷ fit of whole train.py commands (one run; a --multirun round)
    multirun_jobs: int = 4
    windows: list[int] = dc_field(default_factory=list)  # compression windows (frames); empty: [frames]
    long_cap_s: float | None = None  # train.max_time_s of the compression runs on windows longer than `frames`
    only_compression: bool = False  # skip the speed, seeds, held-out race and fixed-cost parts
    only_fixed_cost: bool = False  # skip every part but the fixed cost
    only_holdout: bool = False  # of the compression windows, only the held-out part (one interrupted, say)
    resume: bool = False  # reuse the compression seeds an earlier run into the same --out finished (bench.resume)
    #: fields whose compression windows are encoded with no model trained (compression_bench.compare_window)
    window_only: list[str] = dc_field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [t for t in self.eulerian if t not in EULERIAN_RECIPES]
        if unknown:
            raise ValueError(f"unknown Eulerian type(s) {unknown}; choose from {', '.join(EULERIAN_RECIPES)}")
        if not self.seeds:
            raise ValueError("at least one dataset seed is needed")
        if any(not 0 < t < 1 for t in self.compare_targets):
            raise ValueError(f"compare targets {list(self.compare_targets)} must lie in (0, 1)")
        self.windows = list(self.windows or [self.frames])
        check_windows(self.windows, self.scenario)
        if self.only_compression and self.only_fixed_cost:
            raise ValueError("--only-compression and --only-fixed-cost exclude each other")
        if self.only_fixed_cost and not self.fixed_cost:
            raise ValueError("--only-fixed-cost and --no-fixed-cost exclude each other")
        if self.only_holdout and not (self.only_compression and self.holdout_every > 0):
            raise ValueError("--only-holdout needs --only-compression and --holdout-every k > 0")
        if self.long_cap_s is not None and not self.long_cap_s > 0:
            raise ValueError(f"--long-cap {self.long_cap_s} must be a positive number of seconds")
        stray = [f for f in self.window_only if f not in self.fields]
        if stray:
            raise ValueError(f"--window-only {','.join(stray)}: not among --fields {','.join(self.fields)}")


    def window_parts(self) -> tuple[int, ...]:
        """The holdout_every of each part a compression window runs: 0 for its training frames, k held out."""
        if self.only_holdout:
            return (self.holdout_every,)
        return (0, self.holdout_every) if self.holdout_every > 0 else (0,)


def check_windows(windows: list[int], scenario: str) -> None:
    """Compression windows must be distinct frame counts from 2 to the scenario's frames (checked before any run,
    so a long bench does not fail at its last window)."""
    n_frames = int(compose_train_config([f"scenario={scenario}"])["scenario"]["n_frames"])
    bad = [w for w in windows if not 2 <= w <= n_frames]
    if bad or len(set(windows)) < len(windows):
        raise ValueError(f"--windows {','.join(map(str, windows))}: need distinct frame counts from 2 to "
                         f"{n_frames} (scenario {scenario}), e.g. --windows 100,1000")


def train_once(s: BenchSettings, field: str, seed: int, extra: list[str]) -> tuple[dict[str, Any], float]:
    """One training run through the real entry path (compose -> run_training); returns metrics and wall time."""
    metrics, wall, _ = train_and_inspect(s, field, seed, extra)
    return metrics, wall


def train_and_inspect(s: BenchSettings, field: str, seed: int, extra: list[str],
                      inspect: Callable[[Path, dict[str, Any]], Any] | None = None, frames: int | None = None
                      ) -> tuple[dict[str, Any], float, Any]:
    """train_once, and then (for an ok run, with its checkpoint written) `inspect(run_dir, metrics)` before the
    temporary run dir goes; returns metrics, wall time of the training and what inspect returned (or None).
    frames: the window's training frames (default: the bench's `frames`)."""
    from mpm_inr.training.run import run_training

    overrides = [*run_overrides(s, field, seed, frames), "outputs.checkpoint=" + ("true" if inspect else "false"),
                 *extra]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train_config(overrides, tmp)
        t0 = time.perf_counter()
        try:
            metrics = run_training(cfg, tmp, overrides, progress=False)
        except UserError as err:  # e.g. a field that is constant in this seed's window: recorded, not fatal
            metrics = {"status": "failed", "error": str(err)}
        wall = time.perf_counter() - t0
        seen = inspect(Path(tmp), metrics) if inspect is not None and metrics["status"] == "ok" else None
        return metrics, wall, seen


def run_overrides(s: BenchSettings, field: str, seed: int, frames: int | None = None) -> list[str]:
    """A bench run's dataset, window, device and quiet outputs (the logger off, no plot)."""
    trainer = "gpu" if s.device == "cuda" else "cpu"
    return [f"field={field}", f"scenario={s.scenario}", f"data.seed={seed}", f"data.root={s.root}",
            f"data.n_training_frames={frames or s.frames}", "logger=none", f"trainer={trainer}", "outputs.plot=false"]


def accuracy_option(target: float) -> str | None:
    """The conf/accuracy option that asks for R² `target` (0.999 -> r2_0999); None where conf/ has none."""
    name = "r2_" + format(target, "g").replace(".", "")
    return name if name in choices.ACCURACIES else None


#: the config sections that make one training differ from another (outputs and codec settings do not)
_TRAINING_SECTIONS = ("model", "train", "optimizer", "scheduler", "data", "seed")


def trainings_for(base: list[str], targets: tuple[float, ...]) -> list[tuple[list[str], tuple[float, ...]]]:
    """The compare targets grouped by the training their accuracy option composes (`accuracy=r2_0999` adds the
    larger S and C trainings of conf/accuracy_preset): per distinct training its override and the targets it
    serves, in the targets' order. A target with no accuracy option, or one that composes the same training as
    an earlier target, shares that run."""
    groups: dict[str, tuple[list[str], list[float]]] = {}
    for target in targets:
        option = accuracy_option(target)
        extra = [f"accuracy={option}"] if option else []
        cfg = compose_train_config([*base, *extra])
        key = json.dumps({k: cfg[k] for k in _TRAINING_SECTIONS}, sort_keys=True, default=str)
        groups.setdefault(key, (extra, []))[1].append(target)
    return [(extra, tuple(served)) for extra, served in groups.values()]


def compare_per_training(s: BenchSettings, field: str, seed: int, extra: list[str], targets: tuple[float, ...],
                         compare: Callable[[Path, dict[str, Any], tuple[float, ...]], dict[str, Any]],
                         frames: int | None = None) -> tuple[dict[str, Any], float, dict[str, Any] | None]:
    """Train once per distinct training of the targets (trainings_for) and compare each run at the targets it
    serves; returns the first run's metrics and wall time and the merged comparison, each target's row with the
    training behind it. A failed run fails the seed (metrics of that run, no comparison)."""
    first: tuple[dict[str, Any], float] | None = None
    merged: dict[str, Any] | None = None
    for accuracy, served in trainings_for([*run_overrides(s, field, seed, frames), *extra], targets):
        metrics, wall, comparison = train_and_inspect(
            s, field, seed, [*extra, *accuracy], lambda run_dir, m, ts=served: compare(run_dir, m, ts), frames)
        first = first or (metrics, wall)
        if comparison is None:
            return metrics, wall, None
        for row in comparison["targets"].values():
            row["training"] = {"accuracy": accuracy[0].split("=")[1] if accuracy else "none",
                               "final_r2": metrics["final_r2"], "training_time_s": metrics["training_time"],
                               "steps": metrics["steps"]}
        if merged is None:
            merged = comparison
        else:
            merged["targets"].update(comparison["targets"])
            merged["time_s"] += comparison["time_s"]
    assert first is not None  # targets is never empty here
    return first[0], first[1], merged


def _ours_summary(m: dict[str, Any], wall: float, target: float) -> dict[str, Any]:
    if m["status"] != "ok":
        return {"status": m["status"], "error": m.get("error"), "reached": False}
    return {"status": "ok", "final_r2": m["final_r2"], "slope": m["slope"], "compression_ratio": m["compression_ratio"],
            "training_time_s": m["training_time"], "end_to_end_s": wall, "steps": m["steps"],
            "wall_time_s": m["wall_time"], "wall_over_fit": m["wall_time"] / m["training_time"],
            "inr_type": m["inr_type"], "reached": m["final_r2"] >= target,
            "svd_r2_same_params": m.get("svd_r2_same_params")}


def bench_dataset(s: BenchSettings, seed: int):
    from mpm_inr.data.dataset import open_dataset
    from mpm_inr.data.generate import ensure_dataset

    scenario_cfg = compose_train_config([f"scenario={s.scenario}"])["scenario"]
    return open_dataset(ensure_dataset(scenario_cfg, seed, s.root, device=s.device, progress=False))


def bench_window(s: BenchSettings, field: str, seed: int, holdout_every: int):
    from mpm_inr.data.window import FieldWindow

    return FieldWindow.from_dataset(bench_dataset(s, seed), field, s.frames, holdout_every, normalize=False)


def _svd_holdout(s: BenchSettings, field: str, seed: int) -> dict[str, Any]:
    """SVD fitted on the training frames at the smallest rank reaching the target there; held-out frames get
    its temporal coefficients interpolated in t (linear and cubic spline)."""
    from mpm_inr.metrics.svd import svd_baseline, svd_holdout

    window = bench_window(s, field, seed, s.holdout_every)
    train, test = window.train_frames, window.test_frames
    fit = svd_baseline(window.values[train], normalize="centred")
    rank = fit.rank_for(s.target) or fit.max_rank
    out = {"rank": rank, "train_r2": fit.r2(rank), "compression": fit.compression(rank)}
    for method in ("linear", "cubic"):
        out[f"holdout_r2_{method}"] = svd_holdout(window.values, train, test, ranks=(rank,), method=method,
                                                  normalize="centred").r2[rank]
    return out


def speed(s: BenchSettings, field: str) -> dict[str, Any]:
    """Time to target on the first seed: ours (early stop at the target), the reference recipe, SVD."""
    from mpm_inr.metrics.svd import svd_baseline

    seed = s.seeds[0]
    # check R² every 20 steps (the estimate's cost counts as training time): the defaults reach the target within a
    # few hundred steps, so the presets' check every 100 would round the time to target up by up to 2x
    metrics, wall = train_once(s, field, seed, [f"train.target_r2={s.target}", "train.eval_every=20",
                                                "train.steps_per_call=20"])
    window = bench_window(s, field, seed, 0)
    svd = svd_baseline(window.values, normalize="centred")
    out: dict[str, Any] = {
        "field": field, "seed": seed, "target_r2": s.target, "ours": _ours_summary(metrics, wall, s.target),
        "svd": {"rank_for_target": svd.rank_for(s.target), "seconds": svd.time_s,
                "r2_by_rank": {str(r): svd.r2(r) for r in svd.ranks},
                "compression_at_target": svd.compression(svd.rank_for(s.target)) if svd.rank_for(s.target) else None},
        "reference": [],
    }
    if s.reference and metrics["status"] == "ok":
        values = torch.from_numpy(window.values).to(s.device)
        positions = torch.from_numpy(window.positions).to(s.device)
        ours_done = metrics["final_r2"] >= s.target and metrics["training_time"] > 0
        for recipe in REFERENCE_RECIPES[field]:
            ref = train_reference(values, positions, recipe, s.target, s.ref_cap_s)
            out["reference"].append(reference_summary(ref, s.ref_cap_s, metrics["training_time"] if ours_done else None))
    return out


def reference_summary(ref: ReferenceResult, cap_s: float, ours_time: float | None) -> dict[str, Any]:
    """What one reference recipe did within the cap, and the speed-up it implies.

    Reached the target: its time ÷ ours, exact. Stopped at the cap: its training time there (the cap) ÷ ours, a
    lower bound. Ran its whole recipe without reaching it, or ours missed the target: no speed-up (None)."""
    rec = ref.recipe
    ended = "target" if ref.reached_target else ("all steps" if ref.steps > rec.total_steps else "cap")
    speedup = None if ours_time is None or ended == "all steps" else ref.seconds / ours_time
    return {"recipe": rec.name, "hidden_dim": rec.hidden_dim, "n_layers_nnr_f": rec.n_layers_nnr_f,
            "sine_layers": rec.sine_layers, "params": ref.params, "omega": rec.omega, "lr": rec.lr,
            "total_steps": rec.total_steps, "scheduler": rec.scheduler, "documented_r2": rec.documented_r2,
            "source": rec.source, "r2": ref.r2, "pearson_r2": ref.pearson_r2, "seconds": ref.seconds,
            "steps": ref.steps, "reached": ref.reached_target, "ended_by": ended,
            "pearson_target_step": ref.pearson_target_step, "time_cap_s": cap_s, "speedup": speedup,
            "speedup_is_lower_bound": speedup is not None and ended == "cap", "trace": ref.trace}


def seed_sweep(s: BenchSettings, field: str) -> dict[str, Any]:
    """Our default recipe (no early stop) on every seed, and the medians; when `frames` is a compression window,
    each trained model also against the baselines at the compare targets (compression_bench)."""
    runs, compared = [], []
    targets = tuple(s.compare_targets) if s.frames in s.windows else ()

    def compare(run_dir: Path, metrics: dict[str, Any], served: tuple[float, ...]) -> dict[str, Any]:
        return compression_bench.compare_run(run_dir, metrics, served, s.device)

    for seed in s.seeds:
        metrics, wall, comparison = (compare_per_training(s, field, seed, [], targets, compare) if targets
                                     else train_and_inspect(s, field, seed, []))
        runs.append({"seed": seed, **_ours_summary(metrics, wall, s.target)})
        compared.append(_compared(seed, metrics, comparison))
    keys = ("final_r2", "slope", "compression_ratio", "training_time_s", "end_to_end_s", "wall_over_fit")
    done = [r for r in runs if r["status"] == "ok"]
    median = {k: statistics.median(r[k] for r in done) if done else None for k in keys}
    ok = all(r["status"] == "ok" and r["final_r2"] >= s.target and 0.99 <= r["slope"] <= 1.01 for r in runs)
    return {"field": field, "runs": runs, "median": median, "all_seeds_meet_target": ok,
            "compression": compression_bench.summarise(field, compared, targets) if targets else None}


def _compared(seed: int, metrics: dict[str, Any], comparison: dict[str, Any] | None) -> dict[str, Any]:
    """One seed's entry of a compression table: its comparison, the training behind it, and when it finished (a
    resumed bench's table holds seeds of more than one run)."""
    training = None if metrics["status"] != "ok" else {
        "final_r2": metrics["final_r2"], "training_time_s": metrics["training_time"], "steps": metrics["steps"]}
    return {"seed": seed, "comparison": comparison, "error": metrics.get("error"), "training": training,
            "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def compression_sweep(s: BenchSettings, field: str, window: int, holdout_every: int = 0,
                      finished: dict[int, dict[str, Any]] | None = None,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Our default recipe on every seed at `window` training frames (capped at long_cap_s beyond `frames`), each
    model against the baselines at the compare targets: on its training frames, or with holdout_every > 0 on
    the held-out frames (compression_bench.compare_holdout). A seed in `finished` (a resumed bench's) is taken as
    it is; `progress` gets the table of the seeds so far after each one, to be saved."""
    targets = tuple(s.compare_targets)
    cap = [f"train.max_time_s={s.long_cap_s}"] if s.long_cap_s and window > s.frames else []
    extra = [f"data.holdout_every={holdout_every}", "outputs.svd=false", "outputs.baselines=false", *cap]

    def compare(run_dir: Path, metrics: dict[str, Any], served: tuple[float, ...]) -> dict[str, Any]:
        if holdout_every:
            return compression_bench.compare_holdout(run_dir, served, s.device)
        return compression_bench.compare_run(run_dir, metrics, served, s.device)

    compared: list[dict[str, Any]] = []
    for seed in s.seeds:
        entry = (finished or {}).get(seed)
        if entry is not None and bool(entry.get(WINDOW_ONLY)) != (field in s.window_only):
            entry = None  # measured the other way (a model trained, or none): measured again
        if entry is None and field in s.window_only:
            entry = window_compared(s, field, seed, window, holdout_every)
        elif entry is None:
            metrics, _, comparison = compare_per_training(s, field, seed, extra, targets, compare, frames=window)
            entry = _compared(seed, metrics, comparison)
        compared.append(entry)
        if progress is not None:
            progress(compression_bench.summarise(field, compared, targets, holdout_every, len(s.seeds)))
    return compression_bench.summarise(field, compared, targets, holdout_every)


#: a compression table's seed entry whose file was encoded with no model trained (window_compared)
WINDOW_ONLY = "window_only"


def window_compared(s: BenchSettings, field: str, seed: int, window: int, holdout_every: int) -> dict[str, Any]:
    """One seed's entry of a compression table with no model trained: the window's own file
    (compression_bench.compare_window) against the baselines; a file that cannot be made (a constant field, say)
    is recorded, not fatal, as a failed training is."""

    with tempfile.TemporaryDirectory() as tmp:
        try:
            comparison = compression_bench.compare_window(bench_dataset(s, seed).path, field, window, holdout_every,
                                                          tuple(s.compare_targets), s.device, Path(tmp))
        except UserError as err:
            return {**_compared(seed, {"status": "failed", "error": str(err)}, None), WINDOW_ONLY: True}
    return {**_compared(seed, {"status": WINDOW_ONLY}, comparison), WINDOW_ONLY: True}


def holdout(s: BenchSettings, field: str) -> dict[str, Any]:
    """Training-frame and held-out R²: SVD (interpolated), our default, and the best Eulerian type (capped)."""
    seed = s.seeds[0]
    common = [f"data.holdout_every={s.holdout_every}"]
    ours, _ = train_once(s, field, seed, common)
    svd = _svd_holdout(s, field, seed)
    if ours["status"] != "ok":
        return {"field": field, "seed": seed, "holdout_every": s.holdout_every, "svd": svd, "error": ours["error"]}
    eulerian = []
    for name in s.eulerian:
        m, _ = train_once(s, field, seed, [f"inr_type={name}", *common, *EULERIAN_RECIPES[name],
                                           f"train.max_time_s={s.eulerian_cap_s}"])
        if m["status"] != "ok":
            continue
        eulerian.append({"inr_type": name, "train_r2": m["final_r2"], "holdout_r2": m["holdout_r2"],
                         "compression_ratio": m["compression_ratio"], "training_time_s": m["training_time"],
                         "steps": m["steps"], "overrides": EULERIAN_RECIPES[name]})
    best = max(eulerian, key=lambda e: e["holdout_r2"], default=None)
    return {"field": field, "seed": seed, "holdout_every": s.holdout_every, "svd": svd,
            "ours": {"inr_type": ours["inr_type"], "train_r2": ours["final_r2"], "holdout_r2": ours["holdout_r2"],
                     "compression_ratio": ours["compression_ratio"], "training_time_s": ours["training_time"]},
            "eulerian": eulerian, "best_eulerian": best["inr_type"] if best else None,
            "eulerian_cap_s": s.eulerian_cap_s}


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown(results: dict[str, Any]) -> str:
    seeds = ", ".join(str(x) for x in results["seeds"])
    lines = [f"# Training benchmark — {results['device']} — torch {results['torch']} — {results['date']}", "",
             (f"scenario `{results['scenario']}`, {results['frames']} frames, target R² {results['target_r2']}, "
              f"dataset seeds {seeds}. Times are training seconds unless marked end-to-end."
              + (f" Compression windows: {', '.join(map(str, results['windows']))} frames"
                 + (f", training capped at {results['long_cap_s']:g} s per run beyond {results['frames']}."
                    if results.get("long_cap_s") else ".") if results.get("windows") else "")
              + (f" Fields encoded with no model trained, from each window itself (`--window-only`, `python -m "
                 f"mpm_inr.codec encode-window`): {', '.join(results['window_only'])}."
                 if results.get("window_only") else "")), "",
             "Dataset fingerprints (sha256 of the arrays, first 16 hex digits; the same seed made by another "
             "simulator version, torch build or device is another trajectory): "
             + ", ".join(f"seed {k} `{(v or 'not recorded')[:16]}`" for k, v in results["datasets"].items())]
    if results.get("resumed"):
        lines += ["", ("Resumed (`--resume`): the compression tables hold seeds an earlier run into this directory "
                       "finished, reused as they were; each seed's `finished_utc` in the JSON says when it ran.")]
    if results["speed"]:
        lines += ["", f"## Speed: time to R² ≥ {results['target_r2']} (dataset seed {results['seeds'][0]})", "",
                  ("| field | ours: type | ours: time to target [s] | ours: end-to-end [s] | ours: R² | compression | "
                   "SVD rank for target |"),
                  "|---|---|---|---|---|---|---|"]
    for r in results["speed"]:
        o = r["ours"]
        if o["status"] != "ok":
            lines.append(f"| {r['field']} | failed: {o['error']} | | | | | {r['svd']['rank_for_target']} |")
            continue
        lines.append(f"| {r['field']} | {o['inr_type']} | {o['training_time_s']:.1f} | {o['end_to_end_s']:.1f} | "
                     f"{o['final_r2']:.5f} | {o['compression_ratio']:.1f} | {r['svd']['rank_for_target']} |")
    lines += _reference_table(results)
    if results["seed_sweep"]:
        lines += ["", f"## Default recipe on every seed (no early stop): median over seeds {seeds}", "",
                  ("| field | type | median R² | median slope | median compression | median time [s] | "
                   "median wall ÷ training time (in-process, no plot) | per-seed R² | per-seed SVD R² at as many params | "
                   "all seeds ≥ target, slope in [0.99, 1.01] |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["seed_sweep"]:
            m = r["median"]
            per = " / ".join(f"{x['final_r2']:.5f}" if x["status"] == "ok" else f"seed {x['seed']} failed: {x['error']}"
                             for x in r["runs"])
            svd = " / ".join(_f(x.get("svd_r2_same_params"), ".5f") for x in r["runs"])
            kind = next((x["inr_type"] for x in r["runs"] if x["status"] == "ok"), "-")
            lines.append(f"| {r['field']} | {kind} | {_f(m['final_r2'], '.5f')} | {_f(m['slope'], '.4f')} | "
                         f"{_f(m['compression_ratio'], '.1f')} | {_f(m['training_time_s'], '.1f')} | "
                         f"{_f(m.get('wall_over_fit'), '.2f')} | {per} | {svd} | "
                         f"{'yes' if r['all_seeds_meet_target'] else 'NO'} |")
    if results["holdout"]:
        h0 = results["holdout"][0]
        lines += ["", (f"## Held-out frames (every {h0['holdout_every']}th frame never trained on; dataset seed "
                       f"{h0['seed']}; Eulerian types capped at {h0['eulerian_cap_s']:.0f} s)"), "",
                  ("| field | SVD rank | SVD train R² | SVD held-out R² (linear / cubic) | ours: type | ours train R² | "
                   "ours held-out R² | ours compression | best Eulerian | its train R² | its held-out R² | "
                   "its compression |"), "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["holdout"]:
            sv = r["svd"]
            if "error" in r:
                lines.append(f"| {r['field']} | {sv['rank']} | {sv['train_r2']:.5f} | - | failed: {r['error']} "
                             "| | | | | | | |")
                continue
            o = r["ours"]
            e = next((x for x in r["eulerian"] if x["inr_type"] == r["best_eulerian"]), None)
            eul = (f"{e['inr_type']} | {e['train_r2']:.4f} | {e['holdout_r2']:.4f} | {e['compression_ratio']:.2f}"
                   if e else "- | - | - | -")
            lines.append(f"| {r['field']} | {sv['rank']} | {sv['train_r2']:.5f} | "
                         f"{_f(sv.get('holdout_r2_linear'), '.5f')} / {_f(sv.get('holdout_r2_cubic'), '.5f')} | "
                         f"{o['inr_type']} | {o['train_r2']:.5f} | {o['holdout_r2']:.5f} | "
                         f"{o['compression_ratio']:.1f} | {eul} |")
    lines += compression_tables.markdown(results.get("compression") or [])
    lines += fixed_cost.markdown(results.get("fixed_cost") or [])
    return "\n".join(lines) + "\n"


def _speedup_text(ref: dict[str, Any]) -> str:
    """The speed-up with what it means and where the reference stood, in words."""
    where = f"R² {ref['r2']:.4g} (Pearson {ref['pearson_r2']:.4g}) after {ref['steps']} steps"
    if ref["ended_by"] == "all steps":
        return f"none: its whole recipe ended at {where}"
    if ref["speedup"] is None:
        return f"- (ours missed the target); the reference was at {where}"
    if ref["speedup_is_lower_bound"]:
        return f"> {ref['speedup']:.0f}× (cap ÷ ours, a lower bound; the reference was at {where})"
    return f"{ref['speedup']:.0f}× (its time ÷ ours; the reference reached {where})"


def _reference_table(results: dict[str, Any]) -> list[str]:
    """One row per (field, documented reference recipe) that ran; nothing if the reference was skipped."""
    rows = [(r["field"], ref) for r in results["speed"] for ref in r["reference"]]
    if not rows:
        return []
    target = results["target_r2"]
    lines = ["", (f"## Reference recipe (MPM_pytorch siren_txy, its documented settings), capped at "
                  f"{rows[0][1]['time_cap_s']:.0f} s per recipe"), "",
             ("R² is ours, 1 − SS_res/SS_tot with per-component means, the metric the target is on. Pearson r² is "
              "the reference's own score (squared Pearson r of all values pooled), which ignores gain and offset "
              "errors: it passes the target long before R² does. The reference's `n_layers_nnr_f` counts the sine "
              "layers after the first."), "",
             ("| field | recipe | width × sine layers (n_layers_nnr_f) | params | ω | lr, steps, schedule | "
              "steps in the cap | R² at the cap | Pearson r² at the cap | first check with Pearson r² ≥ "
              f"{target} | speed-up |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for field, ref in rows:
        pearson_at = "-" if ref["pearson_target_step"] is None else f"step {ref['pearson_target_step']}"
        lines.append(f"| {field} | {ref['recipe']} | {ref['hidden_dim']} × {ref['sine_layers']} "
                     f"({ref['n_layers_nnr_f']}) | {ref['params']:,} | {ref['omega']:g} | "
                     f"{ref['lr']:g}, {ref['total_steps']:,}, {ref['scheduler']} | {ref['steps']} | "
                     f"{ref['r2']:.4g} | {ref['pearson_r2']:.4g} | {pearson_at} | {_speedup_text(ref)} |")
    return lines


def fixed_cost_overrides(s: BenchSettings, field: str) -> list[str]:
    """The bench's dataset and device for a whole train.py command, every output at its default."""
    return [f"scenario={s.scenario}", f"data.seed={s.seeds[0]}", f"data.root={Path(s.root).resolve()}",
            f"data.n_training_frames={s.frames}", f"trainer={'gpu' if s.device == 'cuda' else 'cpu'}"]


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    ours = resolve_threads(AUTO)
    return (f"cpu ({platform.processor() or platform.machine()}; our runs {ours} thread{'s' * (ours > 1)} "
            f"(trainer.cpu_threads=auto), the reference recipe torch's default {torch.get_num_threads()})")


def run(s: BenchSettings, out_dir: str) -> dict[str, Any]:
    results: dict[str, Any] = {
        "device": device_name(s.device), "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "scenario": s.scenario, "frames": s.frames,
        "seeds": s.seeds, "target_r2": s.target, "speed": [], "seed_sweep": [], "holdout": [], "fixed_cost": [],
        "compression": [], "windows": s.windows, "long_cap_s": s.long_cap_s, "window_only": s.window_only}
    from mpm_inr.data.dataset import recorded_fingerprint

    results["datasets"] = {str(seed): recorded_fingerprint(bench_dataset(s, seed)) for seed in s.seeds}
    out = Path(out_dir)
    previous = previous_results(out / "train_bench.json", results, s.compare_targets) if s.resume else Previous()
    results["compression"] = previous.blocks
    results["resumed"] = s.resume and bool(previous.blocks)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every part and seed, so an interrupted benchmark still leaves what it measured
        # each replaced whole: a kill mid-write never leaves a file --resume refuses
        write_atomic(out / "train_bench.json", json.dumps(results, indent=2))
        write_atomic(out / "train_bench.md", markdown(results))

    def put(window: int, holdout_every: int, table: dict[str, Any]) -> None:
        """A field's table into its compression window's block (made on first use), in place of an earlier one of
        that field, and saved."""
        found = next((b for b in results["compression"]
                      if (b["window"], b["holdout_every"]) == (window, holdout_every)), None)
        if found is None:
            found = {"window": window, "holdout_every": holdout_every, "fields": []}
            results["compression"].append(found)
        tables = found["fields"]
        at = next((i for i, t in enumerate(tables) if t["field"] == table["field"]), len(tables))
        tables[at:at + 1] = [table]
        save()

    if not (s.only_compression or s.only_fixed_cost):
        for f in s.fields:
            results["speed"].append(speed(s, f))
            save()
        for f in s.fields:
            sweep = seed_sweep(s, f)
            results["seed_sweep"].append(sweep)
            compared = sweep.pop("compression")
            if compared is not None:
                put(s.frames, 0, compared)
            save()
    if s.compare_targets and not s.only_fixed_cost:
        for window in sorted(s.windows):
            for held in s.window_parts():
                for f in s.fields:
                    if held or s.only_compression or window != s.frames:  # else: the seeds part compared it
                        put(window, held, compression_sweep(
                            s, f, window, held, previous.finished(window, held, f),
                            lambda table, w=window, h=held: put(w, h, table)))
    if s.holdout_every > 0 and not (s.only_compression or s.only_fixed_cost):
        for f in s.fields:
            results["holdout"].append(holdout(s, f))
            save()
    if s.fixed_cost and not s.only_compression:
        for f in s.fields:
            results["fixed_cost"].append(fixed_cost.fixed_cost(f, fixed_cost_overrides(s, f), s.multirun_jobs))
            save()
    print(markdown(results))
    return results
