"""A training run directory to the inputs of `encode_model`: its config, window and trained network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpm_inr.codec.format import CodecError
from mpm_inr.data.dataset import dataset_dir, open_dataset
from mpm_inr.data.window import FieldWindow
from mpm_inr.models import network_from_config

CHECKPOINT = Path("checkpoints") / "last.ckpt"


def load_run(run_dir: str | Path, data_root: str | Path | None = None) -> tuple[dict[str, Any], FieldWindow, nn.Module]:
    """(resolved config, window, trained network) of a finished run: the config from metrics.json (resolved,
    written by every run), the weights from checkpoints/last.ckpt, the window from the run's dataset."""
    run_dir = Path(run_dir)
    metrics_path, ckpt = run_dir / "metrics.json", run_dir / CHECKPOINT
    if not metrics_path.is_file():
        raise CodecError(f"{run_dir} has no metrics.json; pass the directory of a finished training run")
    if not ckpt.is_file():
        raise CodecError(f"{run_dir} has no {CHECKPOINT}; train it again with outputs.checkpoint=true")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CodecError(f"cannot read {metrics_path}: {err}; the run is damaged, train it again") from None
    if metrics.get("status") != "ok":
        raise CodecError(f"run {run_dir} has status {metrics.get('status')!r}; only a finished (ok) run can be encoded")
    cfg = nest(metrics["config"])
    data = cfg["data"]
    path = _dataset_path(metrics, cfg, data_root)
    window = FieldWindow.from_dataset(open_dataset(path), cfg["field"]["name"], data["n_training_frames"],
                                      data["holdout_every"], data["normalize"])
    network = network_from_config(cfg["model"], window.network_context())
    state = torch.load(ckpt, map_location="cpu", weights_only=True).get("state_dict", {})
    weights = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise CodecError(f"{ckpt} does not fit the run's model config ({str(err).splitlines()[0]}); "
                         "the run directory is inconsistent") from None
    cfg["dataset"] = str(path)
    return cfg, window, network.eval()


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'model.latent_dim': 8} -> {'model': {'latent_dim': 8}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _dataset_path(metrics: dict[str, Any], cfg: dict[str, Any], data_root: str | Path | None) -> Path:
    if data_root is not None:
        path = dataset_dir(data_root, cfg["scenario"]["name"], cfg["data"]["seed"])
    else:
        path = Path(metrics.get("dataset") or dataset_dir(cfg["data"]["root"], cfg["scenario"]["name"],
                                                          cfg["data"]["seed"]))
    if not (path / "meta.json").is_file():
        raise CodecError(f"the run's dataset {path} is missing (the encoder needs its window to measure R²); "
                         f"pass --data-root DIR holding {path.name}")
    return path
