"""Training engine on a synthetic window: R² improves, early stop, divergence, no per-step host sync."""

import math
import traceback
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from mpm_inr.data.window import FieldWindow
from mpm_inr.models import NetworkContext, build_network, get_inr_type
from mpm_inr.training.module import Diverged, INRModule, TrainSettings

CONF = Path(__file__).resolve().parents[1] / "conf"


def group(name: str, option: str) -> dict:
    """A config group's option as the run passes it (its `_target_` included), from conf/<name>/<option>.yaml."""
    return OmegaConf.to_container(OmegaConf.load(CONF / name / f"{option}.yaml"))


def _window(T=20, N=40):
    t = np.linspace(0, 1, T)[:, None]
    phase = np.linspace(0, 3, N)[None, :]
    values = np.stack([np.sin(3 * t + phase), np.cos(2 * t * phase)], -1).astype(np.float32)
    pos = np.random.default_rng(0).random((T, N, 2)).astype(np.float32)
    return FieldWindow.from_arrays("F", np.arange(T), values, pos, np.zeros(N), np.zeros(N))


def _module(total_steps=200, steps_per_call=20, object_id=None, basis_groups="none", codes="learned", window=None,
            **kw):
    w = _window() if window is None else window
    objects = torch.zeros(w.n_particles) if object_id is None else object_id
    ctx = NetworkContext(w.n_particles, w.n_components, torch.zeros(w.n_particles), objects)
    torch.manual_seed(0)
    net = build_network("lagrangian", ctx, {"latent_dim": 4, "hidden_dim": 32, "n_layers": 2, "omega": 10.0,
                                            "basis_groups": basis_groups, "codes": codes})
    inr = get_inr_type("lagrangian")
    settings = TrainSettings(total_steps=total_steps, n_points=256, steps_per_call=steps_per_call, eval_every=50,
                             eval_points=800, **kw)
    return INRModule(net, inr, w.coordinate_source(), w.normalize(torch.from_numpy(w.values)),
                     torch.from_numpy(w.train_frames), settings, {**group("optimizer", "adam"), "lr": 3e-3},
                     group("scheduler", "cosine"), latent_lr_mult=3.0)


def _fit(module):
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    n_calls = math.ceil(module.settings.total_steps / module.settings.steps_per_call)
    trainer.fit(module, DataLoader(range(n_calls), batch_size=None))
    return module


def test_r2_improves_with_training():
    m = _fit(_module(total_steps=300))
    trace = [r2 for _, r2 in m.r2_trace]
    assert m.steps_done == 300
    assert trace[-1] > trace[0] and trace[-1] > 0.5
    assert not math.isnan(m.loss_history[299])


def test_early_stop_when_target_reached():
    m = _fit(_module(total_steps=2000, target_r2=0.3))
    assert m.steps_done < 2000
    assert m.r2_trace[-1][1] >= 0.3
    assert m.steps_done % 50 == 0 or m.steps_done % 20 == 0


def test_divergence_is_detected_with_its_step():
    m = _module(total_steps=100, inject_nonfinite_step=37)
    with pytest.raises(Diverged) as err:
        _fit(m)
    assert err.value.step == 37


class _SyncCounter:
    """Counts tensor -> host conversions (the operations that force a device sync).

    Adam's step counter is a CPU scalar even when training on a GPU (capturable=False), so reading it is not a
    device sync; calls from torch/optim are not counted.
    """

    NAMES = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "cpu")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def wrapped(self_, *a, _orig=original, **k):
                caller = traceback.extract_stack(limit=2)[0].filename
                if "torch/optim" not in caller:
                    self.count += 1
                return _orig(self_, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, wrapped)


_SYNCING_OPS = ("aten::nonzero", "aten::nonzero_static", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
                "aten::unique_consecutive", "aten::is_nonzero", "aten::repeat_interleave")


