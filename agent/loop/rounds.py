"""Running a round: each planned node's job (its overrides over train_overrides, the study.* keys and what the
agent adds), one `train.py --multirun` per code dir (agent.runs.runner), `launched` before it starts and each
job's `finished` as soon as it ends."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.loop.context import StudyContext
from agent.runs.overrides import as_dict, merge_train
from agent.runs.runner import Job, JobResult, LauncherSpec, RoundRunner
from agent.runs.trainconf import ComposeError, compose_train, has_key, value
from agent.study.state import NodeState, StudyState, data_changes


def git_commit(code_dir: Path) -> str | None:
    """HEAD of the code dir (+ "-dirty" with uncommitted changes to tracked files), or None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(code_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(code_dir), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=False)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


class RoundLauncher:
    def __init__(self, study: StudyContext, runner: RoundRunner, launcher: LauncherSpec):
        self.study = study
        self.runner = runner
        self.launcher = launcher

    def job_overrides(self, n: NodeState, st: StudyState, code_dir: Path, cpu_threads: int | None = None) -> list[str]:
        """The job's full override list: the node's over train_overrides, the study.* keys, and what the agent adds
        where the trainer has the key and the user did not set it (logger group/tags, an absolute data.root,
        outputs.plot=false unless the study's policy reads the plot, the job's share of the CPU threads)."""
        # the agent's own keys (a plan's per-run caps, a seed-spread run's data.seed) are never allow-listed, so they
        # cannot collide with the node's; they replace the same keys of train_overrides
        ov = merge_train(merge_train(self.study.train_overrides, n.overrides), n.agent_overrides)
        try:  # the same composition as the proposal's validation (cached): study.* values do not change keys
            cfg = compose_train(code_dir, ov)
        except ComposeError:
            cfg = None
        study_keys = {"study.name": self.study.name, "study.node_id": n.node_id,
                 "study.parent_id": "null" if n.parent_id is None else n.parent_id, "study.block": n.block,
                 "study.iteration": n.iteration, "study.strategy": n.strategy}
        ov += [f"{k}={v}" for k, v in study_keys.items()]
        if cfg is None:
            return ov
        keys = as_dict([o for o in ov if "=" in o])
        if has_key(cfg, "logger.group") and "logger.group" not in keys:
            ov.append(f"logger.group={self.study.name}")
        if has_key(cfg, "logger.tags") and "logger.tags" not in keys:
            inr = value(cfg, "inr_type") or "inr"
            ov.append(f"logger.tags=[block_{n.block},{n.strategy},{inr}]")
        if "data.root" not in keys and has_key(cfg, "data.root"):
            root = value(cfg, "data.root")
            if isinstance(root, str) and not Path(root).is_absolute() and re.match(r"^[A-Za-z0-9_./-]+$", root):
                ov.append(f"data.root={(Path.cwd() / root).resolve()}")
        if not self.study.needs_plot and "outputs.plot" not in keys and has_key(cfg, "outputs.plot"):
            ov.append("outputs.plot=false")  # a study is hundreds of short runs: the plot only where a policy reads it
        if cpu_threads is not None and "trainer.cpu_threads" not in keys and has_key(cfg, "trainer.cpu_threads"):
            ov.append(f"trainer.cpu_threads={cpu_threads}")
        return ov

    def run_round(self, st: StudyState, nodes: Sequence[NodeState]) -> None:
        round_no = st.rounds + 1
        sweep_dir = self.study.study_dir / "runs" / f"round_{round_no:04d}"
        groups: dict[str, list[NodeState]] = {}
        for n in nodes:
            groups.setdefault(n.code_dir or str(self.study.code_dir), []).append(n)
        commit_cache: dict[str, str | None] = {}
        handler = self.study.code_mod_handler
        for code_dir, group in groups.items():
            cd = Path(code_dir)
            share = self.launcher.cpu_threads_per_job(len(group))
            jobs = [Job(n.node_id, self.job_overrides(n, st, cd, share), f"node_{n.node_id:04d}") for n in group]
            # issue 20: code a policy may have modified runs in the handler's sandbox (None: not confined)
            wrap = handler.confine(cd, [j.overrides for j in jobs]) if handler is not None else None
            runner = self.runner if cd == self.study.code_dir and wrap is None else RoundRunner(
                code_dir=cd, launcher=self.launcher, per_run_s=self.runner.per_run_s, grace_s=self.runner.grace_s,
                python=self.runner.python, wrap=wrap)
            if code_dir not in commit_cache:
                commit_cache[code_dir] = git_commit(cd)
            by_id = {n.node_id: n for n in group}
            gdir = sweep_dir if len(groups) == 1 else sweep_dir / f"code_{list(groups).index(code_dir)}"

            def on_launch(info: dict[str, Any], _cd: str = code_dir, by_id: dict = by_id) -> None:
                self.study.emit({"event": "launched", "round": round_no, "node_ids": info["node_ids"],
                            "run_dirs": {str(i): d for i, d in info["run_dirs"].items()}, "token": info["token"],
                            "jobs_file": info["jobs_file"], "attempt": info["attempt"],
                            "launcher": self.launcher.name, "code_dir": _cd,
                            "code_commit": by_id[info["node_ids"][0]].code_commit or commit_cache[_cd]})
                self.study.out(f"round {round_no}: launched node(s) {', '.join(map(str, info['node_ids']))} "
                         f"({self.launcher.name})")

            runner.run(gdir, jobs, on_launch=on_launch, on_done=self.finish)
        self.study.render()

    def finish(self, res: JobResult) -> None:
        handler = self.study.code_mod_handler
        if handler is not None:  # issue 6: keep or revert a code change once its run ended (may reword the error)
            res = handler.on_finished(res)
        png = Path(res.run_dir) / "field.png" if res.run_dir else None
        self.study.emit({"event": "finished", "node_id": res.node_id, "status": res.status, "error": res.error,
                    "metrics": res.metrics, "run_dir": res.run_dir, "wandb_run_id": res.wandb_run_id,
                    "field_png": str(png) if png is not None and png.exists() else None})
        st = self.study.state()
        n = st.nodes.get(res.node_id)
        r2 = n.r2 if n is not None else None
        t = res.metrics.get("training_time")
        self.study.out(f"  iter {n.iteration if n else '?'} node {res.node_id} ({n.strategy if n else '?'}; "
                 f"{n.mutation if n else ''}): {res.status}"
                 + (f" R²={r2:.6f}" if r2 is not None else f" ({res.error})" if res.error else "")
                 + (f" in {t:.1f} s" if isinstance(t, (int, float)) else ""))
        change = data_changes(st).get(res.node_id)
        if change:
            self.study.out(f"  warning: {change}")
