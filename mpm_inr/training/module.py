"""The LightningModule: owns the optimisation step; sampling and data stay on the device.

Manual optimisation runs `steps_per_call` optimiser steps per Lightning `training_step`, so Lightning's
per-call bookkeeping is paid once per K steps. The only host syncs are the divergence check once per call and
the scheduled R² estimate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from mpm_inr.metrics.streaming import R2Accumulator
from mpm_inr.models.coordinates import CoordinateSource
from mpm_inr.models.registry import InrType
from mpm_inr.training.optim import build_optimizer, build_scheduler
from mpm_inr.training.sampler import FrameCycle, PointSampler

#: a run whose last R² estimate has more than this many times the best estimate's error has collapsed
COLLAPSE_FACTOR = 2.0


class _BestState(NamedTuple):
    r2: float
    step: int
    state: dict[str, Tensor]


@dataclass
class TrainSettings:
    total_steps: int
    n_points: int
    sampler: str = "points"
    frames_per_step: int = 1
    step_frames: int | None = None  # sampler=full: frames per step (None: every training frame, the dense step)
    steps_per_call: int = 50
    grad_clip: float = 0.0
    loss: str = "mse"
    eval_every: int = 500
    eval_points: int = 65536
    target_r2: float | None = None
    max_time_s: float | None = None
    seed: int = 0
    compile: bool = False  # torch.compile the per-step loss (every sampler path), not just the network's forward
    inject_nonfinite_step: int | None = None  # fault injection for tests: poison the loss at this step

    #: settings named as in the config's `train` group, taken as they are
    _SAME_NAME = ("total_steps", "sampler", "steps_per_call", "grad_clip", "loss", "eval_every", "eval_points",
                  "target_r2", "max_time_s", "compile")

    @classmethod
    def from_config(cls, train: Mapping[str, Any], *, n_particles: int, step_frames: int | None, seed: int,
                    inject_nonfinite_step: int | None = None) -> TrainSettings:
        """From the `train` group (validated): the keys of the same name as they are, and what the window decides:
        a step's points are `batch_size` frames' worth of particles, and the frames a full-sampler step reads."""
        same = {k: train[k] for k in cls._SAME_NAME if train.get(k) is not None}
        return cls(**same, n_points=train["batch_size"] * n_particles, frames_per_step=train["batch_size"],
                   step_frames=step_frames, seed=seed, inject_nonfinite_step=inject_nonfinite_step)


class GramTargets(NamedTuple):
    """What the Gram-form MSE needs, built once at fit start."""

    packed: Tensor  # the targets in the network's packed layout (real rows; solved codes are refreshed from these)
    for_loss: Tensor  # what each step's loss multiplies by: `packed`, or a smaller equivalent (solved codes)
    sq: Tensor  # ||Y||²
    n_values: int  # real values (the packed layout may hold zero padding rows)


class Diverged(RuntimeError):
    def __init__(self, step: int) -> None:
        super().__init__(f"non-finite loss at step {step}")
        self.step = step


class INRModule(pl.LightningModule):
    def __init__(self, network: nn.Module, inr: InrType, source: CoordinateSource,
                 targets: Tensor, train_frames: Tensor, settings: TrainSettings, optimizer_cfg: dict,
                 scheduler_cfg: dict, latent_lr_mult: float = 1.0,
                 target_stats: tuple[Tensor, Tensor] | None = None) -> None:
        """targets: (T, N, C) in training units, or in original units with `target_stats` = (mean, std) per
        component, normalised a few frames at a time where they are read (no second copy of a long window)."""
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.inr = inr
        self.settings = settings
        self.optimizer_cfg, self.scheduler_cfg, self.latent_lr_mult = optimizer_cfg, scheduler_cfg, latent_lr_mult
        self.register_buffer("targets", targets, persistent=False)  # (T, N, C), see target_stats
        self._normalise = target_stats is not None
        mean, std = target_stats or (torch.zeros(()), torch.ones(()))
        self.register_buffer("target_mean", mean.float(), persistent=False)
        self.register_buffer("target_std", std.float(), persistent=False)
        self.register_buffer("train_frames", train_frames.long(), persistent=False)
        self.register_buffer("t", source.t, persistent=False)
        self.register_buffer("particle", source.particle, persistent=False)
        self.register_buffer("xy", source.xy, persistent=False)
        self.register_buffer("loss_history", torch.full((settings.total_steps,), float("nan")), persistent=False)
        self.steps_done = 0
        self.r2_estimate: float | None = None
        self.r2_trace: list[tuple[int, float]] = []
        self.train_seconds = 0.0
        self.diverged_step: int | None = None
        self.restored: dict[str, float] | None = None  # the best estimate's model, put back after a collapse
        self._best: _BestState | None = None
        self._sampler: PointSampler | None = None
        self._dense_targets: Tensor | None = None
        self._packed: GramTargets | None = None
        self._frame_cycle: FrameCycle | None = None  # sampler=full on sampled frames (train.step_frames)
        self._sampled_gram = False
        self._statistics = None  # the solved codes' whole-window statistics on sampled frames
        self._eval_points: tuple[Tensor, Tensor] | None = None
        self._loss_impl = torch.compile(self._eager_step_loss) if settings.compile else self._eager_step_loss
        self._started = 0.0

    # --- plumbing -----------------------------------------------------------------------------------------
    @property
    def source(self) -> CoordinateSource:
        return CoordinateSource(self.t, self.particle, self.xy)

    def forward(self, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
        return self.inr.query(self.network, self.source, frame_idx, particle_idx)

    def configure_optimizers(self):
        opt = build_optimizer(self.network, self.optimizer_cfg, self.latent_lr_mult)
        return [opt], [build_scheduler(opt, self.scheduler_cfg, self.settings.total_steps)]

    def on_fit_start(self) -> None:
        # The training clock starts before the set-up: packing the targets and their Gram factor (a second at 400
        # frames of 9000 particles on one CPU thread) are part of what the method costs, so they count.
        self._started = time.perf_counter()
        s = self.settings
        n_particles = self.targets.shape[1]
        if s.sampler == "full" and s.step_frames is not None and s.step_frames < self.train_frames.numel():
            self._start_sampled_frames()
        elif s.sampler == "full":
            self.inr.query_frames(self.network, self.source, self.train_frames[:1])  # fail early if unsupported
            self._dense_targets = self.targets[self.train_frames]
            packed = self.inr.pack_dense_targets(self.network, self._dense_targets) if s.loss == "mse" else None
            if packed is not None:  # bilinear codes: the same MSE in Gram form, never materialising the prediction
                sq = (self._dense_targets.double() ** 2).sum().float()
                self._packed = GramTargets(packed, self.inr.loss_targets(self.network, packed), sq,
                                           self._dense_targets.numel())
                self._dense_targets = None
        else:
            self._sampler = PointSampler(self.train_frames, n_particles, s.n_points, s.sampler, s.frames_per_step,
                                         s.seed)
        g = torch.Generator(device=self.device)
        g.manual_seed(s.seed + 1)
        n_eval = min(s.eval_points, self.train_frames.numel() * n_particles)
        pick = torch.randint(self.train_frames.numel(), (n_eval,), generator=g, device=self.device)
        self._eval_points = (self.train_frames[pick], torch.randint(n_particles, (n_eval,), generator=g, device=self.device))

    def _start_sampled_frames(self) -> None:
        """A step on `step_frames` frames cycled through the window: its cost is those frames', not the window's.
        Solved codes come from whole-window statistics, filled here by one pass over every frame."""
        s, n_train = self.settings, self.train_frames.numel()
        self.inr.query_frames(self.network, self.source, self.train_frames[:1])  # fail early if unsupported
        self._frame_cycle = FrameCycle(n_train, s.step_frames, s.seed, self.device)
        probe = self.inr.pack_dense_targets(self.network, self.target_frames(self.train_frames[:1]))
        self._sampled_gram = s.loss == "mse" and probe is not None
        self._statistics = self.network.code_statistics(n_train) if self._sampled_gram else None
        if self._statistics is not None:
            self._exact_statistics()

    @torch.no_grad()
    def _exact_statistics(self) -> None:
        """Rebuild the statistics from every frame with the current basis, `step_frames` frames at a time, and
        store the codes they solve: exactly the dense solve, at the cost of one pass over the window."""
        stats, step = self._statistics, self.settings.step_frames
        stats.reset()
        for lo in range(0, self.train_frames.numel(), step):
            positions = torch.arange(lo, min(lo + step, self.train_frames.numel()), device=self.device)
            frames = self.train_frames[positions]
            packed = self.inr.pack_dense_targets(self.network, self.target_frames(frames))
            self.inr.accumulate_statistics(self.network, self.source, frames, positions, packed, stats)
        self.network.store_codes_from(stats)

    def target_frames(self, frames: Tensor) -> Tensor:
        """Every particle's targets at these frames, (F, N, C) in training units."""
        return self.target_points(frames)

    def target_points(self, *index: Tensor) -> Tensor:
        """targets[index] in training units (normalised here when the module holds original units)."""
        values = self.targets[index]  # a copy (advanced indexing), so it can be normalised in place
        return values.sub_(self.target_mean).div_(self.target_std) if self._normalise else values

    def loss_fn(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.settings.loss == "huber":
            return nn.functional.huber_loss(pred, target, delta=1.0)
        return nn.functional.mse_loss(pred, target)

    # --- the hot loop -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        s = self.settings
        opt, sched = self.optimizers(), self.lr_schedulers()
        n = min(s.steps_per_call, s.total_steps - self.steps_done)
        first = self.steps_done
        for i in range(n):
            loss = self.step_loss()
            if s.inject_nonfinite_step is not None and first + i == s.inject_nonfinite_step:
                loss = loss * float("nan")
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if s.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), s.grad_clip)
            opt.step()
            sched.step()
            self.loss_history[first + i] = loss.detach().clamp_min(0)  # the Gram form can round to -1e-7
        self.steps_done = first + n
        if self._packed is not None:  # solved codes: match them to the basis the last step left, before any eval
            self.inr.refresh_codes(self.network, self.source, self.train_frames, self._packed.packed)
        if self._statistics is not None:  # sampled frames: the codes of the statistics as they stand (cheap)
            self.network.store_codes_from(self._statistics)
        # One sync per call: stop on the first non-finite loss and remember its step.
        window = self.loss_history[first:self.steps_done]
        bad = ~torch.isfinite(window)
        if bool(bad.any()):
            self.diverged_step = first + int(bad.nonzero()[0])
            raise Diverged(self.diverged_step)
        self.train_seconds = time.perf_counter() - self._started
        crossed = (first // s.eval_every) != (self.steps_done // s.eval_every) or self.steps_done == s.total_steps
        if crossed:
            self._record_estimate()
            if self.logger is not None:  # logger=none: nothing to log to (Lightning would warn every time)
                self.log("r2_estimate", self.r2_estimate, on_step=True, logger=True)
                self.log("loss", float(window[-1]), on_step=True, logger=True)
            if s.target_r2 is not None and self.r2_estimate >= s.target_r2:
                self.trainer.should_stop = True
        if s.max_time_s is not None and self.train_seconds >= s.max_time_s:
            self.trainer.should_stop = True
        if self.steps_done >= s.total_steps:
            self.trainer.should_stop = True

    def step_loss(self) -> Tensor:
        """The loss of one optimiser step, by the sampler's path (the one place every step's loss comes from)."""
        return self._loss_impl()

    def _eager_step_loss(self) -> Tensor:
        if self._packed is not None:  # sampler=full, MSE, bilinear: Σ(pred - y)² in Gram form
            g = self._packed
            return self.inr.dense_sse(self.network, self.source, self.train_frames, g.for_loss, g.sq) / g.n_values
        if self._frame_cycle is not None:  # sampler=full on train.step_frames frames: an estimate of the above
            positions = self._frame_cycle.sample()
            frames = self.train_frames[positions]
            targets = self.target_frames(frames)
            if self._sampled_gram:
                packed = self.inr.pack_dense_targets(self.network, targets)
                sq = (targets * targets).sum(dtype=torch.float64).float()  # no float64 copy of the frames
                sse = self.inr.sampled_sse(self.network, self.source, frames, positions, packed, sq, self._statistics)
                return sse / targets.numel()
            return self.loss_fn(self.inr.query_frames(self.network, self.source, frames), targets)
        if self._dense_targets is not None:  # sampler=full: every training point, one matrix product
            return self.loss_fn(self.inr.query_frames(self.network, self.source, self.train_frames),
                                self._dense_targets)
        frame_idx, particle_idx = self._sampler.sample()
        return self.loss_fn(self(frame_idx, particle_idx), self.target_points(frame_idx, particle_idx))

    @torch.no_grad()
    def estimate_r2(self) -> float:
        """R² on a fixed random subset of training points, in training units (labelled an estimate)."""
        frame_idx, particle_idx = self._eval_points
        acc = R2Accumulator()
        for lo in range(0, frame_idx.numel(), 16384):
            f, p = frame_idx[lo:lo + 16384], particle_idx[lo:lo + 16384]
            acc.update(self.target_points(f, p), self(f, p))
        return float(acc.r2_tensor())

    def _record_estimate(self) -> None:
        """The R² estimate now, in the trace; a copy of the network whenever it is the best so far."""
        self.r2_estimate = self.estimate_r2()
        self.r2_trace.append((self.steps_done, self.r2_estimate))
        if math.isfinite(self.r2_estimate) and (self._best is None or self.r2_estimate > self._best.r2):
            state = {name: value.detach().clone() for name, value in self.network.state_dict().items()}
            self._best = _BestState(self.r2_estimate, self.steps_done, state)

    def restore_after_collapse(self) -> None:
        """Put back the best estimate's network when the last estimate's error is more than COLLAPSE_FACTOR times
        its error: a run that falls into a bad state late (sampled frames over the whole simulation, R² 0.98 ->
        0.47, never recovering) ends with the model it had, not the one it fell to; `restored` says so."""
        if self.r2_trace and self.r2_trace[-1][0] != self.steps_done:  # steps since the last estimate
            self._record_estimate()
        best, last = self._best, self.r2_estimate
        if best is None or last is None or not (1.0 - last > COLLAPSE_FACTOR * max(1.0 - best.r2, 1e-12)):
            return
        self.network.load_state_dict(best.state)
        self.restored = {"step": best.step, "r2_estimate": best.r2, "last_step": self.steps_done,
                         "last_r2_estimate": last}
        self.r2_estimate = best.r2

    def on_train_end(self) -> None:
        if self.diverged_step is None:
            self.restore_after_collapse()
        if self._statistics is not None and self.diverged_step is None:  # the final codes: exact, from every frame
            self._exact_statistics()
        self.train_seconds = time.perf_counter() - self._started

    @torch.no_grad()
    def predict_frames(self, frames: Tensor, chunk: int = 65536) -> Tensor:
        """Predictions (len(frames), N, C) in training units for every particle of the given frames."""
        return self.inr.predict_frames(self.network, self.source, frames.to(self.device), chunk)

    def loss_curve(self) -> list[float]:
        return self.loss_history[: self.steps_done].float().cpu().tolist()
