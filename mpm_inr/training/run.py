"""One training run end to end: validate -> dataset -> window -> network -> fit -> evaluate -> outputs.

`run_training` takes a plain resolved config dict and a run directory, and always leaves a metrics.json
(status ok, diverged or failed), so a caller such as the exploration agent never has to guess.
"""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mpm_inr.baselines import SVD_SCALING, BaselineSource, WindowBaselines, cache_dirs
from mpm_inr.baselines.aside import BaselinesAside
from mpm_inr.codec.training import encode_after_training, validate_codec_config
from mpm_inr.config.build import partial_of
from mpm_inr.config.step_frames import resolve_step_frames
from mpm_inr.data.window import FieldWindow, frames_of
from mpm_inr.data.window_cache import derived, has_derived
from mpm_inr.errors import ConfigError, UserError
from mpm_inr.metrics import (
    KinographReference,
    evaluate_all,
    kinograph_reference,
    middle_frame,
    pooled_scores,
)
from mpm_inr.models import InrType, get_inr_type, network_from_config
from mpm_inr.threads import (
    AUTO,
    LoadSamples,
    available_cores,
    core_to_spare,
    pinned_threads,
    resolve_threads,
    threads_in_use,
)
from mpm_inr.training.cost import DataShape, step_flops
from mpm_inr.training.datamodule import FieldWindowDataModule
from mpm_inr.training.kinograph_aside import KinographAside
from mpm_inr.training.loggers import build_logger, finish_logger
from mpm_inr.training.low_priority import LowPriorityCall
from mpm_inr.training.module import Diverged, INRModule, TrainSettings
from mpm_inr.training.outputs import metrics_table, write_analysis_log, write_metrics
from mpm_inr.training.plot_aside import (
    PlotAside,
    draft_request,
    draw_field,
    plot_request,
)
from mpm_inr.training.progress import StepProgress
from mpm_inr.training.validate import validate_train_config

log = logging.getLogger(__name__)

# Keys of the resolved config recorded in metrics.json / W&B as the run's identity.
SUMMARY_PREFIXES = ("model.", "optimizer.", "scheduler.", "data.", "train.", "field.name", "scenario.name", "seed",
                    "study.")


class PhaseClock:
    """Wall seconds of each phase of a run (metrics.json `timings`): where a run's time goes besides the
    optimisation loop that `training_time` measures. On CUDA a phase ends with a device sync, so the kernels it
    queued are charged to it rather than to the next phase; these syncs sit between phases, never in the loop."""

    def __init__(self) -> None:
        self.device = "cpu"
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
            if self.device == "cuda":
                torch.cuda.synchronize()
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_hydra_key(dotted: str) -> bool:
    """`optimizer._target_` and friends say how a group is built, not what the run is: not in its summary."""
    return dotted.rsplit(".", 1)[-1].startswith("_")


