"""Findings: the design document's rules judged on one-factor comparisons of a synthetic journal, the report's
findings / seed-spread / baseline-loss / LLM-spend text, and the checker of quoted evidence in prose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_report_helpers import REPO, make_study, md_table, md_tables, metrics

from agent.reporting.evidence import check_quotes, quote, quotes
from agent.reporting.findings import (
    FAILS,
    HOLDS,
    MIXED,
    RULES,
    UNTESTED,
    ArgmaxIn,
    Rule,
    evaluate,
    findings,
)
from agent.reporting.report import write_report
from agent.reporting.report_data import load_study, seed_spreads
from agent.reporting.wandb_study import block_scalars

FINDINGS_HEADER = "| rule | document's claim | factor |"


def run(field: str, inr: str, r2: float, *overrides: str, holdout_r2: float | None = None, frames: int = 48,
        hidden: int = 64, lr: float = 1e-3, parent: int | None = None, strategy: str = "exploit",
        **more) -> dict:
    """A run spec for make_study: its overrides (field and frames first) and Contract-2 metrics that resolve them."""
    return {"metrics": metrics(field, inr, r2=r2, frames=frames, hidden=hidden, lr=lr, holdout_r2=holdout_r2,
                               holdout_every=4 if holdout_r2 is not None else 0, **more),
            "overrides": [f"field={field}", f"data.n_training_frames={frames}", f"inr_type={inr}", *overrides],
            "parent": parent, "strategy": strategy}


def _landscape(tmp_path: Path) -> Path:
    """F: two ω comparisons that disagree (mixed), one with held-out frames; S: width 1280 beats 512 (holds);
    Jp: t_period 2 costs nothing (does not hold); nothing about siren_id or C (untested)."""
    f = [run("F", "siren_txy", 0.99, "model.omega=30", holdout_r2=0.99),
         run("F", "siren_txy", 0.999, "model.omega=20", holdout_r2=0.998, parent=0),
         run("F", "siren_txy", 0.999, "model.omega=30", "optimizer.lr=0.002", lr=2e-3, parent=0),
         run("F", "siren_txy", 0.99, "model.omega=20", "optimizer.lr=0.002", lr=2e-3, parent=2),
         # ω 20 again but another width too: no one-factor partner, in no group
         run("F", "siren_txy", 0.9, "model.omega=20", "model.hidden_dim=128", hidden=128, parent=0)]
    s = [run("S", "siren_txy", 0.6, "model.hidden_dim=512", hidden=512),
         run("S", "siren_txy", 0.8, "model.hidden_dim=1280", hidden=1280, parent=0)]
    jp = [run("Jp", "siren_txy", 0.995, "data.t_period=1"),
          run("Jp", "siren_txy", 0.9951, "data.t_period=2", parent=0)]
    return make_study(tmp_path / "study", [f, s, jp])


def omega_label(lr: float, held_out: bool = False) -> str:
    """The shared settings of one of _landscape's ω groups: the window, then every other key its runs override."""
    return ("F siren_txy 48 frames, data seed 0" + (", every 4th frame held out" if held_out else "")
            + f"; model.hidden_dim=64, optimizer.lr={lr:g}")


def _by_id(study) -> dict:
    return {f.rule.id: f for f in findings(study)}


def test_rules_are_judged_holds_fails_untested_and_mixed(tmp_path):
    study = load_study(_landscape(tmp_path))
    found = _by_id(study)
    assert [f.rule.id for f in findings(study)] == [r.id for r in RULES]
    omega = found["omega-F"]
    assert omega.verdict == MIXED
    assert [(g.verdict, g.node_ids) for g in omega.groups] == [(HOLDS, [1, 2]), (FAILS, [3, 4])]
    assert [g.label for g in omega.groups] == [omega_label(0.001, held_out=True), omega_label(0.002)]
    assert omega.groups[0].reason == "best 20 (R² 0.999000)"
    assert omega.groups[1].reason.startswith("best 30 (R² 0.999000); best in range 20 (R² 0.990000), 1.00 nines")
    # held-out R² only where every value of a group has it: group 1 only
    assert (omega.groups[0].heldout_verdict, omega.groups[1].heldout_verdict) == (HOLDS, None)
    assert omega.heldout_verdict == HOLDS
    width = found["S-width-1280"]
    assert (width.verdict, width.node_ids) == (HOLDS, [6, 7])
    t_period = found["t-period-2"]
    assert t_period.verdict == FAILS and t_period.node_ids == [8, 9]
    assert t_period.groups[0].reason == "R² 0.995100 at 2 vs 0.995000 at 1 (0.01 nines higher)"
    for rule in ("omega-C", "omega-S", "siren_id-fails", "siren_t-beats-txy", "S-grad-clip-1"):
        assert found[rule].verdict == UNTESTED and not found[rule].groups, rule


