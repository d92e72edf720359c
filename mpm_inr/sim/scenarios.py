"""Initial conditions built from a scenario config (the Hydra group `conf/scenario/`), seeded on the CPU.

All random draws come from one `torch.Generator` on the CPU in a fixed order, and the state is moved to the
target device afterwards, so a seed gives the same initial state on every device (the reference drew on the
GPU and could not be reproduced). Two layouts cover the reference scenarios:

- `disc_grid`: discs on a rectangular grid of centres (row-major from the bottom-left), materials from a
  seeded permutation so each material gets the same number of discs, one random velocity per disc.
- `discs`: an explicit list of discs, each with its own material, particle count and velocity.

Particles are uniform by area inside a disc (r = R sqrt(u1), theta = 2 pi u2), as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from mpm_inr.errors import ConfigError
from mpm_inr.sim.material import MaterialParams
from mpm_inr.sim.step import GridParams, MPMState

GRID_KEYS = ("n_grid", "dt", "gravity", "wall_cells", "friction", "mass_eps")
MATERIAL_KEYS = tuple(MaterialParams.__dataclass_fields__)
PHYSICS_KEYS = GRID_KEYS + MATERIAL_KEYS
INIT_KINDS = ("disc_grid", "discs")


def _plain(cfg: Any) -> Any:
    """OmegaConf -> plain containers (works for plain dicts too)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return cfg


def _num(cfg: Mapping, key: str, where: str, *, integer: bool = False, lo: float | None = None,
         hi: float | None = None, lo_open: bool = False) -> float | int:
    name = ".".join(("scenario", *([where] if where else []), key))  # the Hydra key a user sets
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{name} is missing")
    v = cfg[key]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (not integer and not math.isfinite(v)):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{name} must be {kind}, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ConfigError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {v}")
    return int(v) if integer else float(v)


def _vec2(v: Any, what: str) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
        raise ConfigError(f"scenario {what} must be a pair of numbers, got {v!r}")
    return float(v[0]), float(v[1])


def validate_scenario(cfg: Mapping) -> dict:
    """Check a scenario config and return it as a plain dict; raises `ConfigError` naming the bad key."""
    cfg = _plain(cfg)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"scenario config must be a mapping, got {type(cfg).__name__}")
    name = cfg.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"scenario.name must be a non-empty file-name-safe string, got {name!r}")
    _num(cfg, "n_frames", "", integer=True, lo=1)
    phys = cfg.get("physics")
    if not isinstance(phys, Mapping):
        raise ConfigError("scenario.physics is missing (grid, time step and material constants)")
    unknown = sorted(set(phys) - set(PHYSICS_KEYS))
    if unknown:
        raise ConfigError(f"unknown scenario.physics key(s) {unknown}; valid: {', '.join(PHYSICS_KEYS)}")
    n_grid = _num(phys, "n_grid", "physics", integer=True, lo=8)
    _num(phys, "dt", "physics", lo=0.0, lo_open=True)
    _num(phys, "gravity", "physics")
    _num(phys, "wall_cells", "physics", integer=True, lo=1, hi=n_grid // 2 - 1)
    _num(phys, "friction", "physics", lo=0.0, hi=1.0)
    if phys.get("mass_eps") is not None:
        _num(phys, "mass_eps", "physics", lo=0.0)
    dens = phys.get("densities")
    if dens is not None and (not isinstance(dens, (list, tuple)) or len(dens) != 3
                             or not all(isinstance(d, (int, float)) and d > 0 for d in dens)):
        raise ConfigError(f"scenario.physics.densities must be 3 positive numbers (liquid, jelly, snow), got {dens!r}")
    for key in MATERIAL_KEYS:
        if key != "densities" and phys.get(key) is not None:
            _num(phys, key, "physics")
    mat = MaterialParams.from_config(phys)
    if not (mat.youngs_modulus > 0 and -1.0 < mat.poisson_ratio < 0.5):
        raise ConfigError("scenario.physics needs youngs_modulus > 0 and -1 < poisson_ratio < 0.5")
    if not (0 < mat.hardening_min <= mat.hardening_max and mat.snow_sig_min <= 1.0 <= mat.snow_sig_max):
        raise ConfigError("scenario.physics needs 0 < hardening_min <= hardening_max and "
                          "snow_sig_min <= 1 <= snow_sig_max")
    init = cfg.get("init")
    if not isinstance(init, Mapping) or init.get("kind") not in INIT_KINDS:
        got = init.get("kind") if isinstance(init, Mapping) else init
        raise ConfigError(f"scenario.init.kind must be one of {', '.join(INIT_KINDS)}, got {got!r}")
    if init["kind"] == "disc_grid":
        _num(init, "radius", "init", lo=0.0, lo_open=True)
        _num(init, "particles_per_disc", "init", integer=True, lo=1)
        xs, ys = init.get("centres_x"), init.get("centres_y")
        for key, seq in (("centres_x", xs), ("centres_y", ys)):
            if not isinstance(seq, (list, tuple)) or not seq or not all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) for a in seq):
                raise ConfigError(f"scenario.init.{key} must be a non-empty list of numbers, got {seq!r}")
        mats = init.get("materials")
        n_discs = len(xs) * len(ys)
        if not isinstance(mats, (list, tuple)) or not mats or any(m not in (0, 1, 2) for m in mats):
            raise ConfigError(f"scenario.init.materials must be a list of material ids in 0, 1, 2, got {mats!r}")
        if n_discs % len(mats):
            raise ConfigError(f"scenario.init: {n_discs} discs cannot be split evenly over materials {mats}")
        vmin = _num(init, "velocity_min", "init")
        vmax = _num(init, "velocity_max", "init")
        if vmax < vmin:
            raise ConfigError(f"scenario.init.velocity_max ({vmax}) < velocity_min ({vmin})")
    else:
        discs = init.get("discs")
        if not isinstance(discs, (list, tuple)) or not discs:
            raise ConfigError("scenario.init.discs must be a non-empty list of discs")
        for k, d in enumerate(discs):
            where = f"init.discs[{k}]"
            if not isinstance(d, Mapping):
                raise ConfigError(f"scenario.{where} must be a mapping")
            _vec2(d.get("centre"), f"{where}.centre")
            _vec2(d.get("velocity"), f"{where}.velocity")
            _num(d, "radius", where, lo=0.0, lo_open=True)
            _num(d, "n_particles", where, integer=True, lo=1)
            if d.get("material") not in (0, 1, 2):
                raise ConfigError(f"scenario.{where}.material must be 0 (liquid), 1 (jelly) or 2 (snow)")
    return dict(cfg)


