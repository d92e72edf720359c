"""Journal -> rendered files: seed structure, determinism, growth-only analysis, memory size, snapshots."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from agent.fakeapp import SyntheticStudy
from agent.render import analysis_text, memory_text, render_all

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
