"""What a user is likely to get wrong on the command line, one row per mistake: `python train.py ...`,
`python generate.py ...` and `python -m agent ...` must exit non-zero with exactly one stderr line
`error: ...` that names the fix, and no Python traceback.

Speed: a fresh interpreter per row would pay the torch/Hydra imports each time (3-5 s). Instead one driver
interpreter per tool runs its rows one after the other exactly as the command line would (`runpy` of train.py /
generate.py / `-m agent` with the row's argv, env and working directory; SystemExit -> exit code, an uncaught
exception -> the interpreter's traceback and exit code 1), and the three drivers run at the same time. Each
row is then its own test with one assertion.

A row that fails because of a known gap gets `bug="<file and fix>"`: a strict xfail, which turns into a
failure as soon as the fix lands, so the marker gets removed (every row passes today). Rows already covered elsewhere are not repeated here:
tests/test_agent_explore.py (unknown policy/launcher, missing name, bad name, field, n_blocks, misspelt
explore option, rejected start config, render of a non-study, unknown command, policy=claude without a key,
locked study), tests/test_generate_cli.py (seed=abc, unwritable root, unknown scenario's choices),
tests/test_train_run.py (n_training_frames beyond the dataset).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-ant-cli-0123456789abcdefTYPED"

DRIVER = r'''
"""Run CLI invocations in-process, one after the other, as `python <tool> <args>` would."""
import contextlib, io, json, os, runpy, sys, traceback

rows, out_path = json.loads(open(sys.argv[1]).read()), sys.argv[2]
results = {}
base_env = dict(os.environ)
for row in rows:
    os.environ.clear()
    os.environ.update(base_env)
    for k in row["unset"]:
        os.environ.pop(k, None)
    os.environ.update(row["env"])
    os.makedirs(row["cwd"], exist_ok=True)
    os.chdir(row["cwd"])
    err, out, rc = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if row["tool"] == "agent":
                sys.argv = ["agent"] + row["args"]
                runpy.run_module("agent", run_name="__main__", alter_sys=True)
            else:
                sys.argv = [row["tool"]] + row["args"]
                runpy.run_path(row["tool"], run_name="__main__")
        except SystemExit as e:
            if e.code is None:
                rc = 0
            elif isinstance(e.code, int):
                rc = e.code
            else:
                print(e.code, file=sys.stderr)
                rc = 1
        except BaseException:
            traceback.print_exc()  # what the interpreter prints for an uncaught exception
            rc = 1
    try:
        from hydra.core.global_hydra import GlobalHydra
        GlobalHydra.instance().clear()
    except ImportError:
        pass
    results[row["id"]] = {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}
    with open(out_path, "w") as fh:  # after every row: a crashed driver still reports what it ran
        json.dump(results, fh)
'''


@dataclass
class Row:
    id: str
    tool: str                   # train | generate | agent
    args: list[str]
    fix: str                    # text the one error line must contain (the fix it names)
    bug: str | None = None      # reason of a strict xfail: where the fix goes
    env: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    forbid: str | None = None   # text that must not appear anywhere in the output
    before_run_dir: bool = False  # the command line alone is wrong: say so before Hydra makes the run directory


ROWS = [
    # --- python train.py
    Row("train: typo in a group option", "train", ["field=Jq"], "Jp"),
    Row("train: misspelt group name", "train", ["inr=siren_t"], "inr_type"),
    Row("train: misspelt key", "train", ["train.totl_steps=100"], "train.total_steps"),
    Row("train: negative learning rate", "train", ["optimizer.lr=-1"], "optimizer.lr=-1 is out of range", before_run_dir=True),
    Row("train: non-integer width", "train", ["model.hidden_dim=12.5"], "must be an integer > 0", before_run_dir=True),
    Row("train: batch larger than the window", "train", ["train.batch_size=500", "data.n_training_frames=48"],
        "cannot exceed data.n_training_frames=48", before_run_dir=True),
    Row("train: hash table out of range", "train", ["inr_type=ngp", "model.log2_table_size=30"], "[8, 24]", before_run_dir=True),
    Row("train: solved codes with a loss they cannot solve", "train", ["field=S", "train.loss=huber"],
        "otherwise set model.codes=learned", before_run_dir=True),
    Row("train: trainer=gpu without CUDA", "train", ["trainer=gpu"], "use trainer=cpu"),
    Row("train: zero CPU threads", "train", ["trainer.cpu_threads=0"],
        "trainer.cpu_threads=0 is out of range: use auto, null or an integer in [1, ", before_run_dir=True),
    Row("train: CPU threads not a number", "train", ["trainer.cpu_threads=many"],
        "trainer.cpu_threads='many' is out of range", before_run_dir=True),
    Row("train: missing dataset, generation disabled", "train", ["data.root={tmp}/empty"],
        "python generate.py scenario=discs_small seed=0"),
    Row("train: unwritable data root", "train", ["data.root={tmp}/afile/data", "data.generate_if_missing=true"],
        "data.root=<dir>"),
    Row("train: bad dataset seed", "train", ["data.seed=abc", "data.generate_if_missing=true"],
        "seed must be a non-negative integer"),
    Row("train: bad training seed", "train", ["seed=abc"], "seed must be a non-negative integer", before_run_dir=True),
    Row("train: window length not a number", "train", ["data.n_training_frames=abc"],
        "data.n_training_frames must be an integer, got 'abc'", before_run_dir=True),
    Row("train: negative training seed", "train", ["seed=-1"], "seed must be a non-negative integer", before_run_dir=True),
    Row("train: unwritable run dir", "train", ["hydra.run.dir={tmp}/afile/run"], "hydra.run.dir"),
    # --- python generate.py
    Row("generate: typo in the scenario", "generate", ["scenario=discs_smal"], "discs_small"),
    Row("generate: misspelt key", "generate", ["sed=3"], "seed"),
    Row("generate: negative seed", "generate", ["seed=-1"], "seed must be a non-negative integer", before_run_dir=True),
    Row("generate: zero frames", "generate", ["scenario.n_frames=0"], "scenario.n_frames must be >= 1", before_run_dir=True),
    Row("generate: grid too small", "generate", ["scenario.physics.n_grid=1"], "n_grid must be >= 8", before_run_dir=True),
    Row("generate: device=cuda without CUDA", "generate", ["device=cuda"], "use device=cpu"),
    Row("generate: unwritable run dir", "generate", ["hydra.run.dir={tmp}/afile/g"], "hydra.run.dir"),
    # --- python -m agent
    Row("agent: unwritable study root", "agent", ["explore", "name=x", "root={tmp}/afile/studies"],
        "root=<a writable directory>"),
    Row("agent: bad policy seed", "agent", ["explore", "name=x", "seed=abc"], "seed"),
    Row("agent: code_dir without train.py", "agent", ["explore", "name=x", "code_dir={tmp}/empty"],
        "has no train.py"),
    Row("agent: negative run time limit", "agent", ["explore", "name=x", "timeout.per_run_s=-5"],
        "timeout.per_run_s must be > 0"),
    Row("agent: frames off the progression", "agent", ["explore", "name=x", "n_training_frames=77"],
        "must be one of 48, 100, 200"),
    Row("agent: non-numeric batch", "agent", ["explore", "name=x", "batch=two"], "must be a positive integer"),
    Row("agent: ucb_c out of range", "agent", ["explore", "name=x", "ucb_c=50"], "(0, 10]"),
    Row("agent: limits outside the allow-list", "agent", ["explore", "name=x", "limits={optimizer.lr:[1,2]}"],
        "range for 'optimizer.lr' is empty"),
    Row("agent: shell syntax in an option", "agent", ["explore", "name=x", "launcher.params.n_jobs=a;b"],
        "bad explore option"),
    Row("agent: unknown trainer option in train_overrides", "agent",
        ["explore", "name=x", "train_overrides=[optimizer=sgd]"], "optimizer=sgd is not an option of the trainer's "
        "'optimizer' group; choose one of adam, adamw"),
    Row("agent: bad group option hidden under the study's own key", "agent",
        ["explore", "name=x", "train_overrides=[scenario=discs_small,field=Q]"],
        "field=Q is not an option of the trainer's 'field' group; choose one of C, F, Jp, S"),
    Row("agent: train_overrides sets what the study sets", "agent",
        ["explore", "name=x", "train_overrides=[data.n_training_frames=200]"],
        "set it with the explore option n_training_frames=... instead"),
    Row("agent: negative dollar budget", "agent", ["explore", "name=x", "budget.max_usd=-1"],
        "budget.max_usd=-1: must be a positive number of dollars"),
    Row("agent: NaN dollar budget", "agent", ["explore", "name=x", "budget.max_usd=nan"],
        "budget.max_usd=nan: must be a positive number"),
    Row("agent: zero iteration budget", "agent", ["explore", "name=x", "budget.max_iterations=0"],
        "budget.max_iterations=0: must be a positive integer"),
    Row("agent: fractional iteration budget", "agent", ["explore", "name=x", "budget.max_iterations=2.5"],
        "budget.max_iterations=2.5: must be a positive integer"),
    Row("agent: replay without transcripts", "agent", ["explore", "name=x", "policy=replay"],
        "transcript directory"),
    Row("agent: resume with another n_iter_block", "agent", ["explore", "name=syn", "n_iter_block=5"],
        "pass n_iter_block=12 to resume it"),
    Row("agent: API key typed into a wrong option", "agent", ["explore", "name=x", "policy=claude",
                                                              f"policy.api_kee={KEY}"], "[REDACTED]",
        env={"ANTHROPIC_API_KEY": KEY}, forbid=KEY),
    Row("agent: render without a directory", "agent", ["render"], "usage: python -m agent render"),
    Row("agent: report of a missing study", "agent", ["report", "{tmp}/nowhere"], "not a study directory"),
    Row("agent: predict-time with an unknown flag", "agent", ["predict-time", "--nope"],
        "unrecognized arguments: --nope"),
    # --- issue #20 items 4-5 (branch fix-badinput): a +key the config does not have, and bad data in the window
    Row("train: +key adding a misspelt key", "train", ["+train.totl_steps=5"], "did you mean train.total_steps",
        before_run_dir=True),
    Row("train: +key under model the config does not have", "train", ["+model.foo=1"],
        "+model.foo adds a key the train config does not have", before_run_dir=True),
    Row("train: ++key forcing a misspelt key in", "train", ["++data.seeed=1"], "did you mean data.seed",
        before_run_dir=True),
    Row("train: NaN in the dataset's training window", "train", ["data.root={nan_data}"],
        "holds nan at frame 500, particle 7, component 0"),
]


def _expand(row: Row, tmp: Path, data: Path) -> dict:
    slug = "".join(c if c.isalnum() else "_" for c in row.id)
    sub = {"{tmp}": str(tmp), "{data}": str(data), "{nan_data}": str(tmp / "nan_data")}
    args = []
    for a in row.args:
        for k, v in sub.items():
            a = a.replace(k, v)
        args.append(a)
    given = {a.split("=", 1)[0] for a in args}
    if row.tool == "train":
        base = ["scenario=discs_small", "trainer=cpu", "logger=none", f"data.root={data}", "train.total_steps=10",
                "outputs.plot=false", "outputs.checkpoint=false", "data.generate_if_missing=false",
                f"hydra.run.dir={tmp / 'runs' / slug}"]
        tool = str(REPO / "train.py")
    elif row.tool == "generate":
        base = ["scenario=discs_small", "scenario.n_frames=5", f"root={tmp / 'gen'}", "progress=false",
                f"hydra.run.dir={tmp / 'gruns' / slug}"]
        tool = str(REPO / "generate.py")
    else:
        base = [f"root={tmp / 'studies'}"] if args[:1] == ["explore"] else []
        tool = "agent"
    # a row's own key replaces the base one (Hydra refuses duplicates); a misspelt key leaves it in place
    base = [b for b in base if b.split("=", 1)[0] not in given]
    args = args + base if row.tool == "agent" else base + args
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    return {"id": row.id, "tool": tool, "args": args, "env": row.env, "run_dir": run_dir,
            "unset": ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "HYDRA_FULL_ERROR", *row.unset],
            "cwd": str(tmp / "cwd")}


@pytest.fixture(scope="module")
def results(tmp_path_factory, data_root) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "afile").write_text("a file where a directory is expected")
    (tmp / "empty").mkdir()
    from fakeapp import SyntheticStudy

    SyntheticStudy(tmp / "studies" / "syn", name="syn", n_iter_block=12)
    _plant_nan(data_root, tmp / "nan_data")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    procs, expanded = [], {r.id: _expand(r, tmp, data_root) for r in ROWS}
    for tool in ("train", "generate", "agent"):
        rows = [expanded[r.id] for r in ROWS if r.tool == tool]
        spec, out = tmp / f"{tool}_rows.json", tmp / f"{tool}_results.json"
        spec.write_text(json.dumps(rows))
        procs.append((subprocess.Popen([sys.executable, "-c", DRIVER, str(spec), str(out)], cwd=tmp, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out))
    merged: dict[str, dict] = {}
    for p, out in procs:
        log = p.communicate(timeout=600)[0]
        if out.exists():
            merged.update(json.loads(out.read_text()))
        merged.setdefault("_driver_logs", {})[str(out.name)] = log.decode(errors="replace")[-2000:]
    for rid, row in expanded.items():
        if rid in merged:
            merged[rid]["run_dir_made"] = row["run_dir"] is not None and Path(row["run_dir"]).exists()
    return merged


def _plant_nan(data_root: Path, root: Path) -> None:
    """A copy of the test dataset with one NaN in Jp (the default field) inside the default 100-frame window."""
    [src] = [d for d in data_root.iterdir() if d.is_dir()]
    shutil.copytree(src, root / src.name)
    jp = np.load(root / src.name / "Jp.npy", mmap_mode="r+")
    jp[500, 7] = np.nan
    jp.flush()
    del jp


def violations(row: Row, res: dict | None) -> list[str]:
    """Everything wrong with one row's outcome (empty: the user got what they need)."""
    if res is None:
        return ["the driver did not run this row (see _driver_logs)"]
    err = res["stderr"]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    out = []
    if res["rc"] == 0:
        out.append("exit code 0")
    if "Traceback (most recent call last)" in err + res["stdout"]:
        out.append("a Python traceback")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        out.append(f"{len(lines)} stderr lines instead of one 'error: ...' line")
    elif row.fix not in lines[0]:
        out.append(f"the error does not name the fix {row.fix!r}")
    if row.before_run_dir and res.get("run_dir_made"):
        out.append("the run directory was made before the error")
    if row.forbid and row.forbid in err + res["stdout"]:
        out.append(f"the output contains {row.forbid!r}")
    if out:
        out.append(f"stderr: {err.strip()[-600:]!r}")
    return out


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.bug)]
                                              if r.bug else []) for r in ROWS])
def test_bad_invocation(row: Row, results: dict) -> None:
    assert violations(row, results.get(row.id)) == []
