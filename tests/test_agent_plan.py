"""Study plans (agent.study.plan, agent.loop.plan_phase) against the fake trainer: regimes from the plan, probes as
children of the root, the policy's iterations after them, the seed-spread phase, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from agent_kills import kill_after_launches, launched
from fakeapp import write_fake_app

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.reporting.export import provenance, ran_commits
from agent.runs.overrides import Validator, as_dict
from agent.study.journal import Journal
from agent.study.plan import (
    PLAN_KIND,
    SEED_KIND,
    SEED_STRATEGY,
    SeedSpread,
    best_per_regime,
    node_seed,
    owed_seed_runs,
    parse_plan,
    selection_score,
)
from agent.study.state import fold
from mpm_inr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")

PLAN = """\
# @package _global_
batch: 2
plan:
  name: tiny
  estimate: {fixed_s: {default: {48: 1}}}
  seed_spread: {seeds: [1, 2]}
  blocks:
    - {field: Jp, inr_type: siren_txy, n_training_frames: 48, n_iter: 1, run_overrides: {train.max_time_s: 7},
       probes: [{model.hidden_dim: 128}, {data.t_period: 2}]}
    - {field: Jp, inr_type: siren_t, n_training_frames: 48, n_iter: 1, probes: [{model.omega: 10}]}
    - {field: F, inr_type: siren_txy, n_training_frames: 48, n_iter: 2, overrides: {optimizer.lr: 2.0e-4}}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_fake_app(tmp_path_factory.mktemp("fakeapp"))


@pytest.fixture()
def plan_dir(tmp_path) -> Path:
    d = tmp_path / "plans"
    (d / "plan").mkdir(parents=True)
    (d / "plan" / "tiny.yaml").write_text(PLAN)
    return d


def args(app: Path, root: Path, plan_dir: Path, *extra: str) -> list[str]:
    return [f"code_dir={app}", f"root={root}", "name=p", f"plan_dir={plan_dir}", "plan=tiny", *extra]


def test_plan_regimes_probes_and_seed_spread(app, tmp_path, plan_dir):
    out: list[str] = []
    assert Explorer(compose_explore(args(app, tmp_path, plan_dir)), out=out.append).run() == 0
    d = tmp_path / "p"
    st = fold(Journal(d).read())
    assert [(b.field, b.kind, b.plan_block) for b in st.blocks] == [
        ("Jp", PLAN_KIND, 1), ("Jp", PLAN_KIND, 2), ("F", PLAN_KIND, 3), ("all", SEED_KIND, None)]
    assert all(b.ended for b in st.blocks) and st.ended["reason"].startswith("done")
    starts = [e for e in Journal(d).read() if e["event"] == "block_start"]
    assert all(e["regime"] == "plan" for e in starts)
    # block 1: root, two probes (children of the root, policy "plan"), then one policy iteration
    b1 = st.block_nodes(1)
    assert [n.plan_item for n in b1] == [0, 1, 2, None]
    root = b1[0]
    assert root.parent_id is None and root.strategy == "baseline" and root.policy == "plan"
    assert [n.strategy for n in b1[1:3]] == ["probe", "probe"] and {n.parent_id for n in b1[1:3]} == {root.node_id}
    assert as_dict(b1[1].overrides)["model.hidden_dim"] == "128" and b1[3].policy == "heuristic"
    assert "inr_type=siren_txy" in root.overrides
    # the block's per-run settings reach every job of the block (not the next block's), outside the config
    assert all(n.metrics["config"]["train.max_time_s"] == 7 for n in b1)
    assert all(n.metrics["config"]["train.max_time_s"] is None for n in st.block_nodes(2))
    assert "optimizer.lr=0.0002" in st.block_nodes(3)[0].overrides or \
        "optimizer.lr=2.0e-4" in st.block_nodes(3)[0].overrides
    assert [len(st.block_nodes(b)) for b in (1, 2, 3)] == [4, 3, 3]
    # the heuristic reads no plot: every job ran with outputs.plot=false
    assert all(n.metrics["config"].get("outputs.plot") is None and "outputs.plot=false" in n.metrics["overrides"]
               for n in st.launched_nodes())
    assert not list(d.glob("runs/*/*/field.png")) and not list(d.glob("runs/*/field.png"))
    # seed spread: the best of each (field, inr_type) on dataset seeds 1 and 2, roots that name their source
    best = best_per_regime(st)
    assert [(b.metrics["field"], b.metrics["inr_type"]) for b in best] == [
        ("Jp", "siren_t"), ("Jp", "siren_txy"), ("F", "siren_txy")]
    for b in best:
        assert b.r2 == max(n.r2 for n in st.launched_nodes() if n.block <= 3 and n.r2 is not None
                           and (n.metrics["field"], n.metrics["inr_type"]) == (b.metrics["field"],
                                                                               b.metrics["inr_type"]))
    seeds = st.block_nodes(4)
    assert [(n.source_id, node_seed(n)) for n in seeds] == [(b.node_id, s) for b in best for s in (1, 2)]
    for n in seeds:
        src = st.nodes[n.source_id]
        assert n.parent_id is None and n.strategy == SEED_STRATEGY and n.overrides == src.overrides and n.is_ok
        assert n.metrics["config"]["data.seed"] == node_seed(n) and src.metrics["config"]["data.seed"] == 0
        assert n.metrics["final_r2"] != src.metrics["final_r2"]  # another dataset: another noise draw
        # the source block's per-run settings come along
        assert n.metrics["config"]["train.max_time_s"] == src.metrics["config"]["train.max_time_s"]
    assert owed_seed_runs(st, SeedSpread([1, 2])) == []
    # a finished study launches nothing more
    n_lines = len(Journal(d).read())
    assert Explorer(compose_explore(args(app, tmp_path, plan_dir)), out=out.append).run() == 0
    assert not [e for e in Journal(d).read()[n_lines:] if e["event"] in ("planned", "launched")]