def _recipe_module(recipe: str, steps_per_call: int) -> INRModule:
    """'points': random points per step. 'presets': the path every field's default takes: every point per step in
    Gram form, one basis per object, codes solved each step (float64 solves), Cholesky rows instead of the
    particles, codes refreshed per call."""
    if recipe == "points":
        m = _module(total_steps=400, steps_per_call=steps_per_call)
    else:
        w = _window(T=10, N=200)  # 100 particles per object > 2 x 20 values per particle: Cholesky rows apply
        m = _module(total_steps=400, steps_per_call=steps_per_call, window=w, object_id=torch.arange(200) // 100,
                    basis_groups="object", codes="solved", sampler="full")
    m.settings.eval_every = 10**9  # only the end-of-training estimate
    return m


def _call_outside_lightning(m: INRModule, monkeypatch) -> None:
    """Prepare the sampler as on_fit_start does and give training_step the bits of the trainer it touches."""
    m.on_fit_start()

    class _T:
        should_stop = False

    m._trainer = None
    (opt,), (sched,) = m.configure_optimizers()
    m.optimizers = lambda: opt
    m.lr_schedulers = lambda: sched
    m.manual_backward = lambda loss: loss.backward()
    monkeypatch.setattr(type(m), "trainer", property(lambda self: _T), raising=False)
    m.log = lambda *a, **k: None


@pytest.mark.parametrize("steps_per_call", [5, 40])
@pytest.mark.parametrize("recipe", ["points", "presets"])
def test_host_syncs_do_not_grow_with_steps(monkeypatch, steps_per_call, recipe):
    """The inner loop must not sync: syncs per training_step call are the same for K=5 and K=40."""
    m = _recipe_module(recipe, steps_per_call)
    _call_outside_lightning(m, monkeypatch)
    if recipe == "presets":
        assert m._packed is not None and m._packed.for_loss.shape[1:] == (20, 20) != m._packed.packed.shape[1:]
    counter = _SyncCounter(monkeypatch)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        m.training_step(None, 0)
    assert m.steps_done == steps_per_call
    assert counter.count <= 2, f"{counter.count} host syncs in one call of {steps_per_call} steps"
    # ATen ops that sync on a GPU whoever calls them (a boolean mask index calls nonzero), beyond the Python-level
    # conversions counted above. item() itself is left to the counter: Adam and CPU LAPACK call it on CPU values.
    syncing = {e.key: e.count for e in prof.key_averages() if e.key in _SYNCING_OPS}
    assert sum(syncing.values()) <= 2, syncing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("recipe", ["points", "presets"])
def test_cuda_syncs_per_call_do_not_grow_with_steps(monkeypatch, recipe):
    """On a GPU, the driver's own count: CUDA's sync debug mode warns at every synchronising operation (library
    calls included, which the CPU test above cannot see). A call of 40 steps syncs no more often than a call of 5.

    Each module makes one uncounted call first, also in warn mode: it takes CUDA's one-off lazy set-up and any
    warning that is issued once per process. On an H100 (torch 2.11) a first call without it counted
    {5 steps: 2, 40 steps: 1}; per-step syncs would count at least 5 and 40."""
    import warnings

    def syncs_in_one_call(m: INRModule) -> int:
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                m.training_step(None, 0)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs = {}
    for steps_per_call in (5, 40):
        m = _recipe_module(recipe, steps_per_call).to("cuda")
        _call_outside_lightning(m, monkeypatch)
        syncs_in_one_call(m)
        syncs[steps_per_call] = syncs_in_one_call(m)
        assert m.steps_done == 2 * steps_per_call
    assert syncs[40] <= syncs[5] <= 2, syncs


def test_training_time_counts_the_set_up_of_the_targets(monkeypatch):
    """The Gram factor of the targets is computed once before the first step; it is part of the method's cost."""
    import time

    m = _recipe_module("presets", 5)
    original = type(m.inr).loss_targets

    def slow_loss_targets(self, network, packed):
        time.sleep(0.3)
        return original(self, network, packed)

    monkeypatch.setattr(type(m.inr), "loss_targets", slow_loss_targets)
    _call_outside_lightning(m, monkeypatch)
    m.training_step(None, 0)
    assert m.train_seconds >= 0.3


