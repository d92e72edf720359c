"""train.py end to end on discs_small: every field x inr_type, outputs, bad input, divergence, W&B."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from conftest import REPO

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.errors import ConfigError
from mpm_inr.models import get_inr_type
from mpm_inr.threads import (
    LoadSamples,
    auto_threads,
    available_cores,
    blas_threads,
    core_to_spare,
    pinned_threads,
)
from mpm_inr.training import run as run_module
from mpm_inr.training.cost import DataShape, step_flops
from mpm_inr.training.run import run_training

FIELDS = ["F", "Jp", "S", "C"]
TYPES = ["siren_t", "siren_id", "siren_txy", "ngp", "lagrangian"]
SMALL_MODEL = {"siren_t": ["model.hidden_dim=16"], "siren_id": ["model.hidden_dim=32"],
               "siren_txy": ["model.hidden_dim=32"], "ngp": ["model.log2_table_size=12", "model.n_levels=4"],
               "lagrangian": ["model.hidden_dim=32"]}
CONTRACT_KEYS = {"status", "error", "diverged_step", "field", "inr_type", "n_training_frames", "dataset", "device",
                 "torch_version", "final_r2", "final_mse", "r2_per_component", "r2_min_component", "pearson_r2",
                 "slope", "intercept", "total_params", "n_values", "compression_ratio", "training_time", "wall_time",
                 "steps", "steps_per_s", "ssim", "ssim_mean", "kinograph_r2", "kinograph_ssim", "holdout_r2",
                 "holdout_mse", "holdout_frames", "svd", "svd_r2_same_params", "flops_per_step", "overrides",
                 "config", "study", "wandb_run_id", "dataset_provenance", "timings", "cpu_threads",
                 "cpu_interop_threads", "blas_threads"}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("inr_type", TYPES)
def test_every_field_and_type_trains(field, inr_type, tiny_train_overrides, tmp_path):
    overrides = tiny_train_overrides + [f"field={field}", f"inr_type={inr_type}", "outputs.plot=false",
                                        "outputs.checkpoint=false"] + SMALL_MODEL[inr_type]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    assert m["status"] == "ok" and m["steps"] == 20
    assert m["field"] == field and m["inr_type"] == inr_type
    assert len(m["r2_per_component"]) == (1 if field == "Jp" else 4)
    assert m["compression_ratio"] == pytest.approx(m["n_values"] / m["total_params"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("inr_type", TYPES)
def test_every_type_trains_and_encodes_on_cuda(inr_type, tiny_train_overrides, tmp_path):
    """The whole run on a GPU, codec file included where the codec takes the type: CPU-only suites cannot see ops
    CUDA lacks."""
    encodes = not get_inr_type(inr_type).needs_positions
    overrides = [o for o in tiny_train_overrides if o != "trainer=cpu"] + [
        "trainer=gpu", "field=C", f"inr_type={inr_type}", "outputs.plot=false", f"outputs.codec={encodes}",
        "data.holdout_every=4"] + SMALL_MODEL[inr_type]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    assert m["status"] == "ok" and m["steps"] == 20, m.get("error")
    assert m["device"] == torch.cuda.get_device_name() and m["holdout_r2"] is not None
    if encodes:
        assert m["codec"]["bytes"] == (tmp_path / m["codec"]["file"]).stat().st_size


def test_outputs_are_well_formed(tiny_train_overrides, tmp_path, capsys):
    overrides = tiny_train_overrides + ["field=F", "outputs.save_predictions=true", "data.holdout_every=4"]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(on_disk), CONTRACT_KEYS - set(on_disk)
    assert on_disk["final_r2"] == pytest.approx(m["final_r2"])
    from mpm_inr.sim import GENERATOR_VERSION

    made = on_disk["dataset_provenance"]
    assert made["generator_version"] == GENERATOR_VERSION and made["seed"] == 0 and made["device"] == "cpu"
    dataset_meta = json.loads((Path(on_disk["dataset"]) / "meta.json").read_text())
    assert made["fingerprint"] == dataset_meta["fingerprint"]["sha256"]
    assert on_disk["holdout_r2"] is not None and on_disk["holdout_frames"] == [2, 6, 10, 14, 18]
    img = mpimg.imread(tmp_path / "field.png")
    assert img.shape[0] > 400 and img.shape[1] > 600 and img.std() > 0.01
    import numpy as np

    pred = np.load(tmp_path / "predictions.npy")
    assert pred.shape == (20, m["n_values"] // (15 * 4), 4)
    log = (tmp_path / "analysis.log").read_text()
    assert f"final_r2: {m['final_r2']:.6g}" in log and "compression_ratio:" in log
    same, per_rank = on_disk["svd"]["same_params"], 15 + m["n_values"] // 15 + 1  # training frames + columns + 1
    assert same["rank"] * per_rank <= m["total_params"] < (same["rank"] + 1) * per_rank
    assert on_disk["svd_r2_same_params"] == same["r2"] and f"svd_r2_same_params: {same['r2']:.6g}" in log
    cfg = compose_train_config(overrides)  # the cost model's estimate for this run's path and window
    assert cfg["model"]["basis_groups"] == "none"  # F's preset: one basis, so no group sizes needed
    shape = DataShape(15, m["n_values"] // (15 * 4), 4)
    assert on_disk["flops_per_step"] == pytest.approx(step_flops("lagrangian", dict(cfg["model"]),
                                                                 dict(cfg["train"]), shape))
    assert (tmp_path / "checkpoints" / "last.ckpt").stat().st_size > 0
    phases = on_disk["timings"]  # where the time went: every phase, together within the run's wall time
    assert set(phases) == {"dataset", "window", "fit", "evaluation", "svd", "baselines", "outputs"}
    block = on_disk["baselines"]  # the classical compressors, read against this run's R² and its float32 bytes
    assert block["target_r2"] == on_disk["final_r2"] and block["model_bytes"] == 4 * on_disk["total_params"]
    assert block["window"]["fingerprint"] == made["fingerprint"] and block["window"]["holdout_every"] == 4
    for method in ("svd", "sz3", "zfp"):
        matched = block[method]["matched_accuracy"]
        assert matched["r2"] >= on_disk["final_r2"] and on_disk[f"{method}_ratio_same_r2"] == matched["compression"]
        assert on_disk[f"{method}_r2_same_bytes"] == (block[method]["matched_size"] or {}).get("r2")
        assert matched["holdout_r2"] is not None  # held-out frames interpolated from the decoded neighbours
    assert "SZ3 compression at this R²" in capsys.readouterr().out
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= on_disk["wall_time"]
    assert on_disk["training_time"] <= phases["fit"] and phases["outputs"] > 0  # the plot and checkpoint were made
    assert f"wall_time: {on_disk['wall_time']:.6g}" in log


@pytest.mark.parametrize("threads", ["auto", "2"])
def test_cpu_threads_are_applied_inside_the_run_and_recorded(threads, tiny_train_overrides, tmp_path, monkeypatch):
    """The run trains with trainer.cpu_threads (this test process runs with 1), records what it got, and gives the
    process its own setting back."""
    if threads == "2" and available_cores() < 2:
        pytest.skip("needs 2 cores")
    seen: list[tuple[int, int]] = []
    real_fit = run_module._fit

    def fit_and_count(*args, **kwargs):
        seen.append((torch.get_num_threads(), blas_threads()))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(run_module, "_fit", fit_and_count)
    before, blas_before = torch.get_num_threads(), blas_threads()
    overrides = tiny_train_overrides + ["field=Jp", f"trainer.cpu_threads={threads}", "outputs.plot=false",
                                        "outputs.checkpoint=false"]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    want = auto_threads() if threads == "auto" else int(threads)
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    assert seen == [(want, want)] and m["cpu_threads"] == recorded["cpu_threads"] == want
    assert recorded["blas_threads"] == want  # numpy's BLAS pinned too: its own pool spins like torch's
    assert recorded["cpu_interop_threads"] == torch.get_num_interop_threads()  # set once per process: what it got
    assert (torch.get_num_threads(), blas_threads()) == (before, blas_before)


def test_a_blas_library_loaded_inside_a_pinned_block_gets_its_threads_too():
    """scipy's bundled OpenBLAS loads at the first scipy.linalg import, often inside a pinned block (a codec's
    first least-squares fit), where threadpoolctl's limits, set as the block began, do not reach it: it reads its
    pool size from the environment as it loads. A fresh process, so that nothing has loaded it yet."""
    if available_cores() < 2:
        pytest.skip("needs 2 cores: one is every library's default")
    script = (
        "import json, os, sys\n"
        "import torch\n"  # and numpy's BLAS with it: limited as the block begins, restored after
        "from threadpoolctl import threadpool_info\n"
        "from mpm_inr.threads import BLAS_THREAD_VARIABLES, pinned_threads\n"
        "def blas(): return {p['filepath']: p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}\n"
        "assert 'scipy' not in sys.modules\n"
        "before = blas()\n"
        "with pinned_threads(1):\n"
        "    import scipy.linalg\n"
        "loaded = [n for path, n in blas().items() if path not in before]\n"
        "print(json.dumps([loaded, [os.environ.get(v) for v in BLAS_THREAD_VARIABLES]]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # every library's default
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    loaded, environment = json.loads(out.stdout.splitlines()[-1])
    if not loaded:
        pytest.skip("scipy shares numpy's BLAS here: no library loads inside the block")
    assert loaded == [1] * len(loaded) and environment == [None] * len(environment)  # the variables put back as they were

def test_longer_training_improves_r2(tiny_train_overrides, tmp_path):
    base = tiny_train_overrides + ["field=F", "model.codes=learned", "outputs.plot=false", "outputs.checkpoint=false"]
    short = run_training(compose_train_config(base + ["train.total_steps=10"]), tmp_path / "a", progress=False)
    long = run_training(compose_train_config(base + ["train.total_steps=300", "train.steps_per_call=50"]),
                        tmp_path / "b", progress=False)
    assert long["final_r2"] > short["final_r2"] + 0.1


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=-1e-3", "optimizer.lr=-0.001 is out of range"),
    ("model.hidden_dim=0", "model.hidden_dim=0 is out of range"),
    ("train.batch_size=50", "frames per step cannot exceed data.n_training_frames=20"),
    ("trainer.cpu_threads=0", r"trainer.cpu_threads=0 is out of range: use auto, null or an integer in \[1, "),
    ("trainer.cpu_threads=100000", "trainer.cpu_threads=100000 is out of range"),
    ("trainer.cpu_threads=1.5", "trainer.cpu_threads=1.5 is out of range"),
    ("train.step_frames=0", "train.step_frames=0 is out of range: must be auto, all or an integer > 0"),
])
def test_out_of_range_values_fail_before_training(override, message, tiny_train_overrides, tmp_path):
    with pytest.raises(ConfigError, match=message):
        run_training(compose_train_config(tiny_train_overrides + [override]), tmp_path, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def _train_cli(args, cwd):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def test_cli_bad_inputs_give_one_line_errors(tiny_train_overrides, tmp_path):
    r = _train_cli(tiny_train_overrides + ["field=Q"], tmp_path)
    assert r.returncode != 0 and "Could not find 'field/Q'" in r.stderr and "Jp" in r.stderr
    r = _train_cli(tiny_train_overrides + ["data.n_training_frames=100000"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: data.n_training_frames=100000 exceeds")


def test_divergence_single_run_and_multirun(tiny_train_overrides, tmp_path):
    poisoned = tiny_train_overrides + ["+debug.inject_nonfinite_step=13", "hydra.run.dir=" + str(tmp_path / "one")]
    r = _train_cli(poisoned, tmp_path)
    assert r.returncode == 1
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m["status"] == "diverged" and m["diverged_step"] == 13
    assert m["cpu_threads"] == auto_threads()  # train.py pins its threads, whatever OMP_NUM_THREADS says
    assert set(m["timings"]) == {"dataset", "window", "fit"}  # how far it got: no evaluation of a diverged run
    sweep = tmp_path / "sweep"
    r = _train_cli(["--multirun"] + tiny_train_overrides + ["+debug.inject_nonfinite_step=13,null",
                                                            f"hydra.sweep.dir={sweep}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert sorted(m["status"] for m in jobs) == ["diverged", "ok"]
    assert [m["cpu_threads"] for m in jobs] == [auto_threads()] * 2  # each job of a sequential multirun pins its own


def test_multirun_with_offline_wandb_leaves_finished_runs(tiny_train_overrides, tmp_path):
    overrides = [o for o in tiny_train_overrides if not o.startswith("logger=")]
    sweep = tmp_path / "sweep"
    env_args = ["--multirun"] + overrides + ["logger=wandb", "field=Jp,F", f"hydra.sweep.dir={sweep}",
                                              "logger.tags=[test]"]
    import os

    env = {**os.environ, "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, str(REPO / "train.py"), *env_args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env=env, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    from mpm_inr.wandb_offline import read_offline_run

    seen = {}
    for i in (0, 1):
        metrics = json.loads((sweep / str(i) / "metrics.json").read_text())
        run_dirs = list((sweep / str(i) / "wandb").glob("offline-run-*"))
        assert len(run_dirs) == 1
        run = read_offline_run(run_dirs[0])
        assert run.finished and run.exit_code == 0
        assert run.run_id == metrics["wandb_run_id"]
        assert run.summary["final_r2"] == pytest.approx(metrics["final_r2"])
        requirements = (run_dirs[0] / "files" / "requirements.txt").read_text().splitlines()  # saved once per process
        assert f"torch=={torch.__version__}" in requirements and requirements == sorted(requirements, key=str.lower)
        assert run.summary["compression_ratio"] == pytest.approx(metrics["compression_ratio"])
        assert run.config["field.name"] == metrics["field"] and run.job_type == metrics["field"]
        fingerprint = metrics["dataset_provenance"]["fingerprint"]  # which bytes: a key dashboards can group by
        assert run.summary["dataset_fingerprint"] == fingerprint and run.config["data.fingerprint"] == fingerprint[:16]
        assert "test" in run.tags and any("r2_estimate" in row for row in run.history)
        assert run.summary["time_evaluation"] == pytest.approx(metrics["timings"]["evaluation"])
        seen[metrics["field"]] = run.summary["final_r2"]
    assert set(seen) == {"Jp", "F"}


def test_a_constant_field_is_a_clear_error_not_nan(tiny_train_overrides, tmp_path, monkeypatch):
    """discs_small seed 1 has Jp == 1 everywhere in its window: R² is undefined, so say so before training."""
    from mpm_inr.errors import UserError
    from mpm_inr.training.datamodule import FieldWindowDataModule

    original = FieldWindowDataModule.prepare_window

    def constant(self):
        window = original(self)
        window.values[...] = 1.0
        return window

    monkeypatch.setattr(FieldWindowDataModule, "prepare_window", constant)
    overrides = tiny_train_overrides + ["field=Jp"]
    with pytest.raises(UserError, match="constant over the training frames"):
        run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("name", ["siren_txy", "ngp", "lagrangian"])
def test_tf32_auto_follows_the_registry_flag(name):
    """train.tf32=auto on CUDA enables TF32 exactly for types declared tf32_safe; false overrides it; off CUDA
    the flags are left alone. (Setting the flags needs no GPU: they are process-wide switches.)"""
    from mpm_inr.models import get_inr_type

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32
    inr = get_inr_type(name)
    try:
        run_module._configure_precision("auto", "cuda", inr)
        assert matmul.allow_tf32 == cudnn.allow_tf32 == inr.tf32_safe == (name == "ngp")
        run_module._configure_precision(False, "cuda", inr)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        run_module._configure_precision("auto", "cpu", get_inr_type("ngp"))
        assert not matmul.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


def _touches_per_step(overrides, tmp_path, monkeypatch) -> tuple[dict, list[int]]:
    """Frames each read of the solved codes' statistics touched, in order (the exact passes included)."""
    from mpm_inr.models.code_statistics import CodeStatistics

    touched: list[int] = []
    original = CodeStatistics.replace
    monkeypatch.setattr(CodeStatistics, "replace",
                        lambda self, frames, *a: touched.append(int(frames.numel())) or original(self, frames, *a))
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    return m, touched


