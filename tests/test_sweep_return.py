"""What train.py's task returns to a Hydra sweeper: final_r2, or None for a failed job of a --multirun.

None, not NaN: the Optuna sweeper records a non-numeric return as a failed trial and goes on, while a NaN makes
its `study.tell` raise twice and aborts the whole sweep (the real sweep is tests/faults/test_sweep_faults.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from mpm_inr import cli
from mpm_inr.errors import ConfigError


def _diverged(*_):
    return {"status": "diverged", "error": "non-finite loss at step 7"}


def _user_error(*_):
    raise ConfigError("optimizer.lr=-1 is out of range")


def _crash(*_):
    raise RuntimeError("CUDA out of memory")


@pytest.fixture
def in_hydra(monkeypatch, tmp_path):
    from hydra.core.hydra_config import HydraConfig

    hc = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path)), overrides=SimpleNamespace(task=[]))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hc))

    def run(task, multirun: bool):
        monkeypatch.setattr(cli, "is_multirun", lambda: multirun)
        return cli.run_hydra_task(OmegaConf.create({}), task)

    return run


def _undefined_r2(*_):
    return {"status": "ok", "final_r2": float("nan")}


@pytest.mark.parametrize("task,says", [(_diverged, "error: run diverged"), (_user_error, "error: optimizer.lr"),
                                       (_crash, "error: job failed: RuntimeError"), (_undefined_r2, "")])
def test_a_failed_multirun_job_returns_none(in_hydra, task, says, capsys):
    assert in_hydra(task, multirun=True) is None
    assert capsys.readouterr().err.startswith(says)


def test_a_good_job_returns_its_final_r2(in_hydra):
    ok = lambda *_: {"status": "ok", "final_r2": 0.93}
    assert in_hydra(ok, multirun=True) == 0.93 and in_hydra(ok, multirun=False) == 0.93


def test_a_failed_single_run_exits_non_zero(in_hydra):
    with pytest.raises(SystemExit) as e:
        in_hydra(_diverged, multirun=False)
    assert e.value.code == 1