def resolve_device(trainer_cfg: Mapping[str, Any]) -> str:
    accel = trainer_cfg.get("accelerator", "auto")
    if accel == "gpu" and not torch.cuda.is_available():
        raise UserError("trainer=gpu but no CUDA device is available; use trainer=cpu or trainer=auto")
    if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def run_training(cfg: Mapping[str, Any], run_dir: str | Path, overrides: list[str] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train one INR as configured; returns the metrics dict (also written to run_dir/metrics.json)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    wall_start = time.perf_counter()
    clock = PhaseClock()
    flat = {k: v for k, v in flatten(cfg).items() if k.startswith(SUMMARY_PREFIXES) and not _is_hydra_key(k)}
    base: dict[str, Any] = {
        "status": "failed", "error": None, "diverged_step": None, "field": cfg["field"]["name"],
        "inr_type": cfg["model"]["name"], "n_training_frames": cfg["data"]["n_training_frames"],
        "overrides": list(overrides or []), "config": flat, "study": dict(cfg.get("study") or {}),
        "torch_version": torch.__version__, "wandb_run_id": None,
        "timings": clock.seconds,  # filled as phases end, so a failed run still says how far it got
    }
    load = LoadSamples()  # what other work runs on the cores, sampled as the run sets up (`_start_asides`)
    load.take()
    try:
        validate_train_config(cfg)
        validate_codec_config(cfg)
        with pinned_threads(resolve_threads(cfg["trainer"].get("cpu_threads", AUTO))):
            base.update(threads_in_use())  # what the run got, which the agent's time model reads
            device = clock.device = resolve_device(cfg["trainer"])
            base["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            with clock.phase("dataset"):
                dataset_path = _dataset(cfg, device, progress)
                base["dataset"], base["dataset_provenance"] = str(dataset_path), _provenance(dataset_path)
            load.take()
            metrics = _fit_and_evaluate(cfg, dataset_path, device, run_dir, flat, base, clock, progress, load)
    except Diverged as err:
        metrics = {**base, "status": "diverged", "diverged_step": err.step, "error": str(err)}
    except UserError as err:
        metrics = {**base, "status": "failed", "error": str(err)}
        write_metrics(run_dir, metrics)
        raise
    except Exception as err:  # a bug or a resource failure: record it, then let the caller decide
        metrics = {**base, "status": "failed", "error": f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]}
        (run_dir / "traceback.txt").write_text(traceback.format_exc())
        write_metrics(run_dir, metrics)
        raise
    metrics["wall_time"] = time.perf_counter() - wall_start
    write_metrics(run_dir, metrics)
    write_analysis_log(run_dir, metrics)
    return metrics


def _provenance(dataset_path: Path) -> dict[str, Any]:
    """How the dataset was made, and which bytes it holds. The discs collide chaotically, so a rounding-level
    change anywhere in the simulator, the torch build or the device gives a different trajectory by mid-run: a
    result is reproducible from a dataset with the same fingerprint, not from its seed alone."""
    from mpm_inr.data.dataset import open_dataset, recorded_fingerprint

    ds = open_dataset(dataset_path)
    out = {key: ds.meta.get(key) for key in ("generator_version", "seed", "device", "torch_version", "created")}
    return {**out, "fingerprint": recorded_fingerprint(ds)}  # None for datasets made before fingerprints


def _dataset(cfg: Mapping[str, Any], device: str, progress: bool) -> Path:
    from mpm_inr.data.dataset import dataset_dir
    from mpm_inr.data.generate import ensure_dataset

    data = cfg["data"]
    if not data.get("generate_if_missing", True):
        path = dataset_dir(data["root"], cfg["scenario"]["name"], data["seed"])
        if not (path / "meta.json").exists():
            raise UserError(f"dataset {path} is missing; run `python generate.py scenario={cfg['scenario']['name']} "
                            f"seed={data['seed']}` or set data.generate_if_missing=true")
        return path
    return ensure_dataset(cfg["scenario"], data["seed"], data["root"], device=device, progress=progress)


def _fit_and_evaluate(cfg, dataset_path: Path, device: str, run_dir: Path, flat: dict, base: dict,
                      clock: PhaseClock, progress: bool, load: LoadSamples) -> dict[str, Any]:
    with ExitStack() as processes:  # a process beside the fit that still runs when the run fails is killed
        with clock.phase("window"):
            dm, window, module = _build(cfg, dataset_path, device)
            load.take()
            baselines = _window_baselines(cfg, window, dataset_path, base, device)
            load.take()
            # forked before W&B starts its threads
            asides = _start_asides(cfg, baselines, window, module, device, load.mean())
            for process in (asides.baselines, asides.plot, asides.kinograph):
                if process is not None:
                    processes.enter_context(process)
        return _fit_and_report(cfg, dm, window, module, baselines, asides, device, run_dir, flat, base, clock,
                               progress)


@dataclass(frozen=True)
class Asides:
    """Work of the run in processes beside its fit (None: done in the run, after the fit)."""

    baselines: BaselinesAside | None  # the window's baseline points that do not depend on the run's result
    plot: PlotAside | None  # field.png
    kinograph: KinographAside | None = None  # the ground truth's kinograph reference (a CPU run's, not cached yet)


def _start_asides(cfg: Mapping[str, Any], baselines: WindowBaselines, window: FieldWindow, module: INRModule,
                  device: str = "cpu", busy: float | None = None) -> Asides:
    """Only on a core the run leaves free (outputs.beside_fit=auto: its torch threads fewer than the cores, and no
    other work on the rest, `core_to_spare`; always: any core its threads leave, however busy), and never in a
    study's jobs, whose rounds share the cores and whose windows the study computes ahead (`python -m
    mpm_inr.baselines table`). busy: the cores other work uses (`others_running`, sampled now when None)."""
    outputs = cfg["outputs"]
    mode, threads = outputs.get("beside_fit", "auto"), torch.get_num_threads()
    spare = threads < available_cores() if mode == "always" else mode == "auto" and core_to_spare(threads, busy=busy)
    if (cfg.get("study") or {}).get("name") or not spare:
        return Asides(None, None)
    # the run's bytes, for the matched-size query: its float32 parameters, unless a codec file sets them
    model_bytes = None if outputs.get("codec", False) else 4 * _parameter_count(module)
    kinograph = device == "cpu" and not has_derived(window, _kinograph_key(True))  # a GPU keeps no images
    return Asides(BaselinesAside.start_for(baselines, model_bytes) if outputs.get("baselines", True) else None,
                  PlotAside.start_for(window) if outputs.get("plot", True) else None,
                  KinographAside.start_for(frames_of(window.values, window.train_frames)) if kinograph else None)


def _fit_and_report(cfg, dm: FieldWindowDataModule, window: FieldWindow, module: INRModule,
                    baselines: WindowBaselines, asides: Asides, device: str, run_dir: Path, flat: dict,
                    base: dict, clock: PhaseClock, progress: bool) -> dict[str, Any]:
    run_name = f"{cfg['field']['name']}_{cfg['model']['name']}"
    logger = build_logger(cfg["logger"], str(run_dir), run_name, flat)
    with clock.phase("fit"):
        trainer = _fit(cfg, module, dm, device, logger, progress)
    if asides.baselines is not None:
        asides.baselines.fit_ended()
    figure: dict[str, Any] = {}  # field.png's request, made as soon as the numbers it shows are known

    def scored(first: dict[str, Any]) -> None:
        run_info = {**first, **base, "training_time": module.train_seconds, "steps": module.steps_done}
        figure["request"] = _plot_request(cfg, run_dir, module, window, run_info)
        if asides.plot is not None:
            asides.plot.draw(figure["request"])  # drawn beside the rest of the evaluation, from the kinograph SSIM on

    plotting = bool(cfg["outputs"].get("plot", True))
    drafting = asides.plot if plotting else None  # the panels drawn while it evaluates
    # beside a figure drawn by processes of its own, the kinograph SSIM yields the cores to them (low_priority.py)
    deferred = asides.plot is not None and plotting and device == "cpu"
    metrics = _evaluate(module, window, clock,
                        None if drafting is None else lambda: drafting.draft(draft_request(*_figure_data(cfg, module,
                                                                                                        window))),
                        scored if plotting else None, asides.kinograph, LowPriorityCall if deferred else None)
    metrics.update(base)
    metrics.update(status="ok", steps=module.steps_done, training_time=module.train_seconds,
                   steps_per_s=module.steps_done / max(module.train_seconds, 1e-9),
                   r2_estimate_trace=module.r2_trace, flops_per_step=_step_flops(cfg, window),
                   restored_best=module.restored)
    if module.restored is not None:
        log.warning("the R² estimate collapsed to %.4f by step %d; the step-%d model (estimate %.4f) was put back",
                    module.restored["last_r2_estimate"], module.restored["last_step"], module.restored["step"],
                    module.restored["r2_estimate"])
    plot = figure.get("request")
    metrics.update(_svd(module, window, clock, baselines, bool(cfg["outputs"].get("svd", True))))
    if cfg["outputs"].get("codec", False):
        with clock.phase("codec"):  # the model as a file of bytes, re-scored from what the file decodes to
            codec = metrics["codec"] = encode_after_training(cfg, module.network, window, run_dir)
            metrics.update(codec_bytes=codec["bytes"], codec_ratio=codec["ratio"], codec_r2=codec["r2"],
                           codec_slope=codec["slope"])
    if isinstance(metrics["kinograph_ssim"], LowPriorityCall):
        with clock.phase("evaluation"):
            metrics["kinograph_ssim"] = metrics["kinograph_ssim"].result()
    if cfg["outputs"].get("baselines", True):
        with clock.phase("baselines"):
            if asides.baselines is not None:  # what it stored, the queries below read instead of compressing
                asides.baselines.settle()
            metrics.update(_baselines(baselines, metrics))
    with clock.phase("outputs"):
        if cfg["outputs"].get("checkpoint", True):
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        if cfg["outputs"].get("save_predictions", False):
            save_predictions(run_dir, module)
        image = None
        if plot is not None:
            if asides.plot is None or not asides.plot.done():  # no process, or it failed: drawn here
                draw_field(window, plot)
            image = str(plot["path"])
        metrics["wandb_run_id"] = finish_logger(logger, metrics, image)
    print(f"\n{cfg['field']['name']} / {cfg['model']['name']}  ({run_dir})\n{metrics_table(metrics)}", flush=True)
    return metrics


def _build(cfg, dataset_path: Path, device: str) -> tuple[FieldWindowDataModule, FieldWindow, INRModule]:
    """The data module, its window, and the LightningModule around a fresh network."""
    data, train, model_cfg = cfg["data"], cfg["train"], cfg["model"]
    pl.seed_everything(cfg.get("seed", 0), workers=False, verbose=False)
    dm = FieldWindowDataModule(dataset_path, cfg["field"]["name"], data["n_training_frames"],
                               data["holdout_every"], data["normalize"], train["total_steps"], train["steps_per_call"])
    window = dm.prepare_window()
    if not _varies(frames_of(window.values, window.train_frames)):
        raise UserError(f"field {cfg['field']['name']} is constant over the training frames of {dataset_path.name} "
                        f"(R² is undefined); pick another data.seed, scenario or n_training_frames")
    if train["batch_size"] > len(window.train_frames):
        raise UserError(f"train.batch_size={train['batch_size']} exceeds the {len(window.train_frames)} training "
                        f"frames of the window; lower it")
    inr = get_inr_type(model_cfg["name"])
    latent_lr_mult = float(model_cfg.get("latent_lr_mult", 1.0))
    _configure_precision(train.get("tf32", "auto"), device, inr)
    network = network_from_config(cfg["model"], window.network_context())
    source = window.coordinate_source(data["t_period"], data["xy_period"], inr.needs_positions)
    step_frames = resolve_step_frames(train.get("step_frames", "auto"), len(window.train_frames))
    raw = torch.from_numpy(window.values)
    # sampled frames normalise the few frames each step reads, so a long window is held once, not twice
    target_stats = None if step_frames is None else (torch.from_numpy(window.mean), torch.from_numpy(window.std))
    targets = window.normalize(raw) if target_stats is None else raw
    settings = TrainSettings.from_config(train, n_particles=window.n_particles, step_frames=step_frames,
                                         seed=int(cfg.get("seed", 0)),
                                         inject_nonfinite_step=(cfg.get("debug") or {}).get("inject_nonfinite_step"))
    module = INRModule(network, inr, source, targets, torch.from_numpy(window.train_frames), settings,
                       dict(cfg["optimizer"]), dict(cfg["scheduler"]), latent_lr_mult, target_stats)
    return dm, window, module


# Lightning 2.6's CombinedLoader builds torch's LeafSpec for every DataLoader, which torch (2.13 here) deprecates: one
# FutureWarning per run with no cause in this code (Lightning-AI/pytorch-lightning#21326). Ignored by its exact
# message, during fit only, so any other warning still shows.
_LIGHTNING_LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def _fit(cfg: Mapping[str, Any], module: INRModule, dm: FieldWindowDataModule, device: str, logger,
         progress: bool) -> pl.Trainer:
    """trainer.fit with the trainer group's pl.Trainer (its accelerator resolved to the run's device, so the data
    and the Trainer agree); a diverged run finishes its logger and raises Diverged."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)  # no GPU/TPU/tips banner
    make_trainer = partial_of(cfg["trainer"], "trainer")
    trainer = make_trainer(accelerator="gpu" if device == "cuda" else "cpu", logger=logger or False,
                           callbacks=[StepProgress(cfg["train"]["total_steps"], enabled=progress)])
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LIGHTNING_LEAFSPEC_WARNING, category=FutureWarning)
            trainer.fit(module, datamodule=dm)
        if module.diverged_step is not None:
            raise Diverged(module.diverged_step)
    except Diverged:
        if logger is not None:
            finish_logger(logger, {"status": "diverged", "diverged_step": module.diverged_step}, None)
        raise
    return trainer


def _varies(values: np.ndarray) -> bool:
    """Whether any component of (T, N, C) `values` takes two values (else R² is undefined). A component at a time:
    a 1-D reduction is 16x faster than ptp over axes (0, 1) (3 ms instead of 48 at 100 frames of C)."""
    flat = values.reshape(-1, values.shape[-1])
    return any(np.ptp(flat[:, c]) > 0 for c in range(flat.shape[1]))


def _step_flops(cfg, window: FieldWindow) -> float | None:
    """The cost model's FLOPs of one step of this run (the agent's time model fits time against it)."""
    shape = DataShape.of_particles(len(window.train_frames), window.n_components, window.material, window.object_id)
    model = dict(cfg["model"])
    try:
        return step_flops(str(model["name"]), model, dict(cfg["train"]), shape)
    except ConfigError:  # a type without a cost model: the run is fine, the time model skips it
        return None


def _configure_precision(tf32: Any, device: str, inr: InrType) -> None:
    """TF32 is safe for the hash-grid MLP, not for sine layers (omega amplifies the 10-bit mantissa error): `auto`
    follows the registry's `tf32_safe` flag."""
    if device != "cuda":
        return
    enable = bool(tf32) if tf32 != "auto" else inr.tf32_safe
    torch.backends.cuda.matmul.allow_tf32 = enable
    torch.backends.cudnn.allow_tf32 = enable


