"""The numbers behind the landscape report, computed from a study's journal (and the run dirs it references).

Everything here is a pure function of `journal.jsonl`, the `metrics.json` of the runs it names (read only to fill
keys a journal event lacks) and, for the held-out SVD baseline, the dataset window itself. The report, the W&B
study run and the landscape notebook all call these functions, so they can never disagree.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.runs.overrides import BLOCK_KEYS, as_dict
from agent.study.journal import Journal
from agent.study.plan import selection_score
from agent.study.state import StudyState, data_identity, fold
from mpm_inr.config.fields import FIELD_NAMES
from mpm_inr.errors import StudyError

#: keys whose value lives under another name in metrics.json's flat `config`
GROUP_KEYS = {"inr_type": "model.name", "optimizer": "optimizer.name", "scheduler": "scheduler.name",
              "field": "field.name"}
SVD_METHODS = ("linear", "cubic")
#: the classical baselines of a run's window (metrics.json `baselines`, Contract 2) and their display names
BASELINES = {"svd": "SVD", "sz3": "SZ3", "zfp": "ZFP"}
#: each baseline's two points per run: the smallest size reaching the run's R², the best R² within its bytes
MATCHES = {"matched_accuracy": "at its R²", "matched_size": "at its bytes"}


def num(x: Any) -> float | None:
    """A finite float, or None (bools and strings are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def neglog(r2: float) -> float:
    """-log10(1 - R²), so 0.999 and 0.9999 are one unit apart (1 - R² floored at 1e-12)."""
    return -math.log10(max(1.0 - r2, 1e-12))


def median(values: Iterable[Any]) -> float | None:
    vals = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(vals) if vals else None


@dataclass
class RunRecord:
    """One launched node of the study with the metrics it finished with."""

    node_id: int
    parent_id: int | None
    block: int
    iteration: int | None
    strategy: str
    status: str
    error: str | None
    field: str
    inr_type: str
    frames: int | None
    overrides: list[str]
    changes: dict[str, Any]
    mutation: str
    metrics: dict[str, Any]
    run_dir: Path | None

    def m(self, key: str) -> float | None:
        return num(self.metrics.get(key))

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.r2 is not None

    @property
    def r2(self) -> float | None:
        return self.m("final_r2") if self.status == "ok" else None

    @property
    def time(self) -> float | None:
        return self.m("training_time")

    @property
    def compression(self) -> float | None:
        return self.m("compression_ratio")

    @property
    def svd_same_params(self) -> tuple[int, float] | None:
        """(rank, R²) of the truncated SVD storing at most as many numbers as this run (metrics.json
        `svd.same_params`); None for runs that did not record it or for which even rank 1 is larger."""
        svd = self.metrics.get("svd")
        same = svd.get("same_params") if isinstance(svd, dict) else None
        if not isinstance(same, dict) or num(same.get("r2")) is None or not isinstance(same.get("rank"), int):
            return None
        return same["rank"], float(same["r2"])

    @property
    def holdout_r2(self) -> float | None:
        return self.m("holdout_r2") if self.status == "ok" else None

    @property
    def baselines(self) -> dict[str, Any] | None:
        """metrics.json `baselines` when it holds at least one method (None for runs recorded before it, or
        skipped because every component was constant)."""
        block = self.metrics.get("baselines")
        return block if isinstance(block, dict) and any(isinstance(block.get(m), dict) for m in BASELINES) else None

    def baseline(self, method: str, match: str) -> dict[str, Any] | None:
        """One matched point of one baseline ({bytes, compression, r2, ...}); None when not recorded or none
        qualified (no size reaches the run's R², or nothing fits in its bytes)."""
        entry = (self.baselines or {}).get(method)
        point = entry.get(match) if isinstance(entry, dict) else None
        if not isinstance(point, dict) or not num(point.get("bytes")) or num(point.get("r2")) is None:
            return None
        return point

    @property
    def raw_bytes(self) -> float | None:
        """float32 bytes of the training frames the run fitted (`baselines.raw_bytes`, else 4 x n_values)."""
        raw = num((self.baselines or {}).get("raw_bytes"))
        n_values = self.m("n_values")
        return raw if raw is not None else (4 * n_values if n_values is not None else None)

    @property
    def model_bytes(self) -> float | None:
        """Bytes the run's model stores: `model_bytes` (the codec file's with outputs.codec=true), else the
        codec file's, else float32 parameters (runs recorded before the key)."""
        for key in ("model_bytes", "codec_bytes"):
            if self.m(key):
                return self.m(key)
        params = self.m("total_params")
        return 4 * params if params else None

    @property
    def bytes_ratio(self) -> float | None:
        """raw float32 bytes / stored bytes: the size axis on which the classical baselines are read."""
        raw, stored = self.raw_bytes, self.model_bytes
        return raw / stored if raw and stored else self.compression

    @property
    def device(self) -> str:
        return str(self.metrics.get("device") or "?")

    @property
    def holdout_every(self) -> int:
        v = (self.metrics.get("config") or {}).get("data.holdout_every")
        if v is None:
            v = as_dict(self.overrides).get("data.holdout_every", 0)
        try:
            return int(v)
        except (TypeError, ValueError):
            return 0

    @property
    def dataset(self) -> str | None:
        d = self.metrics.get("dataset")
        return str(d) if d else None

    @property
    def data_fingerprint(self) -> str | None:
        """sha256 of the dataset's arrays this run trained on (`dataset_provenance.fingerprint`; None for runs
        recorded before fingerprints or on datasets made before them)."""
        return data_identity(self.metrics)[1]

    @property
    def data_key(self) -> tuple[str, str]:
        """Which data the run saw: the dataset's name and fingerprint (its path where no fingerprint was recorded).
        Copies of the same bytes under different roots (node-local data on a cluster) share a key; two
        trajectories under one name (a dataset regenerated mid-study by another simulator version, torch build or
        device: the discs collide chaotically) do not."""
        name, fp = data_identity(self.metrics)
        return name or "?", fp or (self.dataset or "?")

    @property
    def data_seed(self) -> int:
        """The simulation seed of the dataset the run trained on: the resolved `data.seed`, else the node's override,
        else the dataset's provenance, else the trainer's default 0."""
        for raw in ((self.metrics.get("config") or {}).get("data.seed"), as_dict(self.overrides).get("data.seed"),
                    (self.metrics.get("dataset_provenance") or {}).get("seed")):
            try:
                return int(raw)
            except (TypeError, ValueError):
                continue
        return 0

    @property
    def window_key(self) -> tuple:
        """The data window a run fitted: its data, field, frames and held-out frames."""
        return self.data_key, self.field, self.frames, self.holdout_every

    def value(self, key: str) -> Any:
        """The run's resolved value of an override key (metrics config first, then its overrides)."""
        cfg = self.metrics.get("config") or {}
        ck = GROUP_KEYS.get(key, key)
        if ck in cfg:
            return cfg[ck]
        if key == "inr_type":
            return self.inr_type
        return _maybe_num(as_dict(self.overrides).get(key))

    def config_text(self, skip: Sequence[str] = BLOCK_KEYS) -> str:
        ov = as_dict(self.overrides)
        return ", ".join(f"{k}={v}" for k, v in sorted(ov.items()) if k not in skip) or "(trainer defaults)"

    def canonical(self) -> tuple[str, ...]:
        """The config without the training seed: runs sharing it are repeats of one config. The resolved config
        of metrics.json when recorded (so `model.n_layers=3` equals the default 3), else the overrides."""
        cfg = self.metrics.get("config")
        if isinstance(cfg, dict) and cfg:
            return ("resolved",) + tuple(sorted(f"{k}={v!r}" for k, v in cfg.items()
                                                if k != "seed" and not k.startswith(("study.", "logger."))))
        return tuple(sorted(o for o in self.overrides if not o.startswith("seed=")))


def _maybe_num(x: Any) -> Any:
    if isinstance(x, str):
        for conv in (int, float):
            try:
                return conv(x)
            except ValueError:
                pass
    return x


@dataclass
class Study:
    dir: Path
    name: str
    state: StudyState
    events: list[dict[str, Any]]
    runs: list[RunRecord]
    min_compression: float = 1.0

    @property
    def ok_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if r.ok]

    @property
    def finished_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status not in ("planned", "running")]

    def fields(self) -> list[str]:
        order = {name: i for i, name in enumerate(FIELD_NAMES)}
        return sorted({r.field for r in self.runs}, key=lambda f: (order.get(f, 9), f))


