"""The bench's compression numbers: ours against the classical compressors at the same R², in bytes, per window.

Per field, window and dataset seed: ours as float32 parameters (at its own training R²) and as the codec file at
each target R² (`outputs.codec=true codec.target_r2=<t>`, encoded from the network trained for it: the training
its `accuracy=r2_<digits>` option composes, so that targets with the same training share one run;
bench.train_bench.trainings_for); the truncated SVD quantised and lzma-coded like our codec (`codec.svd_baseline`, the bar of
issue #19); and the float32 SVD (per-component centred), SZ3 and ZFP at each target (`classical_baselines`,
matched accuracy: the smallest stored size reaching it). Every ratio is raw float32 bytes of the training frames /
stored bytes.

A window trained with held-out frames (`holdout_every=k`) is compared on those frames instead: the codec file
decoded at the held-out times against the baselines' interpolated held-out R² at the codec's bytes
(`classical_baselines`, matched size), and against the quantised SVD given the same bytes (its temporal factors
interpolated; `codec.svd_baseline.quantised_svd_holdout`), the rival the float32 SVD cannot be at a few kB.

`goal` reads the medians over seeds as issue #19's goal table does: met, or how far. Every codec cell also
keeps the seconds its file took to encode and to decode again, on CODING_THREADS pinned threads (torch's and the
BLAS numpy calls: mpm_inr.threads.pinned_threads), which issue #19 bounds at 100 frames (coding_goal).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mpm_inr.baselines import BaselineSource, cache_dirs, classical_baselines
from mpm_inr.codec import components
from mpm_inr.codec.encode import (
    SLOPE_BOUNDS,
    CodecSettings,
    encode_model,
    encode_window,
)
from mpm_inr.codec.rundir import load_run
from mpm_inr.codec.svd_baseline import (
    QuantisedSVD,
    compression,
    quantised_svd,
    quantised_svd_holdout,
)
from mpm_inr.codec.window_meta import field_window_section
from mpm_inr.data.dataset import open_dataset
from mpm_inr.data.window import FieldWindow
from mpm_inr.threads import pinned_threads, threads_in_use

COMPARE_TARGETS = (0.995, 0.999)
#: issue #19: encode + decode of a window of CODING_FRAMES frames within CODING_LIMIT_S on one CPU thread
CODING_FRAMES, CODING_LIMIT_S = 100, 10.0
#: and on this many CPU threads: the bench codes every file so, whatever the machine's cores
CODING_THREADS = 1
METHODS = {"svd": "SVD (centred, float32)", "sz3": "SZ3", "zfp": "ZFP"}
QUANTISED_SVD = "svd_q"
#: the rivals a window's goal cell must beat in bytes (issue #19: SZ3 and the quantised SVD)
GOAL_RIVALS = {"sz3": "SZ3", QUANTISED_SVD: "qSVD"}
#: a labelled comparison, never a goal rival: the quantised SVD given a 2×2 tensor's parts (codec.components), the
#: representation our split file codes, so a reader sees how much of our margin is the parts and how much the
#: factorisation (C, 1 000 frames, seed 2, R² 0.995: 735.0× against our 731.9×, where the goal's rival made 700.8×)
QUANTISED_SVD_PARTS = "svd_q_parts"


def _load(run_dir: Path) -> tuple[dict[str, Any], FieldWindow, nn.Module, BaselineSource]:
    """A finished run's resolved config, window, trained network and the baselines' view of its window."""
    cfg, window, network = load_run(run_dir)
    data = cfg["data"]
    source = BaselineSource.from_dataset(open_dataset(cfg["dataset"]), window.field, data["n_training_frames"],
                                         data["holdout_every"])
    return cfg, window, network, source


def _encode(run_dir: Path, cfg: dict[str, Any], window: FieldWindow, network: nn.Module,
            target: float) -> dict[str, Any]:
    """The run's codec file at `target`: its numbers (R² decoded from the written file)."""
    settings = CodecSettings.from_config({**(cfg.get("codec") or {}), "target_r2": target})
    return _coded(lambda: encode_model(network, cfg["model"], window, cfg["data"]["t_period"],
                                       run_dir / f"model_{target}.mpmc", settings))


