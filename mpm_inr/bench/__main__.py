"""`python -m mpm_inr.bench sim|train [options]` — see `make bench`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.bench")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="time to R² target: ours vs the reference recipe vs SVD")
    tr.add_argument("--fields", default="F,Jp,S,C")
    tr.add_argument("--scenario", default=None, help="default: discs_small on CPU, discs_3types on GPU")
    tr.add_argument("--device", default=None, choices=["cpu", "cuda"])
    tr.add_argument("--target", type=float, default=0.995)
    tr.add_argument("--ref-cap", type=float, default=120.0, help="seconds of reference training per field")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--frames", type=int, default=100)
    tr.add_argument("--root", default="data")
    tr.add_argument("--out", default="bench_results")
    sm = sub.add_parser("sim", help="simulator steps/s")
    sm.add_argument("--scenario", default="discs_3types")
    sm.add_argument("--device", default=None, choices=["cpu", "cuda"])
    sm.add_argument("--steps", type=int, default=200)
    sm.add_argument("--out", default="bench_results")
    args = parser.parse_args(argv)
    if args.command == "train":
        from mpm_inr.bench.train_bench import run

        run(args.fields.split(","), args.scenario, args.device, args.target, args.ref_cap, args.seed, args.frames,
            args.root, args.out)
    else:
        from mpm_inr.bench.sim_bench import run as run_sim

        run_sim(args.scenario, args.device, args.steps, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
