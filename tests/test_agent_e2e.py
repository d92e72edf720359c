"""The agent driving the real `train.py` on discs_small with tiny step counts (slow: each run is a fresh process).

- 2 blocks x 3 iterations, basic launcher;
- one round of batch=2 under joblib and one under submitit_local (submitit's own executor, the SLURM code path).
The job-override composition for the real trainer's W&B logger (group + tags) is checked without training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from fakeapp import SyntheticStudy

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.study.journal import Journal
from agent.study.state import fold

REPO = Path(__file__).resolve().parents[1]
TINY = ("train_overrides=[scenario=discs_small,train.total_steps=20,train.steps_per_call=10,trainer=cpu,"
        "logger=none,outputs.checkpoint=false,train.eval_every=10]")
pytestmark = pytest.mark.filterwarnings("ignore")


def explore(tmp_path: Path, *extra: str) -> Path:
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = compose_explore([f"root={tmp_path}", "name=e2e", "n_training_frames=48", TINY,
                           "limits={train.total_steps:[10,40],model.hidden_dim:[64,128]}", "timeout.per_run_s=400",
                           *extra])
    cfg["code_dir"] = str(REPO)
    assert Explorer(cfg, out=print).run() == 0
    return tmp_path / "e2e"


def check_runs(d: Path, n: int) -> None:
    st = fold(Journal(d).read())
    nodes = st.launched_nodes()
    assert len(nodes) == n
    for node in nodes:
        assert node.status == "ok", (node.node_id, node.status, node.error)
        m = node.metrics
        assert math.isfinite(m["final_r2"]) and m["n_training_frames"] == 48
        assert m["study"]["node_id"] == node.node_id and m["study"]["name"] == "e2e"
        assert m["study"]["block"] == node.block and m["study"]["strategy"] == node.strategy
        assert (Path(node.run_dir) / "metrics.json").exists()
        if node.parent_id is not None:
            assert st.nodes[node.parent_id].block == node.block and node.parent_id < node.node_id
    for f in ("e2e_analysis.md", "e2e_memory.md", "ucb_scores.txt", "e2e_instructions.md"):
        assert (d / f).stat().st_size > 0


@pytest.mark.slow
def test_two_blocks_of_three_with_the_real_trainer(tmp_path):
    d = explore(tmp_path, "n_blocks=2", "n_iter_block=3", "launcher=basic")
    check_runs(d, 6)
    st = fold(Journal(d).read())
    assert [b.field for b in st.blocks] == ["Jp", "F"]
    assert all(n.metrics["field"] == b.field for b in st.blocks for n in st.block_nodes(b.block))
    assert "Visual: " in (d / "e2e_analysis.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_batch_round_with_parallel_launchers(tmp_path, launcher):
    d = explore(tmp_path, "n_blocks=1", "n_iter_block=2", "batch=2", f"launcher={launcher}")
    check_runs(d, 2)
    st = fold(Journal(d).read())
    assert len(st.launches) == 1 and st.launches[0]["launcher"] == launcher
    assert sorted(st.launches[0]["node_ids"]) == [1, 2]


def test_job_overrides_group_and_tag_wandb_runs(tmp_path):
    """With the trainer's default logger (wandb), every job gets the study's group and block/strategy/inr tags."""
    cfg = compose_explore([f"root={tmp_path}", "name=grp", "train_overrides=[scenario=discs_small]"])
    ex = Explorer(cfg, out=lambda s: None)
    s = SyntheticStudy(tmp_path / "grp", name="grp")
    nid = s.add(None, {"inr_type": "siren_txy"}, strategy="baseline")
    node = s.state().nodes[nid]
    ov = ex.rounds.job_overrides(node, s.state(), REPO)
    assert "logger.group=grp" in ov and "logger.tags=[block_1,baseline,siren_txy]" in ov
    assert {"study.name=grp", "study.node_id=1", "study.parent_id=null", "study.strategy=baseline"} <= set(ov)
    assert ov[0] == "scenario=discs_small" and any(o.startswith("data.root=/") for o in ov)
    assert not any("ANTHROPIC" in o for o in ov)
    assert not any(o.startswith("trainer.cpu_threads=") for o in ov)  # no share given: the trainer's auto
    assert ex.rounds.job_overrides(node, s.state(), REPO, cpu_threads=3)[-1] == "trainer.cpu_threads=3"


def test_job_overrides_keep_the_users_cpu_threads(tmp_path):
    """A study that sets trainer.cpu_threads itself keeps it: the round's share is not added beside it."""
    cfg = compose_explore([f"root={tmp_path}", "name=thr",
                           "train_overrides=[scenario=discs_small,trainer.cpu_threads=1]"])
    ex = Explorer(cfg, out=lambda s: None)
    s = SyntheticStudy(tmp_path / "thr", name="thr")
    nid = s.add(None, {"inr_type": "siren_txy"}, strategy="baseline")
    node = s.state().nodes[nid]
    ov = ex.rounds.job_overrides(node, s.state(), REPO, cpu_threads=3)
    assert [o for o in ov if o.startswith("trainer.cpu_threads=")] == ["trainer.cpu_threads=1"]
