"""Training jobs that die, diverge or overrun their wall-time limit, under the exploration loop.

Every such job must become a finished node whose status and error say what happened, the loop must go on to the
end of the study, and the policy must see the failure: the next views list the node with its status and reason,
and a proposal that re-runs the failed config is rejected with a reason, never launched.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.state import FAILED_STATUSES

from .harness import (
    CUDA_OOM_MSG,
    HOST_OOM_MSG,
    REPO,
    RULES_ENV,
    events,
    ledger,
    orphans,
    rules,
    state,
    write_faulty_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


class Script:
    """A policy that proposes a fixed list of root children, and records every view it is shown."""

    name = "script"

    def __init__(self, plan: list[dict]):
        self.plan = list(plan)
        self.seen: list[dict] = []  # one entry per propose(): what the view showed

    def propose(self, view, slots):
        self.seen.append({
            "nodes": {n.node_id: (n.status, n.error or "") for n in view.block_nodes},
            "rejections": [(n.node_id, n.error or "") for n in view.recent_rejections],
            "failed_hashes": view.failed_hashes()})
        out = []
        for _ in slots:
            changes = self.plan.pop(0) if self.plan else {"seed": 100 + len(self.seen)}
            out.append(Proposal(parent_id=None, strategy="baseline" if not changes else "explore",
                                overrides=changes, mutation=", ".join(changes) or "none", rationale="fault script"))
        return out

    def end_block(self, view):
        return BlockEndDecision(next_field="F", next_n_training_frames=48, instruction_edits="", summary="done")


def explorer(app: Path, root: Path, policy=None, *extra: str) -> Explorer:
    cfg = compose_explore([f"code_dir={app}", f"root={root}", "name=s", "n_training_frames=48", "n_blocks=1",
                           *extra])
    ex = Explorer(cfg, out=lambda s: None)
    if policy is not None:
        ex.study.policy, ex.study.policy_name = policy, policy.name
    return ex


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_faulty_app(tmp_path_factory.mktemp("faultyapp"))


# Each fault follows one config value, as a real out-of-memory follows the model size.
DEATHS = {  # changes -> (fault kind, expected status, words of the recorded reason)
    "optimizer.lr": (2e-5, "kill", "crashed", "the process died (killed by a signal, or out of memory)"),
    "model.n_layers": (4, "raise", "crashed", "RuntimeError: fake trainer: injected exception"),
    "model.hidden_dim": (512, "cuda_oom", "crashed", "OutOfMemoryError: " + CUDA_OOM_MSG),
    "model.omega": (20.0, "oom", "crashed", "MemoryError: " + HOST_OOM_MSG),
    "data.t_period": (0.5, "exit", "crashed", "exit code 3"),
}


def test_dying_jobs_become_failed_nodes_and_are_not_retried(app, tmp_path, monkeypatch, fault_row):
    monkeypatch.setenv(RULES_ENV, rules(*[({k: v}, kind) for k, (v, kind, _, _) in DEATHS.items()]))
    kill_first = {"optimizer.lr": 2e-5}  # first in its round: its SIGKILL takes the whole basic multirun down
    plan = [{}, {"model.hidden_dim": 512},
            kill_first, {"model.n_layers": 4},
            {"model.omega": 20.0}, {"data.t_period": 0.5},
            {"model.hidden_dim": 512}, {"optimizer.lr": 2e-5},  # blind retries of failed configs: rejected
            {"model.hidden_dim": 128}, {"model.n_layers": 2}]
    policy = Script(plan)
    ex = explorer(app, tmp_path, policy, "n_iter_block=8", "batch=2")
    assert ex.run() == 0
    st = state(tmp_path / "s")
    problems = []
    for key, (value, kind, status, words) in DEATHS.items():
        node = next((n for n in st.launched_nodes() if f"{key}={value!r}" in n.overrides
                     or f"{key}={value}" in n.overrides), None)
        if node is None:
            problems.append(f"{kind}: no node ran {key}={value}")
            continue
        if node.status != status or words not in (node.error or ""):
            problems.append(f"{kind}: node {node.node_id} is {node.status} ({node.error})")
        later = [s for s in policy.seen if node.node_id in s["nodes"]]
        if not later or any(s["nodes"][node.node_id][0] not in FAILED_STATUSES for s in later):
            problems.append(f"{kind}: the policy never saw node {node.node_id} as failed")
    rejected = [e["reason"] for e in events(tmp_path / "s") if e["event"] == "rejected"]  # not folded: see
    retry_reasons = [r for r in rejected if "already failed" in r]  # test_policy_output's id-collision test
    if len(retry_reasons) != 2:
        problems.append(f"expected 2 rejected blind retries, got {rejected}")
    if not any(r for s in policy.seen for _, r in s["rejections"] if "already failed" in r):
        problems.append("the policy was not shown its rejected retries")
    hashes = [n.config_hash for n in st.launched_nodes()]
    retried = len(hashes) - len(set(hashes))
    led = ledger(tmp_path / "s", injected=True)
    ok_nodes = [n for n in st.launched_nodes() if n.status == "ok"]
    if len(st.launched_nodes()) != 8 or not st.ended or len(ok_nodes) != 3:
        problems.append(f"the loop did not go on: {len(st.launched_nodes())} nodes, {len(ok_nodes)} ok")
    killed_round = [ev for ev in st.launches if ev["attempt"] == 2]
    if len(killed_round) != 1:  # the kill's sibling never started, so it ran in a second multirun, once
        problems.append(f"expected one second attempt for the kill's sibling, got {len(killed_round)}")
    fault_row("training job dies (SIGKILL, CUDA OOM, MemoryError, exception, exit)", trials=len(DEATHS) + 2,
              survived=len(DEATHS) + 2 - len(problems), lost=len(led.lost), duplicated=led.duplicated + retried,
              notes=(f"fake trainer, batch=2, basic launcher; {len(DEATHS)} deaths recorded with their reason; "
                     f"{len(retry_reasons)} blind retries rejected ('this exact config already failed'); "
                     f"the killed job's sibling relaunched once") + ("; PROBLEMS: " + " | ".join(problems)
                                                                      if problems else ""))
    assert not problems, problems
    assert retried == 0 and led.duplicated == 0 and not led.lost


def test_real_out_of_memory_is_a_failed_node(tmp_path, monkeypatch, data_root, fault_row):
    """The real train.py under an address-space limit (as a cgroup or a smaller GPU imposes): a proposal whose
    hash grid needs 12.7 GB fails to allocate, the run is recorded as failed with the allocator's message, its
    sibling in the same multirun trains normally, and a retry of the same config is rejected."""
    import resource

    import agent.runs.runner
    from agent.study.proposal import Rejection

    real_popen = subprocess.Popen

    class Limited(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **k):
            if "--multirun" in [str(x) for x in args]:
                k["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
            super().__init__(args, *a, **k)

    monkeypatch.setattr(agent.runs.runner.subprocess, "Popen", Limited)
    huge = {"inr_type": "ngp", "model.n_levels": 32, "model.features_per_level": 8, "model.log2_table_size": 24}
    policy = Script([huge, {"inr_type": "ngp"}])
    train = (f"train_overrides=[scenario=discs_small,data.root={data_root},trainer=cpu,logger=none,"
             "train.total_steps=20,train.steps_per_call=10,train.eval_every=10,outputs.checkpoint=false,"
             "outputs.plot=false]")
    ex = explorer(REPO, tmp_path, policy, "n_iter_block=2", "batch=2", train, "timeout.per_run_s=300")
    assert ex.run() == 0
    st = state(tmp_path / "s")
    oom, small = (st.nodes.get(1), st.nodes.get(2))
    problems = []
    if oom is None or oom.status != "failed" or "can't allocate memory" not in (oom.error or ""):
        problems.append(f"huge node: {oom.status if oom else None} {oom.error if oom else None}")
    if small is None or small.status != "ok":
        problems.append(f"sibling: {small.status if small else None} {small.error if small else None}")
    try:
        ex.planner.validate(Proposal(parent_id=None, strategy="explore", overrides=huge, mutation="m", rationale="r"),
                     ex.study.view(ex.study.state()), set())
        problems.append("a retry of the failed config was accepted")
    except Rejection as r:
        if "already failed" not in str(r):
            problems.append(f"retry rejected for another reason: {r}")
    fault_row("real out-of-memory in train.py (address-space limit, 12.7 GB hash grid)", trials=2,
              survived=2 - len(problems),
              notes=f"status {oom.status if oom else None}: {(oom.error or '')[:120] if oom else ''}; "
                    f"the sibling job of the same multirun: {small.status if small else None}; a retry is rejected"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not problems, problems


def test_heuristic_study_with_config_triggered_failures(app, tmp_path, monkeypatch, fault_row):
    """The offline policy on a landscape with holes: every failure is recorded, none is re-run, the loop ends."""
    monkeypatch.setenv(RULES_ENV, rules(({"model.hidden_dim": 512}, "cuda_oom"), ({"model.n_layers": 4}, "raise"),
                                        ({"model.hidden_dim": 128}, "kill"), ({"model.n_layers": 2}, "oom")))
    ex = explorer(app, tmp_path, None, "n_iter_block=8", "batch=2", "agent.min_compression=0",
                  "policy.params=[model.hidden_dim,model.n_layers,optimizer.lr]")
    assert ex.run() == 0
    st = state(tmp_path / "s")
    nodes = st.launched_nodes()
    failed = [n for n in nodes if n.is_failed]
    hashes = [n.config_hash for n in nodes]
    retried = sum(1 for n in failed if hashes.count(n.config_hash) > 1)
    ucb = (tmp_path / "s" / "ucb_scores.txt").read_text()
    memory = (tmp_path / "s" / "s_memory.md").read_text()
    problems = []
    if len(nodes) != 8 or not st.ended:
        problems.append(f"the loop stopped after {len(nodes)} nodes")
    if not failed:
        problems.append("no proposal hit a fault: the test exercised nothing")
    for n in failed:
        if not n.error:
            problems.append(f"node {n.node_id} failed without a reason")
        if f"Node {n.node_id}" not in ucb and f"node {n.node_id}" not in ucb.lower():
            problems.append(f"node {n.node_id} is missing from ucb_scores.txt")
    if failed and not any(w in memory.lower() for w in ("crash", "fail")):
        problems.append("the memory file does not mention the failures")
    led = ledger(tmp_path / "s", injected=True)
    fault_row("heuristic policy on a landscape with failing configs", trials=len(failed),
              survived=len(failed) - retried - sum(not n.error for n in failed), lost=len(led.lost),
              duplicated=led.duplicated + retried,
              notes=f"fake trainer; {len(nodes)} iterations, {len(failed)} failed "
                    f"({', '.join(sorted({n.status for n in failed}))}), none re-run"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not problems, problems
    assert retried == 0 and led.duplicated == 0


def test_diverging_runs_are_recorded_and_the_loop_goes_on(app, tmp_path, data_root, fault_row):
    """Real train.py with NaN injected into the loss; fake runs above a learning rate mixed with healthy ones."""
    problems = []
    # 1. the real trainer, every run poisoned at step 5
    train = (f"train_overrides=[scenario=discs_small,data.root={data_root},trainer=cpu,logger=none,"
             "train.total_steps=30,train.steps_per_call=10,train.eval_every=10,outputs.checkpoint=false,"
             "outputs.plot=false,+debug.inject_nonfinite_step=5]")
    real = explorer(REPO, tmp_path / "real", None, "n_iter_block=2", "batch=2", train, "timeout.per_run_s=300")
    assert real.run() == 0
    st = state(tmp_path / "real" / "s")
    for n in st.launched_nodes():
        m = n.metrics
        if n.status != "diverged" or m.get("diverged_step") != 5 or "non-finite loss at step 5" not in (n.error or ""):
            problems.append(f"real node {n.node_id}: {n.status} {n.error} step {m.get('diverged_step')}")
    if len(st.launched_nodes()) != 2 or not st.ended:
        problems.append("real: the loop did not reach the end of the study")
    n_real = len(st.launched_nodes())
    # 2. the fake trainer: runs above lr 1.5e-4 diverge, the rest are fine; the study carries on around them
    fake = explorer(app, tmp_path / "fake", None, "n_iter_block=6", "batch=2",
                    "train_overrides=[fake.diverge_above_lr=1.5e-4]", "start={optimizer.lr:1.4e-4}",
                    "policy.params=[optimizer.lr]", "agent.min_compression=0")
    assert fake.run() == 0
    st = state(tmp_path / "fake" / "s")
    div = [n for n in st.launched_nodes() if n.status == "diverged"]
    if not div or not all("NaN" in (n.error or "") for n in div):
        problems.append(f"fake: diverged nodes {[(n.node_id, n.error) for n in div]}")
    if len(st.launched_nodes()) != 6 or not st.ended or not any(n.is_ok for n in st.launched_nodes()):
        problems.append("fake: the loop did not go on past the divergences")
    led = ledger(tmp_path / "fake" / "s", injected=True)
    fault_row("diverging run (NaN injected in the real train.py; fake above an lr)", trials=n_real + len(div),
              survived=n_real + len(div) - len(problems), lost=len(led.lost), duplicated=led.duplicated,
              notes=f"{n_real} real runs diverged at the injected step 5 (status diverged, diverged_step 5); "
                    f"{len(div)} of 6 fake runs diverged, the others ran on"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not problems, problems


def test_inf_loss_is_divergence(data_root, tmp_path, monkeypatch, fault_row):
    """+inf (not NaN) in the loss of the real training loop: the run stops as diverged at that step."""
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.training import module as module_mod
    from mpm_inr.training.run import run_training

    real_loss = module_mod.INRModule.step_loss
    calls = {"n": 0}

    def inf_at_7(self):
        calls["n"] += 1
        loss = real_loss(self)
        return loss * float("inf") if calls["n"] == 8 else loss  # the 8th optimiser step is step 7

    monkeypatch.setattr(module_mod.INRModule, "step_loss", inf_at_7)
    cfg = compose_train_config(["scenario=discs_small", f"data.root={data_root}", "trainer=cpu", "logger=none",
                                "train.total_steps=30", "train.steps_per_call=10", "train.eval_every=10",
                                "data.n_training_frames=20", "outputs.plot=false", "outputs.checkpoint=false"])
    m = run_training(cfg, tmp_path / "run", progress=False)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ok = m["status"] == on_disk["status"] == "diverged" and on_disk["diverged_step"] == 7
    fault_row("diverging run (+inf injected in the real loss)", trials=1, survived=int(ok),
              notes=f"status {on_disk['status']}, diverged_step {on_disk['diverged_step']}, "
                    f"error {on_disk['error']!r}")
    assert ok, on_disk


def test_wall_time_limit_kills_and_records_timeout(app, tmp_path, monkeypatch, data_root, fault_row):
    """A job over its limit: stopped inside the job (SIGALRM), or by the round deadline when it ignores that;
    a real train.py run too. Each is recorded as timeout and the loop goes on."""
    problems = []
    # a job that hangs, and one that also ignores SIGALRM; per-run limit 2 s, round grace 4 s
    monkeypatch.setenv(RULES_ENV, rules(({"model.n_layers": 4}, "hang"), ({"model.hidden_dim": 512}, "hang_hard")))
    policy = Script([{}, {"model.n_layers": 4}, {"model.hidden_dim": 512}, {"model.hidden_dim": 128}])
    t0 = time.time()
    ex = explorer(app, tmp_path / "fake", policy, "n_iter_block=4", "batch=1", "timeout.per_run_s=2",
                  "timeout.grace_s=4")
    assert ex.run() == 0
    fake_s = time.time() - t0
    st = state(tmp_path / "fake" / "s")
    status = {n.node_id: (n.status, n.error or "") for n in st.launched_nodes()}
    if status.get(2, ("",))[0] != "timeout" or "wall-time limit of 2 s" not in status[2][1]:
        problems.append(f"hang: {status.get(2)}")
    if status.get(3, ("",))[0] != "timeout" or "round deadline" not in status[3][1]:
        problems.append(f"hang ignoring SIGALRM: {status.get(3)}")
    if [status.get(i, ("",))[0] for i in (1, 4)] != ["ok", "ok"] or not st.ended:
        problems.append(f"the loop did not go on: {status}")
    problems += [f"fake round {t} left processes" for t in orphans(tmp_path / "fake" / "s")]
    # the real trainer: far more steps than 25 s allow
    monkeypatch.delenv(RULES_ENV)
    train = (f"train_overrides=[scenario=discs_small,data.root={data_root},trainer=cpu,logger=none,"
             "train.total_steps=2000000,train.steps_per_call=50,train.eval_every=100000,outputs.checkpoint=false]")
    t0 = time.time()
    real = explorer(REPO, tmp_path / "real", None, "n_iter_block=1", "batch=1", train, "timeout.per_run_s=25",
                    "timeout.grace_s=60")
    assert real.run() == 0
    real_s = time.time() - t0
    st = state(tmp_path / "real" / "s")
    n = st.nodes.get(1)
    if n is None or n.status != "timeout" or "wall-time limit of 25 s" not in (n.error or ""):
        problems.append(f"real: {n.status if n else None} {n.error if n else None}")
    problems += [f"real round {t} left processes" for t in orphans(tmp_path / "real" / "s")]
    fault_row("job exceeds its wall-time limit", trials=3, survived=3 - len(problems),
              notes=f"fake hang stopped by SIGALRM at 2 s, fake hang ignoring SIGALRM killed at the round "
                    f"deadline (study {fake_s:.0f} s); real train.py with 2e6 steps stopped at 25 s "
                    f"(study {real_s:.0f} s); all recorded as timeout, no process left"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not problems, problems