def _coded(encode: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A codec file's numbers, coded on CODING_THREADS pinned threads (`threads`: the most any library had)."""
    with pinned_threads(CODING_THREADS):
        threads = threads_in_use()
        codec = encode()
    return {**codec, "threads": max(threads["cpu_threads"], threads["blas_threads"])}


def _codec_cell(codec: dict[str, Any], raw: int) -> dict[str, Any]:
    """The codec file's numbers in a bench cell: size, ratio, decoded R², and how long it took to code."""
    return {"bytes": codec["bytes"], "ratio": raw / codec["bytes"], "r2": codec["r2"], "slope": codec["slope"],
            "target_met": codec["target_met"], "coding_s": codec["encode_s"] + codec["decode_s"],
            "threads": codec["threads"], "centre": codec["centre"], "components": codec["components"]}


def compare_run(run_dir: Path, metrics: dict[str, Any], targets: tuple[float, ...], device: str) -> dict[str, Any]:
    """One trained run (its run dir holds the checkpoint) against the baselines of its window at each target."""
    started = time.perf_counter()
    cfg, window, network, source = _load(run_dir)
    float32_bytes = 4 * int(metrics["total_params"])
    ours = {"r2": metrics["final_r2"], "bytes": float32_bytes, "ratio": source.raw_bytes / float32_bytes}
    return _compared_training(lambda target: _encode(run_dir, cfg, window, network, target), source,
                              field_window_section(window, cfg["data"]["t_period"]), cfg["dataset"], run_dir,
                              targets, device, started, ours)


def compare_window(dataset: Path, field: str, n_frames: int, holdout_every: int, targets: tuple[float, ...],
                   device: str, out_dir: Path) -> dict[str, Any]:
    """A dataset's window encoded with no model trained (codec.encode_window: the split file, which takes nothing
    from a network) against the baselines of that window at each target, as compare_run and compare_holdout
    compare a run's: what the bench measures where training at the window's length is capped short of the
    target (S and C over the whole simulation) and the file would not use the network anyway. Its files go to
    `out_dir` (window_<target>.mpmc, the rival's beside them)."""
    started = time.perf_counter()
    opened = open_dataset(dataset)
    window = FieldWindow.from_dataset(opened, field, n_frames, holdout_every)
    source = BaselineSource.from_dataset(opened, field, n_frames, holdout_every)
    out_dir.mkdir(parents=True, exist_ok=True)

    def encode(target: float) -> dict[str, Any]:
        return _coded(lambda: encode_window(window, out_dir / f"window_{target}.mpmc",
                                            CodecSettings(target_r2=target)))

    section = field_window_section(window, 1.0)
    if holdout_every:
        return _compared_holdout(encode, source, section, str(dataset), targets, device, started)
    return _compared_training(encode, source, section, str(dataset), out_dir, targets, device, started, None)


def _compared_training(encode: Callable[[float], dict[str, Any]], source: BaselineSource, section: dict[str, Any],
                       dataset: str, out_dir: Path, targets: tuple[float, ...], device: str, started: float,
                       ours: dict[str, Any] | None) -> dict[str, Any]:
    """Our file at each target (`encode`) and the rivals' on the window's training frames (the quantised SVD's
    file written to `out_dir` with window section `section`); `ours`: the float32 model's cell (None: no model)."""
    raw = source.raw_bytes
    train_values = np.asarray(source.values[source.train])
    out: dict[str, Any] = {"raw_bytes": raw, "ours": ours, "targets": {}}
    for target in targets:
        codec = encode(target)
        block = classical_baselines(source, target, ours["bytes"] if ours else codec["bytes"], cache_dirs(dataset),
                                    device=device)
        row: dict[str, Any] = {"codec": _codec_cell(codec, raw), QUANTISED_SVD: quantised_svd_point(
            train_values, target, section, out_dir / f"{RIVAL_FILE}_{target}.mpmc")}
        if components.split_kind(source.values.shape[-1]) == components.PARTS:
            row[QUANTISED_SVD_PARTS] = quantised_svd_parts_point(train_values, target, section)
        for method in METHODS:
            point = (block.get(method) or {}).get("matched_accuracy")
            row[method] = None if point is None else {
                "bytes": point["bytes"], "ratio": point["compression"], "r2": point["r2"],
                "setting": f"rank {point['rank']}" if "rank" in point else f"eps {point['eps']:.3g}"}
        row["baselines_time_s"] = block.get("time_s")
        out["targets"][str(target)] = row
    out["time_s"] = time.perf_counter() - started  # encoding and baselines: what this table adds to the bench
    return out


#: the quantised SVD's file beside the codec's in a run dir: RIVAL_FILE_<target>.mpmc, decodable as ours are
RIVAL_FILE = "quantised_svd"


def quantised_svd_point(values: np.ndarray, target: float, window: dict[str, Any], path: Path
                        ) -> dict[str, Any] | None:
    """The smallest quantised, lzma-coded SVD file of the training frames reaching `target` (None: no rank does),
    with the window section `window`, written to `path`: its bytes are those on disk."""
    point = quantised_svd(values, target, window=window)
    return None if point is None else _quantised_svd_cell(point, values, point.write(path))


def _quantised_svd_cell(point: QuantisedSVD, values: np.ndarray, n_bytes: int) -> dict[str, Any]:
    """A quantised SVD's bench cell: its file's bytes, the window's ratio, R² and setting."""
    return {"bytes": n_bytes, "ratio": compression(values, point), "r2": point.r2, "rank": point.rank,
            "bits": point.bits, "setting": _centred_setting(f"rank {point.rank}, {point.bits} bits", point.centred_on)}


def quantised_svd_parts_point(values: np.ndarray, target: float, window: dict[str, Any]) -> dict[str, Any] | None:
    """quantised_svd_point of a tensor field's parts (components.values_in_parts; R² is the same in parts as in
    components, an orthonormal basis of 2×2 matrices), sized in memory: a file of the parts would not decode to
    the window."""
    point = quantised_svd(components.values_in_parts(values), target, window=window)
    return None if point is None else _quantised_svd_cell(point, values, point.n_bytes)


#: a file (ours or the quantised SVD's) centred on the value most particles rest at, not on the mean
RESTING_NOTE = "centred on the resting value"
#: a file (ours or the quantised SVD's) not centred: its factorisation is of the values themselves
ZERO_NOTE = "not centred"
#: our file codes each particle's components apart (mpm_inr.codec.components), as the SVD does
#: the note of each split layout (codec.components): components, or a 2×2 tensor's parts, apart
SPLIT_NOTES = {"split": "components apart", "parts": "tensor parts apart"}
#: the note of each centre other than the mean (encode.centrings, svd_baseline.centres)
CENTRE_NOTES = {"rest": RESTING_NOTE, "zero": ZERO_NOTE}


def _centred_setting(setting: str, centred_on: str) -> str:
    """A quantised SVD's setting, with its centre where it is not the mean."""
    return f"{setting}, {CENTRE_NOTES[centred_on]}" if centred_on in CENTRE_NOTES else setting


def compare_holdout(run_dir: Path, targets: tuple[float, ...], device: str) -> dict[str, Any]:
    """A run trained with held-out frames: its codec file at each target, decoded at the held-out times, against
    the baselines' interpolated held-out R² within the codec file's bytes (matched size)."""
    started = time.perf_counter()
    cfg, window, network, source = _load(run_dir)
    return _compared_holdout(lambda target: _encode(run_dir, cfg, window, network, target), source,
                             field_window_section(window, cfg["data"]["t_period"]), cfg["dataset"], targets, device,
                             started)


def _compared_holdout(encode: Callable[[float], dict[str, Any]], source: BaselineSource, section: dict[str, Any],
                      dataset: str, targets: tuple[float, ...], device: str, started: float) -> dict[str, Any]:
    """Our file at each target (`encode`) decoded at the held-out times, and the rivals within its bytes."""
    raw = source.raw_bytes
    out: dict[str, Any] = {"raw_bytes": raw, "holdout_every": source.key["holdout_every"],
                           "holdout_frames": int(source.test.size), "targets": {}}
    for target in targets:
        codec = encode(target)
        block = classical_baselines(source, target, codec["bytes"], cache_dirs(dataset), device=device)
        row: dict[str, Any] = {"codec": {**_codec_cell(codec, raw), "holdout_r2": codec["holdout_r2"],
                                         "holdout_slope": codec["holdout_slope"]}}
        for method in METHODS:
            row[method] = _holdout_point((block.get(method) or {}).get("matched_size"))
        row[QUANTISED_SVD] = quantised_svd_holdout_point(source, codec["bytes"], section)
        out["targets"][str(target)] = row
    out["time_s"] = time.perf_counter() - started
    return out


def quantised_svd_holdout_point(source: BaselineSource, budget_bytes: int, window: dict[str, Any]
                                ) -> dict[str, Any] | None:
    """The quantised SVD within the codec file's bytes that predicts the held-out frames best (None: no file fits),
    its file carrying the window section `window`."""
    values = np.asarray(source.values)
    point = quantised_svd_holdout(values, source.train, source.test, budget_bytes, window=window)
    if point is None:
        return None
    return {"bytes": point.n_bytes, "ratio": source.raw_bytes / point.n_bytes, "r2": point.r2,
            "holdout_r2": point.holdout_r2,
            "setting": _centred_setting(f"rank {point.rank}, {point.bits} bits, {point.interpolation}",
                                        point.centred_on)}


def _holdout_point(point: dict[str, Any] | None) -> dict[str, Any] | None:
    """A matched-size baseline's held-out R²: the best of its interpolations (the SVD's linear and cubic)."""
    if point is None or not point.get("holdout_r2"):
        return None
    method, r2 = max(point["holdout_r2"].items(), key=lambda kv: kv[1])
    setting = f"rank {point['rank']}" if "rank" in point else f"eps {point['eps']:.3g}"
    return {"bytes": point["bytes"], "ratio": point["compression"], "r2": point["r2"], "holdout_r2": r2,
            "setting": f"{setting}, {method}"}


def median_cell(cells: Iterable[dict[str, Any] | None], keys: tuple[str, ...] = ("ratio", "r2")
                ) -> dict[str, Any] | None:
    """Medians of `keys` over the seeds that have the cell, and how many do."""
    have = [c for c in cells if c is not None]
    if not have:
        return None
    return {**{k: statistics.median(c[k] for c in have) for k in keys}, "seeds": len(have)}


def summarise(field: str, per_seed: list[dict[str, Any]], targets: tuple[float, ...],
              holdout_every: int = 0, n_seeds: int | None = None) -> dict[str, Any]:
    """The field's table for one window: per seed (None where the run failed), the medians over seeds and the
    goal cell per target. n_seeds: the seeds the table is to have (default: those given), so that a table saved
    part way says how many ran."""
    ok = [r for r in per_seed if r.get("comparison")]
    keys = ("codec", QUANTISED_SVD, QUANTISED_SVD_PARTS, *METHODS)
    measure = ("ratio", "r2", "holdout_r2") if holdout_every else ("ratio", "r2")
    median: dict[str, Any] = {"targets": {}}
    if not holdout_every:
        median["ours"] = median_cell(r["comparison"]["ours"] for r in ok)
    goals = {}
    for target in map(str, targets):
        cells = {key: [r["comparison"]["targets"][target].get(key) for r in ok] for key in keys}
        median["targets"][target] = {key: median_cell(cells[key], measure) for key in keys}
        goals[target] = (holdout_goal if holdout_every else window_goal)(
            cells["codec"], median["targets"][target], float(target), n_seeds or len(per_seed))
    return {"field": field, "targets": list(targets), "holdout_every": holdout_every, "seeds": per_seed,
            "median": median, "goal": goals}


def window_goal(codecs: list[dict[str, Any]], median: dict[str, Any], target: float, n_seeds: int
                ) -> dict[str, Any]:
    """Met when the codec file reaches the target on every seed and its median ratio is at least SZ3's and the
    quantised SVD's (a rival that no setting brings to the target is beaten); else how far, in R² and in ratio."""
    if not codecs:
        return {"met": False, "ran": 0, "seeds": n_seeds}
    missed = [c["r2"] for c in codecs if not c["target_met"]]
    ours = median["codec"]["ratio"]
    rivals = {key: (median[key] or {}).get("ratio") for key in GOAL_RIVALS}
    best = max((r for r in rivals.values() if r is not None), default=None)
    return {"met": not missed and (best is None or ours >= best), "ran": len(codecs), "seeds": n_seeds,
            "ratio": ours, "r2": median["codec"]["r2"], "rivals": rivals, "target": target,
            "missed_seeds": len(missed), "lowest_r2": min(missed, default=None),
            "ratio_of_best": None if best is None else ours / best}


def holdout_goal(codecs: list[dict[str, Any]], median: dict[str, Any], target: float, n_seeds: int
                 ) -> dict[str, Any]:
    """Met when the codec file's median held-out R² is at least every baseline's median interpolated held-out R²
    at the codec's bytes (a baseline none of whose settings fits in those bytes is beaten); else how far."""
    if not codecs:
        return {"met": False, "ran": 0, "seeds": n_seeds}
    ours = median["codec"]["holdout_r2"]
    rivals = {key: (median[key] or {}).get("holdout_r2") for key in (QUANTISED_SVD, *METHODS)}
    best = max((r for r in rivals.values() if r is not None), default=None)
    return {"met": best is None or ours >= best, "ran": len(codecs), "seeds": n_seeds, "holdout_r2": ours,
            "ratio": median["codec"]["ratio"], "rivals": rivals, "target": target,
            "r2_behind_best": None if best is None else best - ours}


def coding_goal(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue #19's bound on coding time: the slowest encode + decode of a CODING_FRAMES-frame window's codec file
    (every field, seed and target, held-out windows included), on how many threads; None if no such window ran."""
    cells = [(cell["coding_s"], cell.get("threads"), table["field"], run["seed"], target)
             for block in blocks if block["window"] == CODING_FRAMES for table in block["fields"]
             for run in table["seeds"] if run.get("comparison")
             for target, row in run["comparison"]["targets"].items()
             if (cell := row["codec"]) and "coding_s" in cell]
    if not cells:
        return None
    seconds, _, field, seed, target = max(cells, key=lambda c: c[0])
    threads = max(c[1] or 1 for c in cells)  # met only if every file was coded on one thread
    return {"met": seconds <= CODING_LIMIT_S and threads == 1, "seconds": seconds, "threads": threads,
            "field": field, "seed": seed, "target": target, "files": len(cells), "limit_s": CODING_LIMIT_S,
            "frames": CODING_FRAMES}


def slope_goal(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue #19's bound on slope: every codec file's decoded slope within SLOPE_BOUNDS (which the encoder keeps on
    the training frames: encode.slope_within), there and, on a held-out window, at the held-out frames too; the
    range over the files and the one farthest from 1. None where no cell records a slope (results saved before
    slopes were)."""
    slopes = [(value, {"window": block["window"], "holdout_every": block["holdout_every"], "field": table["field"],
                       "seed": run["seed"], "target": target, "frames": frames})
              for block in blocks for table in block["fields"] for run in table["seeds"] if run.get("comparison")
              for target, row in run["comparison"]["targets"].items() if (cell := row["codec"])
              for frames, value in (("training", cell.get("slope")), ("held-out", cell.get("holdout_slope")))
              if value is not None]
    if not slopes:
        return None
    low, high = SLOPE_BOUNDS
    value, where = max(slopes, key=lambda s: abs(s[0] - 1.0))
    return {"met": all(low <= v <= high for v, _ in slopes), "slopes": len(slopes), "bounds": SLOPE_BOUNDS,
            "lowest": min(v for v, _ in slopes), "highest": max(v for v, _ in slopes), "farthest": value,
            "where": where}
