"""`mpm_inr.cli.run_command`: a plain run composes conf/ once and must leave what Hydra's own main leaves (the
.hydra files, the callbacks' calls, the exit code and the error report of a failing job); a sweep, a Hydra flag or
a config that sets hydra.mode goes through Hydra's main. A tiny Hydra app in tmp_path, run as a command both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

APP = '''
import os, sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from mpm_inr.cli import run_command
from mpm_inr.errors import UserError


@hydra.main(version_base="1.3", config_path="conf", config_name="app")
def main(cfg):
    if cfg.crash:
        raise RuntimeError("the job crashed")
    Path(HydraConfig.get().runtime.output_dir, "job.txt").write_text(f"{cfg.colour.name} {cfg.size}")
    return 0.5  # what a sweeper would read; the command exits 0 all the same


def validate(cfg):
    if cfg["size"] < 0:
        raise UserError(f"size={cfg['size']} is out of range: use a size >= 0")


if __name__ == "__main__":
    if os.environ.get("APP_WAY") == "hydra":
        sys.exit(main())
    sys.exit(run_command(main, "conf", "app", validate=validate))
'''

CALLBACK = '''
from pathlib import Path

from hydra.experimental.callback import Callback


class Recorder(Callback):
    """Writes each call to calls.txt in the directory the command was started in."""

    def _say(self, what):
        with open("calls.txt", "a") as fh:
            fh.write(what + "\\n")

    def on_run_start(self, config, **kwargs):
        self._say(f"run_start {config.hydra.mode}")

    def on_job_start(self, config, **kwargs):
        self._say("job_start")

    def on_job_end(self, config, job_return, **kwargs):
        self._say(f"job_end {job_return.status}")

    def on_run_end(self, config, **kwargs):
        self._say("run_end")

    def on_multirun_start(self, config, **kwargs):
        self._say("multirun_start")
'''

CONF = '''
defaults:
  - _self_
  - colour: red
size: 3
crash: false
hydra:
  callbacks:
    recorder:
      _target_: recorder.Recorder
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "conf" / "colour").mkdir(parents=True)
    (tmp_path / "conf" / "app.yaml").write_text(CONF)
    for name in ("red", "blue"):
        (tmp_path / "conf" / "colour" / f"{name}.yaml").write_text(f"name: {name}\n")
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "recorder.py").write_text(CALLBACK)
    return tmp_path


def _run(app: Path, way: str, *args: str) -> subprocess.CompletedProcess:
    cwd = app / way
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "APP_WAY": way, "PYTHONPATH": f"{REPO}{os.pathsep}{app}", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(app / "app.py"), *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=120)


def _hydra_files(run_dir: Path, way: str) -> dict[str, str]:
    """The .hydra files with the command's own directory (cwd and run dir) written as <way>."""
    return {f.name: f.read_text().replace(str(run_dir.parent), "<app>/<way>")
            for f in sorted((run_dir / ".hydra").iterdir())}


def test_a_plain_run_leaves_what_hydras_main_leaves(app: Path) -> None:
    args = ("colour=blue", "size=7", "hydra.run.dir=out")
    ours, theirs = _run(app, "ours", *args), _run(app, "hydra", *args)
    assert (ours.returncode, theirs.returncode) == (0, 0), ours.stderr + theirs.stderr
    ours_dir, theirs_dir = app / "ours" / "out", app / "hydra" / "out"
    assert (ours_dir / "job.txt").read_text() == (theirs_dir / "job.txt").read_text() == "blue 7"
    ours_files, theirs_files = _hydra_files(ours_dir, "ours"), _hydra_files(theirs_dir, "hydra")
    assert set(ours_files) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert ours_files == theirs_files
    assert "- hydra.mode=RUN" in ours_files["hydra.yaml"] and "name: app" in ours_files["hydra.yaml"]
    calls = (app / "ours" / "calls.txt").read_text()
    assert calls == (app / "hydra" / "calls.txt").read_text() == "run_start RunMode.RUN\njob_start\njob_end JobStatus.COMPLETED\nrun_end\n"
    assert (ours_dir / "app.log").exists() and (theirs_dir / "app.log").exists()  # Hydra's job logging


def test_a_failing_job_is_reported_as_hydras_main_reports_it(app: Path) -> None:
    ours, theirs = _run(app, "ours", "crash=true", "hydra.run.dir=out"), _run(app, "hydra", "crash=true",
                                                                            "hydra.run.dir=out")
    assert ours.returncode == theirs.returncode == 1
    for done in (ours, theirs):
        assert "RuntimeError: the job crashed" in done.stderr
        assert "Set the environment variable HYDRA_FULL_ERROR=1" in done.stderr
    assert (app / "ours" / "calls.txt").read_text() == (app / "hydra" / "calls.txt").read_text()


def test_a_mistake_is_one_line_before_any_run_directory(app: Path) -> None:
    for args, fix in ((["size=-1"], "size=-1 is out of range"), (["colour=gren"], "valid: blue, red"),
                      (["sise=2"], "did you mean size"), (["+colour.hue=3"], "adds a key the app config does not have")):
        done = _run(app, "ours", *args, "hydra.run.dir=out")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fix in lines[0], (
            args, done.stderr)
        assert not (app / "ours" / "out").exists() and not (app / "ours" / "calls.txt").exists()


def test_a_config_that_sets_hydra_mode_goes_through_hydras_main(app: Path) -> None:
    done = _run(app, "ours", "hydra.mode=MULTIRUN", "size=5", "hydra.sweep.dir=sweep")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (app / "ours" / "sweep").iterdir() if p.is_dir()] == ["0"]
    assert (app / "ours" / "sweep" / "0" / "job.txt").read_text() == "red 5"
    assert (app / "ours" / "calls.txt").read_text().startswith("multirun_start\n")


def test_a_multirun_goes_through_hydras_main(app: Path) -> None:
    done = _run(app, "ours", "--multirun", "colour=red,blue", "hydra.sweep.dir=sweep")
    assert done.returncode == 0, done.stderr
    assert sorted((app / "ours" / "sweep" / d / "job.txt").read_text() for d in ("0", "1")) == ["blue 3", "red 3"]