def test_plan_change_on_resume_is_refused(app, tmp_path, plan_dir):
    c = compose_explore(args(app, tmp_path, plan_dir, "budget.max_iterations=2"))
    assert Explorer(c, out=lambda s: None).run() == 0
    c2 = compose_explore(args(app, tmp_path, plan_dir, "budget.max_iterations=2"))
    c2["plan"]["blocks"][0]["n_iter"] = 5
    with pytest.raises(Exception, match="another plan"):
        Explorer(c2, out=lambda s: None).run()
    # the dry run's cost figures decide no run: a new estimate resumes the same study
    c3 = compose_explore(args(app, tmp_path, plan_dir, "budget.max_iterations=2"))
    c3["plan"]["estimate"] = {"budget_min": 5, "fixed_s": {"default": {48: 7}}}
    assert Explorer(c3, out=lambda s: None).run() == 0


@pytest.mark.parametrize("block, message", [
    ({"field": "Q", "inr_type": "siren_txy", "n_training_frames": 48}, "field 'Q'"),
    ({"field": "Jp", "inr_type": "siren_txy", "n_training_frames": 48, "run_overrides": {"optimizer.lr": 1e-3}},
     "put it in the block's overrides"),
    ({"field": "Jp", "inr_type": "siren_txy", "n_training_frames": 48, "probes": [{"field": "F"}]},
     "the block's"),
    ({"field": "Jp", "inr_type": "siren_txy", "n_training_frames": 48, "probes": [{"model.hidden_dim": 1}]},
     "probe 1"),
    ({"field": "Jp", "inr_type": "siren_txy", "n_training_frames": 48, "n_iter": -1}, "n_iter"),
    ({"field": "Jp", "inr_type": "siren_txy", "n_training_frames": 47}, "block 1"),
])
def test_bad_plan_is_one_line(block, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_plan({"blocks": [block]}, Validator(progression=[48, 100]))
    assert "\n" not in str(e.value)


def test_bad_plan_stops_the_cli_before_anything_runs(app, tmp_path, plan_dir):
    (plan_dir / "plan" / "bad.yaml").write_text("# @package _global_\nplan:\n  blocks:\n"
                                                "    - {field: Jp, inr_type: siren_txy, n_training_frames: 48,"
                                                " run_overrides: {model.omega: 3}}\n")
    r = subprocess.run([sys.executable, "-m", "agent", "explore", f"code_dir={app}", f"root={tmp_path}", "name=b",
                        f"plan_dir={plan_dir}", "plan=bad"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: plan block 1: model.omega") and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists()


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, plan_dir):
    """Priced against the real trainer's conf/ (the time model composes each config); nothing runs."""
    r = subprocess.run([sys.executable, "-m", "agent", "explore", f"root={tmp_path}", "name=p", f"plan_dir={plan_dir}",
                        "plan=tiny", "dry_run=true", "train_overrides=[scenario=discs_small]",
                        "frames_progression=[48,100]"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "plan tiny: 3 block(s), then seed spread on dataset seeds [1, 2]" in r.stdout
    assert "| 1 | Jp | siren_txy | 48 | 4 | 7 s |" in r.stdout
    assert "total: 16 runs" in r.stdout  # 4 + 3 + 3 + 3 configs x 2 seeds
    assert not (tmp_path / "p").exists()


def test_resume_after_sigkill_duplicates_nothing_with_a_plan(app, tmp_path, plan_dir):
    """SIGKILL the agent mid-round at varying delays, through the plan's blocks and its seed phase; resume."""
    cmd = [sys.executable, "-m", "agent", "explore", *args(app, tmp_path, plan_dir, "train_overrides=[fake.sleep_s=0.4]")]
    d = tmp_path / "p"
    kills = kill_after_launches(cmd, d, (0.2, 1.0, 0.6, 0.3, 0.8, 0.1, 1.2, 0.5), cwd=REPO)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert kills >= 3
    evs = Journal(d).read()
    st = fold(evs)
    assert st.ended and st.ended["reason"].startswith("done")
    assert [b.kind for b in st.blocks] == [PLAN_KIND] * 3 + [SEED_KIND]
    # no node planned twice, no plan item twice in a block, no seed run twice; nothing lost or re-run twice
    planned = [e["node_id"] for e in evs if e["event"] == "planned"]
    assert len(planned) == len(set(planned))
    items = Counter((n.block, n.plan_item) for n in st.nodes.values() if n.plan_item is not None)
    assert set(items.values()) == {1}
    seed_keys = Counter((n.source_id, node_seed(n)) for n in st.block_nodes(4))
    assert set(seed_keys.values()) == {1} and len(seed_keys) == 6
    assert [len(st.block_nodes(b)) for b in (1, 2, 3)] == [4, 3, 3]
    for n in st.launched_nodes():
        # a round runs again only as a recovery after a kill (two kills may hit the same round on a busy machine)
        assert n.finished and n.launches <= 1 + n.recoveries and n.recoveries <= kills
        assert n.status in ("ok", "crashed"), (n.node_id, n.status, n.error)
    assert sum(e["event"] == "resume" for e in evs) >= kills
    from agent.runs.runner import round_alive
    assert not any(round_alive(e["token"]) for e in evs if e["event"] == "launched")
    json.dumps([n.to_dict() for n in st.nodes.values()])  # the fold stays serialisable


# ------------------------------------------------------------------------------------------ make landscape

LOCAL_MARKERS = ("/tmp/", "/work/", "/root/", "/home/")


def _exported_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def check_export(out: Path, n_runs: int) -> None:
    """What docs/landscape/ must be: journal + metrics + small text, the report, provenance; relative paths only."""
    files = _exported_files(out)
    names = {p.relative_to(out).as_posix() for p in files}
    for f in ("journal.jsonl", "report.md", "report.html", "provenance.json", "provenance.md"):
        assert f in names, f
    assert len([n for n in names if n.endswith("/metrics.json")]) == n_runs
    # the report's own figures (report_files/) are its part; no run's plot, model or arrays travel
    assert not [n for n in names if n.endswith((".ckpt", ".npy", ".mpmc", ".pt"))
                or (n.endswith(".png") and not n.startswith("report_files/")) or "/checkpoints/" in n
                or "wandb" in n], names
    for p in files:
        if p.suffix in (".json", ".jsonl", ".md", ".log", ".txt", ".yaml"):
            text = p.read_text()
            assert not [m for m in LOCAL_MARKERS if m in text], (p, [m for m in LOCAL_MARKERS if m in text])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["machine"]["cores"] and prov["date"] and "commit" in prov and prov["study"]["ended"].startswith("done")
    ran = ran_commits(Journal(out).read())  # the commit the rounds ran, not the checkout after the export wrote
    if ran:
        assert prov["commit"] == ", ".join(dict.fromkeys(c.removesuffix("-dirty") for c in ran))
        assert prov["dirty"] == any(c.endswith("-dirty") for c in ran)
    evs = Journal(out).read()
    assert all(not str(e.get("run_dir") or "").startswith("/") for e in evs)


def test_landscape_command_runs_and_exports_with_the_fake_trainer(app, tmp_path, plan_dir):
    out = tmp_path / "export"  # run from tmp_path (as make landscape runs from the repo): --out is relative
    cmd = [sys.executable, "-m", "agent", "landscape", "--out", "export",
           *args(app, tmp_path / "studies", plan_dir, "budget.max_iterations=30")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    check_export(out, 16)
    # things that must never travel, planted in the study's run dirs, stay behind on the next (resumed) export
    run_dir = min((tmp_path / "studies" / "p" / "runs").glob("round_*/*/metrics.json")).parent
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run_dir / "predictions.npy").write_bytes(b"x")
    (run_dir / "wandb" / "offline-run-1").mkdir(parents=True)
    (run_dir / "wandb" / "offline-run-1" / "config.yaml").write_text("a: 1\n")
    (run_dir / "big.log").write_text("x" * 300_000)
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    check_export(out, 16)
    assert not (out / run_dir.relative_to(tmp_path / "studies" / "p") / "big.log").exists()
    # the report's header states the plan's per-run caps
    assert "siren_txy: 48 frames train.max_time_s=7; 48 frames no cap | siren_t: 48 frames no cap" in (out / "report.md").read_text()
    # the exported folder is a study the report command reads
    (out / "report.md").unlink()
    r = subprocess.run([sys.executable, "-m", "agent", "report", "export"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, check=False, env=env)
    assert r.returncode == 0 and (out / "report.md").exists(), r.stderr[-2000:]


def test_make_landscape_target_runs_the_landscape_command():
    r = subprocess.run(["make", "-n", "landscape", "DRY_RUN=1", "ARGS=plan=x", "PY=python", "STAMP="], cwd=REPO,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "python -m agent landscape --dry-run plan=x" in r.stdout


REAL_PLAN = """\
# @package _global_
batch: 2
frames_progression: [48, 100]
train_overrides: [scenario=discs_small, data.seed=0, data.holdout_every=4, logger=none, outputs.plot=false,
                  outputs.checkpoint=false, trainer=cpu, train.total_steps=20, train.eval_every=10]
plan:
  name: toy
  seed_spread: {seeds: [1]}
  blocks:
    - {field: F, inr_type: lagrangian, n_training_frames: 48, n_iter: 0, run_overrides: {train.max_time_s: 30},
       probes: [{model.omega: 30}]}
"""


@pytest.mark.slow
def test_make_landscape_end_to_end_with_the_real_trainer(tmp_path):
    """The whole path at toy scale: datasets generated (discs_small seeds 0 and 1), the plan through the real
    train.py (root + probe, then the seed spread), a kill -9 mid-study and the resume, the export."""
    d = tmp_path / "plans"
    (d / "plan").mkdir(parents=True)
    (d / "plan" / "toy.yaml").write_text(REAL_PLAN)
    data = tmp_path / "data"
    out = tmp_path / "export"
    cmd = [sys.executable, "-m", "agent", "landscape", "--out", "export", f"plan_dir={d}", "plan=toy", "name=toy",
           f"root={tmp_path / 'studies'}",
           ("train_overrides=[scenario=discs_small,data.seed=0,data.holdout_every=4,logger=none,outputs.plot=false,"
            f"outputs.checkpoint=false,trainer=cpu,train.total_steps=20,train.eval_every=10,data.root={data}]")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    study = tmp_path / "studies" / "toy"
    t0 = time.time()
    while p.poll() is None and launched(study) == 0 and time.time() - t0 < 600:
        time.sleep(0.2)
    time.sleep(1.0)
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (data / "discs_small_seed0" / "meta.json").exists() and (data / "discs_small_seed1" / "meta.json").exists()
    st = fold(Journal(study).read())
    assert [b.kind for b in st.blocks] == [PLAN_KIND, SEED_KIND]
    assert all(n.is_ok for n in st.launched_nodes()), [(n.node_id, n.status, n.error) for n in st.launched_nodes()]
    assert len(st.launched_nodes()) == 3
    planned = [e["node_id"] for e in Journal(study).read() if e["event"] == "planned"]
    assert len(planned) == len(set(planned))
    check_export(out, 3)
    prov = json.loads((out / "provenance.json").read_text())
    assert [x["name"] for x in prov["datasets"]] == ["discs_small_seed0", "discs_small_seed1"]
    assert all(len(x["sha256"]) == 64 for x in prov["datasets"])


def test_seed_runs_planned_by_a_dead_agent_are_run_once(app, tmp_path, plan_dir):
    """Kill point inside the seed phase: the agent journaled a seed round's `planned` events and died before the
    round launched. The resume relaunches exactly those nodes and plans only the remaining seed runs."""
    assert Explorer(compose_explore(args(app, tmp_path, plan_dir, "budget.max_iterations=10")),
                    out=lambda s: None).run() == 0
    ex = Explorer(compose_explore(args(app, tmp_path, plan_dir)), out=lambda s: None)
    ex.lock.acquire()
    st = ex.study.state()
    assert st.n_iterations == 10 and st.current_block.block == 3  # the budget stopped it before the block end
    ex.blocks.end(st)
    ex.plan_keeper.start_next(ex.study.state())
    first = ex.plan_keeper.seed_round(ex.study.state(), 2)
    ex.lock.release()
    assert [n.status for n in first] == ["planned", "planned"]
    assert Explorer(compose_explore(args(app, tmp_path, plan_dir)), out=lambda s: None).run() == 0
    evs = Journal(tmp_path / "p").read()
    st = fold(evs)
    for n in first:
        assert st.nodes[n.node_id].is_ok and st.nodes[n.node_id].launches == 1
        assert {"event": "recovered", "node_id": n.node_id, "action": "relaunch"}.items() <= next(
            e for e in evs if e["event"] == "recovered" and e["node_id"] == n.node_id).items()
    seeds = st.block_nodes(4)
    assert len(seeds) == 6 and len({(n.source_id, node_seed(n)) for n in seeds}) == 6
    assert sum(e["event"] == "block_start" for e in evs) == 4


def test_a_plan_with_integer_keys_resumes_as_the_same_plan():
    """The journal stores the plan as JSON, so {400: .., 1000: ..} comes back as {"1000": .., "400": ..}: the resume
    check must not read that as another plan (the landscape plan's estimate.fixed_s has such keys; its export
    after the study was refused)."""
    from agent.loop.explorer import _canonical

    plan = {"estimate": {"fixed_s": {"lagrangian": {100: 10, 400: 28, 1000: 105, 10000: 870}}}}
    assert _canonical(plan) == _canonical(json.loads(json.dumps(plan)))
    assert _canonical(plan) != _canonical({"estimate": {"fixed_s": {"lagrangian": {100: 10, 400: 29}}}})


def test_the_seed_spread_ranks_runs_by_held_out_r2_where_recorded():
    """The landscape's seed spread re-ran F's ω = 30 child (training R² 0.999953, held-out 0.755) over the preset
    (0.999874 / 0.999843): ranked by held-out R², the preset wins; without held-out frames training R² decides."""
    overfit = selection_score(0.999953, {"holdout_r2": 0.755244, "compression_ratio": 22.6})
    preset = selection_score(0.999874, {"holdout_r2": 0.999843, "compression_ratio": 22.6})
    assert preset > overfit
    assert selection_score(0.9, {"holdout_r2": None}) > selection_score(0.8, {"holdout_r2": None})
    assert selection_score(0.9, {"holdout_r2": float("nan")})[0] == 0.9
    assert selection_score(0.9, {"compression_ratio": 30}) > selection_score(0.9, {"compression_ratio": 20})


def test_the_export_keeps_the_findings_and_carries_the_baseline_caches(tmp_path):
    """The hand-written docs/landscape/README.md survives a re-export, and each dataset's baseline cache files
    travel with the study (a fresh clone has no datasets; the report reads the study's copy first)."""
    from agent.reporting.export import copy_baseline_caches, export_study

    study = tmp_path / "s"
    study.mkdir()
    (study / "journal.jsonl").write_text(json.dumps({"event": "study_start", "name": "s", "config": {}, "t": 1.0})
                                         + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("findings\n")
    (out / "stale.md").write_text("old export\n")
    export_study(study, out, REPO)
    assert (out / "README.md").read_text() == "findings\n" and not (out / "stale.md").exists()
    ds = tmp_path / "data" / "discs_3types_seed0"
    (ds / "baselines").mkdir(parents=True)
    (ds / "baselines" / "abc_F_0-100_h4.json").write_text("{}")
    assert copy_baseline_caches([ds], out) == 1
    assert (out / "baselines" / "discs_3types_seed0" / "abc_F_0-100_h4.json").read_text() == "{}"


def test_provenance_names_the_commit_the_rounds_ran_not_the_checkout_after_the_export(tmp_path):
    """The export writes into the tracked docs/landscape before provenance is taken, so the checkout is dirty by
    then: the commit is read from the rounds' launch records instead."""
    journal = Journal(tmp_path)
    for n, commit in enumerate(["abc123", "abc123", "def456-dirty"]):
        journal.append({"event": "launched", "round": n, "node_ids": [n], "code_commit": commit})
    prov = provenance(tmp_path, tmp_path, [])
    assert prov["commit"] == "abc123, def456" and prov["dirty"] is True
    assert ran_commits(journal.read()) == ["abc123", "def456-dirty"]
    clean = Journal(tmp_path / "clean")
    clean.append({"event": "launched", "round": 0, "node_ids": [0], "code_commit": "abc123"})
    assert provenance(tmp_path / "clean", tmp_path, [])["dirty"] is False
