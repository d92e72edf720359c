"""A fitted training-time model: predict how long a config trains before running it.

    training_time ≈ a · W + c · steps + b          (one fit per device and CPU thread count)
    W = steps · FLOPs per step                     (forward and backward, by the step's sampler path)

`a` is the device's cost of arithmetic, `c` its fixed cost per optimiser step (Python, kernel launches, the
optimiser update) and `b` the start-up inside the timed loop (the targets' packing and Gram factor, which grow
with the window, not with the steps). The three coefficients are fitted by non-negative
least squares on a study's successful runs (time cannot get cheaper with more work); with fewer than four runs
on a device the model drops terms (W + b, then W alone), so it never has more terms than data.

The thread count is part of the device: a run's torch CPU threads (metrics.json `cpu_threads`; runs recorded
before that key ran with OMP_NUM_THREADS=1 and read as 1) change a, c and b by more than any one term can absorb
(more threads are faster alone and many times slower beside a busy neighbour), so runs are fitted per
(device, threads) group, and a prediction for a thread count without a fit says which count it used instead.

FLOPs per step come from `mpm_inr.training.cost.step_flops` (each network's own `flop_costs` along the step's
path): runs record it as `flops_per_step` in metrics.json, and runs recorded before it existed get it from their
config. It is a proxy
whose scale the fit absorbs; what matters is that it grows with width, depth, latent size, hash-grid levels and
the sampler path the way the real cost does.

Fit quality is reported as the R² of the fit, the median relative error in-sample and leave-one-out (each run
predicted by the model fitted without it), which is the honest estimate of the error of a prediction.

    python -m agent predict-time [--study DIR]... [--device NAME] [--code-dir DIR] <train overrides...>

predicts one config's training_time, with the thread count its `trainer.cpu_threads` resolves to here. By default the model is fitted on the recorded study
`docs/studies/study_tiny` (CPU runs of discs_small); pass `--study` (repeatable) to fit on your own studies and
`--device` to pick a device when the studies ran on several.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.reporting.report_data import load_study
from agent.runs.trainconf import ComposeError, compose_train
from mpm_inr.config.fields import FIELDS
from mpm_inr.errors import ConfigError, UserError
from mpm_inr.threads import AUTO, check_threads, resolve_threads, threads_in_use
from mpm_inr.training.cost import DataShape, step_flops, step_path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STUDY = REPO / "docs" / "studies" / "study_tiny"
#: number of components of each field (Contract 1)
FIELD_COMPONENTS = {name: spec.n_components for name, spec in FIELDS.items()}
TERMS = ("W", "steps", "1")
TERM_UNITS = {"W": "s/GFLOP", "steps": "ms/step", "1": "s"}


# ------------------------------------------------------------------------------------------------ work


def model_params(flat_config: Mapping[str, Any]) -> dict[str, Any]:
    """`model.*` keys of a flat dotted config, without the prefix."""
    return {k[len("model."):]: v for k, v in flat_config.items() if k.startswith("model.")}


@dataclass(frozen=True)
class Workload:
    """What one training run costs, in the terms of the model."""

    inr_type: str
    steps: int
    flops_per_step: float
    path: str = ""  # mpm_inr.training.cost.step_path: points | full | gram ("" when unknown)

    @property
    def work(self) -> float:
        """W in FLOPs."""
        return float(self.steps) * self.flops_per_step

    def features(self, terms: Sequence[str] = TERMS) -> np.ndarray:
        values = {"W": self.work / 1e9, "steps": self.steps / 1e3, "1": 1.0}
        return np.array([values[t] for t in terms])


def workload(inr_type: str, flat_config: Mapping[str, Any], steps: int, shape: DataShape) -> Workload:
    """The workload of `steps` steps of a config given as a flat dotted dict (`model.*`, `train.*` keys)."""
    model, train = model_params(flat_config), _train_params(flat_config)
    return Workload(inr_type, int(steps), step_flops(inr_type, model, train, shape), step_path(inr_type, model, train))


def _train_params(flat_config: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len("train."):]: v for k, v in flat_config.items() if k.startswith("train.")}


def run_workload(metrics: Mapping[str, Any]) -> Workload | None:
    """The workload of a finished run from its metrics.json (None when the run lacks what it needs): its recorded
    `flops_per_step`, or, for runs recorded before that key, the cost of its config (ungrouped bases only)."""
    cfg = metrics.get("config") or {}
    steps, n_values, inr = metrics.get("steps"), metrics.get("n_values"), metrics.get("inr_type")
    frames = metrics.get("n_training_frames")
    n_comp = FIELD_COMPONENTS.get(str(metrics.get("field")))
    if not (isinstance(steps, int) and isinstance(n_values, int) and isinstance(frames, int) and n_comp and inr):
        return None
    recorded = metrics.get("flops_per_step")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and recorded > 0:
        try:
            path = step_path(str(inr), model_params(cfg), _train_params(cfg))
        except ConfigError:
            path = ""
        return Workload(str(inr), steps, float(recorded), path)
    train_frames = frames - len(metrics.get("holdout_frames") or [])
    if train_frames <= 0 or n_values % (train_frames * n_comp):
        return None
    try:
        return workload(str(inr), cfg, steps, DataShape(train_frames, n_values // (train_frames * n_comp), n_comp))
    except ConfigError:
        return None


# ------------------------------------------------------------------------------------------------ fit


def nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares for a handful of columns: the best of every active set (exact)."""
    n_cols = x.shape[1]
    best, best_res = np.zeros(n_cols), float(np.sum(y * y))
    for k in range(1, n_cols + 1):
        for cols in itertools.combinations(range(n_cols), k):
            sub = x[:, cols]
            coef, *_ = np.linalg.lstsq(sub, y, rcond=None)
            if np.any(coef < 0):
                continue
            res = float(np.sum((sub @ coef - y) ** 2))
            if res < best_res - 1e-15 * max(1.0, best_res):
                best_res = res
                best = np.zeros(n_cols)
                best[list(cols)] = coef
    return best


