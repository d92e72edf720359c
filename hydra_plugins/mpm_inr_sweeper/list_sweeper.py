"""`hydra/sweeper=mpm_inr_list`: run the jobs listed in a JSON file as one batch of the configured launcher.

    python train.py --multirun hydra/sweeper=mpm_inr_list hydra.sweeper.jobs_file=round.json \
        hydra/launcher=joblib hydra.sweep.dir=... 

`jobs_file` holds a JSON list with one list of `key=value` override strings per job (the exploration agent
writes it after validating every override). Command-line task overrides are prepended to every job. All jobs
go to the launcher in a single `launch()` call, so any Hydra launcher (basic, joblib, submitit_local,
submitit_slurm) parallelises them as it would a normal sweep.

Each job's task function is wrapped by `GuardedTask` (see `guard.py`): it records the job's start and end in
`<job dir>/.agent_job.json`, enforces `job_timeout_s` with SIGALRM, and never lets one job's failure (an
exception or a `sys.exit`) abort the batch, because a Sweeper/launcher only reports results after all jobs.
"""


import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass
class ListSweeperConf:
    _target_: str = "hydra_plugins.mpm_inr_sweeper.list_sweeper.ListSweeper"
    jobs_file: Optional[str] = None
    job_timeout_s: Optional[float] = None


ConfigStore.instance().store(group="hydra/sweeper", name="mpm_inr_list", node=ListSweeperConf,
                             provider="mpm_inr")


class ListSweeper(Sweeper):
    """Launches the override lists of `jobs_file` as one batch."""

    def __init__(self, jobs_file: Optional[str] = None, job_timeout_s: Optional[float] = None) -> None:
        super().__init__()
        self.jobs_file = jobs_file
        self.job_timeout_s = job_timeout_s
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from .guard import GuardedTask

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=GuardedTask(task_function, self.job_timeout_s),
            config=config)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        if not self.jobs_file:
            raise ValueError("hydra.sweeper.jobs_file is required (a JSON list of override lists)")
        jobs = json.loads(Path(self.jobs_file).read_text())
        if not isinstance(jobs, list) or not all(
                isinstance(j, list) and all(isinstance(o, str) for o in j) for j in jobs):
            raise ValueError(f"{self.jobs_file}: expected a JSON list of lists of 'key=value' strings")
        if not jobs:
            return []
        batch = [list(arguments) + job for job in jobs]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"mpm_inr_list: launching {len(batch)} job(s) into {sweep_dir}")
        return self.launcher.launch(batch, initial_job_idx=0)
