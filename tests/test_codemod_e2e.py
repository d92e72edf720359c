"""Code modifications with the real trainer on a local clone of this repository (slow: real training runs).

- the heuristic, stuck, proposes its first library change; the real smoke test (import + 20 steps on discs_small)
  passes; the change is committed on `explore/<name>` of the clone and its run, with the parent's config and
  seed, gives a different R² (the code is what changed); it is kept or reverted by the R² rule, and the next
  config-only run uses the branch head;
- every library entry passes the real smoke test against the current files, inside the sandbox
  (agent.codemod.sandbox) the handler runs it in: a benign change still trains there.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent.__main__ import compose_explore
from agent.codemod.modifications import LIBRARY
from agent.codemod.sandbox import probe
from agent.codemod.smoke import run_smoke
from agent.loop.explorer import Explorer
from agent.study.journal import Journal
from agent.study.state import fold

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.bwrap, pytest.mark.filterwarnings("ignore")]


def clone(tmp_path: Path) -> Path:
    dst = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--local", str(REPO), str(dst)], check=True, capture_output=True)
    return dst


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_heuristic_library_change_with_the_real_trainer(tmp_path, data_root):
    repo = clone(tmp_path)
    status, head = git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")
    # 100 steps: the warm-up spans 2% of the steps, so with fewer than 100 it would be a no-op
    tiny = (f"train_overrides=[scenario=discs_small,data.root={data_root},train.total_steps=100,"
            f"train.steps_per_call=10,trainer=cpu,logger=none,outputs.checkpoint=false,outputs.plot=false,"
            f"train.eval_every=50]")
    cfg = compose_explore([f"code_dir={repo}", f"root={tmp_path / 'studies'}", "name=cm", "n_training_frames=48",
                           tiny, "n_blocks=1", "n_iter_block=6", "timeout.per_run_s=400",
                           "limits={train.total_steps:[100,400],model.hidden_dim:[32,128]}", "start={model.hidden_dim:64}",
                           "codemod.enabled=true", "codemod.heuristic.stuck_r2=1.0", "codemod.heuristic.min_gain=1.0",
                           "codemod.smoke.timeout_s=500"])
    cfg["codemod"]["smoke"]["overrides"] += [f"data.root={data_root}"]
    assert Explorer(cfg, out=print).run() == 0
    d = tmp_path / "studies" / "cm"
    events = Journal(d).read()
    st = fold(events)
    nodes = st.launched_nodes()
    assert len(nodes) == 6 and all(n.status == "ok" for n in nodes), [(n.status, n.error) for n in nodes]
    for n in nodes:  # every run of the study's code was confined (agent.codemod.sandbox), and still trained
        assert Path((Path(n.run_dir).parent / "multirun.log").read_text().split(" ", 2)[1]).name == "bwrap"
    code = [e for e in events if e["event"] == "code"]
    committed = [e for e in code if e["action"] == "committed"]
    assert len(committed) == 1 and committed[0]["iteration"] == 5
    n5, n6 = nodes[4], nodes[5]
    assert n5.strategy == "code-modification" and n5.mutation.startswith("[code] lr_warmup")
    assert n5.code_commit == committed[0]["commit"] and "warmup" in git(repo, "show", n5.code_commit)
    parent = st.nodes[n5.parent_id]
    assert n5.overrides == parent.overrides and math.isfinite(n5.r2)
    assert n5.r2 != parent.r2  # same config and seed, different code: the change is what the run measured
    verdict = [e for e in code if e.get("node_id") == n5.node_id]
    assert len(verdict) == 1 and verdict[0]["action"] == ("reverted" if n5.r2 < parent.r2 else "kept")
    expected = verdict[0]["revert_commit"] if verdict[0]["action"] == "reverted" else n5.code_commit
    assert n6.code_diff is None and n6.code_commit == expected
    assert git(repo, "rev-parse", "explore/cm").strip() == expected
    assert git(repo, "status", "--porcelain") == status and git(repo, "rev-parse", "HEAD") == head


@pytest.mark.parametrize("mid", sorted(LIBRARY))
def test_every_library_entry_passes_the_real_smoke_test(mid, tmp_path, data_root):
    repo = clone(tmp_path)
    mod = LIBRARY[mid]
    diff = mod.diff(repo)
    assert diff is not None
    subprocess.run(["git", "apply", "-"], cwd=repo, input=diff, text=True, check=True)
    overrides = ["scenario=discs_small", f"data.root={data_root}", "trainer=cpu", "logger=none",
                 "data.n_training_frames=48", "train.total_steps=20", "train.steps_per_call=10", "train.eval_every=10",
                 "outputs.plot=false", "outputs.checkpoint=false", "inr_type=siren_txy"]
    box = probe(sys.executable, extra_read=[REPO / "hydra_plugins"])
    res = run_smoke(repo, [mod.path], overrides, log_dir=tmp_path / "smoke", timeout_s=500,
                    confine=lambda cmd, write: box.wrap(cmd, cwd=repo, read=[repo, data_root],
                                                        write=[write] if write else []))
    assert res.ok, (res.stage, res.reason, Path(res.log).read_text()[-2000:])
    assert Path(res.log).read_text().startswith(f"$ {box.bwrap} ")