def test_field_ranking_compares_each_fields_best_run_and_argmax_needs_both_sides(tmp_path):
    study = load_study(_landscape(tmp_path))
    # others free: one group per inr_type, frames, data seed and held-out frames (F's held-out runs fit another
    # window and have no other field beside them)
    (group,) = _by_id(study)["field-ranking"].groups
    assert group.verdict == HOLDS and group.label == "siren_txy 48 frames, data seed 0"
    assert {v: round(1 - 10 ** -s, 6) for v, s in group.scores.items()} == {"F": 0.999, "Jp": 0.9951, "S": 0.8}
    assert group.reason == "measured F (0.999000) > Jp (0.995100) > S (0.800000)"
    judge = ArgmaxIn(15, 25)
    assert judge({20.0: 3.0, 25.0: 2.0})[0] == UNTESTED  # nothing outside the range was run
    assert judge({30.0: 3.0, 40.0: 2.0})[0] == UNTESTED  # nothing inside it
    assert judge({20.0: 2.97, 30.0: 3.0})[0] == HOLDS    # within 0.05 nines of the best: a tie


def test_pooled_seeds_merge_the_groups_of_each_data_seed(tmp_path):
    runs = [run("F", "siren_txy", 0.999, "model.omega=20"),
            run("F", "siren_txy", 0.99, "model.omega=30", parent=0),
            run("F", "siren_txy", 0.9999, "model.omega=20", "data.seed=1", parent=0),
            run("F", "siren_txy", 0.9, "model.omega=30", "data.seed=1", parent=0),
            run("F", "siren_txy", 0.99999, "model.omega=20", "data.seed=2", parent=0)]
    study = load_study(make_study(tmp_path / "s", [runs]))
    rule = Rule("omega-F", "F's best ω is ~20", "test", "model.omega", ArgmaxIn(15, 25), {"field": ("F",)})
    per_seed = evaluate(rule, study)
    assert [(g.label, g.node_ids) for g in per_seed.groups] == [
        ("F siren_txy 48 frames, data seed 0", [1, 2]), ("F siren_txy 48 frames, data seed 1", [3, 4])]
    pooled = evaluate(Rule(**{**rule.__dict__, "pool_seeds": True}), study)
    (g,) = pooled.groups
    assert g.node_ids == [1, 2, 3, 4, 5] and g.verdict == HOLDS
    assert round(1 - 10 ** -g.scores[20.0], 6) == 0.9999  # the median of 0.999, 0.9999, 0.99999


def test_report_findings_section_quotes_every_run_it_used(tmp_path):
    d = _landscape(tmp_path)
    md = write_report(d, tmp_path / "out")["report.md"].read_text()
    rows = {r[0]: r for r in md_table(md, FINDINGS_HEADER)}
    assert rows["omega-F"][4:8] == ["mixed", "holds", "2/2", "1, 2, 3, 4"]
    assert rows["S-width-1280"][4] == "holds" and rows["t-period-2"][4] == "does not hold"
    assert rows["siren_id-fails"][4:8] == ["untested", "untested", "0/0", "-"]
    assert "omega-F: mixed (held-out: holds). Claim: F's best ω with siren_txy is ~20" in md
    detail = md_tables(md, "| group (shared settings) | model.omega |")[0]
    assert detail[0][:4] == [omega_label(0.001, held_out=True), "20", "0.999000",
                             "node 2: R² 0.999000 (held-out R² 0.998000, data seed 0)"]
    assert check_quotes(md, load_study(d)) == []  # every number the report quotes is the journal's


# ------------------------------------------------------------------------------------------------ seed spread


def _seeds(tmp_path: Path) -> Path:
    f = [run("F", "siren_txy", 0.999, "model.omega=20", holdout_r2=0.998),
         run("F", "siren_txy", 0.99, "model.omega=30", holdout_r2=0.98, parent=0),
         run("F", "siren_txy", 0.998, "model.omega=20", "data.seed=1", holdout_r2=0.996, parent=0,
             strategy="seed-spread"),
         run("F", "siren_txy", 0.997, "model.omega=20", "data.seed=2", holdout_r2=0.990, parent=0,
             strategy="seed-spread"),
         run("F", "siren_txy", 0.5, "model.omega=30", "data.seed=1", holdout_r2=0.4, parent=1)]
    s = [run("S", "siren_txy", 0.8, "model.omega=50")]
    return make_study(tmp_path / "seeds", [f, s])


