"""One job of `python -m mpm_inr.bench threads`: train.py's path (compose -> run_training) with a thread setting.

    python -m mpm_inr.bench.threads_worker --threads 2 --fields Jp,C --scenario discs_small --root data --frames 100

Each run's training stops at `--cap-s` seconds (train.max_time_s), so a badly oversubscribed setting cannot hold
the benchmark for minutes; such a run reports its steps short of the plan (`capped`).

Protocol (stdout lines prefixed with `PREFIX`, everything else is the runs' own output): after the imports and a
5-step warm-up run per field (so first-use costs fall outside the timing) the worker says `{"ready": ...}`, then
for every `go` line on stdin it trains each field once with its default recipe and says `{"runs": [...]}`; it exits
at the end of stdin. The parent starts all jobs of a round together and sends `go` to all at once, so their
training overlaps the way a parallel launcher's does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mpm_inr.bench.train_bench import BenchSettings, train_once

PREFIX = "THREADS_BENCH "


def say(payload: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(payload), flush=True)


def thread_override(threads: str) -> str:
    """`default` is torch's own choice (trainer.cpu_threads=null); anything else is passed as it is."""
    return f"trainer.cpu_threads={'null' if threads == 'default' else threads}"


def one_round(settings: BenchSettings, extra: list[str]) -> list[dict[str, Any]]:
    runs = []
    for field in settings.fields:
        metrics, wall = train_once(settings, field, 0, extra)
        planned = (metrics.get("config") or {}).get("train.total_steps")
        runs.append({"field": field, "status": metrics["status"], "error": metrics.get("error"),
                     "training_time_s": metrics.get("training_time"), "run_wall_s": metrics.get("wall_time"),
                     "end_to_end_s": wall, "steps": metrics.get("steps"), "planned_steps": planned,
                     "capped": metrics.get("steps") is not None and planned is not None and metrics["steps"] < planned,
                     "final_r2": metrics.get("final_r2"),
                     "cpu_threads": metrics.get("cpu_threads"),
                     "cpu_interop_threads": metrics.get("cpu_interop_threads")})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.bench.threads_worker")
    parser.add_argument("--threads", required=True, help="an integer, auto, or default (torch's own choice)")
    parser.add_argument("--fields", default="Jp,C")
    parser.add_argument("--scenario", default="discs_small")
    parser.add_argument("--root", default="data")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--cap-s", type=float, default=20.0, help="training seconds per run at most")
    args = parser.parse_args(argv)
    settings = BenchSettings(fields=[f for f in args.fields.split(",") if f], scenario=args.scenario, device="cpu",
                             seeds=[0], frames=args.frames, root=args.root)
    extra = [thread_override(args.threads), f"train.max_time_s={args.cap_s}"]
    warm = one_round(settings, [*extra, "train.total_steps=5"])
    failed = [r for r in warm if r["status"] != "ok"]
    say({"ready": not failed, "error": failed[0]["error"] if failed else None})
    for line in sys.stdin:
        if line.strip() != "go":
            break
        say({"runs": one_round(settings, extra)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