def _parameter_count(module: INRModule) -> int:
    return sum(p.numel() for p in module.network.parameters())


def _kinograph_key(on_cpu: bool) -> tuple[str, bool]:
    """The window cache's name for the kinograph reference (a CPU's keeps scipy's filtered images)."""
    return ("kinograph_reference", on_cpu)


def _evaluate(module: INRModule, window: FieldWindow, clock: PhaseClock,
              predicted: Callable[[], None] | None = None,
              scored: Callable[[dict[str, Any]], None] | None = None,
              beside: KinographAside | None = None,
              defer: Callable[[Callable[[], float]], Any] | None = None) -> dict[str, Any]:
    """Final metrics on every particle of every training frame (and of held-out frames), in original units.
    `predicted` is called once module.prediction holds the prediction, before the metrics are computed; `scored`
    with every metric but the kinograph SSIM, before that costly one (evaluate_all); `beside`, the kinograph
    reference computed beside the fit; `defer`, evaluate_all's (the kinograph SSIM is then its handle)."""
    train_idx, test_idx = window.train_frames, window.test_frames
    n_params = _parameter_count(module)
    device = str(module.device)  # (on a GPU) the kinograph SSIM runs on the training device
    with clock.phase("evaluation"):
        module.eval()
        # in place, and no copy of the training frames when they are the whole window: at 10 000 frames each copy
        # of a 4-component field is 1.44 GB
        pred = window.denormalize_(module.predict_frames(torch.arange(window.n_frames))).float().cpu().numpy()
        module.prediction = pred
        if predicted is not None:
            predicted()
        held: dict[str, Any] = {"holdout_frames": [int(i) for i in test_idx], "holdout_r2": None, "holdout_mse": None}
        if len(test_idx):
            scores = pooled_scores(window.values[test_idx], pred[test_idx], device)
            held.update(holdout_r2=scores.r2, holdout_mse=scores.mse)
        gt = frames_of(window.values, train_idx)
        on_cpu = device.startswith("cpu")  # the ground truth's filtered kinograph, reused by later jobs, is scipy's

        def reference() -> KinographReference:
            return (beside.reference() if beside is not None else None) or kinograph_reference(gt, on_cpu)

        metrics = evaluate_all(gt, frames_of(pred, train_idx), window.positions[train_idx[middle_frame(len(train_idx))]],
                               n_params, device=device,
                               kinograph=lambda: derived(window, _kinograph_key(on_cpu), reference),
                               scored=None if scored is None else lambda first: scored({**first, **held}),
                               defer=defer)
        metrics.update(held)
        metrics["loss_curve_tail"] = module.loss_curve()[-1:] or None
    return metrics


