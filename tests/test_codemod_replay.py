"""Replayed Claude replies with code diffs (tests/fixtures/claude/code_diff) driving the loop on a toy repo.

The recorded replies add an LR warm-up to mpm_inr/training/optim.py (iteration 7) and then, against the original
file, break the same function with a syntax error (iteration 8). The warm-up is committed on the study's branch
and its run uses it; its R² is below its parent's, so it is reverted; the broken diff then applies, fails its
smoke test and is discarded; the loop goes on with the heuristic, on the reverted code.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from fakeapp import SyntheticStudy, write_fake_app
from toyrepo import write_toy_repo

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.policies import PolicyContext
from agent.policies.claude.settings import ClaudeSettings
from agent.policies.heuristic import build as build_heuristic
from agent.policies.replay import ReplayPolicy
from agent.study.journal import Journal
from agent.study.proposal import Proposal
from agent.study.state import fold

pytestmark = [pytest.mark.bwrap, pytest.mark.filterwarnings("ignore")]  # bwrap: the real sandbox (tests/conftest.py)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "claude" / "code_diff" / "transcripts"
OPTIM = "mpm_inr/training/optim.py"


class ReplayThenHeuristic:
    """The recorded Claude replies while they last, then the heuristic (a replay alone would stop the study)."""

    name = "replay"

    def __init__(self, study_dir: Path, cfg: dict):
        self.heuristic = build_heuristic({"seed": 0}, PolicyContext(study_dir=study_dir, config=cfg))
        self.replay = ReplayPolicy(ClaudeSettings(), study_dir, self.heuristic, FIXTURE)

    def propose(self, view, slots):
        if self.replay.client.cursor < len(self.replay.client.records):
            return self.replay.propose(view, slots)
        out = self.heuristic.propose(view, slots)
        for p in out:  # as the claude policy marks its own fallback
            p.llm = {"policy": "heuristic", "fallback": "replay: the recorded replies are used up"}
        return out

    def end_block(self, view):
        return self.heuristic.end_block(view)


def six_nodes(root: Path) -> None:
    """Iterations 1-6 of block 1, already run (a synthetic journal), as in the fixtures' recorded view."""
    s = SyntheticStudy(root / "s", "s", frames=48)
    n1 = s.add(None, r2=0.97412, strategy="baseline")
    n2 = s.add(n1, {"optimizer.lr": 8e-05}, r2=0.98233)
    n3 = s.add(n2, {"model.omega": 20.0}, r2=0.99106)
    s.add(n3, {"optimizer.lr": 1.6e-04}, status="diverged")
    n5 = s.add(n3, {"train.total_steps": 2000}, r2=0.99531)
    s.add(n5, {"model.hidden_dim": 512}, r2=0.99688)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_replayed_claude_diffs_commit_run_and_discard(tmp_path):
    repo = write_toy_repo(tmp_path / "repo")
    status, head = git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")
    optim_before = (repo / OPTIM).read_bytes()
    root = tmp_path / "studies"
    six_nodes(root)
    cfg = compose_explore([f"code_dir={repo}", f"root={root}", "name=s", "n_training_frames=48", "n_blocks=1",
                           "n_iter_block=12", "budget.max_iterations=8", "codemod.enabled=true",
                           "codemod.heuristic.stuck_r2=0.01"])
    cfg["codemod"]["smoke"]["overrides"] = ["train.total_steps=10"]
    ex = Explorer(cfg, out=lambda s: None)
    ex.study.policy, ex.study.policy_name = ReplayThenHeuristic(root / "s", cfg), "replay"
    assert ex.run() == 0
    d = root / "s"
    events = Journal(d).read()
    code = [e for e in events if e["event"] == "code"]
    st = fold(events)
    n6, n7, n8 = (st.launched_nodes()[i] for i in (5, 6, 7))
    assert [e["action"] for e in code] == ["base", "committed", "reverted", "smoke_failed"]
    base, committed, reverted, failed = code

    # the warm-up: committed before it ran, with the design document's message, and its run used exactly that file
    assert committed["files"] == [OPTIM] and committed["added"] == 4 and committed["parent"] == base["head"]
    assert n7.iteration == 7 and n7.parent_id == 6 and n7.strategy == "code-modification" and n7.status == "ok"
    assert n7.code_commit == committed["commit"] and n7.policy == "replay"
    at_commit = git(repo, "show", f"{n7.code_commit}:{OPTIM}")
    assert "if step < warmup:" in at_commit
    assert n7.metrics["code_sha256"][OPTIM] == hashlib.sha256(at_commit.encode()).hexdigest()
    msg = git(repo, "log", "-1", "--format=%B", n7.code_commit)
    assert msg.startswith("[Iter 7] linear warm-up before the cosine decay\n")
    assert f"File: {OPTIM}\nChanges: +4 -0\nHypothesis: early steps at full lr overshoot with omega=20" in msg

    # its R² (fake trainer) is below the parent's (synthetic 0.99688): reverted by a git revert commit
    assert n7.r2 < n6.r2 and reverted["node_id"] == n7.node_id and reverted["rollback"] == "revert"
    assert reverted["reason"].startswith("code modification did not help")
    assert git(repo, "show", f"{reverted['revert_commit']}:{OPTIM}").encode() == optim_before

    # the syntax error: applies to the reverted code, fails the smoke test, the branch is reset; the loop goes on
    assert failed["rollback"] == "reset" and failed["head"] == reverted["revert_commit"] and failed["iteration"] == 8
    assert "SyntaxError" in failed["reason"] and "optim.py" in failed["reason"]
    rejected = [n for n in st.nodes.values() if n.status == "rejected"]
    assert len(rejected) == 1 and rejected[0].error == failed["reason"] and rejected[0].policy == "replay"

    # iteration 8 (heuristic, config only) runs the reverted code
    assert n8.policy == "heuristic" and n8.code_diff is None and n8.status == "ok"
    assert n8.code_commit == reverted["revert_commit"]
    assert n8.metrics["code_sha256"][OPTIM] == hashlib.sha256(optim_before).hexdigest()
    assert (d / "code" / "work" / OPTIM).read_bytes() == optim_before

    # the user's repository: same status, same HEAD, same file
    assert git(repo, "status", "--porcelain") == status and git(repo, "rev-parse", "HEAD") == head
    assert (repo / OPTIM).read_bytes() == optim_before


