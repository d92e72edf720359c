"""A study on SLURM through the existing Hydra launcher (hydra-submitit-launcher), without a cluster.

`launcher=submitit_slurm` composes conf/agent/launcher/submitit_slurm.yaml; submitit writes a real sbatch script and
calls `sbatch`, here tests/fakeslurm/sbatch, which records what was submitted and runs the array's tasks on this
machine. The test reads back what a cluster would have been asked for: one array job per round, one task per run,
the resources of the launcher config, and a wall-time limit derived from timeout.per_run_s.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from fakeapp import write_fake_app

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.study.journal import Journal
from agent.study.state import fold

FAKE_SLURM = Path(__file__).resolve().parent / "fakeslurm"
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch) -> Path:
    record = tmp_path / "cluster"
    monkeypatch.setenv("PATH", f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(record))
    return record


def submissions(record: Path) -> list[dict]:
    return [json.loads(line) for line in (record / "submissions.jsonl").read_text().splitlines()]


def test_a_round_is_one_array_job_with_one_task_per_run(tmp_path, fake_cluster):
    app = write_fake_app(tmp_path / "app")
    per_run_s = 300
    cfg = compose_explore([f"code_dir={app}", f"root={tmp_path}", "name=cluster", "n_training_frames=48",
                           "n_blocks=1", "n_iter_block=3", "batch=3", "launcher=submitit_slurm",
                           "launcher.params.partition=gpu", "launcher.params.account=proj42",
                           f"timeout.per_run_s={per_run_s}"])
    assert Explorer(cfg, out=lambda s: None).run() == 0

    st = fold(Journal(tmp_path / "cluster").read())
    nodes = st.launched_nodes()
    assert len(nodes) == 3 and all(n.status == "ok" for n in nodes), [(n.status, n.error) for n in nodes]
    assert len({n.run_dir for n in nodes}) == 3
    assert all((Path(n.run_dir) / "metrics.json").is_file() for n in nodes)
    assert len(st.launches) == 1 and st.launches[0]["launcher"] == "submitit_slurm"

    subs = submissions(fake_cluster)
    assert len(subs) == 1, subs  # the round is one sbatch call: an array job
    sub = subs[0]
    opts = sub["options"]
    assert sub["tasks"] == 3 and opts["array"] == "0-2%3"  # one task per run; array_parallelism = batch
    assert opts["partition"] == "gpu" and opts["account"] == "proj42"
    assert opts["cpus-per-task"] == "4" and opts["gpus-per-node"] == "1" and opts["mem"] == "32GB"
    assert opts["time"] == str(math.ceil(per_run_s / 60) + 1)  # minutes: the per-run limit and one to spare
    jobs = json.loads(Path(st.launches[0]["jobs_file"]).read_text())
    assert len(jobs) == 3  # auto threads on the node read its own allocation: no share is imposed from here
    assert not any(o.startswith("trainer.cpu_threads=") for job in jobs for o in job)