def resolve_run_dir(study_dir: Path, recorded: str | None) -> Path | None:
    """The run dir as recorded, or, when the study was moved/copied, the same `runs/...` path under study_dir.
    A relative recorded path is relative to the study dir (never to the reader's working directory)."""
    if not recorded:
        return None
    p = Path(recorded)
    if not p.is_absolute():
        p = study_dir / p
    if p.is_dir():
        return p
    parts = p.parts
    if "runs" in parts:
        i = len(parts) - 1 - parts[::-1].index("runs")
        moved = study_dir.joinpath(*parts[i:])
        if moved.is_dir():
            return moved
    return None


def _read_metrics(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    try:
        data = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_study(study_dir: str | Path, events: list[dict[str, Any]] | None = None) -> Study:
    """Fold the journal (or the given prefix of its events) into run records."""
    d = Path(study_dir)
    if events is None:
        if not (d / "journal.jsonl").exists():
            raise StudyError(f"{d} is not a study directory (no journal.jsonl)")
        events = Journal(d).read()
    st = fold(events)
    if not st.name:
        raise StudyError(f"{d}/journal.jsonl has no study_start event")
    default_inr = str(st.config.get("inr_type") or "")
    runs = []
    for n in st.launched_nodes():
        run_dir = resolve_run_dir(d, n.run_dir)
        metrics = dict(n.metrics)
        if n.finished:
            for k, v in _read_metrics(run_dir).items():  # the journal wins; metrics.json fills the gaps
                metrics.setdefault(k, v)
        blk = st.block(n.block)
        ov = as_dict(n.overrides)
        frames = metrics.get("n_training_frames") or ov.get("data.n_training_frames") or (
            blk.n_training_frames if blk else None)
        runs.append(RunRecord(
            node_id=n.node_id, parent_id=n.parent_id, block=n.block, iteration=n.iteration, strategy=n.strategy,
            status=n.status, error=n.error,
            field=str(metrics.get("field") or ov.get("field") or (blk.field if blk else "?")),
            inr_type=str(metrics.get("inr_type") or ov.get("inr_type") or default_inr or "?"),
            frames=int(frames) if frames is not None else None, overrides=list(n.overrides),
            changes=dict(n.changes), mutation=n.mutation, metrics=metrics, run_dir=run_dir))
    agent = st.config.get("agent") or {}
    return Study(d, st.name, st, list(events), runs, float(agent.get("min_compression", 1.0)))


def block_end_prefixes(events: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """For every ended block, the journal as it was right after that block's `block_end` event."""
    out = {}
    for i, ev in enumerate(events):
        if ev.get("event") == "block_end":
            out[int(ev["block"])] = list(events[: i + 1])
    return out


# ------------------------------------------------------------------------------------------------ regimes


def best_run(runs: Sequence[RunRecord], min_compression: float = 1.0) -> RunRecord | None:
    """The best run among those whose compression is at least min_compression (else among all), ranked as the
    study's seed spread ranks them (`selection_score`: held-out R² where recorded, then training R²), so the
    report's best run of a regime is the config the plan re-ran on other seeds, and a run that fits only its
    training frames does not lead."""
    ok = [r for r in runs if r.ok]
    if not ok:
        return None

    def key(r: RunRecord) -> tuple:
        c = r.compression
        return (c is None or c >= min_compression, *selection_score(r.r2, r.metrics), -r.node_id)

    return max(ok, key=key)


@dataclass
class Regime:
    field: str
    inr_type: str
    frames: int | None
    runs: list[RunRecord]
    best: RunRecord | None

    @property
    def n_ok(self) -> int:
        return sum(r.ok for r in self.runs)

    @property
    def n_failed(self) -> int:
        return sum(r.status not in ("ok", "planned", "running") for r in self.runs)


def regimes(study: Study) -> list[Regime]:
    groups: dict[tuple[str, str, int | None], list[RunRecord]] = {}
    for r in study.finished_runs:
        groups.setdefault((r.field, r.inr_type, r.frames), []).append(r)
    order = {f: i for i, f in enumerate(study.fields())}
    out = [Regime(f, i, fr, rs, best_run(rs, study.min_compression)) for (f, i, fr), rs in groups.items()]
    return sorted(out, key=lambda g: (order.get(g.field, 9), g.inr_type, g.frames or 0))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (lower x, higher y), ordered by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ------------------------------------------------------------------------------------------------ SVD


@dataclass
class SVDWindow:
    """The truncated-SVD baseline of one window (dataset, field, frames, holdout), from the runs' metrics."""

    dataset: str | None
    field: str
    frames: int | None
    holdout_every: int
    r2: dict[int, float]
    compression: dict[int, float]
    time_s: float | None
    rank_for_target: int | None
    node_ids: list[int]
    key: tuple = ()                 # RunRecord.window_key of its runs
    fingerprint: str | None = None
    name_fingerprint: bool = False  # another window of the same name, field and frames saw other data

    def compression_at(self, rank: int) -> float | None:
        """Compression of any rank, also one the runs did not record (the rank for the target is rarely a
        recorded power of two): a rank-k SVD stores k·(T + columns + 1) numbers (`svd_param_count`), linear in k."""
        if rank in self.compression:
            return self.compression[rank]
        known = next(iter(self.compression.items()), None)
        return known[1] * known[0] / rank if known else None

    @property
    def label(self) -> str:
        return window_label(self.dataset, self.field, self.frames, self.holdout_every,
                            self.fingerprint if self.name_fingerprint else None)


def window_label(dataset: str | None, fld: str, frames: int | None, holdout_every: int,
                 fingerprint: str | None = None) -> str:
    """`<field> <dataset name> [(data <fp8>)] <frames> frames [holdout_every=k]`; the fingerprint only where
    another window of the same name saw other data."""
    name = Path(dataset).name if dataset else "?"
    data = f" (data {fingerprint[:8]})" if fingerprint else ""
    return f"{fld} {name}{data} {frames} frames" + (f" holdout_every={holdout_every}" if holdout_every else "")


def svd_windows(runs: Sequence[RunRecord]) -> list[SVDWindow]:
    """One SVD baseline per window of data the runs fitted (RunRecord.window_key)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        if r.ok and isinstance(r.metrics.get("svd"), dict) and r.metrics["svd"].get("r2_rank"):
            groups.setdefault(r.window_key, []).append(r)
    out = []
    for key, rs in groups.items():
        _, fld, frames, hold = key
        svd = rs[0].metrics["svd"]
        r2 = {int(k): float(v) for k, v in svd["r2_rank"].items() if num(v) is not None}
        comp = {int(k): float(v) for k, v in (svd.get("compression_rank") or {}).items() if num(v) is not None}
        rank_key = next((k for k in svd if k.startswith("rank_for_")), None)
        out.append(SVDWindow(rs[0].dataset, fld, frames, hold, dict(sorted(r2.items())), dict(sorted(comp.items())),
                             median(r.metrics["svd"].get("time_s") for r in rs),
                             svd.get(rank_key) if rank_key else None, [r.node_id for r in rs], key,
                             rs[0].data_fingerprint))
    names = [(w.key[0][0], *w.key[1:]) for w in out]
    for w, name in zip(out, names):
        w.name_fingerprint = names.count(name) > 1
    return sorted(out, key=lambda w: (w.field, w.frames or 0, str(w.dataset), str(w.fingerprint)))


# ------------------------------------------------------------------------------------------------ classical baselines


@dataclass
class BaselinePoint:
    """One (bytes, R²) point of a classical baseline on a window, and where it was recorded."""

    bytes: int
    compression: float          # raw float32 bytes of the training frames / bytes
    r2: float
    setting: str                # "rank k" (SVD) or "eps x" (SZ3, ZFP)
    sources: list[str]          # "node 3 at its R²", "node 4 at its bytes", "cache"


@dataclass
class BaselineWindow:
    """The classical baselines of one window as curves: the union of the matched points its runs recorded
    (each run two per method), plus the points of the window's cache file when its dataset is found."""

    key: tuple                  # RunRecord.window_key of its runs
    label: str
    field: str
    frames: int | None
    raw_bytes: float
    curves: dict[str, list[BaselinePoint]]  # method -> points sorted by bytes
    node_ids: list[int]
    cache_file: Path | None = None

    def covers(self, run: RunRecord) -> bool:
        return run.node_id in self.node_ids


def _setting(method: str, point: dict[str, Any]) -> str:
    if method == "svd":
        return f"rank {point.get('rank')}"
    return f"eps {point['eps']:.3g}" if num(point.get("eps")) is not None else "-"


def baseline_windows(runs: Sequence[RunRecord], data_root: str | Path | None = None,
                     study_dir: Path | None = None) -> list[BaselineWindow]:
    """One BaselineWindow per window whose successful runs recorded the `baselines` block. A window's cache file
    is read from the study's own copy (`<study>/baselines/<dataset>/`, written by the export) before the
    dataset's, so an exported study renders the same report on a machine without the datasets."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        if r.ok and r.baselines is not None and r.raw_bytes:
            groups.setdefault(r.window_key, []).append(r)
    names = [(k[0][0], *k[1:]) for k in groups]
    out = []
    for key, rs in groups.items():
        _, fld, frames, hold = key
        points: dict[str, dict[tuple, BaselinePoint]] = {m: {} for m in BASELINES}
        raw = float(rs[0].raw_bytes or 0)
        for r in sorted(rs, key=lambda r: r.node_id):
            for method in BASELINES:
                for match, words in MATCHES.items():
                    p = r.baseline(method, match)
                    if p is not None:
                        _add_point(points[method], method, p, raw, f"node {r.node_id} {words}")
        best = max(neglog(r.r2) for r in rs if r.r2 is not None)
        cache_file = _add_cache_points(points, rs[0], data_root, raw, max(6.0, math.ceil(best) + 3), study_dir)
        shown_fp = rs[0].data_fingerprint if names.count((key[0][0], *key[1:])) > 1 else None
        out.append(BaselineWindow(key, window_label(rs[0].dataset, fld, frames, hold, shown_fp), fld, frames, raw,
                                  {m: sorted(p.values(), key=lambda q: (q.bytes, q.r2)) for m, p in points.items()
                                   if p}, [r.node_id for r in rs], cache_file))
    return sorted(out, key=lambda w: (w.field, w.frames or 0, w.label))


def _add_point(points: dict[tuple, BaselinePoint], method: str, p: dict[str, Any], raw: float, source: str) -> None:
    key = (int(p["bytes"]), round(float(p["r2"]), 12))
    if key in points:
        if source not in points[key].sources:
            points[key].sources.append(source)
        return
    points[key] = BaselinePoint(key[0], raw / key[0], float(p["r2"]), _setting(method, p), [source])


def _cache_dirs(run: RunRecord, data_root: str | Path | None,
                study_dir: Path | None) -> list[tuple[Path, Path | None]]:
    """(directory, the folder its files are shown relative to, None: as found): the study's copy of the run's
    dataset's cache files (shown relative to the study, so the report is the same wherever it lies), then the
    dataset's own `baselines/`."""
    out: list[tuple[Path, Path | None]] = []
    if study_dir is not None and run.dataset:
        out.append((study_dir / "baselines" / Path(run.dataset).name, study_dir))
    ds = dataset_path(run.dataset, data_root)
    if ds is not None:
        out.append((ds / "baselines", None))
    return [(d, rel) for d, rel in out if d.is_dir()]


def _add_cache_points(points: dict[str, dict[tuple, BaselinePoint]], run: RunRecord, data_root: str | Path | None,
                      raw: float, max_nines: float, study_dir: Path | None = None) -> Path | None:
    """The points of the window's cache file `baselines/*.json` (mpm_inr.baselines.cache; see `_cache_dirs`):
    the SVD at every rank, each compressor at every bound evaluated so far, up to `max_nines` of R² (3 decades
    above the window's best run, as the charts' axis: the SVD's higher ranks add nothing to read). Only a file
    whose key is this window's."""
    window = (run.baselines or {}).get("window") or {}
    if not window.get("fingerprint"):
        return None
    for folder, shown_from in _cache_dirs(run, data_root, study_dir):
        found = _read_cache_points(points, run, window, folder, raw, max_nines)
        if found is not None:
            return found if shown_from is None else found.relative_to(shown_from)
    return None


def _read_cache_points(points: dict[str, dict[tuple, BaselinePoint]], run: RunRecord, window: dict,
                       folder: Path, raw: float, max_nines: float) -> Path | None:
    for path in sorted(folder.glob("*.json")):
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        key = stored.get("key") if isinstance(stored, dict) else None
        if not isinstance(key, dict) or any(key.get(k) != window.get(k)
                                            for k in ("fingerprint", "field", "frames", "holdout_every")):
            continue
        for method in BASELINES:
            records = (stored.get("points") or {}).get(method) or {}
            for rec in records.values():
                if (isinstance(rec, dict) and num(rec.get("bytes")) and num(rec.get("r2")) is not None
                        and neglog(rec["r2"]) <= max_nines):
                    eps = 2.0 ** -rec["exponent"] if num(rec.get("exponent")) is not None else None  # CodecPoint.eps
                    _add_point(points[method], method, {**rec, "eps": eps}, raw, "cache")
        for rank, entry in _svd_cache_points(stored.get("svd") or {}, run, raw):
            if neglog(entry["r2"]) <= max_nines:
                _add_point(points["svd"], "svd", {**entry, "rank": rank}, raw, "cache")
        return path
    return None


def _svd_cache_points(svd: dict[str, Any], run: RunRecord, raw: float) -> list[tuple[int, dict[str, Any]]]:
    """The cached SVD R² of every rank with its bytes, 4·(k·(T + N·C + 1) + C) (mpm_inr.baselines.svd_bytes),
    T the training frames; none if the formula does not give the bytes the run recorded for its own rank."""
    r2_rank = svd.get("r2_rank") or []
    per_component = svd.get("r2_per_component_rank") or [[]]
    n_train = (run.frames or 0) - len(run.metrics.get("holdout_frames") or [])
    if not r2_rank or n_train <= 0 or not per_component[0]:
        return []
    columns, components = raw / (4 * n_train), len(per_component[0])

    def n_bytes(rank: int) -> int:
        return round(4 * (rank * (n_train + columns + 1) + components))

    recorded = [p for p in (run.baseline("svd", m) for m in MATCHES)
                if p is not None and isinstance(p.get("rank"), int)]
    if not recorded or any(n_bytes(p["rank"]) != int(p["bytes"]) for p in recorded):
        return []
    return [(k, {"bytes": n_bytes(k), "r2": v}) for k, v in enumerate(r2_rank, 1) if num(v) is not None]


@dataclass
class DataUse:
    """One dataset name of the study and the data its finished runs saw: fingerprint -> node ids."""

    name: str
    fingerprints: dict[str | None, list[int]]  # None: runs that recorded no fingerprint

    @property
    def mixed(self) -> bool:
        """Runs under this name saw more than one trajectory: their numbers are not comparable."""
        return len([f for f in self.fingerprints if f is not None]) > 1


def data_uses(runs: Sequence[RunRecord]) -> list[DataUse]:
    out: dict[str, dict[str | None, list[int]]] = {}
    for r in runs:
        if r.dataset:
            out.setdefault(r.data_key[0], {}).setdefault(r.data_fingerprint, []).append(r.node_id)
    return [DataUse(name, fps) for name, fps in sorted(out.items())]


@dataclass
class SVDHeldOut:
    """SVD held-out R² per rank (temporal coefficients interpolated), or why it is missing."""

    window: tuple[str | None, str, int | None, int]  # (dataset path, field, frames, holdout_every)
    key: tuple = ()                                    # RunRecord.window_key of its runs
    r2: dict[str, dict[int, float]] = field(default_factory=dict)   # method -> rank -> R²
    time_s: dict[str, float] = field(default_factory=dict)
    n_test_frames: int | None = None
    source: str = ""           # "metrics.json" or "computed from <dataset>"
    missing: str | None = None


def dataset_path(recorded: str | None, data_root: str | Path | None) -> Path | None:
    """The dataset a run trained on: under data_root when one is given (the user said where datasets are), else at
    its recorded path (a relative one is relative to where the run was launched, usually the working directory)."""
    if not recorded:
        return None
    p = Path(recorded)
    for q in ([Path(data_root) / p.name] if data_root is not None else []) + [p]:
        if (q / "meta.json").exists():
            return q
    return None


def svd_heldout(runs: Sequence[RunRecord], data_root: str | Path | None = None,
                methods: Sequence[str] = SVD_METHODS) -> list[SVDHeldOut]:
    """For every window with held-out runs: SVD held-out R² from metrics.json (`svd.holdout`) if recorded,
    else `mpm_inr.metrics.svd.svd_holdout` on the dataset window (found at its recorded path or under data_root)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        if r.holdout_r2 is not None:
            groups.setdefault(r.window_key, []).append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2] or 0, str(kv[0][0]))):
        res = SVDHeldOut((rs[0].dataset, *key[1:]), key)
        recorded = (rs[0].metrics.get("svd") or {}).get("holdout")
        for rec in ([recorded] if isinstance(recorded, dict) else recorded if isinstance(recorded, list) else []):
            if isinstance(rec, dict) and rec.get("r2_rank"):
                res.r2[str(rec.get("method", "linear"))] = {int(k): float(v) for k, v in rec["r2_rank"].items()
                                                           if num(v) is not None}
                res.source = "metrics.json"
        if not res.r2:
            _compute_heldout(res, rs[0], data_root, methods)
        out.append(res)
    return out


def _compute_heldout(res: SVDHeldOut, run: RunRecord, data_root: str | Path | None,
                     methods: Sequence[str]) -> None:
    ds_path = dataset_path(run.dataset, data_root)
    if ds_path is None:
        res.missing = (f"dataset {run.dataset or '(not recorded)'} not found"
                       + ("" if data_root else "; pass --data-root to point at a copy"))
        return
    from mpm_inr.data import open_dataset
    from mpm_inr.data.window import FieldWindow
    from mpm_inr.metrics.svd import svd_holdout

    window = FieldWindow.from_dataset(open_dataset(ds_path), run.field, int(run.frames or 0), run.holdout_every)
    for method in methods:
        h = svd_holdout(window.values, window.train_frames, window.test_frames, method=method)
        res.r2[method] = {k: float(v) for k, v in h.r2.items()}
        res.time_s[method] = h.time_s
        res.n_test_frames = h.n_test_frames
    res.source = f"computed from {ds_path}"


# ------------------------------------------------------------------------------------------------ effects


@dataclass
class Marginal:
    field: str
    param: str
    rows: list[tuple[Any, int, float | None, float | None]]  # (value, runs, median R², median time)


def _sort_key(v: Any) -> tuple:
    n = num(v)
    return (0, n, "") if n is not None else (1, 0.0, str(v))


def marginal_effects(study: Study) -> list[Marginal]:
    """Per field and mutated parameter: median R² and training time of the ok runs at each value."""
    out = []
    for fld in study.fields():
        runs = [r for r in study.ok_runs if r.field == fld]
        params = sorted({k for r in study.runs if r.field == fld for k in r.changes if k != "seed"})
        for p in params:
            by_val: dict[Any, list[RunRecord]] = {}
            for r in runs:
                v = r.value(p)
                by_val.setdefault(v if not isinstance(v, list) else str(v), []).append(r)
            rows = [(v, len(rs), median(r.r2 for r in rs), median(r.time for r in rs))
                    for v, rs in sorted(by_val.items(), key=lambda kv: _sort_key(kv[0]))]
            out.append(Marginal(fld, p, rows))
    return out


@dataclass
class Spread:
    config: tuple[str, ...]
    runs: list[RunRecord]

    @property
    def ok(self) -> list[RunRecord]:
        return [r for r in self.runs if r.ok]

    @property
    def r2s(self) -> list[float]:
        return [r.r2 for r in self.ok if r.r2 is not None]

    @property
    def spread(self) -> float | None:
        v = self.r2s
        return max(v) - min(v) if len(v) >= 2 else None

    @property
    def time_spread(self) -> float | None:
        t = [r.time for r in self.ok if r.time is not None]
        return max(t) - min(t) if len(t) >= 2 else None


def robustness(study: Study) -> list[Spread]:
    """Configs (seed aside) that ran more than once, with the spread of their R²."""
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for r in study.finished_runs:
        groups.setdefault(r.canonical(), []).append(r)
    out = [Spread(k, rs) for k, rs in groups.items() if len(rs) >= 2]
    return sorted(out, key=lambda s: min(r.node_id for r in s.runs))


# ------------------------------------------------------------------------------------------------ data seeds


@dataclass
class SeedSpread:
    """The best data-seed-0 run of one regime and its re-runs on other dataset seeds: the nodes whose overrides
    differ from it only by `data.seed` (the study's "seed-spread" phase, or any such node). A landscape read on
    one trajectory is one sample; these say how far a number moves on another simulation of the same scenario."""

    field: str
    inr_type: str
    frames: int | None
    best: RunRecord
    reruns: list[RunRecord]  # finished re-runs on data seeds != 0, by (data seed, node id)

    @property
    def runs(self) -> list[RunRecord]:
        return [self.best, *self.reruns]

    @property
    def r2s(self) -> list[float]:
        return [r.r2 for r in self.runs if r.r2 is not None]

    @property
    def holdout_r2s(self) -> list[float]:
        return [r.holdout_r2 for r in self.runs if r.holdout_r2 is not None]


def _without_data_seed(run: RunRecord) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in as_dict(run.overrides).items() if k != "data.seed"))


def seed_spreads(study: Study) -> tuple[list[SeedSpread], list[RunRecord]]:
    """Per regime (field, inr_type, frames): the best data-seed-0 run among those the study re-ran on other data
    seeds, with those re-runs; and, where none was re-run, the regime's best data-seed-0 run. The re-run config
    is read from the journal, not re-derived, so a study whose seed spread ranked runs another way (before
    `selection_score` used held-out R²) still shows the spread it measured."""
    spreads, alone = [], []
    for g in regimes(study):
        seed0 = [r for r in g.runs if r.data_seed == 0]
        reruns_of = {r.node_id: sorted((o for o in g.runs if o.data_seed != 0
                                        and _without_data_seed(o) == _without_data_seed(r)),
                                       key=lambda o: (o.data_seed, o.node_id)) for r in seed0}
        spread = best_run([r for r in seed0 if reruns_of[r.node_id]], study.min_compression)
        if spread is not None:
            spreads.append(SeedSpread(g.field, g.inr_type, g.frames, spread, reruns_of[spread.node_id]))
        elif (best := best_run(seed0, study.min_compression)) is not None:
            alone.append(best)
    return spreads, alone


# ------------------------------------------------------------------------------------------------ LLM spend


@dataclass
class LLMSpend:
    """What a study's LLM calls cost: the journal's `llm` records (agent.policies.claude books a round's tokens and
    dollars once) and, beside them, the transcripts the client wrote (`<study>/transcripts/*.json`, one per HTTP
    attempt, each with its `cost_usd`)."""

    calls: int
    tokens_in: int
    tokens_out: int
    usd: float
    models: list[str]
    transcripts: int
    transcript_usd: float

    @property
    def any(self) -> bool:
        return self.calls > 0 or self.transcripts > 0


def llm_spend(study: Study) -> LLMSpend:
    st = study.state
    totals = st.llm_totals()
    records = [n.llm for n in st.nodes.values()] + [b.decision.get("llm") for b in st.blocks]
    models = sorted({str(r["model"]) for r in records if isinstance(r, dict) and r.get("model")
                     and (r.get("calls") or r.get("tokens_in"))})
    n_files, usd = 0, 0.0
    for path in sorted((study.dir / "transcripts").glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            n_files += 1
            usd += num(rec.get("cost_usd")) or 0.0
    return LLMSpend(int(totals["calls"]), int(totals["tokens_in"]), int(totals["tokens_out"]), float(totals["usd"]),
                    models, n_files, usd)
