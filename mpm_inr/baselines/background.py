"""A window's compressor tables computed in a separate process beside training, joined before the baselines.

Why: a window's first run would otherwise pay its tables (a few seconds at 100 frames, SZ3's most) after its fit,
while `trainer.cpu_threads=auto` leaves a core idle during the fit. The child (`python -m
mpm_inr.baselines.background ARGS_JSON`) reads the same window from the dataset's memory map, takes the window's
compute lock (a second job on the window waits, then finds the tables stored) and merges them into the cache
file. It starts only where it can help: a cached window, a window without a cache location, or a run that
already uses every core computes nothing here. A failed child costs one warning line; the run then computes the
tables itself. A run that ends before joining kills its child, which leaves the cache file as it was (writes
replace it atomically) and its lock free (the kernel drops a flock with its holder).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

import mpm_inr
from mpm_inr.baselines.compare import WindowBaselines
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.data.dataset import open_dataset

log = logging.getLogger(__name__)


def idle_cores(threads_in_use: int) -> int:
    """Cores this process may use that its torch threads leave free."""
    return len(os.sched_getaffinity(0)) - threads_in_use


class BandJob:
    """The child process computing a window's bands; `join` waits for it and re-reads the cache."""

    def __init__(self, baselines: WindowBaselines, args: dict[str, Any]) -> None:
        self.baselines = baselines
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- read and closed in join(), after the child ends
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(mpm_inr.__file__).parents[1]),
                                                           os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "mpm_inr.baselines.background", json.dumps(args)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                        env=env)
        self._kill = weakref.finalize(self, _kill, self.process)

    def join(self) -> bool:
        """Wait for the child; True if it stored the tables (else one warning line says why)."""
        code = self.process.wait()
        self._kill.detach()
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        self._stderr.close()
        self.baselines.reload()
        if code == 0 and not self.baselines.missing_bands():
            self.baselines.bands_origin = "background"
            return True
        log.warning("the baseline tables' background process failed (exit %s%s); computing them here", code,
                    f": {lines[-1]}" if lines else "")
        return False


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def start_band_job(baselines: WindowBaselines, dataset_dir: str | os.PathLike, n_training_frames: int,
                   threads_in_use: int) -> BandJob | None:
    """Start computing the window's missing bands beside training, where that can help (module docstring)."""
    cache = baselines.cache
    if cache is None or not baselines.missing_bands() or idle_cores(threads_in_use) < 1:
        return None
    args = {"dataset": str(Path(dataset_dir).resolve()), "field": baselines.source.key["field"],
            "n_training_frames": int(n_training_frames), "holdout_every": baselines.source.key["holdout_every"],
            "cache_dirs": [str(p.parent) for p in cache.paths], "codecs": list(baselines.codec_names),
            "key": baselines.source.key}
    return BandJob(baselines, args)


def main(argv: list[str]) -> int:
    """The child: the window's bands into its cache; exit 2 if the dataset's window is not the run's."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = json.loads(argv[0])
    source = BaselineSource.from_dataset(open_dataset(args["dataset"]), args["field"], args["n_training_frames"],
                                         args["holdout_every"])
    if source.key != args["key"]:
        print(f"error: the dataset's window {source.key} is not the run's {args['key']}", file=sys.stderr)
        return 2
    WindowBaselines(source, args["cache_dirs"], tuple(args["codecs"])).fill_bands()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
