"""`python -m mpm_inr.bench sim|train|reference|threads [options]` — see `make bench` and `make bench-threads`."""

from __future__ import annotations

import argparse
import sys


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _frame_counts(text: str) -> list[int]:
    """--windows: comma-separated whole numbers of frames."""
    try:
        return [int(x) for x in _csv(text)]
    except ValueError:
        raise ValueError(f"--windows {text!r}: need comma-separated frame counts, e.g. --windows 100,1000,10000") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpm_inr.bench")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="time to R² target: ours vs the reference recipe vs SVD")
    tr.add_argument("--fields", default="F,Jp,S,C")
    tr.add_argument("--scenario", default=None, help="default: discs_small on CPU, discs_3types on GPU")
    tr.add_argument("--device", default=None, choices=["cpu", "cuda"])
    tr.add_argument("--target", type=float, default=0.995)
    tr.add_argument("--compare-targets", default="0.995,0.999",
                    help="R² at which ours (float32, codec file) meets SVD, SZ3 and ZFP in bytes ('' to skip)")
    tr.add_argument("--ref-cap", type=float, default=60.0, help="seconds of reference training per field")
    tr.add_argument("--no-reference", action="store_true", help="skip the reference recipe")
    tr.add_argument("--seeds", default="0,1,2", help="dataset seeds; the first one is used for speed and held-out")
    tr.add_argument("--frames", type=int, default=100)
    tr.add_argument("--windows", default=None,
                    help="training frames of each compression window, e.g. 100,1000,10000 (default: --frames; "
                         "longer windows train for minutes to hours on a CPU)")
    tr.add_argument("--long-cap", type=float, default=None,
                    help="training seconds per run (train.max_time_s) on compression windows longer than --frames")
    tr.add_argument("--only-compression", action="store_true",
                    help="run only the compression part (every window, every seed, held-out with --holdout-every)")
    tr.add_argument("--holdout-every", type=int, default=4, help="k: hold out every k-th frame (0: skip that part)")
    tr.add_argument("--only-holdout", action="store_true",
                    help="with --only-compression: only the windows' held-out part (e.g. to finish an interrupted one)")
    tr.add_argument("--resume", action="store_true",
                    help="reuse the compression seeds that an interrupted run into --out finished (same device, "
                         "scenario, cap, targets and datasets)")
    tr.add_argument("--window-only", default="", help="fields whose compression windows are encoded with no "
                    "model trained (python -m mpm_inr.codec encode-window), e.g. S,C over the whole simulation")
    tr.add_argument("--eulerian", default="siren_txy,ngp", help="Eulerian types raced in the held-out part")
    tr.add_argument("--eulerian-cap", type=float, default=30.0, help="training seconds per Eulerian run")
    tr.add_argument("--root", default="data")
    tr.add_argument("--no-fixed-cost", action="store_true", help="skip the whole-command wall ÷ fit part")
    tr.add_argument("--only-fixed-cost", action="store_true", help="run only the whole-command wall ÷ fit part")
    tr.add_argument("--multirun-jobs", type=int, default=4, help="jobs of the fixed-cost part's --multirun")
    tr.add_argument("--out", default="bench_results")
    rf = sub.add_parser("reference", help="the reference recipe to its documented steps: time to true R² target")
    rf.add_argument("--fields", default="F")
    rf.add_argument("--scenario", default="discs_3types")
    rf.add_argument("--device", default=None, choices=["cpu", "cuda"])
    rf.add_argument("--seed", type=int, default=0, help="dataset seed")
    rf.add_argument("--frames", type=int, default=100)
    rf.add_argument("--target", type=float, default=0.995)
    rf.add_argument("--cap", type=float, default=None,
                    help="training seconds per recipe at most (default: none, its documented steps decide)")
    rf.add_argument("--check-every", type=int, default=200, help="steps between true-R² checks (not timed)")
    rf.add_argument("--root", default="data")
    rf.add_argument("--out", default="bench_results")
    sm = sub.add_parser("sim", help="simulator steps/s")
    sm.add_argument("--scenario", default="discs_3types")
    sm.add_argument("--device", default=None, choices=["cpu", "cuda"])
    sm.add_argument("--steps", type=int, default=200)
    sm.add_argument("--out", default="bench_results")
    th = sub.add_parser("threads", help="training time by CPU thread count: idle and busy, one job and a round")
    th.add_argument("--threads", default="1,2,default", help="integers, auto, default (torch's own choice)")
    th.add_argument("--jobs", default="1,2", help="jobs at once (a parallel launcher's round)")
    th.add_argument("--loads", default="idle,busy", help="idle: the machine as it is; busy: a CPU burner per core")
    th.add_argument("--fields", default="Jp,C")
    th.add_argument("--scenario", default="discs_small")
    th.add_argument("--frames", type=int, default=100)
    th.add_argument("--repeats", type=int, default=1)
    th.add_argument("--cap-s", type=float, default=20.0, help="training seconds per run at most (a lower bound then)")
    th.add_argument("--root", default="data")
    th.add_argument("--out", default="bench_results")
    args = parser.parse_args(argv)
    if args.command == "threads":
        from mpm_inr.bench.threads_bench import ThreadsSettings
        from mpm_inr.bench.threads_bench import run as run_threads

        try:
            settings = ThreadsSettings(threads=_csv(args.threads), jobs=[int(x) for x in _csv(args.jobs)],
                                       loads=_csv(args.loads), fields=_csv(args.fields), scenario=args.scenario,
                                       frames=args.frames, root=args.root, repeats=args.repeats, cap_s=args.cap_s)
        except ValueError as err:
            parser.error(str(err))
        run_threads(settings, args.out, "python -m mpm_inr.bench " + " ".join(argv or sys.argv[1:]))
        return 0
    if args.command == "reference":
        import torch

        from mpm_inr.bench.reference_bench import ReferenceSettings
        from mpm_inr.bench.reference_bench import run as run_reference

        try:
            ref_settings = ReferenceSettings(
                fields=_csv(args.fields), scenario=args.scenario,
                device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"), seed=args.seed,
                frames=args.frames, target=args.target, cap_s=args.cap, check_every=args.check_every, root=args.root)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        run_reference(ref_settings, args.out)
        return 0
    if args.command == "train":
        import torch

        from mpm_inr.bench.resume import ResumeError
        from mpm_inr.bench.train_bench import BenchSettings, run

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            settings = BenchSettings(
                fields=_csv(args.fields), scenario=args.scenario or ("discs_3types" if device == "cuda" else "discs_small"),
                device=device, target=args.target, ref_cap_s=args.ref_cap, seeds=[int(x) for x in _csv(args.seeds)],
                frames=args.frames, root=args.root, holdout_every=args.holdout_every, eulerian=_csv(args.eulerian),
                eulerian_cap_s=args.eulerian_cap, reference=not args.no_reference,
                fixed_cost=not args.no_fixed_cost, multirun_jobs=args.multirun_jobs,
                compare_targets=tuple(float(x) for x in _csv(args.compare_targets)),
                windows=_frame_counts(args.windows or ""), long_cap_s=args.long_cap,
                only_compression=args.only_compression, only_fixed_cost=args.only_fixed_cost,
                only_holdout=args.only_holdout, resume=args.resume, window_only=_csv(args.window_only))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            run(settings, args.out)
        except ResumeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        from mpm_inr.bench.sim_bench import run as run_sim

        run_sim(args.scenario, args.device, args.steps, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
