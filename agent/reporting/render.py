"""Render a study's human/LLM-facing files from its journal (and nothing else).

    python -m agent render explorations/<name>

writes, atomically:
- `ucb_scores.txt`: the current block's UCB1 scores in the line format of the design document
  (`landscape_study.md`; empty: parent=root);
- `<name>_analysis.md`: the full log, every iteration in the design document's Log Form (incl. the Visual line),
  rejected proposals with their reasons, and a summary at each block end. An entry is final once the next
  iteration of its block is planned (only its `Next:` line waits for that), so the file only ever grows;
- `<name>_memory.md`: working memory with the design document's structure (Knowledge Base: Regime Comparison
  Table, Established Principles, Open Questions; Previous Block Summary; Current Block: Block Info, Hypothesis,
  Iterations This Block, Emerging Observations last), kept under ~500 lines;
- code modifications (`code` events, read through agent.codemod.history): a node that ran a modification gets
  the design document's CODE MODIFICATION block (file, change, hypothesis, commit, +X -Y, and its Result: kept,
  or "code modification failed: <reason>" with the revert commit); a refused or smoke-failed attempt is its rejected
  proposal's line ("code modification rejected: <reason>" / "code modification failed: <reason>", with the
  iteration it was for); the memory's Emerging Observations list them as "Code mod iter N: <note>", and block
  summaries count them;
- `configs/iter_NNN.yaml`: the config snapshot of every iteration (overrides + the trainer's resolved config);
- `instructions/<name>_instructions_vNNN.md` (every version) and `<name>_instructions.md` (the latest).

Rendering is deterministic: the same journal gives the same bytes (times come from the journal, in UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent.codemod.history import CodeHistory, code_history, log_fields, short
from agent.runs.overrides import BLOCK_KEYS, as_dict
from agent.study.describe import describe_result
from agent.study.instructions import render_versions
from agent.study.journal import Journal
from agent.study.state import BlockState, NodeState, StudyState, data_changes, fold
from agent.study.stats import beaten_by, best_node, block_stats, effects, fmt_num, grade
from agent.study.tree import format_r2, format_scores, scores
from mpm_inr.files import write_atomic

MEMORY_MAX_LINES = 500


def _utc(t: float | None) -> str:
    if t is None:
        return "?"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _min_comp(st: StudyState) -> float:
    return float((st.config.get("agent") or {}).get("min_compression", 1.0))


def _rel(st_dir: Path, p: str | None) -> str:
    if not p:
        return "-"
    try:
        return str(Path(p).resolve().relative_to(st_dir.resolve()))
    except ValueError:
        return str(p)


def _metric(m: dict[str, Any], key: str, digits: int = 4) -> str:
    v = m.get(key)
    if isinstance(v, float) and key in ("final_r2", "r2_min_component", "holdout_r2", "kinograph_r2",
                                        "svd_r2_same_params"):
        return format_r2(v)
    if isinstance(v, float) and key == "final_mse":
        return f"{v:.4e}"
    return fmt_num(v, digits) if v is not None else "-"


def _inr(st: StudyState, node: NodeState | None, blk: BlockState | None) -> str:
    if node is not None and node.metrics.get("inr_type"):
        return str(node.metrics["inr_type"])
    if node is None and blk is not None:
        for n in st.block_nodes(blk.block):
            if n.metrics.get("inr_type"):
                return str(n.metrics["inr_type"])
    ov = as_dict(node.overrides) if node is not None else as_dict(blk.base_overrides if blk else [])
    return ov.get("inr_type") or str(st.config.get("inr_type") or "default")


def ucb_text(st: StudyState) -> str:
    blk = st.current_block
    if blk is None:
        return ""
    nodes = [n for n in st.block_nodes(blk.block) if n.finished]
    items = scores(nodes, blk.ucb_c, _min_comp(st))
    last = blk.first_iteration + blk.n_iter_block - 1
    return format_scores(items, block=blk.block, first_iteration=blk.first_iteration, last_iteration=last,
                         c=blk.ucb_c)


# ------------------------------------------------------------------------------------------------ analysis


def visual_line(st_dir: Path, n: NodeState) -> str:
    """A qualitative reading of the run's image metrics (SSIM per component, kinograph) and the plot's path."""
    if not n.is_ok:
        return f"none ({n.status})"
    m = n.metrics
    parts = []
    ssim = m.get("ssim")
    comps = m.get("r2_per_component") or []
    if isinstance(ssim, list) and ssim:
        vals = [v for v in ssim if isinstance(v, (int, float))]
        if vals:
            lo = min(range(len(vals)), key=lambda i: vals[i])
            r2 = n.r2 if n.r2 is not None else -1.0
            quality = ("GT/Pred match well" if min(vals) > 0.95 and r2 > 0.99 else
                       "structure mostly right" if min(vals) > 0.8 and r2 > 0.9 else
                       "prediction far from GT" if r2 < 0.5 else "partial match")
            parts.append(f"{quality}: SSIM {'/'.join(f'{v:.3f}' for v in vals)}"
                         + (f" (lowest: component {lo})" if len(vals) > 1 else ""))
    if isinstance(comps, list) and len(comps) > 1:
        vals = [v for v in comps if isinstance(v, (int, float))]
        if vals:
            parts.append(f"R² per component {'/'.join(format_r2(v) for v in vals)}")
    if isinstance(m.get("kinograph_ssim"), (int, float)):
        parts.append(f"kinograph SSIM {m['kinograph_ssim']:.3f}")
    slope = m.get("slope")
    if isinstance(slope, (int, float)) and math.isfinite(slope):
        parts.append(f"slope {slope:.4f}" + (" (under-predicts)" if slope < 0.98 else
                                             " (over-predicts)" if slope > 1.02 else ""))
    parts.append(f"plot {_rel(st_dir, n.field_png)}" if n.field_png else "no plot")
    return "; ".join(parts)


def observation_line(st: StudyState, n: NodeState) -> str:
    return describe_result(n, st.nodes.get(n.parent_id) if n.parent_id is not None else None)


def _code(st_dir: Path, code: CodeHistory | None) -> CodeHistory:
    return code if code is not None else code_history(Journal(st_dir).read())


def code_block(st: StudyState, n: NodeState, code: CodeHistory) -> list[str]:
    """The design document's CODE MODIFICATION block of a node that ran a code change, with its commit and its
    result."""
    c = code.find(n.node_id, "committed")
    if c is None:
        return [(f"CODE MODIFICATION: commit {n.code_commit or '?'} (no code event in the journal; the diff is the "
                f"node's code_diff)")]
    e = c.event
    fields = log_fields(n.log_entry)
    branch = (code.base or {}).get("branch") or f"explore/{st.name}"
    lines = ["CODE MODIFICATION:", f"  File: {', '.join(str(f) for f in e.get('files') or []) or '?'}"]
    if fields.get("Function"):
        lines.append(f"  Function: {' '.join(fields['Function'].split())[:160]}")
    lines += [f"  Change: {e.get('description') or '-'}", f"  Hypothesis: {e.get('hypothesis') or '-'}",
              (f"  Commit: {short(e.get('commit'))} on {branch}, Changes: +{e.get('added', '?')} "
              f"-{e.get('removed', '?')} (git show {short(e.get('commit'))})")]
    v = code.find(n.node_id, "kept", "reverted")
    lines.append(f"  Result: {v.text if v is not None else 'no verdict recorded'}")
    return lines


def log_entry(st_dir: Path, st: StudyState, n: NodeState, next_parent: str | None, *, full: bool = True,
              code: CodeHistory | None = None, data_warnings: dict[int, str] | None = None) -> str:
    blk = st.block(n.block)
    m = n.metrics
    ov = as_dict(n.overrides)
    cfg = ", ".join(f"{k}={v}" for k, v in sorted(ov.items()) if k not in BLOCK_KEYS)
    lines = [f"## Iter {n.iteration}: {grade(n)}",
             f"Node: id={n.node_id}, parent={'root' if n.parent_id is None else n.parent_id}",
             f"Mode/Strategy: {n.strategy}" + (f" (fallback from {n.fallback})" if n.fallback else ""),
             f"Config: {cfg or '(trainer defaults)'}"]
    code = _code(st_dir, code)
    lines += [f"Code branch: {r.text}" for r in code.notes if r.action == "reset" and r.iteration == n.iteration]
    if n.code_diff:
        lines += code_block(st, n, code)
    if n.is_ok:
        keys = ("final_r2", "final_mse", "slope", "r2_min_component", "total_params", "compression_ratio",
                "svd_r2_same_params", "training_time")  # svd_r2_same_params: absent from runs before it existed
        lines.append("Metrics: " + ", ".join(f"{k}={_metric(m, k)}" for k in keys
                                             if k != "svd_r2_same_params" or m.get(k) is not None))
        beaten = beaten_by(m)
        if beaten:
            lines.append(f"Baseline: {beaten}")
    else:
        lines.append(f"Metrics: none ({n.status}: {n.error or 'no reason recorded'})")
    lines.append(f"Field: field_name={m.get('field') or ov.get('field') or (blk.field if blk else '?')}, "
                 f"inr_type={_inr(st, n, blk)}, n_training_frames="
                 f"{m.get('n_training_frames') or ov.get('data.n_training_frames') or '?'}")
    change = (data_changes(st) if data_warnings is None else data_warnings).get(n.node_id)
    if change:
        lines.append(f"Data warning: {change}")
    lines.append(f"Mutation: {n.mutation or 'none'}")
    lines.append(f"Parent rule: {n.rationale or '-'}")
    if full:
        lines.append(f"Visual: {visual_line(st_dir, n)}")
    lines.append(f"Observation: {observation_line(st, n)}")
    if full and (n.log_entry or n.observation) and n.policy != "heuristic":
        lines.append(f"Policy note: {' '.join((n.log_entry or n.observation).split())}")
    if full:
        lines.append(f"Run: {_rel(st_dir, n.run_dir)}" + (f", W&B {n.wandb_run_id}" if n.wandb_run_id else ""))
    lines.append(f"Next: parent={next_parent}" if next_parent is not None else "Next: pending")
    return "\n".join(lines)


def _next_parents(st: StudyState) -> dict[int, str | None]:
    """For each node, the parent the following iteration of its block used (`Next:` line)."""
    out: dict[int, str | None] = {}
    nodes = st.launched_nodes()
    for i, n in enumerate(nodes):
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        blk = st.block(n.block)
        if nxt is not None and nxt.block == n.block:
            out[n.node_id] = "root" if nxt.parent_id is None else str(nxt.parent_id)
        elif nxt is not None or (blk is not None and blk.ended):
            out[n.node_id] = "root (block end)"
        else:
            out[n.node_id] = None
    return out


def analysis_text(st_dir: Path, st: StudyState, code: CodeHistory | None = None) -> str:
    cfg = st.config
    code = _code(st_dir, code)
    out = [f"# Experiment log: {st.name}", "",
           (f"Started {_utc(st.t_start)}; policy {(cfg.get('policy') or {}).get('name')}, launcher "
           f"{(cfg.get('launcher') or {}).get('name')}, batch {cfg.get('batch')}, n_iter_block "
           f"{cfg.get('n_iter_block')}. Rendered from journal.jsonl; do not edit."), ""]
    if code.base is not None:
        out += [f"Code modifications: {code.base_line()}", ""]
    nxt = _next_parents(st)
    warnings = data_changes(st)
    for blk in st.blocks:
        out += [(f"# Block {blk.block}: field={blk.field}, n_training_frames={blk.n_training_frames}, "
                f"ucb_c={blk.ucb_c:g}"), "",
                f"Base config: {', '.join(blk.base_overrides) or '(trainer defaults)'}",
                f"Hypothesis: {blk.hypothesis or '-'}", ""]
        block_all = sorted((n for n in st.nodes.values() if n.block == blk.block), key=lambda n: n.node_id)
        for n in block_all:
            if not n.launched:
                note = code.find(n.node_id, "rejected", "smoke_failed", "failed")
                if note is None:
                    out.append(f"### Rejected proposal (node {n.node_id}, {n.policy or '?'}): {n.error}")
                else:
                    out.append(f"### Rejected proposal (node {n.node_id}, {n.policy or '?'}, code modification for "
                               f"iteration {note.iteration}): {note.text}")
                out.append(f"Proposed: parent={n.parent_id}, strategy={n.strategy}, mutation={n.mutation or '-'}")
                if note is not None and note.event.get("log"):
                    out.append(f"Smoke test log: {_rel(st_dir, str(note.event['log']))}")
                out.append("")
            elif n.finished:
                out += [log_entry(st_dir, st, n, nxt.get(n.node_id), code=code, data_warnings=warnings), ""]
            else:
                out += [f"## Iter {n.iteration}: {n.status}",
                        f"Node: id={n.node_id}, parent={'root' if n.parent_id is None else n.parent_id}",
                        f"Mode/Strategy: {n.strategy}", f"Mutation: {n.mutation or 'none'}", ""]
        if blk.ended:
            d = blk.decision
            out += [f"## Block {blk.block} summary", "", d.get("summary") or "-", ""]
            s = blk.stats
            out.append("Statistics: " + ", ".join(
                f"{k}={format_r2(s[k]) if k == 'best_r2' and s.get(k) is not None else fmt_num(s.get(k), 3)}" for k in ("n_nodes", "n_ok", "n_failed", "branching_rate",
                                                         "improvement_rate", "plateau", "max_same_param_run",
                                                         "best_node", "best_r2", "rerun_spread")))
            for p in d.get("principles") or []:
                out.append(f"- Principle: {p}")
            for q in d.get("open_questions") or []:
                out.append(f"- Open question: {q}")
            code_line = code.summary(blk.block)
            if code_line:
                out.append(code_line)
            edits = (d.get("instruction_edits") or "").strip()
            out.append(f"INSTRUCTIONS EDITED: {edits.splitlines()[0].lstrip('- ')}" + (
                f" (+{len(edits.splitlines()) - 1} more)" if len(edits.splitlines()) > 1 else "")
                if edits else "INSTRUCTIONS: no edit")
            out.append(f"Next block: field={d.get('next_field')}, n_training_frames={d.get('next_n_training_frames')}"
                       + (f", ucb_c={d.get('ucb_c')}" if d.get("ucb_c") is not None else ""))
            out.append("")
    if st.ended:
        out += [f"Study stopped {_utc(st.ended.get('t'))}: {st.ended.get('reason')}", ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ memory


def _best(st: StudyState, blk: BlockState) -> NodeState | None:
    return best_node(st.block_nodes(blk.block), _min_comp(st))


def regime_row(st: StudyState, blk: BlockState) -> str:
    b = _best(st, blk)
    if b is None:
        return (f"| {blk.block} | {_inr(st, None, blk)} | {blk.field} | {blk.n_training_frames} | - | - | - | - | - "
                f"| - | - | - | no successful run |")
    cfg = b.metrics.get("config") or {}
    ov = as_dict(b.overrides)

    def v(key: str) -> str:
        return fmt_num(_maybe_num(ov.get(key, cfg.get(key))), 4)

    t = b.metrics.get("training_time")
    key_finding = key_finding_of(st, blk)
    return (f"| {blk.block} | {_inr(st, b, blk)} | {blk.field} | {blk.n_training_frames} | {format_r2(b.r2)} "
            f"| {_metric(b.metrics, 'slope')} | {v('optimizer.lr')} | {v('model.hidden_dim')} | "
            f"{v('model.n_layers')} | {v('model.omega')} | {v('train.total_steps')} | "
            f"{(t / 60 if isinstance(t, (int, float)) else float('nan')):.2f} | {key_finding} |")


def key_finding_of(st: StudyState, blk: BlockState) -> str:
    """The block's largest single-parameter gain (or loss, when nothing improved), from parent/child pairs."""
    pairs = []
    for n in st.block_nodes(blk.block):
        p = st.nodes.get(n.parent_id) if n.parent_id is not None else None
        if p is None or p.r2 is None or not n.finished or len(n.changes) != 1:
            continue
        delta = (n.r2 - p.r2) if n.r2 is not None else None
        pairs.append((n, delta))
    if not pairs:
        return "-"
    gains = [(n, d) for n, d in pairs if d is not None and d > 0]
    if gains:
        n, d = max(gains, key=lambda t: (t[1], -t[0].node_id))
        return f"best gain: {n.mutation} ({d:+.5f}, node {n.node_id})"
    fails = [n for n, d in pairs if d is None]
    if fails:
        return f"nothing improved; failed: {fails[0].mutation} ({fails[0].status})"
    n, d = max(pairs, key=lambda t: (t[1], -t[0].node_id))
    return f"nothing improved; least loss: {n.mutation} ({d:+.5f})"