def _svd(module: INRModule, window: FieldWindow, clock: PhaseClock, baselines: WindowBaselines,
         with_svd: bool = True) -> dict[str, Any]:
    """The truncated SVD of the window at the run's size, on the training device."""
    if not with_svd:  # outputs.svd=false: its T x T eigenproblem is the cost of a 10 000-frame window
        return {"svd": None, "svd_rank_for_target": None, "svd_r2_same_params": None}
    n_params, device, metrics = _parameter_count(module), str(module.device), {}
    with clock.phase("svd"):  # the window's SVD table (SVD_SCALING: per-component centred, the best rank-k fit for
        # the R² reported): one decomposition per window, shared with the SVD baseline in bytes, cached on disk and
        # kept with the window for later jobs of this process; held-out frames get its coefficients interpolated
        table = derived(window, ("svd_table", SVD_SCALING, device), baselines.svd_table)
        metrics.update(baselines.adopt_svd_table(table).run_metrics(n_params))
    return metrics


#: flat keys for tables, W&B and the agent: {method}_ratio_same_r2 (its compression at the run's R²) and
#: {method}_r2_same_bytes (its R² within the run's bytes), for method in svd, sz3, zfp
BASELINE_METHODS = ("svd", "sz3", "zfp")


def _window_baselines(cfg, window: FieldWindow, dataset_path: Path, base: Mapping[str, Any], device: str
                      ) -> WindowBaselines:
    """The window's baseline tables (cached per window)."""
    fingerprint = (base.get("dataset_provenance") or {}).get("fingerprint")
    source = BaselineSource.from_window(window, fingerprint, cfg["data"]["holdout_every"])
    return WindowBaselines(source, cache_dirs(dataset_path), device=device)


