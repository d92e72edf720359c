"""`python -m mpm_inr.bench threads`: settings, the busy neighbour, and one real round whose workers pin threads."""

from __future__ import annotations

import json

import pytest

from mpm_inr.bench.__main__ import main
from mpm_inr.bench.threads_bench import (
    ThreadsSettings,
    busy_neighbour,
    distinct_settings,
    markdown,
    run,
    worker_env,
)
from mpm_inr.threads import available_cores


def test_settings_that_give_the_same_thread_count_are_measured_once(monkeypatch):
    assert distinct_settings(["1", "2", "default"], default=2) == ["1", "2"]
    assert distinct_settings(["1", "2", "default"], default=8) == ["1", "2", "default"]
    monkeypatch.setattr("mpm_inr.threads.AUTO_MAX_THREADS", 1)
    assert distinct_settings(["auto", "1", "default"], default=1) == ["auto"]


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "--threads takes positive integers, auto or default, got 0"),
    (["--threads", "many"], "got many"),
    (["--jobs", "0"], "--jobs takes positive integers"),
    (["--loads", "loud"], "--loads takes idle and/or busy"),
    (["--cap-s", "0"], "--cap-s must be > 0"),
])
def test_cli_rejects_bad_settings(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["threads", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_workers_see_no_thread_variables(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    env = worker_env()
    assert "OMP_NUM_THREADS" not in env and "OPENBLAS_NUM_THREADS" not in env and "PATH" in env


def test_busy_neighbour_burns_every_core_and_is_stopped():
    with busy_neighbour(True) as burners:
        assert len(burners) == available_cores() and all(p.poll() is None for p in burners)
    assert all(p.poll() is not None for p in burners)
    with busy_neighbour(False) as none:
        assert none == []


def test_one_round_records_the_threads_each_worker_trained_with(data_root, tmp_path):
    """A real worker (train.py's path, no thread variables, so torch's own default would be one per core): the run
    reports the one thread it was asked for."""
    threads = "1"
    s = ThreadsSettings(threads=[threads], jobs=[1], loads=["idle"], fields=["Jp"], frames=20, root=str(data_root),
                        cap_s=60.0)
    results = run(s, str(tmp_path), "python -m mpm_inr.bench threads --test")
    saved = json.loads((tmp_path / "threads_bench.json").read_text())
    (r,) = saved["results"]
    (job,) = r["per_job"]
    (jp,) = job
    assert jp["status"] == "ok" and jp["cpu_threads"] == int(threads) and not jp["capped"]
    assert r["load1_at_start"] >= 0 and r["round_s"] >= jp["training_time_s"] > 0
    table = (tmp_path / "threads_bench.md").read_text()
    assert table == markdown(results)
    assert f"| idle | 1 | {threads} | {threads}/" in table and f"{jp['training_time_s']:.2f}" in table
    assert "`python -m mpm_inr.bench threads --test`" in table and saved["cores"] == available_cores()