def test_seed_spread_rows_hold_the_best_config_on_every_data_seed(tmp_path):
    d = _seeds(tmp_path)
    spreads, alone = seed_spreads(load_study(d))
    (sp,) = spreads
    assert (sp.best.node_id, [r.node_id for r in sp.reruns]) == (1, [3, 4])  # node 5 re-ran another config
    assert [r.node_id for r in alone] == [6]
    md = write_report(d, tmp_path / "out")["report.md"].read_text()
    (row,) = md_table(md, "| field | inr_type | frames | runs | ok | median R² |")
    quoted = ("node 1: R² 0.999000 (held-out R² 0.998000, data seed 0); node 3: R² 0.998000 (held-out R² "
              "0.996000, data seed 1); node 4: R² 0.997000 (held-out R² 0.990000, data seed 2)")
    assert row[:10] == ["F", "siren_txy", "48", quoted, "3",
                        "0.998000", "0.997000–0.999000", "0.996000", "0.990000–0.998000",
                        "inr_type=siren_txy, model.omega=20"]
    assert "Best data-seed-0 runs without a re-run on another data seed: S siren_txy 48 frames: node 6." in md


def test_seed_spread_shows_the_config_the_study_re_ran_even_when_another_ranks_first_now(tmp_path):
    # an older study re-ran its best config by training R² (node 2, which overfits between frames); node 1 now
    # ranks first by held-out R², but it was never re-run: the spread shown is the one measured
    f = [run("F", "siren_txy", 0.998, "model.omega=20", holdout_r2=0.997),
         run("F", "siren_txy", 0.999, "model.omega=30", holdout_r2=0.76, parent=0),
         run("F", "siren_txy", 0.9991, "model.omega=30", "data.seed=1", holdout_r2=0.77, parent=0,
             strategy="seed-spread")]
    spreads, alone = seed_spreads(load_study(make_study(tmp_path / "old", [f])))
    (sp,) = spreads
    assert (sp.best.node_id, [r.node_id for r in sp.reruns], alone) == (2, [3], [])


def test_a_study_on_one_data_seed_says_so(tmp_path):
    md = write_report(_landscape(tmp_path), tmp_path / "out")["report.md"].read_text()
    assert "No best config of this study was re-run on another dataset seed" in md


# ------------------------------------------------------------------------------------------------ baselines, LLM


def test_baseline_losses_are_said_per_field(tmp_path):
    beaten = metrics("Jp", r2=0.99, total_params=10_000, fingerprint="d" * 64,
                     baselines={"svd": ((60_000, 0.991), (40_000, 0.995)), "sz3": ((20_000, 0.9905), None),
                                "zfp": (None, None)})
    winner = metrics("S", r2=0.99, total_params=10_000, fingerprint="d" * 64,
                     baselines={"svd": ((60_000, 0.991), (40_000, 0.95)), "sz3": (None, (40_000, 0.98)),
                                "zfp": (None, None)})
    d = make_study(tmp_path / "s", [[{"metrics": beaten}], [{"metrics": winner}, {"metrics": metrics("S", r2=0.5),
                                                                                     "parent": 0}]])
    md = write_report(d, tmp_path / "out")["report.md"].read_text()
    raw = 4 * 48 * 900  # float32 bytes of one component over the window: Jp has 1, S 4
    assert (f"Jp: the best run, node 1: R² 0.990000 (data seed 0), 40000 bytes (bytes ratio {raw / 40_000:.3g}×), "
            "is beaten by "
            "the same-size SVD (R² 0.995000, 0.30 nines better). 1 of the 1 run(s) read against a baseline are "
            "beaten at their size (node(s) 1).") in md
    assert (f"S: the best run, node 2: R² 0.990000 (data seed 0), 40000 bytes (bytes ratio {4 * raw / 40_000:.3g}×), "
            "beats every "
            "baseline of its size. 0 of the 1 run(s) read against a baseline are beaten at their size.") in md


