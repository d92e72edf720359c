"""A run's fixed cost: wall time ÷ fit time of whole `python train.py` commands.

A study is hundreds of short runs, so what a run costs besides its fit counts. Per field, the commands the user
and the agent run:
- `python train.py field=X` with the default outputs (plot, checkpoint, baselines, logger), twice: on a cold
  window (its baseline tables not cached yet: the SZ3/ZFP search runs in this run) and then on the warm one. For
  each, the command's whole wall time (interpreter start and imports included) and the run's in-process
  `wall_time`. The dataset is seen through a private folder of links to its files, so the window starts cold
  whatever the dataset's own cache holds, and nothing is written beside the dataset;
- the same `python train.py field=X`, twice, handed to a warm server (mpm_inr.warm: the imports done once, each
  run a fork of it) started for the bench on a private socket: what a user who keeps one running pays per command;
  then twice more with train.total_steps sized to a one-second fit, the issue's yardstick (a one-second run's
  command within 2x of its fit), and twice more once the window's SZ3/ZFP tables are full;
- one `python train.py --multirun field=X seed=0,1,...` of `jobs` jobs (a study's round: one interpreter runs the
  jobs in turn, so from the 2nd job on the dataset, window and SVD come from the process's caches), with
  `outputs.plot=false` as a study's runs need no figure: per job its `wall_time` ÷ fit, and the command's wall
  time per job.
fit is metrics.json `training_time` (the optimisation loop with its set-up), the time a study pays for; Lightning's
whole fit phase (`timings.fit`: Lightning's set-up and teardown around the loop; W&B's run starts beside it, in a
thread) is shown beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mpm_inr.config.compose import compose_train
from mpm_inr.data.dataset import dataset_dir
from mpm_inr.warm.client import request
from mpm_inr.warm.launch import launch
from mpm_inr.warm.protocol import OFF, SOCKET_ENV

REPO = Path(__file__).resolve().parents[2]


def _environ() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _command(args: list[str], cwd: str, warm_socket: Path | None = None) -> float:
    """Run `python train.py ARGS` from the repository root, in its own interpreter or (warm_socket) handed to that
    warm server; returns its wall seconds (fails loudly). A warm server of the user's never serves it."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          check=False, env={**_environ(), SOCKET_ENV: str(warm_socket) if warm_socket else OFF})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"train.py {' '.join(args)} exited {done.returncode}: {tail}")
    return wall


def _job(run_dir: Path) -> dict[str, Any]:
    m = json.loads((run_dir / "metrics.json").read_text())
    fit = m["training_time"]
    return {"wall_time_s": m["wall_time"], "fit_s": fit, "steps": m["steps"], "lightning_fit_s": m["timings"]["fit"],
            "wall_over_fit": m["wall_time"] / fit, "timings": m["timings"], "final_r2": m["final_r2"],
            "cpu_threads": m["cpu_threads"],
            "baseline_compressions": ((m.get("baselines") or {}).get("cache") or {}).get("compressions")}


def _private_data_root(base: list[str], tmp: Path) -> list[str]:
    """`base` with data.root replaced by a folder of links to the dataset's files (not its baselines cache)."""
    values = dict(o.split("=", 1) for o in base if "=" in o)
    if "data.root" not in values or not Path(values["data.root"]).is_absolute():
        raise ValueError("the fixed-cost commands need an absolute data.root=... among their overrides")
    scenario, seed = values.get("scenario", "discs_3types"), int(values.get("data.seed", 0))
    source, linked = dataset_dir(values["data.root"], scenario, seed), dataset_dir(tmp / "data", scenario, seed)
    linked.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (linked / path.name).symlink_to(path.resolve())
    return [o for o in base if not o.startswith("data.root=")] + [f"data.root={tmp / 'data'}"]


def _single(field: str, base: list[str], tmp: Path, name: str, warm_socket: Path | None = None,
            seed: int | None = None) -> dict[str, Any]:
    """One command; `seed`: the training seed (another R² than the runs before: a query of its own)."""
    run_dir = tmp / name
    seeded = [] if seed is None else [f"seed={seed}"]
    command_wall = _command([f"field={field}", *base, *seeded, f"hydra.run.dir={run_dir}"], str(tmp), warm_socket)
    one = {**_job(run_dir), "command_wall_s": command_wall}
    one["command_over_fit"] = command_wall / one["fit_s"]
    return one


#: the fit the warm server's "one-second run" is sized for (the issue's yardstick: wall within 2x of it)
ONE_SECOND_S = 1.0