def physics_params(cfg: Mapping) -> tuple[GridParams, MaterialParams]:
    """Grid and material constants of a (validated) scenario config."""
    phys = _plain(cfg)["physics"]
    return GridParams.from_config(phys), MaterialParams.from_config(phys)


def _disc_points(gen: torch.Generator, n: int, radius: float) -> torch.Tensor:
    """n points uniform by area in a disc of the given radius centred at 0 (float64 for exact placement)."""
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    r = radius * torch.sqrt(u[:, 0])
    th = 2.0 * math.pi * u[:, 1]
    return torch.stack((r * torch.cos(th), r * torch.sin(th)), dim=1)


def initial_state(cfg: Mapping, seed: int, device: torch.device | str = "cpu") -> MPMState:
    """Initial particle state of a scenario for a seed; identical for a seed on every device.

    Draw order (disc_grid): material permutation, disc velocities, object-id permutation, then particle
    positions disc by disc. Frame 0 has C = 0, F = I, Jp = 1, S = 0.
    """
    cfg = validate_scenario(cfg)
    gp, mp = physics_params(cfg)
    init = cfg["init"]
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    if init["kind"] == "disc_grid":
        xs, ys = [float(a) for a in init["centres_x"]], [float(a) for a in init["centres_y"]]
        n_discs = len(xs) * len(ys)
        centres = torch.tensor([(xs[g % len(xs)], ys[g // len(xs)]) for g in range(n_discs)], dtype=torch.float64)
        mats = torch.tensor(init["materials"], dtype=torch.int64)
        disc_mat = mats[torch.randperm(n_discs, generator=gen) % len(mats)]
        vmin, vmax = float(init["velocity_min"]), float(init["velocity_max"])
        disc_vel = vmin + (vmax - vmin) * torch.rand(n_discs, 2, generator=gen, dtype=torch.float64)
        if init.get("shuffle_object_ids", True):
            disc_id = torch.randperm(n_discs, generator=gen)
        else:
            disc_id = torch.arange(n_discs)
        counts = [int(init["particles_per_disc"])] * n_discs
        radii = [float(init["radius"])] * n_discs
    else:
        discs = init["discs"]
        n_discs = len(discs)
        centres = torch.tensor([_vec2(d["centre"], "centre") for d in discs], dtype=torch.float64)
        disc_mat = torch.tensor([int(d["material"]) for d in discs], dtype=torch.int64)
        disc_vel = torch.tensor([_vec2(d["velocity"], "velocity") for d in discs], dtype=torch.float64)
        disc_id = torch.arange(n_discs)
        counts = [int(d["n_particles"]) for d in discs]
        radii = [float(d["radius"]) for d in discs]
    x = torch.cat([centres[g] + _disc_points(gen, counts[g], radii[g]) for g in range(n_discs)])
    lo_edge, hi_edge = gp.wall_cells * gp.dx, 1.0 - gp.wall_cells * gp.dx
    if x.min() < lo_edge or x.max() > hi_edge:
        raise ConfigError(f"scenario {cfg['name']}: some disc reaches into the wall band "
                          f"(keep particles within [{lo_edge:.4f}, {hi_edge:.4f}])")
    group = torch.repeat_interleave(torch.arange(n_discs), torch.tensor(counts))
    n = x.shape[0]
    mtype = disc_mat[group]
    dens = torch.tensor(mp.densities, dtype=torch.float64)
    mass = gp.p_vol * dens[mtype]
    f32 = torch.float32
    state = MPMState(
        x=x.T.to(f32).contiguous(), v=disc_vel[group].T.to(f32).contiguous(), C=torch.zeros(2, 2, n, dtype=f32),
        F=torch.eye(2, dtype=f32)[:, :, None].repeat(1, 1, n), Jp=torch.ones(n, dtype=f32),
        S=torch.zeros(2, 2, n, dtype=f32), mtype=mtype, mass=mass.to(f32), object_id=disc_id[group],
    )
    return state.to(device)


def disc_index(cfg: Mapping) -> torch.Tensor:
    """Disc (group) index of each particle in creation order, independent of the object-id shuffle."""
    cfg = validate_scenario(cfg)
    init = cfg["init"]
    if init["kind"] == "disc_grid":
        n_discs = len(init["centres_x"]) * len(init["centres_y"])
        counts = [int(init["particles_per_disc"])] * n_discs
    else:
        counts = [int(d["n_particles"]) for d in init["discs"]]
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