def test_held_out_frames_are_never_sampled():
    from mpm_inr.data.window import holdout_mask
    from mpm_inr.training.sampler import PointSampler

    held = holdout_mask(40, 4)
    train_frames = torch.from_numpy(np.flatnonzero(~held))
    s = PointSampler(train_frames, 10, 5000, seed=0)
    seen = torch.cat([s.sample()[0] for _ in range(20)]).unique()
    assert not set(seen.tolist()) & set(np.flatnonzero(held).tolist())
    assert set(seen.tolist()) == set(train_frames.tolist())


def test_gram_loss_with_padded_groups_is_the_mean_over_real_points_only():
    objects = torch.cat((torch.zeros(31), torch.ones(6), torch.full((3,), 2.0)))  # unequal: 31 / 6 / 3 particles
    m = _module(total_steps=20, sampler="full", object_id=objects, basis_groups="object")
    m.on_fit_start()
    packed, n_values = m._packed.packed, m._packed.n_values
    assert packed.shape[:2] == (3, 31) and n_values == len(m.train_frames) * 40 * 2
    dense = m.inr.query_frames(m.network, m.source, m.train_frames)
    torch.testing.assert_close(m.step_loss(), torch.nn.functional.mse_loss(dense, m.targets[m.train_frames]),
                               rtol=1e-4, atol=1e-6)


def test_full_sampler_trains_on_every_training_point():
    m = _module(total_steps=60, steps_per_call=20, sampler="full")
    m.settings.eval_every = 20
    _fit(m)
    if m._packed is not None:  # bilinear + MSE: the Gram form holds the targets as (groups, N, F·C)
        packed, sq, n_values = m._packed.packed, m._packed.sq, m._packed.n_values
        assert packed.shape == (1, m.targets.shape[1], len(m.train_frames) * m.targets.shape[2])
        assert n_values == packed.numel()
        assert float(sq) == pytest.approx(float((m.targets[m.train_frames].double() ** 2).sum()), rel=1e-6)
    else:
        assert m._dense_targets.shape[0] == len(m.train_frames)
    assert m.r2_trace[-1][1] > m.r2_trace[0][1]


@pytest.mark.slow  # about 30 s of compilation per case on one CPU thread
@pytest.mark.parametrize("sampler", ["full", "points"])
def test_compiled_step_loss_trains_like_the_eager_one(sampler):
    """train.compile compiles the per-step loss, so the Gram-form path is compiled too (not only forward)."""
    from torch._dynamo.utils import counters

    eager = _fit(_module(total_steps=40, sampler=sampler))
    counters.clear()
    compiled = _fit(_module(total_steps=40, sampler=sampler, compile=True))
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really captured the step
    assert compiled.steps_done == 40
    torch.testing.assert_close(compiled.loss_history, eager.loss_history, rtol=2e-3, atol=1e-5)


class _Scramble(pl.Callback):
    """Throws the network's weights far off after one call: a collapse the last few small steps cannot undo."""

    def __init__(self, after_call: int) -> None:
        self.after_call = after_call

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.after_call:
            with torch.no_grad():
                for param in module.network.parameters():
                    param.add_(torch.randn_like(param) * 10.0)


def test_a_collapsed_run_ends_with_its_best_estimate_s_model():
    """Scrambled at step 260 of 300 (the cosine's last, tiny steps cannot recover): the run puts back the network
    of its best estimate and says so; the model it ends with scores that estimate again."""
    m = _module(total_steps=300)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[_Scramble(12)])
    trainer.fit(m, DataLoader(range(15), batch_size=None))
    assert m.restored is not None and m.restored["step"] <= 260 and m.restored["last_step"] == 300
    best = max(r2 for _, r2 in m.r2_trace[:-1])
    assert m.restored["r2_estimate"] == best and m.restored["last_r2_estimate"] < 1 - 2 * (1 - best)
    assert m.estimate_r2() == pytest.approx(best, abs=1e-6)


def test_a_run_that_did_not_collapse_keeps_its_last_model():
    m = _fit(_module(total_steps=300))
    assert m.restored is None
    last = [p.detach().clone() for p in m.network.parameters()]
    m.restore_after_collapse()
    assert m.restored is None and all(torch.equal(a, b) for a, b in zip(last, m.network.parameters(), strict=True))
