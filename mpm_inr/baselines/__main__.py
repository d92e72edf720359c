"""`python -m mpm_inr.baselines table --root data --scenario discs_3types --seed 0 --fields F,Jp,S,C --frames 100
--holdout-every 4`: the full SZ3/ZFP tables (and the SVD table) of a study's windows, computed ahead of its runs.

Why: a run computes only the grid points its own R² and bytes need (search.py), about 20 compressions per codec
on a window's first run; a study that runs hundreds of runs on a few windows pays each window's full band once
here instead, and none of its runs compresses inside the band. The window of each (field, frames) is the one
train.py takes (centred, every `holdout_every`-th frame held out); the tables go to the window's cache file
(docs/contracts.md), under its compute lock, so running this beside the runs is safe. A window already tabled
costs a file read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mpm_inr.baselines.cache import cache_dirs
from mpm_inr.baselines.compare import WindowBaselines
from mpm_inr.baselines.source import BaselineSource
from mpm_inr.data.dataset import dataset_dir, open_dataset, recorded_fingerprint
from mpm_inr.data.window import FIELDS
from mpm_inr.errors import ConfigError, DatasetError, exit_code_of


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--frames={text!r} must be comma-separated integers, e.g. 50,100") from None


def _fields(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise ConfigError(f"--fields={text!r}: unknown field(s) {', '.join(unknown) or '(none given)'}; choose "
                          f"from {','.join(FIELDS)}")
    return names


def tabulate(args: argparse.Namespace) -> list[dict]:
    """Each window's tables into its cache file; one summary row per window."""
    if args.holdout_every < 0:
        raise ConfigError(f"--holdout-every={args.holdout_every} must be 0 (off) or >= 2")
    path = dataset_dir(args.root, args.scenario, args.seed)
    dataset = open_dataset(path)
    if recorded_fingerprint(dataset) is None:
        raise DatasetError(f"dataset {path} has no fingerprint (made before fingerprints): its baselines cannot be "
                           f"cached; regenerate it with `python generate.py scenario={args.scenario} seed={args.seed}`")
    rows = []
    for frames in _ints(args.frames):
        for field in _fields(args.fields):
            start = time.perf_counter()
            source = BaselineSource.from_dataset(dataset, field, frames, args.holdout_every)
            baselines = WindowBaselines(source, cache_dirs(path))
            baselines.svd_table()
            bands = baselines.full_tables()
            if baselines.cache is None or baselines.cache.loaded_from is None:
                raise DatasetError(f"no writable cache location for {path}: make {path / 'baselines'} writable or "
                                   f"set XDG_CACHE_HOME to a writable directory")
            rows.append({"field": field, "frames": source.key["frames"], "holdout_every": args.holdout_every,
                         "bands": bands, "compressions": baselines.compressions(),
                         "cache": str(baselines.cache.loaded_from), "time_s": round(time.perf_counter() - start, 3)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.baselines")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="compute the full baseline tables of a study's windows ahead of its runs")
    table.add_argument("--root", default="data", help="data root, as train.py's data.root")
    table.add_argument("--scenario", default="discs_3types", help="as train.py's scenario")
    table.add_argument("--seed", type=int, default=0, help="dataset seed, as train.py's data.seed")
    table.add_argument("--fields", default=",".join(FIELDS), help="comma separated (default: every field)")
    table.add_argument("--frames", default="100", help="window lengths, comma separated (data.n_training_frames)")
    table.add_argument("--holdout-every", type=int, default=0, help="as train.py's data.holdout_every")
    args = parser.parse_args(argv)
    return exit_code_of(lambda: tabulate(args))


if __name__ == "__main__":
    sys.exit(main())