def terms_for(n: int) -> tuple[str, ...]:
    """Model terms a device with n runs can support (never more terms than runs)."""
    return TERMS if n >= 4 else ("W", "1") if n >= 2 else ("W",)


def thread_label(threads: int) -> str:
    return f"{threads} CPU thread" + ("" if threads == 1 else "s")


@dataclass
class DeviceFit:
    device: str
    threads: int  # torch CPU threads of the fitted runs
    terms: tuple[str, ...]
    coef: np.ndarray
    node_ids: list[int]
    sources: list[str]
    actual: np.ndarray
    fitted: np.ndarray
    loo: np.ndarray | None            # leave-one-out predictions (None with < 4 runs)
    work_range: tuple[float, float]   # FLOPs
    steps_range: tuple[int, int]
    inr_types: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # the step paths of the fitted runs
    loo_models: list[tuple[tuple[str, ...], np.ndarray]] = field(default_factory=list)  # (terms, coef) per left-out run

    @property
    def n(self) -> int:
        return len(self.node_ids)

    @property
    def label(self) -> str:
        """The group's name in reports: device and thread count."""
        return f"{self.device}, {thread_label(self.threads)}"

    def predict(self, w: Workload) -> float:
        return float(w.features(self.terms) @ self.coef)

    def predict_range(self, w: Workload) -> tuple[float, float] | None:
        """The lowest and highest prediction of the leave-one-out fits: how much this one prediction hangs on single
        runs (large far outside the fitted range). None with < 4 runs."""
        if not self.loo_models:
            return None
        preds = [float(w.features(terms) @ coef) for terms, coef in self.loo_models]
        return min(preds), max(preds)

    @property
    def r2(self) -> float | None:
        if self.n < 2:
            return None
        ss_tot = float(np.sum((self.actual - self.actual.mean()) ** 2))
        if ss_tot <= 0:
            return None
        return 1.0 - float(np.sum((self.actual - self.fitted) ** 2)) / ss_tot

    @staticmethod
    def _rel(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
        return np.abs(pred - actual) / np.maximum(actual, 1e-9)

    @property
    def median_rel_error(self) -> float:
        return float(np.median(self._rel(self.fitted, self.actual)))

    @property
    def loo_rel_errors(self) -> np.ndarray | None:
        return None if self.loo is None else self._rel(self.loo, self.actual)

    @property
    def loo_median_rel_error(self) -> float | None:
        e = self.loo_rel_errors
        return None if e is None else float(np.median(e))

    @property
    def loo_max_rel_error(self) -> float | None:
        e = self.loo_rel_errors
        return None if e is None else float(np.max(e))

    def formula(self) -> str:
        parts = []
        for t, c in zip(self.terms, self.coef):
            if t == "W":
                parts.append(f"{c:.4g} s/GFLOP · W")
            elif t == "steps":
                parts.append(f"{c:.4g} ms · steps")
            else:
                parts.append(f"{c:.4g} s")
        return "time ≈ " + " + ".join(parts)

    def quality(self) -> str:
        r2 = "-" if self.r2 is None else f"{self.r2:.3f}"
        loo = ("leave-one-out median error " + f"{self.loo_median_rel_error:.0%}, max {self.loo_max_rel_error:.0%}"
               if self.loo is not None else "no leave-one-out estimate (< 4 runs)")
        return f"{self.n} runs, fit R² {r2}, median error {self.median_rel_error:.0%}, {loo}"


@dataclass
class Sample:
    node_id: int
    device: str
    time_s: float
    work: Workload
    source: str = ""
    threads: int = 1  # torch CPU threads of the run


@dataclass
class TimeModel:
    fits: dict[tuple[str, int], DeviceFit] = field(default_factory=dict)  # by (device, threads)
    skipped: int = 0  # ok runs without the metrics the model needs

    @property
    def devices(self) -> list[str]:
        return sorted({d for d, _ in self.fits})

    def device(self, name: str | None, threads: int | None = None) -> DeviceFit:
        """The fit for a device (None: the only one) and thread count: that count's fit, else the fit of the
        nearest fitted count (fewer threads on a tie; `DeviceFit.threads` says which). threads=None: the fit
        with the most runs."""
        if not self.fits:
            raise UserError("no successful run with a training_time to fit a time model on")
        devices = self.devices
        if name is None:
            if len(devices) > 1:
                raise ConfigError(f"the runs come from several devices; pick one with --device ({', '.join(devices)})")
            name = devices[0]
        if name not in devices:
            raise ConfigError(f"no fitted runs on device {name!r}; fitted devices: {', '.join(devices)}")
        fits = [f for (d, _), f in sorted(self.fits.items()) if d == name]
        if threads is None:
            return max(fits, key=lambda f: f.n)
        return min(fits, key=lambda f: (abs(f.threads - threads), f.threads))


def _fit_xy(samples: Sequence[Sample], terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([s.work.features(terms) for s in samples])
    y = np.array([s.time_s for s in samples], dtype=np.float64)
    return x, y


def fit_device(device: str, samples: Sequence[Sample], threads: int = 1) -> DeviceFit:
    terms = terms_for(len(samples))
    x, y = _fit_xy(samples, terms)
    coef = nnls(x, y)
    loo, loo_models = None, []
    if len(samples) >= 4:
        loo = np.empty(len(samples))
        for i in range(len(samples)):
            keep = [j for j in range(len(samples)) if j != i]
            loo_terms = terms_for(len(keep))
            xi, yi = _fit_xy([samples[j] for j in keep], loo_terms)
            loo_models.append((tuple(loo_terms), nnls(xi, yi)))
            loo[i] = float(samples[i].work.features(loo_terms) @ loo_models[-1][1])
    works = [s.work.work for s in samples]
    steps = [s.work.steps for s in samples]
    return DeviceFit(device, threads, tuple(terms), coef, [s.node_id for s in samples], [s.source for s in samples], y,
                     x @ coef, loo, (min(works), max(works)), (min(steps), max(steps)),
                     tuple(sorted({s.work.inr_type for s in samples})),
                     tuple(sorted({s.work.path for s in samples if s.work.path})), loo_models)


def fit(samples: Sequence[Sample], skipped: int = 0) -> TimeModel:
    groups: dict[tuple[str, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.device, s.threads), []).append(s)
    return TimeModel({k: fit_device(k[0], ss, k[1]) for k, ss in sorted(groups.items())}, skipped)


def run_threads(metrics: Mapping[str, Any]) -> int:
    """A run's torch CPU threads: its recorded `cpu_threads`, else 1 (runs before the key ran with
    OMP_NUM_THREADS=1, as the recorded study did)."""
    n = metrics.get("cpu_threads")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def samples_from_runs(runs: Sequence[Any], source: str = "") -> tuple[list[Sample], int]:
    """(samples, skipped) from report RunRecords (agent.reporting.report_data): ok runs with a positive training_time."""
    out, skipped = [], 0
    for r in runs:
        if r.status != "ok":
            continue
        t = r.metrics.get("training_time")
        w = run_workload(r.metrics)
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0 or w is None:
            skipped += 1
            continue
        out.append(Sample(r.node_id, str(r.metrics.get("device") or "?"), float(t), w, source,
                          run_threads(r.metrics)))
    return out, skipped


def fit_studies(study_dirs: Sequence[str | Path]) -> TimeModel:
    samples: list[Sample] = []
    skipped = 0
    for d in study_dirs:
        study = load_study(d)
        s, k = samples_from_runs(study.runs, study.name)
        samples += s
        skipped += k
    return fit(samples, skipped)


# ------------------------------------------------------------------------------------------------ CLI


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_workload(overrides: Sequence[str], code_dir: Path = REPO) -> tuple[Workload, dict[str, Any]]:
    """The workload of a training config given as overrides of the trainer's conf/train.yaml."""
    from omegaconf import OmegaConf

    from mpm_inr.data.window import holdout_mask
    from mpm_inr.sim.scenarios import initial_state

    try:
        composed = compose_train(code_dir, list(overrides))
        # only the groups that set the cost (others, e.g. logger, interpolate Hydra's runtime config)
        cfg = {k: OmegaConf.to_container(composed[k], resolve=True)
               for k in ("model", "train", "field", "scenario", "data", "trainer")}
    except ComposeError as e:
        raise ConfigError(f"the overrides do not compose with {code_dir}/conf/train.yaml: {e}") from None
    flat = _flatten(cfg)
    frames = int(cfg["data"]["n_training_frames"])
    frames -= int(holdout_mask(frames, int(cfg["data"]["holdout_every"])).sum())
    state = initial_state(cfg["scenario"], seed=0)  # group sizes do not depend on the seed
    shape = DataShape.of_particles(frames, FIELD_COMPONENTS[str(cfg["field"]["name"])], state.mtype, state.object_id)
    return workload(str(cfg["model"]["name"]), flat, int(cfg["train"]["total_steps"]), shape), cfg


def config_threads(trainer_cfg: Mapping[str, Any]) -> int:
    """The torch CPU threads a run of this trainer config gets on this machine (`trainer.cpu_threads`; null:
    torch's setting in this process, which a train.py started from here inherits)."""
    n = resolve_threads(check_threads(trainer_cfg.get("cpu_threads", AUTO), "trainer.cpu_threads", allow_auto=True))
    return threads_in_use()["cpu_threads"] if n is None else n


def _pretty_flops(x: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} FLOP"


class ArgParser(argparse.ArgumentParser):
    """argparse that raises a one-line ConfigError instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"bad {self.prog.removeprefix('python -m agent ')} arguments: {message} "
                          f"(see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgParser(prog="python -m agent predict-time",
                       description="Predict a training config's training_time from a fitted model.")
    parser.add_argument("--study", action="append", default=None,
                        help=f"study dir to fit on (repeatable; default {DEFAULT_STUDY.relative_to(REPO)})")
    parser.add_argument("--device", default=None, help="device name as in metrics.json (cpu, or the GPU name)")
    parser.add_argument("--code-dir", default=str(REPO), help="repo whose conf/train.yaml the overrides apply to")
    parser.add_argument("overrides", nargs="*", help="training overrides, e.g. inr_type=siren_txy train.total_steps=500")
    try:
        args = parser.parse_args(list(argv or []))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    studies = [Path(s) for s in (args.study or [DEFAULT_STUDY])]
    for s in studies:
        if not (s / "journal.jsonl").exists():
            raise ConfigError(f"{s} is not a study directory (no journal.jsonl)")
    model = fit_studies(studies)
    w, cfg = config_workload(args.overrides, Path(args.code_dir))
    threads = config_threads(cfg["trainer"])
    dev = model.device(args.device, threads)
    t, spread = dev.predict(w), dev.predict_range(w)
    print(f"predicted training_time: {t:.1f} s on {dev.label}  ({w.inr_type}, {w.steps} steps x "
          f"{_pretty_flops(w.flops_per_step)}/step = {_pretty_flops(w.work)})"
          + (f"; leave-one-out fits: {spread[0]:.1f}-{spread[1]:.1f} s" if spread else ""))
    print(f"model: {dev.formula()}")
    print(f"fitted on {', '.join(str(s) for s in studies)}: {dev.quality()}")
    if dev.threads != threads:
        fitted = ", ".join(str(f.threads) for (d, _), f in sorted(model.fits.items()) if d == dev.device)
        print(f"note: the config runs with {thread_label(threads)} here (trainer.cpu_threads) but no fitted run on "
              f"{dev.device} did (fitted: {fitted}); predicted from the {dev.threads}-thread runs, whose time per "
              f"step may differ several-fold: fit on runs with trainer.cpu_threads={threads} (--study)")
    # one caveat on the cost per FLOP: another network says more than another step path of the same network
    if w.inr_type not in dev.inr_types:
        print(f"note: no fitted run used inr_type={w.inr_type} (fitted: {', '.join(dev.inr_types)}); its cost per "
              "FLOP may differ")
    elif w.path and dev.paths and w.path not in dev.paths:
        print(f"note: no fitted run took the '{w.path}' step path (fitted: {', '.join(dev.paths)}); its cost per "
              "FLOP may differ: fit on a study of such runs (--study) for a prediction worth its stated error")
    lo, hi = dev.work_range
    if w.work > 2 * hi or w.work < lo / 2:
        print(f"note: W = {_pretty_flops(w.work)} is outside the fitted range {_pretty_flops(lo)} - "
              f"{_pretty_flops(hi)}: this is an extrapolation")
    return 0