@pytest.mark.parametrize("frames", [20, 40])
def test_a_sampled_frames_step_touches_its_frames_whatever_the_window(frames, tiny_train_overrides, tmp_path,
                                                                       monkeypatch):
    """train.step_frames=5: every optimiser step reads 5 frames, on a 20- or a 40-frame window alike; one pass over
    the window fills the statistics before training and one makes the final codes exact after it."""
    overrides = tiny_train_overrides + ["field=S", f"data.n_training_frames={frames}", "train.step_frames=5",
                                        "outputs.plot=false", "outputs.checkpoint=false"]
    m, touched = _touches_per_step(overrides, tmp_path, monkeypatch)
    assert m["status"] == "ok" and m["steps"] == 20
    passes = frames // 5  # chunks of a whole-window pass
    assert touched == [5] * (passes + 20 + passes)


def test_auto_keeps_short_windows_on_the_dense_step(tiny_train_overrides, tmp_path, monkeypatch):
    overrides = tiny_train_overrides + ["field=S", "outputs.plot=false", "outputs.checkpoint=false"]
    m, touched = _touches_per_step(overrides, tmp_path, monkeypatch)
    assert m["status"] == "ok" and touched == []  # 20 frames: the dense step, no statistics


@pytest.mark.slow
@pytest.mark.parametrize("field", FIELDS)
def test_sampled_frames_reach_the_dense_steps_r2(field, data_root, tmp_path):
    """200 frames of discs_small with the preset: 20 frames per step lands within 2e-3 of the dense step's R²
    (measured: F 0.99790 vs 0.99835, Jp 0.99935 vs 0.99956, S 0.99748 vs 0.99840, C 0.99927 vs 0.99967)."""
    base = ["scenario=discs_small", f"data.root={data_root}", "trainer=cpu", "logger=none", f"field={field}",
            "data.n_training_frames=200", "outputs.plot=false", "outputs.checkpoint=false", "outputs.baselines=false"]
    dense = run_training(compose_train_config(base + ["train.step_frames=all"]), tmp_path / "dense", progress=False)
    sampled = run_training(compose_train_config(base + ["train.step_frames=20"]), tmp_path / "sampled",
                           progress=False)
    assert sampled["status"] == dense["status"] == "ok"
    assert sampled["final_r2"] > 0.997 and sampled["final_r2"] > dense["final_r2"] - 2e-3
    assert abs(sampled["slope"] - 1) < 5e-3


