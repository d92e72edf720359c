"""Round runner + `mpm_inr_list` sweeper against the fake trainer: statuses, time limits, launchers, secrets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fakeapp import write_fake_app

from agent.runs.runner import MARKER, Job, LauncherSpec, RoundRunner, child_env

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_fake_app(tmp_path_factory.mktemp("fakeapp"))


def run(app, tmp_path, jobs, launcher="basic", per_run_s=20.0, grace_s=30.0, **params):
    runner = RoundRunner(code_dir=app, launcher=LauncherSpec(launcher, params), per_run_s=per_run_s,
                         grace_s=grace_s)
    launches, done = [], []

    def on_launch(info):
        assert not list((tmp_path / "round").glob(f"node_{info['node_ids'][0]:04d}/{MARKER}")) or \
            info["attempt"] > 1  # called before the process starts
        launches.append({**info, "runner": runner})

    res = runner.run(tmp_path / "round", [Job(i, ov, f"node_{i:04d}") for i, ov in jobs],
                     on_launch=on_launch, on_done=done.append)
    return {r.node_id: r for r in res}, launches, done


def test_statuses_of_every_kind_of_job(app, tmp_path):
    res, launches, done = run(app, tmp_path, [
        (1, ["optimizer.lr=0.0002"]), (2, ["optimizer.lr=0.0009"]), (3, ["fake.crash=raise"]),
        (4, ["fake.crash=exit"]), (5, ["fake.no_metrics=true"]), (6, ["fake.crash=kill"]),
        (7, ["model.hidden_dim=512"])])
    assert {i: r.status for i, r in res.items()} == {1: "ok", 2: "diverged", 3: "crashed", 4: "crashed",
                                                    5: "crashed", 6: "crashed", 7: "ok"}
    assert res[1].metrics["final_r2"] > 0.9 and res[1].run_dir.endswith("round/node_0001")
    assert "injected exception" in res[3].error and "exit code 3" in res[4].error
    assert "ended without writing it" in res[5].error and "died" in res[6].error
    # the basic launcher runs all jobs in one process: node 6's SIGKILL took node 7 down before it started,
    # so node 7 ran in a second multirun (it had never started: nothing is duplicated)
    assert [lc["node_ids"] for lc in launches] == [[1, 2, 3, 4, 5, 6, 7], [7]]
    assert sorted(r.node_id for r in done) == list(range(1, 8))
    cmd = launches[0]["command"]
    assert "hydra/sweeper=mpm_inr_list" in cmd and "hydra/launcher=basic" in cmd and "--multirun" in cmd
    jobs = json.loads(Path(launches[0]["jobs_file"]).read_text())
    assert jobs[0] == ["optimizer.lr=0.0002", "hydra.sweep.subdir=node_0001"]


def test_per_job_time_limit_inside_the_job(app, tmp_path):
    t0 = time.time()
    res, _, _ = run(app, tmp_path, [(1, ["fake.crash=hang"]), (2, [])], per_run_s=2.0)
    assert res[1].status == "timeout" and "wall-time limit of 2 s" in res[1].error
    assert res[2].status == "ok"  # the next job still ran
    assert time.time() - t0 < 30


def test_round_deadline_kills_a_job_that_ignores_its_limit(app, tmp_path):
    t0 = time.time()
    res, launches, _ = run(app, tmp_path, [(1, ["fake.crash=hang_hard"])], per_run_s=1.0, grace_s=3.0)
    assert res[1].status == "timeout" and "round deadline" in res[1].error
    assert time.time() - t0 < 30
    pid = launches[0]["runner"].last_pid
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of the round is left running


def test_secrets_are_not_passed_to_training(app, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")
    env = child_env([app], "tok")
    assert "ANTHROPIC_API_KEY" not in env and env["PYTHONPATH"].split(os.pathsep)[0] == str(app.resolve())
    res, launches, _ = run(app, tmp_path, [(1, [])])
    assert res[1].status == "ok"
    assert not any("sk-ant" in c for c in launches[0]["command"])
    for p in (tmp_path / "round").rglob("*"):
        if p.is_file():
            assert b"sk-ant-test-secret" not in p.read_bytes(), p


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_batch_under_parallel_launchers(app, tmp_path, launcher):
    res, launches, _ = run(app, tmp_path, [(1, ["optimizer.lr=0.0002"]), (2, ["fake.crash=raise"]),
                                           (3, ["model.n_layers=4"])], launcher=launcher)
    assert {i: r.status for i, r in res.items()} == {1: "ok", 2: "crashed", 3: "ok"}
    assert f"hydra/launcher={launcher}" in launches[0]["command"]
    if launcher == "submitit_local":
        assert "hydra.launcher.timeout_min=2" in launches[0]["command"]
        assert (tmp_path / "round" / ".submitit").is_dir()


def test_sweeper_plugin_is_discovered():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [c.__name__ for c in Plugins.instance().discover(Sweeper)]
    assert "ListSweeper" in names


@pytest.mark.parametrize("launcher, params, n_jobs, cores, share", [
    ("basic", {}, 4, 16, 8),                                   # one job at a time: all cores, up to auto's cap
    ("basic", {}, 4, 2, 2),
    ("joblib", {}, 4, 16, 4),                                  # n_jobs defaults to the round's size
    ("joblib", {"n_jobs": 2}, 4, 16, 8),
    ("joblib", {"n_jobs": 8}, 3, 16, 5),                       # only 3 jobs exist to run at once
    ("joblib", {"n_jobs": -1}, 32, 16, 1),                     # one job per core
    ("joblib", {}, 6, 4, 1),                                   # more jobs than cores: at least one thread
    ("submitit_local", {"array_parallelism": 2}, 4, 16, 8),
    ("submitit_local", {"array_parallelism": 2, "cpus_per_task": 3}, 4, 16, 3),  # what each task asked for
    ("submitit_slurm", {}, 4, 16, None),                       # other machines: auto reads their allocation
])
def test_each_job_gets_its_share_of_the_cores(launcher, params, n_jobs, cores, share, monkeypatch):
    monkeypatch.setattr("mpm_inr.threads.AUTO_MAX_THREADS", 8)
    monkeypatch.setattr("os.cpu_count", lambda: cores)  # joblib's n_jobs=-1
    assert LauncherSpec(launcher, params).cpu_threads_per_job(n_jobs, cores=cores) == share


def test_a_share_never_exceeds_what_auto_takes_alone(monkeypatch):
    monkeypatch.setattr("mpm_inr.threads.AUTO_MAX_THREADS", 1)
    assert LauncherSpec("basic").cpu_threads_per_job(1, cores=16) == 1
