"""The explore loop end to end against the fake trainer: blocks, batches, rejections, budget, resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from agent_kills import kill_after_launches
from fakeapp import write_fake_app

from agent.__main__ import compose_explore
from agent.loop import blocks as blocks_module
from agent.loop.explorer import Explorer
from agent.study.journal import Journal, StudyLock
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.state import fold

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_fake_app(tmp_path_factory.mktemp("fakeapp"))


def cfg(app: Path, root: Path, *extra: str) -> dict:
    return compose_explore([f"code_dir={app}", f"root={root}", "name=s", "n_training_frames=48", *extra])


def check_tree(st) -> None:
    """Every launched node: unique iteration, parent an earlier finished node of the same block, or root."""
    nodes = st.launched_nodes()
    assert [n.iteration for n in nodes] == list(range(1, len(nodes) + 1))
    for n in nodes:
        if n.parent_id is not None:
            p = st.nodes[n.parent_id]
            assert p.block == n.block and p.node_id < n.node_id and p.launched, (n.node_id, n.parent_id)


def test_two_blocks_end_to_end(app, tmp_path):
    out: list[str] = []
    rc = Explorer(cfg(app, tmp_path, "n_blocks=2", "n_iter_block=2"), out=out.append).run()
    assert rc == 0
    d = tmp_path / "s"
    st = fold(Journal(d).read())
    check_tree(st)
    assert st.n_iterations == 4 and all(n.finished for n in st.launched_nodes())
    assert [b.field for b in st.blocks] == ["Jp", "F"] and all(b.ended for b in st.blocks)
    assert st.nodes[1].parent_id is None and st.nodes[1].strategy == "baseline"
    b2 = st.block_nodes(2)
    assert b2[0].parent_id is None and "field=F" in b2[0].overrides
    assert st.ended and st.ended["reason"].startswith("done")
    for n in st.launched_nodes():
        m = n.metrics
        assert m["study"]["node_id"] == n.node_id and m["study"]["name"] == "s"
        assert m["study"]["parent_id"] == n.parent_id and m["study"]["strategy"] == n.strategy
        assert Path(n.run_dir).parent.parent == d / "runs"
    for f in ("s_analysis.md", "s_memory.md", "ucb_scores.txt", "s_instructions.md", "configs/iter_004.yaml"):
        assert (d / f).exists(), f
    # re-running the finished study launches nothing
    n_lines = len(Journal(d).read())
    assert Explorer(cfg(app, tmp_path, "n_blocks=2", "n_iter_block=2"), out=out.append).run() == 0
    evs = Journal(d).read()
    assert not [e for e in evs[n_lines:] if e["event"] in ("planned", "launched")]
    # ... and more blocks continue the same study
    assert Explorer(cfg(app, tmp_path, "n_blocks=3", "n_iter_block=2"), out=out.append).run() == 0
    st = fold(Journal(d).read())
    assert st.n_iterations == 6 and len(st.blocks) == 3
    check_tree(st)


def test_batch_round_runs_slot_roles_together(app, tmp_path):
    Explorer(cfg(app, tmp_path, "n_blocks=1", "n_iter_block=5", "batch=3"), out=lambda s: None).run()
    st = fold(Journal(tmp_path / "s").read())
    check_tree(st)
    rounds = Counter(ev["round"] for ev in st.launches)
    assert sorted(rounds.values()) == [1, 1]  # two multiruns: 3 + 2 children
    first = [n for n in st.launched_nodes() if n.iteration <= 3]
    assert first[0].strategy == "baseline" and all(n.parent_id is None for n in first)
    assert len({n.config_hash for n in st.launched_nodes()}) == 5
    assert [n.role for n in st.launched_nodes()][3:] == ["exploit", "exploit"]


class HostilePolicy:
    """Returns dangerous or invalid proposals; the loop must journal and reject them, never run them."""

    name = "hostile"
    BAD = (
        (None, {"hydra.run.dir": "/tmp/pwn"}), (None, {"optimizer.lr": "${oc.env:ANTHROPIC_API_KEY}"}),
        (None, {"+model.x": 1}), (None, {"model._target_": "os.system"}), (None, {"optimizer.lr": "1e-4; rm -rf /"}),
        (None, {"optimizer.lr": float("nan")}), (None, {"model.hidden_dim": 10**9}), (None, {"field": "F"}),
        (None, {"unknown": 1}), (999, {"optimizer.lr": 2e-4}),
    )

    def __init__(self):
        self.calls = 0

    def propose(self, view, slots):
        out = []
        for _ in slots:
            parent, bad = self.BAD[self.calls % len(self.BAD)]
            self.calls += 1
            out.append(Proposal(parent_id=parent, strategy="exploit", overrides=bad, mutation="evil",
                                rationale="test"))
        return out

    def end_block(self, view):
        return BlockEndDecision(next_field="X", next_n_training_frames=7, instruction_edits="", summary="")


def test_hostile_proposals_are_rejected_and_never_reach_a_subprocess(app, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-planted-key")
    ex = Explorer(cfg(app, tmp_path, "n_blocks=2", "n_iter_block=2", "agent.max_proposal_attempts=3"),
                  out=lambda s: None)
    ex.study.policy, ex.study.policy_name = HostilePolicy(), "hostile"
    assert ex.run() == 0
    d = tmp_path / "s"
    st = fold(Journal(d).read())
    rejected = [n for n in st.nodes.values() if n.status == "rejected"]
    assert len(rejected) >= 10 and all(n.error for n in rejected)
    reasons = " ".join(n.error for n in rejected)
    for expected in ("hydra.* keys are not allowed", "interpolations", "'+', '++' and '~'", "special keys",
                     "only plain literals", "NaN and infinity", "out of range", "only between blocks",
                     "unknown key", "parent 999 is not a finished node"):
        assert expected in reasons, expected
    launched = st.launched_nodes()
    assert len(launched) == 4 and all(n.policy == "heuristic" and n.fallback for n in launched)
    assert st.blocks[0].decision["fallback"].startswith("hostile: next_field 'X'")
    for jobs in d.glob("runs/*/jobs*.json"):
        text = jobs.read_text()
        assert "pwn" not in text and "${" not in text and "rm -rf" not in text and "_target_" not in text
    for p in d.rglob("*"):
        if p.is_file():
            assert b"sk-ant-planted-key" not in p.read_bytes(), p


def test_budget_max_iterations_stops_cleanly(app, tmp_path):
    Explorer(cfg(app, tmp_path, "n_blocks=3", "n_iter_block=2", "batch=2", "budget.max_iterations=3"),
             out=lambda s: None).run()
    st = fold(Journal(tmp_path / "s").read())
    assert st.n_iterations == 3 and "budget.max_iterations=3" in st.ended["reason"]
    assert [len(st.block_nodes(b.block)) for b in st.blocks] == [2, 1]  # the last round was cut to fit


def test_failures_are_recorded_and_the_loop_goes_on(app, tmp_path):
    # every run with lr above 1.5e-4 diverges in the fake trainer; timeouts via a tiny per-run limit are too slow
    # for this test, so the fake's divergence threshold stands for all failure kinds here
    Explorer(cfg(app, tmp_path, "n_blocks=1", "n_iter_block=5", "train_overrides=[fake.diverge_above_lr=1.5e-4]",
                 "start={optimizer.lr:1e-4}", "policy.params=[optimizer.lr,model.n_layers]",
                 "agent.min_compression=0"), out=lambda s: None).run()
    st = fold(Journal(tmp_path / "s").read())
    assert st.n_iterations == 5 and all(n.finished for n in st.launched_nodes())
    failed = [n for n in st.launched_nodes() if n.status == "diverged"]
    assert failed and all("NaN" in n.error for n in failed)
    assert all(n.metrics.get("status") == "diverged" for n in failed)
    hashes = [n.config_hash for n in st.launched_nodes()]
    assert len(hashes) == len(set(hashes)) or all(n.strategy == "robustness-test" for n in st.launched_nodes()
                                                  if hashes.count(n.config_hash) > 1)
    assert all(hashes.count(n.config_hash) == 1 for n in failed)  # a failed config is never re-run


def journal_invariants(d: Path, total: int) -> None:
    st = fold(Journal(d).read())
    check_tree(st)
    assert st.n_iterations == total and all(n.finished for n in st.launched_nodes())
    fin = Counter(e["node_id"] for e in Journal(d).read() if e["event"] == "finished")
    # a finished node may be finished twice only if an old event was replayed; the first one wins, never a rerun
    metrics_files = Counter()
    for m in d.glob("runs/round_*/**/node_*/metrics.json"):
        metrics_files[int(m.parent.name.split("_")[1])] += 1
    for n in st.launched_nodes():
        assert metrics_files[n.node_id] <= 1, f"node {n.node_id} trained to completion twice"
        assert fin[n.node_id] >= 1
        if n.status == "ok":
            assert metrics_files[n.node_id] == 1


def test_resume_after_sigkill_duplicates_nothing(app, tmp_path):
    """SIGKILL the agent mid-round (after a new round was launched, at varying delays), resume, repeat."""
    args = [sys.executable, "-m", "agent", "explore", f"code_dir={app}", f"root={tmp_path}", "name=k",
            "n_training_frames=48", "n_blocks=2", "n_iter_block=2", "batch=2", "train_overrides=[fake.sleep_s=0.4]"]
    d = tmp_path / "k"
    kills = kill_after_launches(args, d, (0.2, 1.0, 0.6), cwd=REPO)
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert kills >= 2
    journal_invariants(d, 4)
    evs = Journal(d).read()
    # every kill came after the study started, so each restart resumes (a process that ended by itself under a
    # slow machine is also followed by a resume, hence >=)
    assert sum(e["event"] == "resume" for e in evs) >= kills
    assert any(e["event"] == "recovered" for e in evs)  # some kill left a run in flight
    from agent.runs.runner import round_alive
    assert not any(round_alive(e["token"]) for e in evs if e["event"] == "launched")  # no orphan left


def test_resume_finishes_a_run_that_completed_after_the_agent_died(app, tmp_path):
    """Simulated kill right after a job wrote metrics.json but before the agent journaled it."""
    c = cfg(app, tmp_path, "n_blocks=1", "n_iter_block=2")
    ex = Explorer(c, out=lambda s: None)
    ex.lock.acquire()
    ex.study.emit({"event": "study_start", "name": "s", "schema": 1, "config": ex.cfg, "instructions": "x"})
    ex.blocks.start_first()
    planned = ex.planner.plan(ex.study.state(), 1)
    node = planned[0]
    # run the job ourselves, as the dead agent's multirun would have, without journaling its end
    from agent.runs.runner import Job
    ex.runner.run(tmp_path / "s" / "runs" / "round_0001", [Job(node.node_id, ex.rounds.job_overrides(node, ex.study.state(),
                                                                                                 ex.code_dir),
                                                               "node_0001")],
                  on_launch=lambda info: ex.study.emit({"event": "launched", "round": 1, "node_ids": info["node_ids"],
                                                   "run_dirs": {str(k): v for k, v in info["run_dirs"].items()},
                                                   "token": info["token"], "attempt": 1}))
    ex.lock.release()
    assert fold(Journal(tmp_path / "s").read()).nodes[1].status == "running"
    Explorer(c, out=lambda s: None).run()
    evs = Journal(tmp_path / "s").read()
    assert {"event": "recovered", "node_id": 1, "action": "finished"}.items() <= next(
        e for e in evs if e["event"] == "recovered").items()
    launched_1 = [e for e in evs if e["event"] == "launched" and 1 in e["node_ids"]]
    assert len(launched_1) == 1  # never relaunched
    journal_invariants(tmp_path / "s", 2)


def _agent(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@pytest.mark.parametrize("args,msg", [
    (["explore", "name=x", "policy=gpt"], "unknown policy 'gpt'; choose one of claude, heuristic, replay"),
    (["explore", "name=x", "launcher=ray"], "unknown launcher 'ray'"),
    (["explore"], "name is required"),
    (["explore", "name=../x"], "a study name is"),
    (["explore", "name=x", "field=Q"], "field='Q'"),
    (["explore", "name=x", "n_blocks=0"], "n_blocks=0"),
    (["explore", "name=x", "nblocks=2"], "bad explore option"),
    (["explore", "name=x", "start={model.hidden_dim:5}"], "start config rejected"),
    (["render", "/nonexistent/dir"], "not a study directory"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_gives_one_line_errors(tmp_path, args, msg):
    extra = [f"root={tmp_path}"] if args[:1] == ["explore"] and len(args) > 1 else []
    r = _agent(*args, *extra)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_missing_api_key_and_locked_study(app, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    r = _agent("explore", "name=x", "policy=claude", f"root={tmp_path}", env=env)
    assert r.returncode == 2 and "ANTHROPIC_API_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with StudyLock(tmp_path / "held"):
        r = _agent("explore", "name=held", f"root={tmp_path}", f"code_dir={app}")
    assert r.returncode == 2 and r.stderr.startswith("error: study") and "in use by agent pid" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "held" / "journal.jsonl").exists()


@pytest.mark.parametrize("extra,msg", [
    ("train_overrides=[field=Q]", "field=Q is not an option of the trainer's 'field' group; choose one of C, F, Jp, S"),
    ("train_overrides=[fake.sleep_s=0,optimizer=sgd]", "choose one of adam, adamw"),
    ("train_overrides=[field=F]", "would be replaced by the study's own field in every run"),
    ("budget.max_usd=-1", "budget.max_usd=-1: must be a positive number"),
    ("budget.max_usd=nan", "budget.max_usd=nan"),
    ("budget.max_usd=0", "budget.max_usd=0"),
    ("budget.max_iterations=0", "budget.max_iterations=0: must be a positive integer"),
    ("budget.max_iterations=-3", "budget.max_iterations=-3"),
    ("budget.max_iterations=true", "budget.max_iterations=True"),
])
def test_bad_train_overrides_and_budgets_fail_before_anything_runs(app, tmp_path, monkeypatch, extra, msg):
    from mpm_inr.errors import ConfigError

    spawned: list = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: spawned.append(a))
    with pytest.raises(ConfigError) as e:
        Explorer(cfg(app, tmp_path, extra), out=lambda s: None).run()
    assert msg in str(e.value) and "\n" not in str(e.value)
    assert not spawned and not (tmp_path / "s").exists()


def test_block_ends_rewrite_the_study_run_by_its_cost_and_the_end_always(app, tmp_path, monkeypatch):
    """A block end skips the W&B run + report rewrite while the last one is recent for its cost; the study's end
    rewrites the latest ended block whenever a block end skipped it."""
    clock = [100.0]
    monkeypatch.setattr(blocks_module.time, "monotonic", lambda: clock[0])
    written: list[int] = []

    def study_wandb(self, block: int) -> None:
        written.append(block)
        clock[0] += 2.0  # each rewrite "takes" 2 s

    monkeypatch.setattr(blocks_module.BlockKeeper, "_study_wandb", study_wandb)
    keeper = blocks_module.BlockKeeper(SimpleNamespace(cfg={}), [])
    keeper.refresh_study_run(1)
    clock[0] += blocks_module.REFRESH_GAP_FACTOR * 2.0 - 1.0
    keeper.refresh_study_run(2)  # 1 s too early
    clock[0] += 1.0
    keeper.refresh_study_run(3)
    keeper.refresh_study_run(3, force=True)  # already written
    keeper.refresh_study_run(4, force=True)
    assert written == [1, 3, 4]

    written.clear()
    Explorer(cfg(app, tmp_path, "n_blocks=3", "n_iter_block=1"), out=lambda s: None).run()
    assert written[0] == 1 and written[-1] == 3 and 2 not in written  # block 2 came too soon after block 1