def _warm_server(field: str, base: list[str], tmp: Path, runs: int = 2) -> dict[str, Any]:
    """`runs` single commands handed to a warm server of the bench's own, then `runs` more with train.total_steps
    sized to a fit of ONE_SECOND_S (scaled from the first run's steps and fit, run once, and scaled again from that
    run's: the fit's set-up does not scale), then `runs` more on the window's full tables; the seconds the server
    took to start."""
    path = tmp / "w.sock"
    start = time.perf_counter()
    process, _ = launch(path, 600.0, tmp / "warm.log", _environ())
    started = time.perf_counter() - start
    try:
        done = [_single(field, base, tmp, f"warm{k}", path) for k in range(runs)]
        sizing = _single(field, [*base, f"train.total_steps={_steps_for(done[0])}"], tmp, "sizing", path)
        steps = _steps_for(sizing)  # a fit's set-up does not scale with its steps: sized twice, it is 1 s within noise
        sized_base = [*base, f"train.total_steps={steps}"]
        sized = [_single(field, sized_base, tmp, f"second{k}", path) for k in range(runs)]
        tabling = _tabulate(field, base, tmp)
        tabled = [_single(field, sized_base, tmp, f"tabled{k}", path, seed=k + 1) for k in range(runs)]
        served = (request({"op": "status"}, path) or {}).get("served")
    finally:
        request({"op": "stop"}, path)
        process.wait(timeout=60)
    if served != 3 * runs + 1:  # a declined hand-off runs the command in its own interpreter: not what is measured
        raise RuntimeError(f"the bench's warm server served {served} of its {3 * runs + 1} commands (see "
                           f"{tmp / 'warm.log'})")
    return {"start_s": started, "runs": done,
            "one_second": {"total_steps": steps, "runs": sized, "sizing_run": sizing,
                           "command_over_fit_median": statistics.median(r["command_over_fit"] for r in sized)},
            "one_second_tabled": {"tables_s": tabling, "runs": tabled,
                                  "command_over_fit_median": statistics.median(r["command_over_fit"] for r in tabled)}}


def _steps_for(run: dict[str, Any]) -> int:
    """The steps that make `run`'s fit ONE_SECOND_S, were it proportional to its steps."""
    return max(1, round(run["steps"] * ONE_SECOND_S / run["fit_s"]))