def test_a_run_with_a_spare_core_gives_the_numbers_and_figure_of_a_run_without(tiny_train_overrides, tmp_path,
                                                                                 monkeypatch):
    """With a core to spare, a single run computes its window's baseline points that do not depend on its result
    and draws its figure in forked processes beside the fit (run._start_asides): the same metrics, baselines and
    field.png pixels as a run that does everything itself, with fewer compressions left after the fit."""
    overrides = tiny_train_overrides + ["field=F", "data.holdout_every=4", "outputs.checkpoint=false",
                                        "outputs.beside_fit=always"]  # whatever else runs on this machine
    cfg = compose_train_config(overrides)
    started = []
    real_start = run_module._start_asides
    monkeypatch.setattr(run_module, "_start_asides", lambda *a: started.append(real_start(*a)) or started[-1])
    runs = {}
    for name, cores in (("serial", 1), ("aside", 2)):  # the run's one torch thread, on 1 core or with one spare
        monkeypatch.setattr(run_module, "available_cores", lambda cores=cores: cores)
        monkeypatch.setattr(run_module, "cache_dirs", lambda _, d=tmp_path / name / "cache": [d])  # both cold
        runs[name] = run_training(cfg, tmp_path / name / "run", overrides, progress=False)
    assert started[0].baselines is None and started[0].plot is None
    assert started[1].baselines is not None and started[1].plot is not None
    serial, aside = runs["serial"], runs["aside"]
    volatile = {"timings", "wall_time", "training_time", "steps_per_s", "baselines", "svd", "dataset_provenance"}
    assert {k: v for k, v in aside.items() if k not in volatile} == {k: v for k, v in serial.items() if k not in volatile}
    numbers = {}
    for name, m in runs.items():
        block = m["baselines"]
        numbers[name] = {method: {q: block[method][q] for q in ("matched_accuracy", "matched_size")}
                         for method in ("svd", "sz3", "zfp")}
    assert numbers["aside"] == numbers["serial"]
    assert aside["baselines"]["cache"]["compressions"] < serial["baselines"]["cache"]["compressions"]
    images = [mpimg.imread(tmp_path / name / "run" / "field.png") for name in runs]  # pixels: test_plot_aside.py
    assert images[0].shape == images[1].shape  # (their info panels differ: each shows its own training time)


