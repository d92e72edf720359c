"""Journal -> rendered files: seed structure, determinism, growth-only analysis, memory size, snapshots."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from fakeapp import SyntheticStudy

from agent.reporting.render import analysis_text, memory_text, render_all

REPO = Path(__file__).resolve().parents[1]


def build(tmp_path: Path) -> SyntheticStudy:
    s = SyntheticStudy(tmp_path / "syn", n_iter_block=4)
    a = s.add(None, strategy="baseline", r2=0.97, metrics={"field": "Jp"})
    b = s.add(a, {"model.hidden_dim": 512}, r2=0.9991)
    s.add(b, {"optimizer.lr": 8e-4}, status="diverged")
    s.add(b, {"model.omega": 40.0}, r2=0.99995, metrics={"ssim": [0.97, 0.71, 0.99, 0.98],
                                                          "r2_per_component": [0.99, 0.98, 0.999, 0.9999]})
    s.journal.append({"event": "rejected", "node_id": 5, "block": 1, "parent_id": 1, "strategy": "exploit",
                      "reason": "hydra.run.dir: hydra.* keys are not allowed", "policy": "claude", "t": 1.7e9 + 50})
    s.node_id = 5
    s.end_block({"next_field": "F", "next_n_training_frames": 100, "summary": "Block 1 summary line.",
                 "instruction_edits": "- Block 1: branching rate 0% < 20%: add an exploration rule.",
                 "principles": ["P: wider is better (nodes 2, 4, 7)"], "open_questions": ["Q: omega?"]},
                stats={"n_nodes": 4, "branching_rate": 0.33})
    s.start_block("F", 100, base={"model.hidden_dim": 512}, hypothesis="F transfers from Jp.")
    c = s.add(None, {"model.hidden_dim": 512}, strategy="baseline", r2=0.95)
    s.add(c, {"model.hidden_dim": 512, "model.n_layers": 4}, finish=False)
    return s


def test_rendering_is_deterministic_and_cli_matches(tmp_path):
    s = build(tmp_path)
    paths = render_all(s.dir)
    first = {p: p.read_bytes() for p in paths}
    assert render_all(s.dir) == paths and {p: p.read_bytes() for p in paths} == first
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(s.dir / "journal.jsonl", copy / "journal.jsonl")
    r = subprocess.run([sys.executable, "-m", "agent", "render", str(copy), "--no-report"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    for p in paths:
        assert (copy / p.relative_to(s.dir)).read_bytes() == first[p], p.name


def test_analysis_uses_the_seed_log_form(tmp_path):
    s = build(tmp_path)
    text = analysis_text(s.dir, s.state())
    entry = text[text.index("## Iter 4:"):text.index("### Rejected")]
    for field in ("Node: id=4, parent=2", "Mode/Strategy: exploit", "Config: ", "Metrics: final_r2=0.999950",
                  "Field: field_name=Jp, inr_type=siren_txy, n_training_frames=100",
                  "Mutation: model.omega: 30.0 -> 40.0", "Parent rule: ", "Visual: ", "Observation: ",
                  "Next: parent=root (block end)"):
        assert field in entry, field
    assert "## Iter 4: excellent" in entry and "lowest: component 1" in entry
    assert "## Iter 2: excellent" in text  # 0.9991 > 0.995
    assert "## Iter 3: diverged" in text and "Metrics: none (diverged: synthetic diverged)" in text
    assert "### Rejected proposal (node 5, claude): hydra.run.dir" in text
    assert "## Block 1 summary" in text and "INSTRUCTIONS EDITED: Block 1: branching" in text
    assert "Hypothesis: F transfers from Jp." in text
    assert "## Iter 6: running" in text


def test_finished_entries_never_change_as_the_journal_grows(tmp_path):
    s = SyntheticStudy(tmp_path / "g", n_iter_block=50)
    n = s.add(None, r2=0.9)
    texts = [analysis_text(s.dir, s.state())]
    for i in range(6):
        n = s.add(n, {"optimizer.lr": 1e-4 * 2 ** -(i + 1)}, r2=0.9 + i / 100)
        texts.append(analysis_text(s.dir, s.state()))
    final = texts[-1]
    for t in texts[:-1]:
        for entry in re.split(r"\n(?=## Iter )", t)[1:]:
            if "Next: pending" not in entry:
                assert entry.strip() in final


def test_memory_has_the_seed_structure_in_order(tmp_path):
    s = build(tmp_path)
    text = memory_text(s.dir, s.state())
    heads = ["## Knowledge Base", "### Regime Comparison Table", "### Established Principles", "### Open Questions",
             "## Previous Block Summary (Block 1)", "## Current Block (Block 2)", "### Block Info", "### Hypothesis",
             "### Iterations This Block", "### Emerging Observations"]
    pos = [text.index(h) for h in heads]
    assert pos == sorted(pos)
    assert "| 1 | siren_txy | Jp | 100 | 0.999950 |" in text
    assert "P: wider is better (nodes 2, 4, 7)" in text and "Q: omega?" in text
    assert "Block 1 summary line." in text
    tail = text[text.index("### Emerging Observations"):]
    assert "## " not in tail.replace("### Emerging Observations", "")  # Emerging Observations stays last


def test_memory_stays_under_500_lines(tmp_path):
    s = SyntheticStudy(tmp_path / "big", n_iter_block=300)
    n = s.add(None, r2=0.5)
    for i in range(150):
        n = s.add(n if i % 3 else 1, {"optimizer.lr": 1e-4 * (1 + (i % 7) / 10), "model.n_layers": 2 + i % 5},
                  r2=0.5 + (i % 40) / 100)
    text = memory_text(s.dir, s.state())
    assert len(text.splitlines()) <= 500
    assert "earlier iteration(s) of this block: see the analysis file" in text


def test_files_snapshots_and_instruction_versions(tmp_path):
    s = build(tmp_path)
    render_all(s.dir)
    d = s.dir
    assert (d / "syn_analysis.md").exists() and (d / "syn_memory.md").exists()
    assert sorted(p.name for p in (d / "configs").iterdir()) == [f"iter_{i:03d}.yaml" for i in range(1, 7)]
    snap = (d / "configs" / "iter_004.yaml").read_text()
    assert "model.omega=40.0" in snap and "node_id: 4" in snap and "parent_id: 2" in snap
    vs = sorted(p.name for p in (d / "instructions").iterdir())
    assert vs == ["syn_instructions_v001.md", "syn_instructions_v002.md"]
    v2 = (d / "syn_instructions.md").read_text()
    assert "(version 2)" in v2 and "After block 1" in v2 and "add an exploration rule" in v2
    assert "(version 1)" in (d / "instructions" / "syn_instructions_v001.md").read_text()
    ucb = (d / "ucb_scores.txt").read_text()
    assert ucb.startswith("=== UCB scores (block 2") and "Node 6" in ucb and "Node 1:" not in ucb


# ------------------------------------------------------------------------------------------ code modifications

SHA_A, SHA_B, SHA_R, BASE = "a" * 40, "b" * 40, "c" * 40, "d" * 40
REFUSED = "code change refused: touches mpm_inr/metrics/r2.py: code modifications may not change the metrics code"
SMOKE = ("code modification failed: smoke test (import): SyntaxError: invalid syntax (mpm_inr/models/siren.py, "
         "line 12); the change was discarded (git reset --hard dddddddddddd)")
CRASH = "code modification failed: run crashed: no metrics.json: RuntimeError: boom"


def code_node(s: SyntheticStudy, parent: int, commit: str, verdict: dict, *, status: str = "ok",
              r2: float = 0.95, error: str | None = None) -> int:
    """A node that ran a committed code change, with the events the handler and the Explorer write."""
    st = s.state()
    s.iteration += 1
    s.node_id += 1
    nid, it = s.node_id, s.iteration
    s._emit({"event": "code", "action": "committed", "commit": commit, "parent": BASE, "head": commit,
             "iteration": it, "block": s.block, "parent_id": parent, "files": ["mpm_inr/models/siren.py"],
             "added": 4, "removed": 1, "description": f"residual block {it}",
             "hypothesis": f"skips help deep SIRENs ({it})", "message": "...", "smoke_s": 1.0})
    s._emit({"event": "planned", "node_id": nid, "parent_id": parent, "block": s.block, "iteration": it,
             "round": it, "slot": 0, "role": "auto", "strategy": "code-modification",
             "overrides": st.nodes[parent].overrides, "changes": {}, "mutation": f"[code] residual {it}",
             "rationale": "stuck", "config_hash": f"h{nid}", "policy": "claude", "code_diff": "diff --git ...",
             "code_commit": commit, "code_dir": f"/x/{commit[:12]}",
             "log_entry": "CODE MODIFICATION:\n  File: mpm_inr/models/siren.py\n  Function: SIREN.forward\n"})
    s._emit({"event": "launched", "round": it, "node_ids": [nid], "run_dirs": {str(nid): str(s.dir / f"r{nid}")},
             "code_commit": commit})
    s._emit({"event": "code", "node_id": nid, "commit": commit, **verdict})
    s.finish(nid, status=status, r2=r2, metrics={"error": error} if error else None,
             overrides=st.nodes[parent].overrides)
    return nid


def code_rejection(s: SyntheticStudy, action: str, reason: str, parent: int) -> None:
    """A refused code proposal: the handler's code event, then the Explorer's `rejected` node (same reason)."""
    s._emit({"event": "code", "action": action, "reason": reason, "iteration": s.iteration + 1, "block": s.block,
             "parent_id": parent, "stage": "guardrail" if action == "rejected" else "import",
             **({"rollback": "reset", "log": str(s.dir / "code" / "smoke" / "x" / "import.log")}
                if action == "smoke_failed" else {})})
    s.node_id += 1
    s._emit({"event": "rejected", "node_id": s.node_id, "block": s.block, "parent_id": parent,
             "strategy": "code-modification", "mutation": "[code] x", "reason": reason, "policy": "claude"})


def build_code(tmp_path: Path, *, end: bool = True) -> SyntheticStudy:
    s = SyntheticStudy(tmp_path / "cm", n_iter_block=8)
    s._emit({"event": "code", "action": "base", "branch": "explore/cm", "base_commit": BASE, "head": BASE,
             "dirty_files": [], "worktree": str(s.dir / "code" / "work")})
    a = s.add(None, strategy="baseline", r2=0.90)
    b = s.add(a, {"optimizer.lr": 2e-4}, r2=0.93)
    s.add(b, {"model.hidden_dim": 512}, r2=0.92)
    s.add(b, {"model.n_layers": 4}, r2=0.925)
    code_rejection(s, "rejected", REFUSED, b)
    code_rejection(s, "smoke_failed", SMOKE, b)
    code_node(s, b, SHA_A, {"action": "kept", "r2": 0.95, "parent_r2": 0.93}, r2=0.95)
    code_node(s, b, SHA_B, {"action": "reverted", "revert_commit": SHA_R, "head": SHA_R, "rollback": "revert",
                            "reason": CRASH}, status="crashed", error=f"{CRASH} (reverted by commit {SHA_R[:12]})")
    if end:
        s.end_block({"next_field": "F", "next_n_training_frames": 100, "summary": "code block", "principles": []})
        s.start_block("F", 100)
        s.add(None, strategy="baseline", r2=0.9)
    return s


def test_memory_shows_code_modifications_while_their_block_runs(tmp_path):
    s = build_code(tmp_path, end=False)
    text = memory_text(s.dir, s.state())
    assert "Code: study code on branch explore/cm, from commit dddddddddddd; head now cccccccccccc" in text
    obs = text[text.index("### Emerging Observations"):]
    assert "- Code mod iter 5: code modification rejected: touches mpm_inr/metrics/r2.py" in obs
    assert f"- Code mod iter 5: {SMOKE}" in obs  # "code modification failed: <reason>", not doubled
    assert ('- Code mod iter 5: code modification committed: aaaaaaaaaaaa "[Iter 5] residual block 5"; File: '
            'mpm_inr/models/siren.py; Changes: +4 -1; Hypothesis: skips help deep SIRENs (5)') in obs
    assert "- Code mod iter 5: code modification kept: aaaaaaaaaaaa (R² 0.950000 vs parent 0.930000)" in obs
    assert f"- Code mod iter 6: {CRASH}; reverted by commit cccccccccccc" in obs
    iters = text[text.index("### Iterations This Block"):text.index("### Emerging Observations")]
    entry6 = iters[iters.index("## Iter 6:"):]
    for line in ("CODE MODIFICATION:", "  File: mpm_inr/models/siren.py", "  Function: SIREN.forward",
                 "  Change: residual block 6", "  Hypothesis: skips help deep SIRENs (6)",
                 "  Commit: bbbbbbbbbbbb on explore/cm, Changes: +4 -1 (git show bbbbbbbbbbbb)",
                 f"  Result: {CRASH}; reverted by commit cccccccccccc"):
        assert line in entry6, line
    assert "Result: code modification kept" in iters[iters.index("## Iter 5:"):iters.index("## Iter 6:")]


def test_analysis_and_previous_block_show_code_modifications(tmp_path):
    s = build_code(tmp_path)
    ana = analysis_text(s.dir, s.state())
    assert "Code modifications: study code on branch explore/cm, from commit dddddddddddd" in ana
    assert ("### Rejected proposal (node 5, claude, code modification for iteration 5): code modification "
            "rejected: touches mpm_inr/metrics/r2.py") in ana
    assert f"### Rejected proposal (node 6, claude, code modification for iteration 5): {SMOKE}" in ana
    assert "Smoke test log: code/smoke/x/import.log" in ana
    e5 = ana[ana.index("## Iter 5:"):ana.index("## Iter 6:")]
    assert "Commit: aaaaaaaaaaaa on explore/cm, Changes: +4 -1" in e5 and "Result: code modification kept" in e5
    assert f"Result: {CRASH}; reverted by commit cccccccccccc" in ana[ana.index("## Iter 6:"):]
    summary = ("Code modifications in block 1: 2 committed (1 kept, 1 reverted), 1 failed before running (smoke "
               'test), 1 rejected; kept: aaaaaaaaaaaa "residual block 5".')
    assert summary in ana[ana.index("## Block 1 summary"):]
    mem = memory_text(s.dir, s.state())
    prev = mem[mem.index("## Previous Block Summary (Block 1)"):mem.index("## Current Block")]
    assert summary in prev
    assert "Code mod iter" not in mem[mem.index("## Current Block"):]  # block 2 has no code notes


def test_code_rendering_is_deterministic_and_grows_only(tmp_path):
    s = build_code(tmp_path)
    paths = render_all(s.dir)
    first = {p: p.read_bytes() for p in paths}
    for p in paths:
        p.unlink()
    assert render_all(s.dir) == paths and {p: p.read_bytes() for p in paths} == first
    r = subprocess.run([sys.executable, "-m", "agent", "render", str(s.dir), "--no-report"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in paths} == first
    # an analysis rendered mid-block keeps every finished entry and rejected-proposal line
    e = build_code(tmp_path / "early", end=False)
    early = analysis_text(e.dir, e.state())
    final = first[s.dir / "syn_analysis.md"].decode()
    entries = re.split(r"\n(?=## Iter |### Rejected)", early)[1:]
    assert len(entries) == 8
    for entry in entries:
        if "Next: pending" not in entry:
            assert entry.strip() in final, entry[:80]


def test_metrics_line_shows_the_same_size_svd_when_the_run_recorded_it(tmp_path):
    s = SyntheticStudy(tmp_path / "svd")
    s.add(None, r2=0.999, metrics={"svd_r2_same_params": 0.9985})
    s.add(1, {"optimizer.lr": 1e-4}, r2=0.998)  # a run from before svd_r2_same_params existed
    text = analysis_text(s.dir, s.state())
    first, second = text[text.index("## Iter 1:"):text.index("## Iter 2:")], text[text.index("## Iter 2:"):]
    assert "compression_ratio=100, svd_r2_same_params=0.998500, training_time=60" in first
    assert "svd_r2_same_params" not in second and "compression_ratio=100, training_time=60" in second


def test_a_run_on_other_bytes_under_the_same_dataset_name_gets_a_data_warning(tmp_path):
    """A dataset made again mid-study (another node's GPU, another torch build) is another trajectory: the entry
    of the first run on the new bytes says so, in the log the policy reads; earlier entries never change."""
    def data(fp: str, root: str = "/data") -> dict:
        return {"dataset": f"{root}/discs_3types_seed0", "dataset_provenance": {"fingerprint": fp}}

    a, b = "a" * 64, "b" * 64
    s = SyntheticStudy(tmp_path / "fp")
    s.add(None, r2=0.999, metrics=data(a))
    s.add(1, {"optimizer.lr": 1e-4}, r2=0.998, metrics=data(a, root="/scratch/node7"))  # same bytes, other root
    before = analysis_text(s.dir, s.state())
    s.add(1, {"optimizer.lr": 2e-4}, r2=0.997, metrics=data(b))
    s.add(1, {"optimizer.lr": 3e-4}, r2=0.996)  # recorded no fingerprint: nothing to compare
    s.add(1, {"optimizer.lr": 4e-4}, r2=0.996, metrics=data(b))  # b again: said once, at its first run
    text = analysis_text(s.dir, s.state())
    assert text.startswith(before[:before.index("## Iter 2:")]) and "Data warning" not in before
    entries = {k: text[text.index(f"## Iter {k}:"):] for k in (3, 4, 5)}
    assert (f"Data warning: node 3 trained on discs_3types_seed0 with fingerprint {b[:16]}, earlier runs on "
            f"{a[:16]}: the dataset was made again") in entries[3]
    assert entries[3].count("Data warning") == 1 and "Data warning" not in entries[4]