def _with_llm(d: Path) -> Path:
    """Book a Claude call on node 1's planned event and on block 1's decision (as agent.policies.claude does), and
    write their transcripts."""
    lines = [json.loads(x) for x in (d / "journal.jsonl").read_text().splitlines()]
    rec = {"policy": "claude", "model": "claude-sonnet-4-6", "tokens_in": 1200, "tokens_out": 300, "usd": 0.0081,
           "calls": 2}
    for ev in lines:
        if ev["event"] == "planned" and ev["node_id"] == 1:
            ev["llm"] = rec
        if ev["event"] == "block_end" and ev["block"] == 1:
            ev["decision"]["llm"] = {**rec, "tokens_in": 800, "tokens_out": 100, "usd": 0.0039, "calls": 1}
    (d / "journal.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in lines))
    (d / "transcripts").mkdir()
    for i, usd in enumerate((0.0, 0.0081, 0.0039)):  # a failed attempt costs nothing
        (d / "transcripts" / f"{i:05d}_propose.json").write_text(json.dumps({"index": i, "cost_usd": usd}))
    return d


def test_llm_spend_in_the_report_header_and_the_wandb_study_scalars(tmp_path):
    cfg = {"name": "syn", "policy": {"name": "claude"}, "agent": {"min_compression": 1.0}}
    d = _with_llm(make_study(tmp_path / "c", [[{"metrics": metrics(r2=0.9)}]], config=cfg))
    md = write_report(d, tmp_path / "out")["report.md"].read_text()
    assert ("LLM: 3 call(s) to claude-sonnet-4-6, 2000 tokens in, 400 tokens out, $0.0120 (estimated from the "
            "published prices, agent.policies.claude.llm_cost; the journal's llm records); transcripts/ holds 3 "
            "exchange record(s) totalling $0.0120.") in md
    scalars = block_scalars(load_study(d), 1)
    assert {k: scalars[k] for k in scalars if k.startswith("study/llm")} == {
        "study/llm_calls": 3, "study/llm_tokens_in": 2000, "study/llm_tokens_out": 400,
        "study/llm_usd": pytest.approx(0.012)}
    heuristic = make_study(tmp_path / "h", [[{"metrics": metrics(r2=0.9)}]])
    assert "LLM: no LLM calls (no llm record in the journal, no transcript)." in \
        write_report(heuristic, tmp_path / "out2")["report.md"].read_text()
    assert block_scalars(load_study(heuristic), 1)["study/llm_usd"] == 0.0


# ------------------------------------------------------------------------------------------------ quoted evidence

PROSE = """\
# The landscape (a README written from a study)

F's best ω is 20: node 2: R² 0.99900 against node 1: R² 0.990 at ω 30.
S needs width: node 7: R² 0.7 (data seed 0) is the 1280-wide run.
The seed-0 run node 99: R² 0.5 was never run.
Held out: node 2: R² 0.999 (held-out R² 0.9985, data seed 0), and node 6: R² 0.600 (data seed 1).
"""


def test_quoted_evidence_in_prose_is_checked_against_the_journal(tmp_path):
    study = load_study(_landscape(tmp_path))
    problems = check_quotes(PROSE, study)
    assert problems == [
        'line 4: "node 7: R² 0.7 (data seed 0)": the journal has R² 0.800000',
        'line 5: "node 99: R² 0.5": node 99 is not a run of study syn',
        'line 6: "node 2: R² 0.999 (held-out R² 0.9985, data seed 0)": the journal has held-out R² 0.998000',
        'line 6: "node 6: R² 0.600 (data seed 1)": node 6 trained on data seed 0',
    ]
    good = "node 2: R² 0.99900 and node 1: R² 0.990 (held-out R² 0.99, data seed 0)"
    assert check_quotes(good, study) == []
    assert quote(study.runs[1]) == "node 2: R² 0.999000 (held-out R² 0.998000, data seed 0)"


LANDSCAPE = REPO / "docs" / "landscape" / "README.md"


@pytest.mark.skipif(not LANDSCAPE.exists(), reason="docs/landscape/README.md is not written yet (the lead writes "
                                                   "it from a real study)")
def test_landscape_readme_quotes_its_study_exactly():
    """The hand-written landscape README names its study (`<!-- evidence: docs/studies/<name> -->`) and every run it
    quotes carries the quoted numbers in that study's journal."""
    text = LANDSCAPE.read_text()
    named = re.search(r"<!-- evidence: (\S+) -->", text)
    assert named, "docs/landscape/README.md: name its study as <!-- evidence: docs/studies/<name> -->"
    assert quotes(text), "docs/landscape/README.md quotes no run (node N: R² x)"
    assert check_quotes(text, load_study(REPO / named.group(1))) == []