def _baselines(baselines: WindowBaselines, metrics: Mapping[str, Any]) -> dict:
    """The classical compressors on this run's window, read against the run's R² and its stored bytes (the codec
    file's when one was written, else float32 parameters)."""
    r2 = metrics.get("final_r2")
    if not isinstance(r2, float) or not np.isfinite(r2):
        return {"baselines": {"skipped": f"the run's R² is {r2}"}}
    model_bytes = int(metrics.get("codec_bytes") or 4 * metrics["total_params"])
    block = baselines.report(r2, model_bytes)
    flat: dict[str, Any] = {"baselines": block, "model_bytes": model_bytes}
    for method in BASELINE_METHODS:
        entry = block.get(method) or {}
        flat[f"{method}_ratio_same_r2"] = (entry.get("matched_accuracy") or {}).get("compression")
        flat[f"{method}_r2_same_bytes"] = (entry.get("matched_size") or {}).get("r2")
    return flat


def _figure_data(cfg, module: INRModule, window: FieldWindow) -> tuple[np.ndarray, Any, list[str], str]:
    """The training prediction (the prediction itself when it is all training frames: a copy of 100 frames of C
    was 9 ms before the figure's process could start), loss curve, component names and field the figure shows."""
    return (frames_of(module.prediction, window.train_frames), module.loss_curve(), list(cfg["field"]["components"]),
            window.field)


def _plot_request(cfg, run_dir: Path, module: INRModule, window: FieldWindow, metrics: dict) -> dict[str, Any]:
    prediction, loss_curve, components, field = _figure_data(cfg, module, window)
    return plot_request(run_dir / "field.png", prediction, loss_curve, metrics, components, field)


def save_predictions(run_dir: Path, module: INRModule) -> None:
    np.save(Path(run_dir) / "predictions.npy", module.prediction.astype(np.float32))