@pytest.mark.parametrize(("mode", "busy", "beside"), [("auto", 0.1, True), ("auto", 1.0, False),
                                                       ("always", 1.0, True), ("never", 0.0, False)])
def test_work_goes_beside_the_fit_only_on_a_spare_core_unless_told(tiny_train_overrides, monkeypatch, mode, busy,
                                                                   beside):
    """A neighbour holding the second core (load 1.0) keeps the plot and the baselines in the run: beside the fit
    they would slow the fit itself. `always` and `never` override the machine's load."""
    cfg = compose_train_config(tiny_train_overrides + [f"outputs.beside_fit={mode}"])
    monkeypatch.setattr(run_module, "available_cores", lambda: 2)
    monkeypatch.setattr("mpm_inr.threads.available_cores", lambda: 2)
    monkeypatch.setattr("mpm_inr.threads.others_running", lambda: busy)
    monkeypatch.setattr(run_module, "_parameter_count", lambda module: 1000)
    calls = []
    monkeypatch.setattr(run_module.PlotAside, "start_for", lambda window: calls.append("plot") or "plot")
    monkeypatch.setattr(run_module.BaselinesAside, "start_for", lambda *a: calls.append("baselines") or "baselines")
    monkeypatch.setattr(run_module.KinographAside, "start_for", lambda gt: calls.append("kinograph") or "kinograph")
    window = types.SimpleNamespace(values=np.zeros((4, 3, 1)), train_frames=np.arange(4), cache_key=None)
    with pinned_threads(1):
        asides = run_module._start_asides(cfg, None, window, None)
    assert (asides.plot is not None) == beside and (asides.kinograph is not None) == beside
    assert sorted(calls) == (["baselines", "kinograph", "plot"] if beside else [])