def _maybe_num(x: Any) -> Any:
    if isinstance(x, str):
        try:
            return float(x) if any(c in x for c in ".e") else int(x)
        except ValueError:
            return x
    return x


def memory_text(st_dir: Path, st: StudyState, code: CodeHistory | None = None) -> str:
    code = _code(st_dir, code)
    inr_default = str(st.config.get("inr_type") or "default")
    ev = effects(list(st.nodes.values()), inr_default)
    established = [e for e in ev if e.level == "established"]
    open_q = [e for e in ev if e.level in ("tentative", "contradicted")]
    out = [f"# Working Memory: {st.name}", "", "## Knowledge Base (accumulated across all blocks)", "",
           "### Regime Comparison Table", "",
           ("| Block | INR Type | Field | n_frames | Best R² | Best slope | Optimal lr | Optimal hidden_dim | "
           "Optimal n_layers | Optimal omega | Optimal total_steps | Training time (min) | Key finding |"),
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    ended = [b for b in st.blocks if b.ended]
    out += [regime_row(st, b) for b in ended[-40:]]
    out += ["", "### Established Principles", ""]
    recorded: list[str] = []
    for b in ended:
        for p in b.decision.get("principles") or []:
            if p not in recorded:
                recorded.append(p)
    out += [f"- {p} (recorded at a block end)" for p in recorded[-30:]] or ["- (none recorded at a block end yet)"]
    established = [e for e in established if e.statement() not in recorded]
    if established:
        out += ["", "Evidence (computed from the journal: >= 3 consistent runs):"]
        out += [f"- {e.statement()}" for e in established[:30]]
    out += ["", "### Open Questions", ""]
    computed = {e.statement() for e in ev}
    last_open = [q for q in ((ended[-1].decision.get("open_questions") or []) if ended else []) if q not in computed]
    qs = list(dict.fromkeys(list(last_open) + [f"[{e.level}] {e.statement()}" for e in open_q]))
    out += [f"- {q}" for q in qs[:40]] or ["- (none)"]
    out += ["", "---", ""]
    blk = st.current_block
    prev = ended[-1] if ended and (blk is None or ended[-1].block != blk.block) else (
        ended[-2] if len(ended) >= 2 else None)
    if prev is not None:
        out += [f"## Previous Block Summary (Block {prev.block})", "", prev.decision.get("summary") or "-"]
        edits = (prev.decision.get("instruction_edits") or "").strip()
        out += [f"INSTRUCTIONS EDITED: {len(edits.splitlines())} rule(s)" if edits else "INSTRUCTIONS: no edit"]
        code_line = code.summary(prev.block)
        if code_line:
            out.append(code_line)
    else:
        out += ["## Previous Block Summary", "", "- (first block)"]
    out += ["", "---", ""]
    if blk is None:
        out += ["## Current Block", "", "(not started)"]
        return "\n".join(out) + "\n"
    nodes = st.block_nodes(blk.block)
    done = [n for n in nodes if n.finished]
    last = blk.first_iteration + blk.n_iter_block - 1
    out += [f"## Current Block (Block {blk.block})", "", "### Block Info", "",
            (f"Field: field_name={blk.field}, inr_type={_inr(st, None, blk)}, n_training_frames="
            f"{blk.n_training_frames}, ucb_c={blk.ucb_c:g}"),
            f"Iterations: {blk.first_iteration} to {last} ({len(done)} done"
            + (", block ended" if blk.ended else "") + ")",
            f"Base config: {', '.join(blk.base_overrides) or '(trainer defaults)'}"]
    if code.base is not None:
        out.append(f"Code: {code.base_line()}; head now {short(code.head)}")
    out += ["", "### Hypothesis", "", blk.hypothesis or "-", "", "### Iterations This Block", ""]
    obs = emerging_observations(st, blk, code, ev)
    nxt = _next_parents(st)
    warnings = data_changes(st)
    entries = [log_entry(st_dir, st, n, nxt.get(n.node_id), full=False, code=code, data_warnings=warnings)
               for n in done]
    budget = MEMORY_MAX_LINES - len(out) - len(obs) - 6
    kept: list[str] = []
    for e in reversed(entries):  # newest first until the line budget is used, then note the omission
        if sum(x.count("\n") + 2 for x in kept) + e.count("\n") + 2 > budget:
            break
        kept.insert(0, e)
    if len(kept) < len(entries):
        out += [f"({len(entries) - len(kept)} earlier iteration(s) of this block: see the analysis file)", ""]
    for e in kept:
        out += [e, ""]
    out += ["### Emerging Observations", ""]
    out += [f"- {o}" for o in obs] or ["- (no run finished yet)"]
    text = "\n".join(out) + "\n"
    return text


#: code notes listed under Emerging Observations (the newest of the block; the analysis keeps all)
CODE_NOTES_IN_MEMORY = 12


def emerging_observations(st: StudyState, blk: BlockState, code: CodeHistory, ev: list) -> list[str]:
    nodes = st.block_nodes(blk.block)
    done = [n for n in nodes if n.finished]
    s = block_stats(nodes, min_compression=_min_comp(st))
    obs = []
    if s.best_node is not None:
        obs.append(f"Best so far: node {s.best_node}, R² {format_r2(s.best_r2)}.")
    if s.branching_rate is not None:
        obs.append(f"Branching rate {s.branching_rate:.0%}; improvement rate "
                   f"{'-' if s.improvement_rate is None else f'{s.improvement_rate:.0%}'}.")
    if s.plateau:
        obs.append(f"Plateau: last {s.plateau_window} R² within ±{s.plateau_nines:g} nines (−log10(1 − R²)).")
    if s.same_param_streak >= 2:
        obs.append(f"{s.same_param} mutated {s.same_param_streak} times in a row.")
    if s.n_failed:
        fails = [f"node {n.node_id} {n.status} ({n.mutation})" for n in done if n.is_failed]
        obs.append(f"Failures: {'; '.join(fails[-8:])}.")
    if s.rerun_spread is not None:
        obs.append(f"Re-run spread {s.rerun_spread:.4f}" + (" > 0.1: stochastic." if s.stochastic else "."))
    ids = {n.node_id for n in nodes}
    obs += [f"[{e.level}] {e.statement()}" for e in ev if ids & set(e.nodes)][:15]  # evidence, current levels
    notes: list[str] = []
    for n in nodes:  # the policy's own notes (an LLM's memory updates)
        for u in n.memory_updates or []:
            if u not in notes and u not in obs:
                notes.append(u)
    obs += notes[-15:]
    code_notes = code.of_block(blk.block)
    if len(code_notes) > CODE_NOTES_IN_MEMORY:
        obs.append(f"Code mod: {len(code_notes) - CODE_NOTES_IN_MEMORY} earlier code note(s) of this block are in "
                   f"the analysis file.")
    obs += [f"Code mod iter {c.iteration if c.iteration is not None else '?'}: {c.text}"
            for c in code_notes[-CODE_NOTES_IN_MEMORY:]]
    if blk.ended:
        obs.append(f"Block ended: {' '.join((blk.decision.get('summary') or '-').split())}")
    return obs


# ------------------------------------------------------------------------------------------------ files


def config_snapshot(st: StudyState, n: NodeState) -> str:
    data = {"iteration": n.iteration, "node_id": n.node_id, "parent_id": n.parent_id, "block": n.block,
            "strategy": n.strategy, "status": n.status, "overrides": list(n.overrides),
            "train_overrides": list(st.config.get("train_overrides") or []), "config_hash": n.config_hash,
            "code_commit": n.code_commit, "run_dir": n.run_dir,
            "resolved": dict(sorted((n.metrics.get("config") or {}).items()))}
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def instruction_versions(st: StudyState) -> list[str]:
    edits = [(b.block, b.decision.get("instruction_edits") or "") for b in st.blocks if b.ended]
    return render_versions(st.instructions, edits)


def render_all(study_dir: str | Path) -> list[Path]:
    """Re-render every derived file of a study from its journal; returns the paths written."""
    d = Path(study_dir)
    events = Journal(d).read()
    st = fold(events)
    code = code_history(events)
    if not st.name:
        from mpm_inr.errors import StudyError

        raise StudyError(f"{d} has no study journal (journal.jsonl with a study_start event)")
    written: dict[Path, str] = {
        d / "ucb_scores.txt": ucb_text(st),
        d / f"{st.name}_analysis.md": analysis_text(d, st, code),
        d / f"{st.name}_memory.md": memory_text(d, st, code),
    }
    for n in st.launched_nodes():
        written[d / "configs" / f"iter_{n.iteration:03d}.yaml"] = config_snapshot(st, n)
    versions = instruction_versions(st)
    for i, text in enumerate(versions, 1):
        written[d / "instructions" / f"{st.name}_instructions_v{i:03d}.md"] = text
    written[d / f"{st.name}_instructions.md"] = versions[-1]
    for path, text in written.items():
        try:
            if path.read_text() == text:
                continue
        except OSError:
            pass
        write_atomic(path, text)
    return sorted(written)


def paths(study_dir: Path, name: str) -> dict[str, Path]:
    return {"instructions": study_dir / f"{name}_instructions.md", "memory": study_dir / f"{name}_memory.md",
            "analysis": study_dir / f"{name}_analysis.md", "ucb": study_dir / "ucb_scores.txt"}
