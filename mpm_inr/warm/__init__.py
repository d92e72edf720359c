"""The warm server: `python train.py ...` hands its run to a process that has torch, Lightning, Hydra, W&B and
matplotlib imported already, so a one-second run does not pay five seconds of start-up.

Why a fork server: a cold `python train.py field=C` spends about 4.5 s importing and 1.3 s finalizing the
interpreter around 2.4 s of fitting. `python -m mpm_inr.warm start` imports all of it once; each run the server
is handed is a fork of it (a fresh process: no state carried from one run to the next, copy-on-write memory),
which runs train.py with the caller's arguments, working directory, environment and terminal, and exits without
the finalization. The caller (`mpm_inr.warm.client`) waits for its exit code and forwards Ctrl-C to it.

The server declines, and the caller runs the command itself as before, whenever a fork would not give the same
run: the code under the repository changed since the server started, the caller uses another Python, or an
environment variable read at import time (thread counts, allocator and library paths) differs. Multiruns and
Hydra's flags are never handed off: a multirun starts its interpreter once for all its jobs.
"""