def test_a_run_reads_the_load_at_its_set_up_steps_without_sleeping(tiny_train_overrides, tmp_path, monkeypatch):
    """The load that decides what goes beside the fit is sampled as the run sets up, never by `others_running`'s
    sleeps (40 ms of a one-second run); the samples it takes decide as others_running's would."""
    def sleeps(*args, **kwargs):
        raise AssertionError("a run slept to sample the load")

    monkeypatch.setattr("mpm_inr.threads.others_running", sleeps)
    taken = []
    monkeypatch.setattr(LoadSamples, "take", lambda self: taken.append(1) or self._counts.append(1))
    decided = []
    monkeypatch.setattr(run_module, "core_to_spare", lambda threads, busy: decided.append(busy) or False)
    overrides = tiny_train_overrides + ["outputs.beside_fit=auto"]
    assert run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)["status"] == "ok"
    assert len(taken) >= 3 and decided == [1.0]


def test_load_samples_average_the_runnable_tasks_of_others():
    load = LoadSamples()
    assert load.mean() is None
    if Path("/proc/stat").exists():
        load.take()
        load.take()
        assert load.mean() is not None and load.mean() >= 0


def test_a_core_is_spare_when_the_run_and_its_neighbours_leave_one():
    assert core_to_spare(1, cores=2, busy=0.2) and not core_to_spare(1, cores=2, busy=0.6)
    assert not core_to_spare(2, cores=2, busy=0.0) and core_to_spare(2, cores=4, busy=1.4)
