"""Dataset generation: run the simulator for a scenario and seed and write contract-1 datasets to disk.

`ensure_dataset` is what training calls: it returns the cached dataset or generates it. `generate_from_config`
is the body of `python generate.py` (Hydra config `conf/generate.yaml`). The simulation loop never syncs
with the device per step: frames are staged on the device and copied to the memory-mapped files in chunks.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mpm_inr.data.dataset import (
    FRAME_FIELDS,
    DatasetWriter,
    MPMDataset,
    clean_stale_temps,
    dataset_dir,
    ensure_writable_root,
    open_dataset,
    record_fingerprint,
    recorded_fingerprint,
    verify_fingerprint,
)
from mpm_inr.data.lock import generation_lock
from mpm_inr.errors import ConfigError, DatasetError
from mpm_inr.threads import check_threads, pinned_threads

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda", "auto")
CHUNK_BYTES = 64 * 2**20  # frames staged on the device between two copies to disk


def check_seed(seed: Any) -> int:
    """A dataset seed: a non-negative integer (bools and floats rejected)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def resolve_device(device: Any) -> torch.device:  # noqa: F821 - torch imported lazily
    """'cpu', 'cuda' (or 'cuda:<k>') or 'auto' (cuda when available) -> torch.device."""
    import torch

    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
        return torch.device(name)
    raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or cuda:<k>), got {device!r}")


