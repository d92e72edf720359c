"""The handler outside the loop: the study's branch, the user's tree, resume reconciliation, the rules, smoke."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import subprocess
import time
from pathlib import Path

import pytest
from fakeapp import SyntheticStudy
from toyrepo import write_toy_repo

from agent.codemod import gitops
from agent.codemod.handler import CodeModHandler
from agent.codemod.smoke import run_smoke
from agent.study.proposal import Proposal, Rejection
from mpm_inr.errors import ConfigError, StudyError

pytestmark = pytest.mark.bwrap  # runs modified code in the real sandbox (tests/conftest.py)

TOY = "mpm_inr/models/toy.py"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *gitops.AGENT_IDENT, *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def make(tmp_path: Path, n_nodes: int = 4, **codemod) -> tuple[Path, SyntheticStudy, CodeModHandler]:
    repo = tmp_path / "repo"
    if not repo.exists():
        write_toy_repo(repo)
    s = SyntheticStudy(tmp_path / "studies" / "s", "s", frames=48)
    parent = None
    for i in range(n_nodes):
        parent = s.add(parent, {"optimizer.lr": 1e-4 * (i + 1)} if i else None, r2=0.9 + 0.01 * i)
    return repo, s, handler(repo, s, **codemod)


def handler(repo: Path, s: SyntheticStudy, **codemod) -> CodeModHandler:
    cfg = {**s.cfg, "codemod": {"enabled": True, "smoke": {"overrides": ["train.total_steps=10"]}, **codemod}}
    return CodeModHandler(cfg, study_dir=s.dir, code_dir=repo, emit=s.journal.append, events=s.journal.read,
                          state=s.state, out=lambda m: None)


def code_events(s: SyntheticStudy) -> list[dict]:
    return [e for e in s.journal.read() if e["event"] == "code"]


def diff(repo: Path, old: str, new: str, path: str = TOY) -> str:
    text = (repo / path).read_text()
    body = difflib.unified_diff(text.splitlines(True), text.replace(old, new, 1).splitlines(True),
                                fromfile=f"a/{path}", tofile=f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(body)


def at_iteration_5(s: SyntheticStudy):
    return dataclasses.replace(s.view(), iteration=5, iter_in_block=5)


def proposal(code_diff: str | None, parent: int = 4) -> Proposal:
    return Proposal(parent_id=parent, strategy="code-modification" if code_diff else "exploit", overrides={},
                    mutation="[code] test", rationale="test", code_diff=code_diff)


def test_base_includes_the_users_uncommitted_changes_without_touching_them(tmp_path):
    repo = tmp_path / "repo"
    write_toy_repo(repo)
    (repo / TOY).write_text('MARKER = "edited by the user"\nMAX_STEPS = 1000000\n')
    (repo / "notes.py").write_text("x = 1\n")  # untracked: not part of the study's code
    before = {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in (TOY, "notes.py", ".git/index")}
    status, head = git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")
    _, s, h = make(tmp_path)
    h.start()
    (base,) = code_events(s)
    assert base["action"] == "base" and base["base_commit"] == head and base["head"] != head
    assert base["dirty_files"] == [TOY] and base["untracked_py"] == ["notes.py"]
    assert "edited by the user" in git(repo, "show", f"{base['head']}:{TOY}")
    assert git(repo, "log", "-1", "--format=%s", base["head"]).startswith("[Study base] uncommitted changes")
    assert git(repo, "rev-parse", "explore/s") == base["head"] == h.head()
    code_dir, commit = h(proposal(None), s.view())  # a config-only node runs the base, from its export
    assert commit == base["head"] and (Path(code_dir) / TOY).read_text().startswith('MARKER = "edited')
    assert not (Path(code_dir) / "notes.py").exists()
    after = {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in (TOY, "notes.py", ".git/index")}
    assert after == before and git(repo, "status", "--porcelain") == status
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "symbolic-ref", "--short", "HEAD") == "main"


def test_resume_drops_a_commit_the_journal_does_not_vouch_for(tmp_path):
    repo, s, h = make(tmp_path, smoke={"train": False, "overrides": ["train.total_steps=10"]})
    h.start()
    base = h.head()
    # the agent died right after committing (before journaling it)
    (h.work / TOY).write_text('MARKER = "unrecorded"\nMAX_STEPS = 1\n')
    git(h.work, "commit", "-qam", "unrecorded")
    (h.work / "stray.py").write_text("x = 1\n")  # and a half-applied change in the worktree
    h2 = handler(repo, s, smoke={"train": False, "overrides": ["train.total_steps=10"]})
    h2.start()
    reset = code_events(s)[-1]
    assert reset["action"] == "reset" and reset["to"] == base and reset["rollback"] == "reset"
    assert h2.head() == base and gitops.is_clean(h2.work)
    # a commit that was journaled but that no planned node uses (died between the two) is dropped too
    _, c = h2(proposal(diff(repo, '"base"', '"kept?"')), at_iteration_5(s))
    assert c == h2.head() != base and code_events(s)[-1]["action"] == "committed"
    handler(repo, s, smoke={"train": False, "overrides": ["train.total_steps=10"]}).start()
    assert code_events(s)[-1]["action"] == "reset" and gitops.head(h2.work) == base


def test_rules_one_change_per_round_none_in_the_first_four_iterations(tmp_path):
    repo, s, h = make(tmp_path, n_nodes=3, smoke={"train": False, "overrides": ["train.total_steps=10"]})
    with pytest.raises(Rejection, match="first 4 iterations of a block .this is iteration 4"):
        h(proposal(diff(repo, '"base"', '"x"'), parent=3), s.view())
    s.add(3, r2=0.95)
    view = s.view()
    h(proposal(None), view)                      # slot 0: config only, pinned to the round's head
    _, c1 = h(proposal(diff(repo, '"base"', '"x"')), view)
    with pytest.raises(Rejection, match="one code modification per round"):
        h(proposal(diff(repo, "1000000", "7")), view)
    assert h.head() == c1 and gitops.is_clean(h.work)
    code_dir, c0 = h(proposal(None), view)       # a sibling of this round still gets the pre-change code
    assert c0 != c1 and '"base"' in (Path(code_dir) / TOY).read_text()
    rejected = [e for e in code_events(s) if e["action"] == "rejected"]
    assert [e["stage"] for e in rejected] == ["rules", "rules"] and rejected[0]["diff_sha256"]


def test_symlinks_and_unclean_diffs_are_refused_and_nothing_moves(tmp_path):
    repo = tmp_path / "repo"
    write_toy_repo(repo)
    (repo / "mpm_inr" / "models" / "alias.py").symlink_to("../training/run.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a symlink inside the allow-list")
    _, s, h = make(tmp_path, smoke={"train": False, "overrides": ["train.total_steps=10"]})
    h.start()
    head = h.head()
    view = at_iteration_5(s)
    link = ("diff --git a/mpm_inr/models/alias.py b/mpm_inr/models/alias.py\n--- a/mpm_inr/models/alias.py\n"
            "+++ b/mpm_inr/models/alias.py\n@@ -1 +1 @@\n-../training/run.py\n\\ No newline at end of file\n"
            "+../../agent/loop/explorer.py\n\\ No newline at end of file\n")
    with pytest.raises(Rejection, match="symbolic link"):
        h(proposal(link), view)
    with pytest.raises(Rejection, match="does not apply cleanly"):
        h(proposal(diff(repo, '"base"', '"x"').replace('"base"', '"other"')), view)
    assert h.head() == head and gitops.is_clean(h.work) and not (h.smoke_dir).exists()


def test_configuration_errors_are_one_line_and_early(tmp_path):
    repo, s, _ = make(tmp_path)
    git(repo, "branch", "explore/s")
    with pytest.raises(StudyError, match="branch explore/s already exists"):
        handler(repo, s)  # refused before the study journals anything
    with pytest.raises(ConfigError, match="root of a git repository"):
        handler(repo / "mpm_inr", s)
    with pytest.raises(ConfigError, match="smoke.overrides do not compose"):
        handler(repo, s, smoke={"overrides": ["no_such_group=x"]})


def test_smoke_test_stops_a_change_that_hangs(tmp_path):
    work = tmp_path / "w"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "slow.py").write_text("while True:\n    pass\n")
    t0 = time.time()
    res = run_smoke(work, ["pkg/slow.py"], None, log_dir=tmp_path / "log", timeout_s=1.5)
    assert not res.ok and res.stage == "import" and "timed out after 1.5 s" in res.reason
    assert time.time() - t0 < 15
    (work / "pkg" / "slow.py").write_text("X = 1\n")
    assert run_smoke(work, ["pkg/slow.py"], None, log_dir=tmp_path / "log2", timeout_s=30).ok


def test_the_sandbox_confines_the_studys_code_and_opting_out_is_explicit(tmp_path):
    repo, s, h = make(tmp_path, smoke={"train": False, "overrides": ["train.total_steps=10"]})
    h.start()
    code_dir, _ = h(proposal(None), s.view())   # a node's export of the branch
    for confined in (h.work, Path(code_dir)):
        cmd = h.confine(confined, [])(["python", "train.py"], tmp_path / "run")
        assert Path(cmd[0]).name == "bwrap" and cmd[-2:] == ["python", "train.py"]
        assert cmd[cmd.index(str(Path(confined).resolve())) - 1] == "--ro-bind-try"
        assert cmd[cmd.index(str(tmp_path / "run")) - 1] == "--bind"
    assert h.confine(repo, []) is None           # the user's own code dir is not the study's (modified) code
    lines: list[str] = []
    cfg = {**s.cfg, "codemod": {"enabled": True, "sandbox": False, "smoke": {"overrides": ["train.total_steps=10"]}}}
    h2 = CodeModHandler(cfg, study_dir=s.dir, code_dir=repo, emit=s.journal.append, events=s.journal.read,
                        state=s.state, out=lines.append)
    assert h2.sandbox is None and h2.confine(h2.work, []) is None
    assert lines == ["code: warning: codemod.sandbox=false: modified code runs unconfined, with your rights (unsafe)"]
    slurm = {**s.cfg, "launcher": {"name": "submitit_slurm", "params": {}},
             "codemod": {"enabled": True, "smoke": {"overrides": ["train.total_steps=10"]}}}
    with pytest.raises(ConfigError, match="cannot confine jobs that SLURM runs on other nodes"):
        CodeModHandler(slurm, study_dir=s.dir, code_dir=repo, emit=s.journal.append, events=s.journal.read,
                       state=s.state, out=lines.append)
