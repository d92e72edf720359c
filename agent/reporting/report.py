"""The landscape report of a study: `python -m agent report <study dir> [--out DIR] [--data-root DIR]`.

Writes `report.md` (figures as PNG files in `report_files/`) and a self-contained `report.html` (the same figures
embedded as base64 data URIs, no external resource) into the study dir or `--out`. Every number and sentence is
computed from the journal and the metrics.json of the runs it references (agent.reporting.report_data); there is no
free-text prose, and no clock: the same journal gives the same bytes (figures drawn under plots.STYLE). The header
gives the study's LLM spend (tokens, dollars, calls; "no LLM calls" for a heuristic study). Sections:

0. findings: the design document's rules judged on one-factor comparisons (agent.reporting.findings), each
   group's runs quoted as `node N: R² x (held-out R² y, data seed k)` (agent.reporting.evidence); the best
   configs re-run on other dataset seeds (median, min-max of R² and held-out R²);
1. regime comparison by field × inr_type × frames (best R², slope, compression, bytes ratio, the classical
   baselines at its R² and at its bytes, time, config, SVD rank);
2. per field, the Pareto fronts of R² (nines scale, -log10(1 - R²)) against training time and against the bytes
   ratio (raw float32 bytes / stored bytes), with the classical baselines of the same window (SVD, SZ3, ZFP in
   bytes, from the runs' `baselines` blocks) as curves and tables, and "beaten by" beside every run a baseline
   of its size fits better; runs recorded before the baselines keep the per-rank SVD of their `svd` entry;
   then, per field, whether a baseline of the same bytes beats its best run, said in one sentence;
3. the same on held-out interleaved frames (SVD interpolates its temporal coefficients, linear and cubic), or a
   plain statement that the study held no frames out;
4. the marginal effect of each mutated parameter (median R² and time per value);
5. the robustness spread of configs that ran more than once;
6. the fitted training-time model (agent.reporting.timemodel) with its fit quality;
7. the exploration tree coloured by R²;
8. failed runs and their errors.

`--data-root` points at a copy of the datasets when the recorded dataset paths no longer exist (needed only for
the held-out SVD baseline when metrics.json does not carry it, and to add the points of a window's baseline cache
`<dataset>/baselines/*.json` to its curves).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.reporting import plots
from agent.reporting.evidence import quote
from agent.reporting.findings import TIE_NINES, Finding, findings, r2_text, show
from agent.reporting.report_data import (
    BASELINES,
    SVD_METHODS,
    BaselineWindow,
    DataUse,
    LLMSpend,
    RunRecord,
    Study,
    SVDHeldOut,
    SVDWindow,
    baseline_windows,
    best_run,
    data_uses,
    llm_spend,
    load_study,
    marginal_effects,
    median,
    neglog,
    pareto_front,
    regimes,
    robustness,
    seed_spreads,
    svd_heldout,
    svd_windows,
)
from agent.reporting.timemodel import (
    TERM_UNITS,
    ArgParser,
    TimeModel,
    fit,
    samples_from_runs,
)
from agent.study.plan import plan_budget_text
from agent.study.stats import beaten_by
from agent.study.tree import format_r2
from mpm_inr.files import write_atomic

FILES_DIR = "report_files"


def f_r2(x: float | None) -> str:
    return "-" if x is None else format_r2(x)


def f_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def f_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def f_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}×"


#: the columns beside a run that read it against the classical baselines of its window (baseline_cells)
BASELINE_HEADERS = ["bytes", "bytes ratio", "baselines at its R² (bytes ratio)", "baselines at its bytes (R²)",
                    "beaten by"]


def baseline_cells(run: RunRecord) -> list[str]:
    """The run's stored bytes and bytes ratio; each baseline's ratio at the run's R² (matched accuracy) and R²
    within the run's bytes (matched size), "-" where none qualifies; who beats it at its size (agent.study.stats)."""
    recorded = run.baselines is not None

    def cell(match: str, fmt) -> str:
        if not recorded:
            return "not recorded"
        return " / ".join(f"{name} " + fmt(run.baseline(m, match)) for m, name in BASELINES.items())

    at_r2 = cell("matched_accuracy", lambda p: "-" if p is None else f_ratio(p["compression"]))
    at_bytes = cell("matched_size", lambda p: "-" if p is None else f_r2(p["r2"]))
    beaten = beaten_by(run.metrics)
    return [f_num(run.model_bytes, 6), f_ratio(run.bytes_ratio), at_r2, at_bytes,
            beaten.removeprefix("beaten by ") if beaten else "-"]


