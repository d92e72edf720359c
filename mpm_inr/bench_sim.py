"""Simulator throughput: steps/s of the MPM step for a scenario on a device (warm-up excluded).

Measures the step alone (no disk writes), which is what bounds dataset generation. Called by
`python -m mpm_inr.bench sim`; the result also extrapolates the time for the scenario's full frame count.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from typing import Any

from mpm_inr.threads import check_threads, pinned_threads


def bench_sim(scenario_cfg: Mapping, device: Any = "cpu", n_steps: int = 500, warmup: int = 20,
              seed: int = 0, repeats: int = 3, threads: int | None = None) -> dict:
    """Time `n_steps` steps `repeats` times after `warmup` steps; report the best repeat (least disturbed).

    On CUDA the step is replayed from a CUDA graph (as generation does) and the timing syncs only at the ends.
    `threads` pins torch's CPU threads and numpy's BLAS for the measurement (None: as configured; generation uses 1).
    """
    with pinned_threads(check_threads(threads)):
        return _bench(scenario_cfg, device, n_steps, warmup, seed, repeats)


def _bench(scenario_cfg: Mapping, device: Any, n_steps: int, warmup: int, seed: int, repeats: int) -> dict:
    import torch

    from mpm_inr.data.generate import resolve_device
    from mpm_inr.errors import ConfigError
    from mpm_inr.sim import (
        MPMSimulator,
        initial_state,
        physics_params,
        validate_scenario,
    )

    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be a positive integer, got {n_steps!r}")
    cfg = validate_scenario(scenario_cfg)
    dev = resolve_device(device)
    gp, mp = physics_params(cfg)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        sim = MPMSimulator(initial_state(cfg, seed, dev), gp, mp, cuda_graph=dev.type == "cuda")
        for _ in range(warmup):
            sim.step()
        sync()
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            for _ in range(n_steps):
                sim.step()
            sync()
            times.append(time.perf_counter() - t0)
        finite = bool(torch.isfinite(sim.state.x).all())
    best = min(times)
    steps_per_s = n_steps / best
    n_frames = int(cfg["n_frames"])
    return {
        "scenario": cfg["name"],
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or
        platform.machine(),
        "cuda_graph": sim.uses_cuda_graph,
        "n_particles": sim.state.n_particles,
        "n_grid": gp.n_grid,
        "n_steps": n_steps,
        "repeats": len(times),
        "steps_per_s": steps_per_s,
        "ms_per_step": 1e3 * best / n_steps,
        "steps_per_s_all_repeats": [n_steps / t for t in times],
        "n_frames": n_frames,
        "extrapolated_s_for_n_frames": (n_frames - 1) / steps_per_s,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "finite": finite,
    }