def _json_norm(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def generate_dataset(scenario_cfg: Mapping, seed: int, target: str | os.PathLike, device: Any = "cpu",
                     progress: bool = True, replace: bool = False, threads: int | None = None) -> Path:
    """Simulate `scenario_cfg.n_frames` frames and write the dataset to `target` (atomically).

    Frame k is the state after k steps; frame 0 is the initial condition. Raises `DatasetError` if the
    simulation produces a non-finite value (the scenario is unstable), leaving nothing behind.
    """
    with pinned_threads(check_threads(threads)):
        return _generate(scenario_cfg, seed, target, device, progress, replace)


def _generate(scenario_cfg: Mapping, seed: int, target: str | os.PathLike, device: Any, progress: bool,
              replace: bool) -> Path:
    import torch

    from mpm_inr.sim import (
        GENERATOR_VERSION,
        MPMSimulator,
        initial_state,
        physics_params,
        validate_scenario,
    )

    cfg = validate_scenario(scenario_cfg)
    seed = check_seed(seed)
    dev = resolve_device(device)
    gp, mp = physics_params(cfg)
    T = int(cfg["n_frames"])
    t0 = time.perf_counter()
    with torch.inference_mode():
        state = initial_state(cfg, seed, dev)
        N = state.n_particles
        with DatasetWriter(target, T, N) as writer:
            sim = MPMSimulator(state, gp, mp, cuda_graph=dev.type == "cuda")
            frame_bytes = 4 * N * sum(int(np.prod(s)) for s, _, _ in FRAME_FIELDS.values())
            K = max(1, min(T, CHUNK_BYTES // frame_bytes))
            stage = {name: torch.empty((K, N, *shape), dtype=torch.float32, device=dev)
                     for name, (shape, _, _) in FRAME_FIELDS.items()}
            bar = _progress(T - 1, f"{cfg['name']} seed {seed}", progress)
            try:
                k0 = 0
                for k in range(T):
                    for name in FRAME_FIELDS:
                        stage[name][k - k0].copy_(state.frame_view(name))
                    if k - k0 + 1 == K or k == T - 1:
                        _flush_chunk(writer, stage, k0, k - k0 + 1, cfg["name"], seed)
                        k0 = k + 1
                    if k < T - 1:
                        sim.step()
                        if bar is not None:
                            bar.update(1)
            finally:  # also on Ctrl-C or a full disk: the error line then starts on a line of its own
                if bar is not None:
                    bar.close()
            writer.write_particle("type", state.mtype.cpu().numpy())
            writer.write_particle("mass", state.mass.cpu().numpy())
            writer.write_particle("object_id", state.object_id.cpu().numpy())
            meta = {
                "source": "generated",
                "scenario": _json_norm(cfg),
                "seed": seed,
                "generator_version": GENERATOR_VERSION,
                "dt": gp.dt,
                "frame_time": "frame k is the state after k steps, t = k * dt; frame 0 is the initial condition",
                "n_grid": gp.n_grid,
                "p_vol": gp.p_vol,
                "device": str(dev),
                "cuda_graph": sim.uses_cuda_graph,
                "torch_version": torch.__version__,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "generation_seconds": round(time.perf_counter() - t0, 3),
            }
            return writer.commit(meta, replace=replace)


def _flush_chunk(writer: DatasetWriter, stage: dict, start: int, n: int, name: str, seed: int) -> None:
    """Copy n staged frames to disk (one device->host copy per array) and stop on the first non-finite value."""
    for field, buf in stage.items():
        host = buf[:n].cpu().numpy()
        if not np.isfinite(host).all():
            bad = start + int(np.argmax(~np.isfinite(host).reshape(n, -1).all(axis=1)))
            raise DatasetError(f"simulation of {name} seed {seed} became non-finite ({field}) at frame {bad}: "
                               f"the scenario is unstable; try a smaller scenario.physics.dt")
        writer.write_frames(field, start, host)
    writer.flush()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)


def _scenario_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two plain configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _scenario_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def ensure_dataset(scenario_cfg: Mapping, seed: int, root: str | os.PathLike, device: Any = "cpu",
                   progress: bool = True, overwrite: bool = False, threads: int | None = None) -> Path:
    """Path of the dataset for (scenario, seed) under `root`, generated first if it is not there.

    A cached dataset is validated (`open_dataset`) and, if it was generated here, must come from the same
    scenario config (otherwise `DatasetError` names the differing keys). Imported datasets (from the
    reference layout) are taken as they are. Temporary directories of crashed generations are removed. The root
    must be writable only when the dataset has to be generated.
    Generation holds the dataset's lock (`generation_lock`): a second caller waits for it and reuses the result.
    `threads` pins torch's CPU threads and numpy's BLAS for the generation only (None: leave them as they are).
    """
    return _ensure_dataset(scenario_cfg, seed, root, device, progress, overwrite, threads)[0]


def _ensure_dataset(scenario_cfg: Mapping, seed: int, root: str | os.PathLike, device: Any, progress: bool,
                    overwrite: bool, threads: int | None) -> tuple[Path, str]:
    """`ensure_dataset`, also saying how the dataset was obtained: cached, generated, or waited for."""
    from mpm_inr.sim import validate_scenario

    cfg = validate_scenario(scenario_cfg)
    seed = check_seed(seed)
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite must be true or false, got {overwrite!r}")
    root = Path(root)
    target = dataset_dir(root, cfg["name"], seed)
    clean_stale_temps(target)  # best effort: on a read-only root they stay, and nothing ever loads them
    if target.exists() and not overwrite:
        return _checked_cache(target, cfg, seed), "cached"
    ensure_writable_root(root)  # only generating writes: a cached dataset on a read-only mount is read as it is
    with generation_lock(target):  # its lock file lives in the root, so the root is checked first
        if target.exists() and not overwrite:  # the process we waited for has just made it
            return _checked_cache(target, cfg, seed), "made by another process while this one waited"
        t0 = time.perf_counter()
        clean_stale_temps(target)  # again: one we waited for may have died (kill -9) since the first look
        path = generate_dataset(cfg, seed, target, device=device, progress=progress, replace=overwrite,
                                threads=threads)
    return path, f"generated in {time.perf_counter() - t0:.1f} s"


def _checked_cache(target: Path, cfg: Mapping, seed: int) -> Path:
    """A cached dataset, validated and checked against the scenario config it should come from."""
    from mpm_inr.sim import GENERATOR_VERSION

    ds = open_dataset(target)
    if ds.meta.get("source", "generated") == "generated":
        diff = _scenario_diff(ds.meta.get("scenario"), _json_norm(cfg))
        if diff:
            raise DatasetError(f"dataset {target} was generated from a different scenario config "
                               f"(differs in {', '.join(diff)}); delete it or regenerate with overwrite=true")
        made_by = ds.meta.get("generator_version")
        if made_by != GENERATOR_VERSION:  # still valid data, but not this seed's trajectory any more
            log.warning("dataset %s was made by simulator %s, this code makes %s: its trajectory differs from "
                        "a fresh generation of seed %d; regenerate with overwrite=true to reproduce results "
                        "made with this code", target, made_by, GENERATOR_VERSION, seed)
    return target


def validate_generate_config(cfg: Mapping) -> None:
    """The range checks of `python generate.py`; its entry point runs them on the composed config before Hydra
    makes a run dir, so a bad value leaves nothing behind."""
    from mpm_inr.sim import validate_scenario

    validate_scenario(cfg["scenario"])
    check_seed(cfg.get("seed"))
    check_threads(cfg.get("threads"))
    for key in ("verify", "overwrite", "progress"):
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigError(f"{key} must be true or false, got {cfg.get(key)!r}")


def generate_from_config(cfg: Mapping) -> Path:
    """Body of `python generate.py`: keys scenario, seed, root, device, overwrite, progress, threads, verify."""
    validate_generate_config(cfg)
    seed, threads = check_seed(cfg.get("seed")), check_threads(cfg.get("threads"))
    progress, verify = cfg.get("progress", True), cfg.get("verify", False)
    path, how = _ensure_dataset(cfg["scenario"], seed, cfg.get("root", "data"), cfg.get("device", "cpu"),
                                bool(progress), cfg.get("overwrite", False), threads)
    ds = open_dataset(path)
    how = "cached, not regenerated" if how == "cached" else how
    print(f"dataset {path}: {ds.n_frames} frames x {ds.n_particles} particles ({how}), "
          f"fingerprint {_short(recorded_fingerprint(ds))}")
    if verify:
        print(verify_dataset(ds))
    return path


def _short(digest: str | None) -> str:
    return digest[:16] if digest else "not recorded (made before fingerprints; verify=true records it)"


def verify_dataset(ds: MPMDataset) -> str:
    """Recompute a dataset's fingerprint: compare it with the recorded one (`DatasetError` on a mismatch), or
    record it for a dataset made before fingerprints. Returns the one-line outcome."""
    found = verify_fingerprint(ds)
    if recorded_fingerprint(ds) is None:
        record_fingerprint(ds, found)
        return (f"fingerprint {found['sha256'][:16]} computed and recorded in meta.json: it vouches for the data "
                f"from now on, not for how it was made")
    return f"fingerprint {found['sha256'][:16]} verified: every array matches meta.json"