# ------------------------------------------------------------------------------------------------ document


@dataclass
class Doc:
    """An ordered list of report elements rendered to both markdown and HTML."""

    items: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h(self, level: int, text: str) -> None:
        self.items.append(("h", level, text))

    def p(self, text: str) -> None:
        self.items.append(("p", text))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.items.append(("table", list(headers), [[str(c) for c in r] for r in rows]))

    def img(self, name: str, png: bytes, alt: str) -> None:
        self.figures[name] = png
        self.items.append(("img", name, alt))

    def markdown(self) -> str:
        out: list[str] = []
        for it in self.items:
            if it[0] == "h":
                out += ["#" * it[1] + " " + it[2], ""]
            elif it[0] == "p":
                out += [it[1], ""]
            elif it[0] == "table":
                esc = [[c.replace("|", "\\|") for c in row] for row in [it[1]] + it[2]]
                out.append("| " + " | ".join(esc[0]) + " |")
                out.append("|" + "---|" * len(esc[0]))
                out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
                out.append("")
            elif it[0] == "img":
                out += [f"![{it[2]}]({FILES_DIR}/{it[1]}.png)", ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body: list[str] = []
        for it in self.items:
            if it[0] == "h":
                body.append(f"<h{it[1]}>{e(it[2])}</h{it[1]}>")
            elif it[0] == "p":
                body.append(f"<p>{e(it[1])}</p>")
            elif it[0] == "table":
                head = "".join(f"<th>{e(c)}</th>" for c in it[1])
                rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in it[2])
                body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{rows}</tbody>\n</table>")
            elif it[0] == "img":
                data = base64.b64encode(self.figures[it[1]]).decode("ascii")
                body.append(f'<figure><img alt="{e(it[2], quote=True)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(it[2])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}"
                 "th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}"
                 "th{background:#eee}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:0.8em;color:#555}")
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{e(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
                + "\n".join(body) + "\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------ sections


def summary_section(doc: Doc, study: Study) -> None:
    st = study.state
    raw = (study.dir / "journal.jsonl").read_bytes() if (study.dir / "journal.jsonl").exists() else b""
    statuses: dict[str, int] = {}
    for r in study.runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    total_t = sum(r.time for r in study.runs if r.time is not None)
    devices = sorted({r.device for r in study.finished_runs if r.metrics.get("device")})
    doc.h(1, f"Landscape report: {study.name}")
    doc.p(f"Computed from journal.jsonl ({len(study.events)} events, sha256 {hashlib.sha256(raw).hexdigest()[:12]}) "
          f"and the metrics.json of the runs it references. {len(study.runs)} runs in {len(st.blocks)} block(s): "
          + ", ".join(f"{v} {k}" for k, v in sorted(statuses.items())) + f". Total training time {total_t:.1f} s"
          + (f" on {', '.join(devices)}" if devices else "") + f". Policy: {(st.config.get('policy') or {}).get('name')}"
          f"; min_compression {study.min_compression:g}."
          + (f" Study stopped: {st.ended.get('reason')}." if st.ended else " The study has not ended."))
    doc.p(llm_text(llm_spend(study)))
    budgets = plan_budget_text(st)  # a study plan's per-run caps (agent.study.plan)
    if budgets:
        doc.p(budgets)
    data_section(doc, data_uses(study.runs))


def llm_text(spend: LLMSpend) -> str:
    """The study's LLM spend in one sentence: the journal's llm records, and the transcripts beside them."""
    if not spend.any:
        return "LLM: no LLM calls (no llm record in the journal, no transcript)."
    return (f"LLM: {spend.calls} call(s) to {', '.join(spend.models) or 'an unrecorded model'}, "
            f"{spend.tokens_in} tokens in, {spend.tokens_out} tokens out, ${spend.usd:.4f} (estimated from the "
            f"published prices, agent.policies.claude.llm_cost; the journal's llm records); transcripts/ holds "
            f"{spend.transcripts} exchange record(s) totalling ${spend.transcript_usd:.4f}.")


def data_section(doc: Doc, uses: Sequence[DataUse]) -> None:
    """Which bytes the runs trained on. A seed names a trajectory only with the simulator version, torch build and
    device, so a dataset regenerated during a study (another node, another GPU) silently changes the data."""
    if not uses:
        return
    def fp(f: str | None) -> str:
        return f"fingerprint {f[:16]}" if f else "no fingerprint recorded"
    doc.p("Data: " + "; ".join(f"{u.name} (" + ", ".join(f"{fp(f)}: {len(nodes)} run(s)"
                                                         for f, nodes in u.fingerprints.items()) + ")"
                               for u in uses) + ".")
    for u in (u for u in uses if u.mixed):
        doc.p(f"Warning: the runs on {u.name} trained on {sum(f is not None for f in u.fingerprints)} different "
              "trajectories (" + "; ".join(f"{f[:16]}: nodes {_ids(nodes)}" for f, nodes in u.fingerprints.items()
                                           if f) + "). The dataset was made again during the study, by another "
              "simulator version, torch build or device; the discs collide chaotically, so R² across these groups "
              "are not comparable. The SVD baselines below are computed per trajectory.")


def _ids(nodes: Sequence[int]) -> str:
    return ", ".join(str(n) for n in sorted(nodes))


BASELINES_TEXT = ("Bytes: what the run's model stores (metrics.json `model_bytes`: the codec file's with "
                  "outputs.codec=true, else 4 bytes per parameter); bytes ratio: raw float32 bytes of the training "
                  "frames / those bytes. Baselines at its R²: the bytes ratio of the smallest SVD (per-component "
                  "centred, float32 factors and means), SZ3 and ZFP stream reaching the run's R²; at its bytes: "
                  "their R² within the run's bytes; beaten by: the baselines of its size that fit the window "
                  "better (\"-\": none). \"not recorded\": the run predates the classical baselines.")


def regime_section(doc: Doc, study: Study, windows: Sequence[SVDWindow]) -> None:
    doc.h(2, "Regime comparison (field × inr_type × frames)")
    doc.p(f"Best run per regime: highest held-out R² (training R² where no frames were held out, and to break "
          f"ties) among runs with compression ≥ {study.min_compression:g} (runs below it store rather than represent "
          f"the data); the seed spread re-ran that config. SVD at same params: "
          f"R² of the largest truncated-SVD rank of the same window that stores no more numbers than the run (what "
          f"the run has to beat at its own compression). SVD for 0.995: the smallest rank reaching R² 0.995, and "
          f"its compression. " + BASELINES_TEXT)
    rows = []
    for g in regimes(study):
        b = g.best
        win = next((w for w in windows if b is not None and b.node_id in w.node_ids), None)
        svd = "-"
        if win is not None and win.rank_for_target is not None:
            comp = win.compression_at(win.rank_for_target)
            svd = f"rank {win.rank_for_target}" + (f" ({comp:.3g}×)" if comp else "")
        elif win is not None:
            svd = f"none ≤ rank {max(win.r2, default=0)}"
        if b is None:
            rows.append([g.field, g.inr_type, g.frames, f"0/{len(g.runs)}", "-", "-", "-", "-", "-", "-", "-", "-",
                         "no successful run", svd] + ["-"] * len(BASELINE_HEADERS))
            continue
        rows.append([g.field, g.inr_type, g.frames, f"{g.n_ok}/{len(g.runs)}", f_r2(b.r2), f_num(b.m("slope"), 4),
                     f_num(b.compression), _svd_same(b), f_num(b.time), f_num(b.metrics.get("steps")),
                     f_r2(b.holdout_r2), b.node_id, b.config_text(), svd, *baseline_cells(b)])
    doc.table(["field", "inr_type", "frames", "ok/runs", "best R²", "slope", "compression", "SVD at same params",
               "time [s]", "steps", "held-out R²", "node", "config", "SVD for 0.995", *BASELINE_HEADERS], rows)


def _svd_same(run: RunRecord) -> str:
    same = run.svd_same_params
    return "-" if same is None else f"{f_r2(same[1])} (rank {same[0]})"


def _svd_table(doc: Doc, w: SVDWindow) -> None:
    doc.p(f"Truncated SVD of the window {w.label} (from the `svd` entry of {len(w.node_ids)} run(s); one "
          f"decomposition serves every rank, median time {f_num(w.time_s)} s):")
    doc.table(["rank", "R²", "compression", "time [s]"],
              [[k, f_r2(v), f_num(w.compression.get(k)), f_num(w.time_s)] for k, v in w.r2.items()])


def pareto_section(doc: Doc, study: Study, windows: Sequence[SVDWindow],
                   baselines: Sequence[BaselineWindow]) -> None:
    doc.h(2, "Pareto fronts: R² against training time and size (training frames)")
    doc.p("R² on the nines scale, -log10(1 - R²) (0.99 → 2, 0.999 → 3). " + BASELINES_TEXT)
    for fld in study.fields():
        runs = [r for r in study.ok_runs if r.field == fld and r.time is not None]
        doc.h(3, f"Field {fld}")
        if not runs:
            doc.p(f"No successful run of field {fld}.")
            continue
        curves = [b for b in baselines if b.field == fld]
        doc.img(f"pareto_{fld}", plots.png_bytes(plots.pareto_figure(study, fld, windows, curves)),
                f"{fld}: R² (nines) against training time and bytes ratio, with the SVD, SZ3 and ZFP baselines")
        front = [runs[i] for i in pareto_front([(r.time, r.r2) for r in runs])]
        doc.p(f"{len(front)} of {len(runs)} successful runs are on the time Pareto front (no other run is both "
              f"faster and more accurate):")
        doc.table(["node", "inr_type", "frames", "R²", "-log10(1-R²)", "time [s]", "compression",
                   "SVD at same params", *BASELINE_HEADERS, "config"],
                  [[r.node_id, r.inr_type, r.frames, f_r2(r.r2), f"{_nl(r.r2):.2f}", f_num(r.time),
                    f_num(r.compression), _svd_same(r), *baseline_cells(r), r.config_text()] for r in front])
        sized = [r for r in runs if r.bytes_ratio is not None]
        size_front = [sized[i] for i in pareto_front([(-(r.bytes_ratio or 0.0), r.r2) for r in sized])]
        doc.p(f"{len(size_front)} of {len(sized)} successful runs are on the size Pareto front (no other run is "
              f"both smaller in bytes and more accurate):")
        rows = []
        for r in size_front:
            n_bytes, ratio, *against = baseline_cells(r)
            rows.append([r.node_id, r.inr_type, r.frames, n_bytes, ratio, f_r2(r.r2), f"{_nl(r.r2):.2f}", *against,
                         r.config_text()])
        doc.table(["node", "inr_type", "frames", *BASELINE_HEADERS[:2], "R²", "-log10(1-R²)", *BASELINE_HEADERS[2:],
                   "config"], rows)
        for b in curves:
            _baseline_table(doc, b)
        old = [r for r in runs if not any(b.covers(r) for b in curves)]
        if old:
            doc.p(f"{len(old)} run(s) of field {fld} (node(s) {_ids([r.node_id for r in old])}) predate the "
                  "classical baselines (no `baselines` block in their metrics.json): no SVD, SZ3 or ZFP curve in "
                  "bytes for their window. The SVD drawn for them is the per-rank curve of their `svd` entry, on "
                  "the float32 parameter count (the component means left out).")
        for w in windows:
            if w.field == fld:
                _svd_table(doc, w)


def _baseline_table(doc: Doc, b: BaselineWindow) -> None:
    n_points = sum(len(p) for p in b.curves.values())
    doc.p(f"Classical baselines of the window {b.label} in bytes ({n_points} points: the matched points of "
          f"{len(b.node_ids)} run(s) at their R² and at their bytes"
          + (f", and the points of the cache file {b.cache_file} up to 3 decades of 1 - R² beyond the best run "
             f"(at least R² 1-1e-6)" if b.cache_file else "") + f"; raw float32 training frames "
          f"{b.raw_bytes:.0f} bytes). Each method's curve, by size:")
    doc.table(["method", "setting", "bytes", "bytes ratio", "R²", "-log10(1-R²)", "recorded by"],
              [[BASELINES[m], p.setting, p.bytes, f_ratio(p.compression), f_r2(p.r2), f"{_nl(p.r2):.2f}",
                "; ".join(p.sources)] for m, points in b.curves.items() for p in points])


def _nl(r2: float | None) -> float:
    return neglog(r2) if r2 is not None else float("nan")


def heldout_section(doc: Doc, study: Study, windows: Sequence[SVDWindow], held: Sequence[SVDHeldOut]) -> None:
    doc.h(2, "Held-out interleaved frames")
    runs = [r for r in study.ok_runs if r.holdout_r2 is not None]
    if not runs:
        doc.p("No run of this study held frames out (data.holdout_every was 0 in every successful run), so there is "
              "no held-out comparison. Re-run with train_overrides data.holdout_every=k to measure how INRs "
              "generalise in t against SVD with interpolated temporal coefficients.")
        return
    doc.p(f"{len(runs)} successful run(s) held out every k-th interior frame of their window; INR R² on those "
          "frames against truncated SVD fitted on the training frames with its temporal coefficients interpolated "
          "in t (linear and natural cubic spline).")
    rows = []
    for fld in study.fields():
        groups: dict[tuple, list] = {}
        for r in runs:
            if r.field == fld:
                groups.setdefault((r.inr_type, r.frames, r.holdout_every), []).append(r)
        for (inr, frames, k), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
            b = max(rs, key=lambda r: (r.holdout_r2, -r.node_id))
            rows.append([fld, inr, frames, k, len(rs), f_r2(b.holdout_r2), f_r2(b.r2), f_num(b.compression),
                         f_num(b.time), b.node_id])
    doc.table(["field", "inr_type", "frames", "holdout_every", "runs", "best held-out R²", "its train R²",
               "compression", "time [s]", "node"], rows)
    for h in held:
        ds, fld, frames, k = h.window
        w = next((w for w in windows if w.key == h.key), None)
        name = (Path(ds).name if ds else "?") + (f" (data {w.fingerprint[:8]})" if w and w.name_fingerprint
                                                  and w.fingerprint else "")
        if h.missing:
            doc.p(f"SVD held-out baseline of {fld} {name} {frames} frames (holdout_every={k}): not available, "
                  f"{h.missing}.")
            continue
        methods = [m for m in SVD_METHODS if m in h.r2] + sorted(set(h.r2) - set(SVD_METHODS))
        ranks = sorted({rk for m in methods for rk in h.r2[m]})
        doc.p(f"SVD held-out R² of {fld} {name} {frames} frames, holdout_every={k} ({h.source}"
              + (f", {h.n_test_frames} held-out frames" if h.n_test_frames else "") + "):")
        doc.table(["rank"] + [f"held-out R² ({m})" for m in methods] + ["compression"],
                  [[rk] + [f_r2(h.r2[m].get(rk)) for m in methods]
                   + [f_num(w.compression.get(rk)) if w else "-"] for rk in ranks])
    for fld in study.fields():
        if any(r.field == fld for r in runs):
            doc.img(f"heldout_{fld}", plots.png_bytes(plots.heldout_figure(study, fld, windows, held)),
                    f"{fld}: held-out R² against compression, with SVD interpolation")


def marginal_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Marginal effect of each parameter")
    effects = marginal_effects(study)
    if not effects:
        doc.p("No run mutated a parameter (every run used its block's base config).")
        return
    doc.p("For every parameter a run mutated: the successful runs of the field grouped by that parameter's value "
          "(other parameters vary too), with their median R² and training time.")
    rows = []
    for m in effects:
        for v, n, r2, t in m.rows:
            rows.append([m.field, m.param, v, n, f_r2(r2), f_num(t)])
    doc.table(["field", "parameter", "value", "runs", "median R²", "median time [s]"], rows)


def robust_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Robustness of repeated configs")
    spreads = robustness(study)
    if not spreads:
        doc.p("No configuration ran more than once (seed aside), so the spread of R² over repeats is unknown.")
        return
    rows = []
    for s in spreads:
        r2 = s.r2s
        rows.append([", ".join(str(r.node_id) for r in s.runs), len(s.runs), len(s.ok),
                     f_r2(min(r2)) if r2 else "-", f_r2(median(r2)), f_r2(max(r2)) if r2 else "-",
                     f_num(s.spread, 3), f_num(s.time_spread, 3), s.runs[0].config_text(skip=("seed",))])
    doc.table(["nodes", "runs", "ok", "min R²", "median R²", "max R²", "R² spread", "time spread [s]", "config"],
              rows)


def time_model(study: Study) -> TimeModel:
    samples, skipped = samples_from_runs(study.runs, study.name)
    return fit(samples, skipped)


def timemodel_section(doc: Doc, study: Study, model: TimeModel) -> None:
    doc.h(2, "Training-time model")
    if not model.fits:
        doc.p("No successful run with a training_time: no time model.")
        return
    doc.p("time ≈ a·W + c·steps + b per device and CPU thread count (metrics.json `cpu_threads`; runs recorded "
          "before it read as 1), W = steps × FLOPs per step (forward and backward on the step's sampler path: "
          "metrics.json `flops_per_step`, from mpm_inr.training.cost), fitted by non-negative least squares on the "
          "successful runs; fewer terms with fewer than 4 runs. Leave-one-out: each run predicted by the model "
          "fitted without it.")
    rows = []
    for _, f in sorted(model.fits.items()):
        coef = {t: c for t, c in zip(f.terms, f.coef)}
        rows.append([f.device, f.threads, f.n, *(f_num(coef.get(t), 4) + f" {TERM_UNITS[t]}" if t in coef else "-"
                                                 for t in ("W", "steps", "1")),
                     f_num(f.r2, 3), f_pct(f.median_rel_error), f_pct(f.loo_median_rel_error),
                     f_pct(f.loo_max_rel_error)])
    doc.table(["device", "CPU threads", "runs", "a", "c", "b", "fit R²", "median error", "LOO median error",
               "LOO max error"], rows)
    if model.skipped:
        doc.p(f"{model.skipped} successful run(s) lacked the metrics the model needs (steps, n_values, config) and "
              "were left out.")
    doc.img("timemodel", plots.png_bytes(plots.timemodel_figure(model)),
            "measured training time against the model's leave-one-out prediction")
    doc.p("Predict a config's training time before running it: python -m agent predict-time --study <this study's "
          "dir> <train overrides>.")


def tree_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Exploration tree")
    if not study.runs:
        doc.p("No run yet.")
        return
    doc.img("tree", plots.png_bytes(plots.tree_figure(study)), "exploration tree per block, coloured by R²")


def failures_section(doc: Doc, study: Study) -> None:
    failed = [r for r in study.finished_runs if r.status != "ok"]
    doc.h(2, "Failed runs")
    if not failed:
        doc.p("None.")
        return
    doc.table(["node", "block", "status", "error", "mutation"],
              [[r.node_id, r.block, r.status, (r.error or "-")[:200], r.mutation or "-"] for r in failed])


FINDINGS_TEXT = ("Each rule of the design document (agent.reporting.findings.RULES) is judged on one-factor "
                 "comparisons: groups of successful runs that share the window (field, inr_type, frames, held-out "
                 "frames), the data seed and every other override, and differ only in the factor under test. Each "
                 "value is scored by the median R² of its runs (training-seed repeats pooled; \"best\" where the "
                 "rule leaves the other settings free), on the nines scale -log10(1 - R²), with values within "
                 f"{TIE_NINES:g} nines a tie. Held-out: the same judge on held-out R², where every value of a group "
                 "has it. untested: no group has the values the judge needs; mixed: tested groups disagree. Each run "
                 "is quoted as node N: R² (held-out R², data seed).")


def findings_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Findings: the design document's rules on this study's runs")
    found = findings(study)
    doc.p(FINDINGS_TEXT)
    doc.table(["rule", "document's claim", "factor", "judged by", "verdict", "held-out verdict", "groups tested",
               "nodes"],
              [[f.rule.id, f.rule.claim, f.rule.key, f.rule.judge.text(), f.verdict, f.heldout_verdict,
                f"{len(f.tested)}/{len(f.groups)}", _ids(f.node_ids) or "-"] for f in found])
    for f in found:
        if f.groups:
            _finding_detail(doc, f)


def _finding_detail(doc: Doc, f: Finding) -> None:
    rule = f.rule
    doc.p(f"{rule.id}: {f.verdict}" + (f" (held-out: {f.heldout_verdict})" if f.heldout_verdict != "untested" else "")
          + f". Claim: {rule.claim} ({rule.source}); judged by {rule.judge.text()}"
          + (f"; {rule.note}" if rule.note else "") + ".")
    rows = []
    for g in f.groups:
        verdict = f"{g.verdict}: {g.reason}" + (f"; held-out {g.heldout_verdict}: {g.heldout_reason}"
                                                if g.heldout_verdict is not None else "")
        for i, (value, runs) in enumerate(g.values.items()):
            score = g.scores.get(value)
            rows.append([g.label if i == 0 else "", show(value), "-" if score is None else r2_text(score),
                         "; ".join(quote(r) for r in runs), verdict if i == 0 else ""])
    score = "best R²" if rule.others == "free" else "median R²"
    doc.table(["group (shared settings)", rule.key, score, "runs", "group verdict"], rows)


def _span(values: Sequence[float]) -> tuple[str, str]:
    """(median, min–max) of R² values, as text."""
    if not values:
        return "-", "-"
    return f_r2(median(values)), f"{f_r2(min(values))}–{f_r2(max(values))}"


def seed_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Data seeds: the best configs on other simulations")
    spreads, alone = seed_spreads(study)
    if not spreads:
        doc.p("No best config of this study was re-run on another dataset seed (no node whose overrides differ from "
              "a data-seed-0 node's only by data.seed), so every number in this report holds for one simulated "
              "trajectory.")
        return
    doc.p("Per field, inr_type and frames, the best run on data seed 0 and its re-runs on other dataset seeds (nodes "
          "whose overrides differ from it only by data.seed, e.g. the study's seed-spread phase): the discs "
          "collide chaotically, so another seed is another trajectory of the same scenario.")
    rows = []
    for s in spreads:
        r2, held = _span(s.r2s), _span(s.holdout_r2s)
        rows.append([s.field, s.inr_type, s.frames, "; ".join(quote(r) for r in s.runs), len(s.r2s), *r2, *held,
                     s.best.config_text()])
    doc.table(["field", "inr_type", "frames", "runs", "ok", "median R²", "R² min–max", "median held-out R²",
               "held-out R² min–max", "config"], rows)
    if alone:
        doc.p("Best data-seed-0 runs without a re-run on another data seed: " + "; ".join(
            f"{r.field} {r.inr_type} {r.frames} frames: node {r.node_id}" for r in alone) + ".")


def _has_baseline(run: RunRecord) -> bool:
    return run.baselines is not None or run.m("svd_r2_same_params") is not None


def baseline_losses_section(doc: Doc, study: Study) -> None:
    doc.h(2, "Where a classical baseline beats the INR at its size")
    doc.p("Per field: whether a baseline storing no more bytes than the run fits the window better (metrics.json "
          "`baselines`: SVD, SZ3 and ZFP within the run's bytes; for runs recorded before them, the SVD at the same "
          "parameter count).")
    for fld in study.fields():
        runs = [r for r in study.ok_runs if r.field == fld]
        best = best_run(runs, study.min_compression)
        if best is None:
            doc.p(f"{fld}: no successful run.")
            continue
        read = [r for r in runs if _has_baseline(r)]
        beaten = [r for r in read if beaten_by(r.metrics)]
        if not _has_baseline(best):
            lead = f"{fld}: the best run, {quote(best)}, recorded no baseline of its size."
        else:
            verdict = beaten_by(best.metrics)
            lead = (f"{fld}: the best run, {quote(best)}, {f_num(best.model_bytes, 6)} bytes (bytes ratio "
                    f"{f_ratio(best.bytes_ratio)}), " + (f"is {verdict}." if verdict else
                                                         "beats every baseline of its size."))
        doc.p(lead + f" {len(beaten)} of the {len(read)} run(s) read against a baseline are beaten at their size"
              + (f" (node(s) {_ids([r.node_id for r in beaten])})." if beaten else "."))


def build(study: Study, data_root: str | Path | None = None) -> Doc:
    """The whole report of a loaded study as a Doc (markdown + HTML + figures)."""
    doc = Doc()
    windows = svd_windows(study.runs)
    summary_section(doc, study)
    findings_section(doc, study)
    seed_section(doc, study)
    regime_section(doc, study, windows)
    pareto_section(doc, study, windows, baseline_windows(study.runs, data_root, study.dir))
    baseline_losses_section(doc, study)
    heldout_section(doc, study, windows, svd_heldout(study.runs, data_root))
    marginal_section(doc, study)
    robust_section(doc, study)
    timemodel_section(doc, study, time_model(study))
    tree_section(doc, study)
    failures_section(doc, study)
    return doc


def write_report(study_dir: str | Path, out_dir: str | Path | None = None,
                 data_root: str | Path | None = None) -> dict[str, Path]:
    """Write report.md, report_files/*.png and report.html; returns their paths by name."""
    study = load_study(study_dir)
    return write_doc(build(study, data_root), Path(out_dir) if out_dir is not None else study.dir, study.name)


def write_doc(doc: Doc, out: Path, name: str) -> dict[str, Path]:
    """Write a built report into `out` (report.md, report_files/*.png, report.html)."""
    files = out / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    written = {}
    for fig_name, png in doc.figures.items():
        p = files / f"{fig_name}.png"
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(png)
        tmp.replace(p)
        written[fig_name] = p
    write_atomic(out / "report.md", doc.markdown())
    write_atomic(out / "report.html", doc.html(f"Landscape report: {name}"))
    written["report.md"] = out / "report.md"
    written["report.html"] = out / "report.html"
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgParser(prog="python -m agent report",
                       description="Landscape report of a study (report.md + report.html).")
    parser.add_argument("study_dir")
    parser.add_argument("--out", default=None, help="output dir (default: the study dir)")
    parser.add_argument("--data-root", default=None,
                        help="where to find the datasets if their recorded paths moved (held-out SVD baseline)")
    try:
        args = parser.parse_args(list(argv or []))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    written = write_report(args.study_dir, args.out, args.data_root)
    print(f"wrote {written['report.md']} and {written['report.html']} ({len(written) - 2} figure(s))")
    return 0


__all__ = ["Doc", "best_run", "build", "main", "time_model", "write_report"]
