"""The study-level W&B run: at each block end, the journal, the tree plot, the Pareto plots and the report.

    from agent.reporting.wandb_study import log_block_end
    log_block_end(study_dir, block)      # call after the block's `block_end` event is in the journal

One W&B run per study (job_type "study", group = the study name, a run id derived from the study's name and start
time). Offline by default; `WANDB_MODE` (or `mode=`) is respected and `disabled` turns it off.

Like every other derived file of a study, the run is a function of the journal: each call re-creates it from the
journal and logs one history row per ended block (step = block), each row holding that block-end snapshot of the
journal (a `wandb.Table`), the tree plot and the per-field Pareto plots; the row of `block` also holds the report
(`wandb.Html`); the summary carries the study's best R² per field and its LLM spend (`study/llm_calls`,
`study/llm_tokens_in`, `study/llm_tokens_out`, `study/llm_usd`; zeros for a heuristic study). W&B cannot append to an offline run, so an offline call writes a complete new offline run and
removes the superseded offline copies of the same run id: `wandb sync` (`make wandb-sync`) then uploads one
complete run. Online, a resumed run only gets the rows of blocks it has not logged yet.

Each block end's row PNGs are drawn once and kept under the study's `wandb/block_figures/`, keyed by the block and
the journal's length at its end: rewriting the run from block 1 at every block end would otherwise redraw every
past snapshot, quadratic in the number of blocks.

The config logged is the study's explore config with anything that looks like a secret dropped. The report built
for the run is also written to the study dir (report.md, report.html) when `block` is the latest ended block.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.reporting import plots
from agent.reporting.report import build, write_doc
from agent.reporting.report_data import (
    BASELINES,
    Study,
    baseline_windows,
    best_run,
    block_end_prefixes,
    llm_spend,
    load_study,
    svd_windows,
)
from agent.study.journal import Journal
from mpm_inr.errors import StudyError

log = logging.getLogger(__name__)
#: where each block end's row PNGs are kept once drawn (under the study's wandb/, which no export copies)
FIGURE_CACHE = Path("wandb") / "block_figures"

SECRET_RE = re.compile(r"(key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
#: the run's stored size and the classical baselines of its window (metrics.json flat keys, Contract 2): their
#: compression at the run's R² and their R² within the run's bytes; null for runs recorded before them
BYTES_COLUMNS = ["model_bytes", "codec_ratio", *(f"{m}_ratio_same_r2" for m in BASELINES),
                 *(f"{m}_r2_same_bytes" for m in BASELINES)]
JOURNAL_COLUMNS = ["node_id", "parent_id", "block", "iteration", "strategy", "status", "field", "inr_type", "frames",
                   "final_r2", "slope", "compression_ratio", "svd_r2_same_params", "training_time", "steps",
                   "holdout_r2", "device", "data_fingerprint", "mutation", "overrides", "error",
                   *BYTES_COLUMNS]


def run_id(study: Study) -> str:
    """Stable id of the study's W&B run: name + a hash of the study's start time (a re-created study differs)."""
    h = hashlib.sha256(f"{study.name}|{study.state.t_start}".encode()).hexdigest()[:8]
    return f"study-{study.name[:48]}-{h}"


def flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the explore config, secrets (by key name) dropped."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if SECRET_RE.search(str(k)):
            continue
        if isinstance(v, Mapping):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def journal_rows(study: Study) -> list[list[Any]]:
    """One row per launched node, in JOURNAL_COLUMNS order."""
    rows = []
    for r in study.runs:
        m = r.metrics if r.status == "ok" else {}
        rows.append([r.node_id, r.parent_id, r.block, r.iteration, r.strategy, r.status, r.field, r.inr_type,
                     r.frames, r.r2, m.get("slope"), m.get("compression_ratio"), m.get("svd_r2_same_params"), r.time,
                     r.metrics.get("steps"),
                     r.holdout_r2, r.device, (r.data_fingerprint or "")[:16] or None, r.mutation,
                     " ".join(r.overrides), r.error, *(m.get(k) for k in BYTES_COLUMNS)])
    return rows


def block_scalars(study: Study, block: int) -> dict[str, Any]:
    """Scalars of one block-end snapshot: the block's counts and best run, the study's best per field and its LLM
    spend so far (calls, tokens in and out, estimated dollars)."""
    runs = [r for r in study.runs if r.block == block]
    blk = study.state.block(block)
    best = best_run(runs, study.min_compression)
    out: dict[str, Any] = {"block": block, "block/n_runs": len(runs), "block/n_ok": sum(r.ok for r in runs),
                           "block/n_failed": sum(r.status not in ("ok", "planned", "running") for r in runs),
                           "study/n_runs": len(study.runs)}
    if blk is not None:
        out["block/field"] = blk.field
        out["block/n_training_frames"] = blk.n_training_frames
    if best is not None:
        out.update({"block/best_r2": best.r2, "block/best_node": best.node_id,
                    "block/best_training_time": best.time, "block/best_compression": best.compression})
    for fld in study.fields():
        b = best_run([r for r in study.runs if r.field == fld], study.min_compression)
        if b is not None:
            out[f"study/best_r2/{fld}"] = b.r2
    spend = llm_spend(study)  # zeros for a heuristic study: "no LLM calls" is a number too
    out.update({"study/llm_calls": spend.calls, "study/llm_tokens_in": spend.tokens_in,
                "study/llm_tokens_out": spend.tokens_out, "study/llm_usd": spend.usd})
    return out


def _image(wandb: Any, png: bytes, tmp: Path, name: str) -> Any:
    path = tmp / f"{name}.png"
    path.write_bytes(png)
    return wandb.Image(str(path), caption=name)


def block_figures(study: Study, drawn: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """The PNGs of a block-end row: the tree, and the Pareto chart of each field with a timed run. `drawn`:
    PNGs the report already drew for this snapshot (`tree`, `pareto_<field>`), reused instead of redrawn."""
    drawn = drawn or {}
    figures = {"tree": drawn.get("tree") or plots.png_bytes(plots.tree_figure(study))}
    windows, baselines = svd_windows(study.runs), baseline_windows(study.runs)
    for fld in study.fields():
        if any(r.field == fld and r.time is not None for r in study.ok_runs):
            figures[f"pareto_{fld}"] = drawn.get(f"pareto_{fld}") or plots.png_bytes(
                plots.pareto_figure(study, fld, windows, baselines))
    return figures


def cached_block_figures(cache: Path, block: int, n_events: int, draw: Callable[[], dict[str, bytes]]
                         ) -> dict[str, bytes]:
    """A past block's row PNGs from `cache`, drawn (and stored) only the first time. Every call rewrites the
    offline run from block 1, so without the cache a study of B blocks would draw ~B²/2 snapshots (the
    48-block landscape: ~45 CPU-minutes in the agent's process, beside the two training jobs). The key holds the
    journal prefix length of that block end: a different journal gets fresh figures."""
    folder = cache / f"b{block:04d}_e{n_events}"
    names = folder / "names.json"
    if names.is_file():
        try:
            return {name: (folder / f"{name}.png").read_bytes() for name in json.loads(names.read_text())}
        except (OSError, ValueError):
            pass  # a damaged cache entry is redrawn
    figures = draw()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in figures.items():
            (folder / f"{name}.png").write_bytes(png)
        tmp = names.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(figures)))
        os.replace(tmp, names)  # written last: an entry without it (a kill mid-write) is redrawn
    except OSError as err:
        log.warning("study W&B figure cache %s not written: %s", folder, err.strerror)
    return figures


def block_row(wandb: Any, study: Study, block: int, tmp: Path, figures: Mapping[str, bytes]) -> dict[str, Any]:
    """The history row of one block end (scalars, journal table, tree and Pareto images); `figures` as
    block_figures draws them for this snapshot."""
    row = block_scalars(study, block)
    row["journal"] = wandb.Table(columns=JOURNAL_COLUMNS, data=journal_rows(study), allow_mixed_types=True)
    row["tree"] = _image(wandb, figures["tree"], tmp, f"tree_b{block}")
    for name, png in figures.items():
        if name.startswith("pareto_"):
            fld = name.removeprefix("pareto_")
            row[f"pareto/{fld}"] = _image(wandb, png, tmp, f"pareto_{fld}_b{block}")
    return row


def log_block_end(study_dir: str | Path, block: int, *, mode: str | None = None, project: str | None = None,
                  data_root: str | Path | None = None, write_files: bool = True) -> Path | None:
    """(Re)write the study's W&B run through the end of `block`; returns the offline run dir (None online or
    when W&B is disabled, in which case nothing else is done either). With `write_files`, the report built for
    the run is also written to the study dir (report.md / report.html) when `block` is the latest ended block.
    Raises StudyError if `block` has not ended in the journal."""
    d = Path(study_dir).resolve()
    events = Journal(d).read()
    prefixes = block_end_prefixes(events)
    if block not in prefixes:
        raise StudyError(f"block {block} of {d} has not ended (no block_end event in the journal)")
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    if mode == "disabled":
        return None
    import wandb

    final = load_study(d, prefixes[block])
    doc = build(final, data_root)
    if write_files and block == max(prefixes):
        write_doc(doc, d, final.name)
    rid = run_id(final)
    tags = ["study", f"policy_{(final.state.config.get('policy') or {}).get('name')}"] + final.fields()
    config = {**flat_config(final.state.config), "study_dir": str(d), "study_run": True}
    settings = wandb.Settings(console="off", x_disable_stats=True, x_disable_machine_info=True, save_code=False,
                              disable_git=True, silent=True)
    run = wandb.init(project=project or os.environ.get("WANDB_PROJECT") or "mpm-inr", dir=str(d), id=rid,
                     name=f"{final.name} (study)", group=final.name, job_type="study", tags=tags, config=config,
                     mode=mode, resume="allow", settings=settings)
    run_dir = Path(run.dir).parent
    first = max(int(getattr(run, "starting_step", 0) or 0), 1)
    with tempfile.TemporaryDirectory(prefix="study_wandb_") as tmp:
        for b in sorted(k for k in prefixes if first <= k <= block):
            snap = final if b == block else load_study(d, prefixes[b])
            drawn = doc.figures if b == block else None  # the report drew the latest snapshot's figures
            figures = cached_block_figures(d / FIGURE_CACHE, b, len(prefixes[b]),
                                           lambda snap=snap, drawn=drawn: block_figures(snap, drawn))
            row = block_row(wandb, snap, b, Path(tmp), figures)
            if b == block:
                row["report"] = wandb.Html(doc.html(f"Landscape report: {final.name}"), inject=False)
            run.log(row, step=b)
        for k, v in block_scalars(final, block).items():
            if k.startswith("study/"):
                run.summary[k] = v
        run.summary["last_block"] = block
        run.finish()
    if mode == "offline":
        _wait_until_written(run_dir)
        for old in (d / "wandb").glob(f"offline-run-*-{rid}"):
            if old.resolve() != run_dir.resolve():
                shutil.rmtree(old, ignore_errors=True)
        return run_dir
    return None


def _wait_until_written(run_dir: Path, timeout_s: float = 30.0) -> None:
    """`run.finish()` can return before W&B's writer process has flushed the offline record (seen on a loaded CI
    machine: a record without its run header). Wait for the exit record so callers read a complete run."""
    deadline = time.monotonic() + timeout_s
    while not _record_complete(run_dir):
        if time.monotonic() > deadline:
            log.warning("W&B offline record in %s still incomplete after %.0f s", run_dir, timeout_s)
            return
        time.sleep(0.1)


def _record_complete(run_dir: Path) -> bool:
    from mpm_inr.wandb_offline import read_offline_run

    try:
        return read_offline_run(run_dir).finished
    except Exception:  # noqa: BLE001 - a half-written record fails in several ways (missing, short, bad protobuf)
        return False