def _tabulate(field: str, base: list[str], tmp: Path) -> float:
    """The window's full SZ3/ZFP tables, computed as a study computes them ahead of its runs (and as a user's runs
    fill them beside their fits): `python -m mpm_inr.baselines table`; returns its seconds."""
    cfg = compose_train([f"field={field}", *base])
    data = cfg.data
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mpm_inr.baselines", "table", "--root", str(data.root),
                           "--scenario", str(cfg.scenario.name), "--seed", str(data.seed), "--fields", field,
                           "--frames", str(data.n_training_frames), "--holdout-every", str(data.holdout_every)],
                          cwd=tmp, capture_output=True, text=True, check=False, env=_environ())
    if done.returncode != 0:
        raise RuntimeError(f"the window's tables failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - start


def fixed_cost(field: str, base: list[str], jobs: int = 4) -> dict[str, Any]:
    """The commands for one field; `base`: the overrides that pick the dataset (an absolute data.root) and device
    (and, in tests, a short run)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = _private_data_root(base, tmp)
        cold = _single(field, base, tmp, "cold")
        warm = _single(field, base, tmp, "warm")
        served = _warm_server(field, base, tmp)
        sweep_dir = tmp / "multirun"
        seeds = ",".join(str(k) for k in range(jobs))
        command_wall = _command(["--multirun", f"field={field}", f"seed={seeds}", "outputs.plot=false", *base,
                                 f"hydra.sweep.dir={sweep_dir}"], tmp_name)
        runs = [_job(sweep_dir / str(k)) for k in range(jobs)]
    later = [r["wall_over_fit"] for r in runs[1:]]
    return {"field": field, "overrides": base, "single": warm, "single_cold": cold, "warm_server": served,
            "multirun": {"jobs": runs, "command_wall_s": command_wall, "command_wall_per_job_s": command_wall / jobs,
                         "first_wall_over_fit": runs[0]["wall_over_fit"],
                         "later_wall_over_fit_median": statistics.median(later) if later else None,
                         "fit_median_s": statistics.median(r["fit_s"] for r in runs)}}


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The fixed-cost table (empty when the part did not run)."""
    if not rows:
        return []
    jobs = len(rows[0]["multirun"]["jobs"])
    lines = ["", "## Fixed cost: wall time ÷ fit time of whole commands", "",
             ("fit = metrics.json `training_time` (the optimisation loop and its set-up); Lightning's fit phase "
              "(`timings.fit`) adds what Lightning does around it; "
              "wall = the run's in-process `wall_time`; command = the whole `python train.py` (interpreter start "
              "and imports included). One run: default outputs, on a cold window (no baseline tables cached yet) "
              f"and again on the warm one. The multirun is one `--multirun` of {jobs} jobs (seeds 0..{jobs - 1}, "
              "`outputs.plot=false`): from its 2nd job on, the window and SVD come from the process's cache."), "",
             ("| field | torch threads | one run, warm: fit [s] | Lightning fit [s] | wall [s] | wall ÷ fit | "
              "command [s] | command ÷ fit | cold: fit [s] | wall [s] | wall ÷ fit | command [s] | "
              f"multirun: median fit [s] | 1st job wall ÷ fit | jobs 2-{jobs} wall ÷ fit (median) | "
              "command per job [s] |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one, cold, many = r["single"], r["single_cold"], r["multirun"]
        later = many["later_wall_over_fit_median"]
        lines.append(f"| {r['field']} | {one['cpu_threads']} | {one['fit_s']:.2f} | {one['lightning_fit_s']:.2f} | "
                     f"{one['wall_time_s']:.2f} | {one['wall_over_fit']:.2f} | {one['command_wall_s']:.1f} | "
                     f"{one['command_over_fit']:.1f} | {cold['fit_s']:.2f} | {cold['wall_time_s']:.2f} | "
                     f"{cold['wall_over_fit']:.2f} | {cold['command_wall_s']:.1f} | "
                     f"{many['fit_median_s']:.2f} | {many['first_wall_over_fit']:.2f} | "
                     f"{'-' if later is None else format(later, '.2f')} | {many['command_wall_per_job_s']:.1f} |")
    return lines + _warm_markdown(rows)


def _warm_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", ("The same single command handed to a warm server (`python -m mpm_inr.warm start`: torch, Lightning, "
                  "Hydra, W&B and matplotlib imported once, each run a fork of it), twice on the warm window, then "
                  f"twice with train.total_steps sized to a {ONE_SECOND_S:g}-s fit (the one-second run: scaled "
                  "from the first run's steps and fit, run once, and scaled again, since a fit's set-up does not "
                  "scale with its steps) on the "
                  "window's SZ3/ZFP tables as the runs before left them (a new R² compresses the grid points its "
                  "query lacks), then twice more (training seeds 1, 2: R²s of their own) once the window's tables "
                  "are full (`python -m mpm_inr.baselines table`, what a study computes ahead and a user's runs fill "
                  "beside their fits); command = the whole `python train.py` as the shell sees it, compressions = "
                  "the SZ3/ZFP compressions the run made:"), "",
             ("| field | server start [s] | fit [s] | wall [s] | command [s] | command ÷ fit | 2nd: fit [s] | "
              "command [s] | command ÷ fit | one-second run: steps | fit [s] | command [s] | compressions | "
              "command ÷ fit | tables [s] | full tables: fit [s] | command [s] | compressions | command ÷ fit |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first, second = r["warm_server"]["runs"]
        sized, tabled = r["warm_server"]["one_second"], r["warm_server"]["one_second_tabled"]
        lines.append(f"| {r['field']} | {r['warm_server']['start_s']:.1f} | {first['fit_s']:.2f} | "
                     f"{first['wall_time_s']:.2f} | {first['command_wall_s']:.2f} | **{first['command_over_fit']:.2f}** | "
                     f"{second['fit_s']:.2f} | {second['command_wall_s']:.2f} | **{second['command_over_fit']:.2f}** | "
                     f"{sized['total_steps']} | {_each(sized, 'fit_s')} | {_each(sized, 'command_wall_s')} | "
                     f"{_each(sized, 'baseline_compressions', 'd')} | **{sized['command_over_fit_median']:.2f}** | "
                     f"{tabled['tables_s']:.1f} | {_each(tabled, 'fit_s')} | {_each(tabled, 'command_wall_s')} | "
                     f"{_each(tabled, 'baseline_compressions', 'd')} | **{tabled['command_over_fit_median']:.2f}** |")
    return lines


def _each(part: dict[str, Any], key: str, spec: str = ".2f") -> str:
    """A value of each run, `/`-separated ('-' where a run has none)."""
    return "/".join("-" if run[key] is None else format(run[key], spec) for run in part["runs"])