class FellBack:
    """A claude-like policy whose reply was unusable, so it answered with its heuristic fallback (llm record)."""

    name = "claude"

    def propose(self, view, slots):
        return [Proposal(parent_id=view.block_nodes[-1].node_id, strategy="exploit",
                         overrides={"model.hidden_dim": 128}, mutation="model.hidden_dim: 256 -> 128",
                         rationale="fallback",
                         llm={"policy": "heuristic", "fallback": "claude: schema error", "usd": 0.01})]

    def end_block(self, view):
        raise AssertionError("not reached")


def test_node_policy_names_the_policy_that_actually_decided(tmp_path):
    app = write_fake_app(tmp_path / "app")
    root = tmp_path / "studies"
    s = SyntheticStudy(root / "s", "s", frames=48)
    s.add(None, r2=0.97, strategy="baseline")
    cfg = compose_explore([f"code_dir={app}", f"root={root}", "name=s", "n_training_frames=48", "n_blocks=1",
                           "n_iter_block=12", "budget.max_iterations=2"])
    ex = Explorer(cfg, out=lambda s: None)
    ex.study.policy, ex.study.policy_name = FellBack(), "claude"
    assert ex.run() == 0
    n = fold(Journal(root / "s").read()).launched_nodes()[-1]
    assert n.policy == "heuristic" and n.fallback == "claude: schema error" and n.llm["usd"] == 0.01
