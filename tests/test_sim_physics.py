"""Physics of the MPM step on small setups: free flight, mass and momentum, material invariants, determinism."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mpm_inr.errors import ConfigError
from mpm_inr.sim import (
    LIQUID,
    SNOW,
    MPMSimulator,
    disc_index,
    initial_state,
    physics_params,
    validate_scenario,
)
from mpm_inr.sim.material import saved_stress_reference

CONF = Path(__file__).resolve().parents[1] / "conf"


def scenario(name: str, *overrides: str) -> dict:
    """A scenario config composed through Hydra exactly as `generate.py` sees it, as a plain dict."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="generate", overrides=[f"scenario={name}", *overrides])
    return OmegaConf.to_container(cfg.scenario, resolve=True)


def run(cfg: dict, seed: int, n_steps: int, every: int = 1) -> dict[str, np.ndarray]:
    """Frames 0, every, 2*every, ... n_steps of a simulation, in the dataset layout (T, N, ...)."""
    gp, mp = physics_params(cfg)
    sim = MPMSimulator(initial_state(cfg, seed), gp, mp)
    out: dict[str, list] = {k: [] for k in ("x", "v", "C", "F", "Jp", "S")}
    for k in range(n_steps + 1):
        if k % every == 0:
            for name, frames in out.items():
                frames.append(sim.state.frame_view(name).numpy().copy())
        if k < n_steps:
            sim.step()
    return {k: np.stack(v) for k, v in out.items()}


def disc_com(x: np.ndarray, mass: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Centre of mass of each disc, (n_discs, 2), in float64."""
    m = mass.astype(np.float64)
    return np.stack([(x[group == g].astype(np.float64) * m[group == g, None]).sum(0) / m[group == g].sum()
                     for g in range(group.max() + 1)])


def first_contact_step(com0: np.ndarray, vel0: np.ndarray, radius: float, cfg: dict, max_steps: int) -> int:
    """Last step before any disc's stencil could touch another disc's or a wall band (free-flight prediction)."""
    gp, _ = physics_params(cfg)
    dx, w, g = gp.dx, gp.wall_cells, gp.gravity
    for k in range(1, max_steps + 1):
        t = k * gp.dt
        c = com0 + vel0 * t
        c[:, 1] += 0.5 * g * t * t
        d = np.linalg.norm(c[:, None] - c[None], axis=2) + 9.0 * np.eye(len(c))
        # a particle touches nodes within 1.5 dx; 2 dx margins leave room for the disc's sampled edge
        if d.min() < 2 * radius + 4 * dx or (c - radius - 2 * dx).min() < (w - 1) * dx \
                or (c + radius + 2 * dx).max() > (gp.n_grid - w + 1) * dx:
            return k - 1
    return max_steps


# --------------------------------------------------------------------------------------------- scenarios
def test_scenarios_compose_and_validate():
    for name in ("discs_3types", "discs_small", "collision"):
        cfg = validate_scenario(scenario(name))
        assert cfg["name"] == name
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        train = compose(config_name="train", overrides=["scenario=discs_small"])
    assert train.scenario.name == "discs_small" and train.scenario.physics.n_grid == 64


@pytest.mark.parametrize("bad, match", [
    (("physics", "dt", -1.0), "dt"),
    (("physics", "n_grid", 12.5), "n_grid"),
    (("physics", "typo_key", 1.0), "typo_key"),
    (("init", "kind", "squares"), "init.kind"),
    (("init", "materials", [0, 1]), "split evenly"),
    (("n_frames", None, 0), "n_frames"),
])
def test_bad_scenario_values_raise_config_error(bad, match):
    cfg = scenario("discs_small")
    section, key, value = bad
    if key is None:
        cfg[section] = value
    else:
        cfg[section][key] = value
    with pytest.raises(ConfigError, match=match):
        validate_scenario(cfg)


def test_disc_initial_condition_matches_reference_layout():
    cfg = scenario("discs_3types")
    s = initial_state(cfg, 5)
    x, v = s.frame_view("x").numpy(), s.frame_view("v").numpy()
    group = disc_index(cfg).numpy()
    assert x.shape == (9000, 2) and np.bincount(group).tolist() == [1000] * 9
    centres = np.array([(cx, cy) for cy in (0.375, 0.625, 0.875) for cx in (0.2, 0.45, 0.7)])
    r = np.linalg.norm(x - centres[group], axis=1)
    assert r.max() <= 0.075 + 1e-6
    assert abs((r**2).mean() / 0.075**2 - 0.5) < 0.02  # uniform by area: E[r^2] = R^2 / 2
    mt = s.mtype.numpy()
    disc_mat = np.array([mt[group == g][0] for g in range(9)])
    assert np.bincount(disc_mat, minlength=3).tolist() == [3, 3, 3]
    for g in range(9):
        assert (mt[group == g] == disc_mat[g]).all()
        assert (v[group == g] == v[group == g][0]).all()  # one velocity per disc
    assert np.abs(v).max() <= 2.0 and sorted(np.unique(s.object_id.numpy()).tolist()) == list(range(9))
    np.testing.assert_allclose(s.mass.numpy(), (0.5 / 128) ** 2 * np.array([1.0, 0.5, 0.25])[mt], rtol=1e-6)
    assert (s.F.numpy() == np.eye(2)[:, :, None]).all() and (s.C.numpy() == 0).all() and (s.Jp.numpy() == 1).all()


def test_seed_changes_draw_and_same_seed_is_identical():
    cfg = scenario("discs_small")
    a, b, c = initial_state(cfg, 1), initial_state(cfg, 1), initial_state(cfg, 2)
    assert torch.equal(a.x, b.x) and torch.equal(a.mtype, b.mtype) and torch.equal(a.v, b.v)
    assert not torch.equal(a.x, c.x)


# ------------------------------------------------------------------------------------------------ physics
@pytest.mark.parametrize("mass_eps, tol", [(0.0, 2e-5), (1e-10, 2.5e-4)])
def test_disc_centres_follow_free_flight_until_first_contact(mass_eps, tol):
    """Each disc's centre of mass follows x0 + v0 t, y0 + v0 t - 25 t^2 (symplectic Euler: -25 t (t + dt)).

    With the reference's 1e-10 mass eps the grid division damps momentum by ~eps/node_mass per step, so the
    light snow discs lag by up to ~1e-4 after a few hundred steps; with eps 0 the agreement is float32-tight.
    """
    cfg = scenario("discs_3types", f"scenario.physics.mass_eps={mass_eps}")
    gp, _ = physics_params(cfg)
    seed = 1
    s0 = initial_state(cfg, seed)
    group = disc_index(cfg).numpy()
    mass = s0.mass.numpy()
    com0 = disc_com(s0.frame_view("x").numpy(), mass, group)
    vel0 = np.stack([s0.frame_view("v").numpy()[group == g][0] for g in range(9)]).astype(np.float64)
    k_end = first_contact_step(com0, vel0, 0.075, cfg, max_steps=400)
    assert k_end >= 100, "setup: discs touch too early for a meaningful free-flight check"
    every = max(1, k_end // 4)
    k_end = (k_end // every) * every
    frames = run(cfg, seed, k_end, every=every)
    for i, x in enumerate(frames["x"]):
        t = i * every * gp.dt
        pred = com0 + vel0 * t
        pred[:, 1] += 0.5 * gp.gravity * t * (t + gp.dt)
        np.testing.assert_allclose(disc_com(x, mass, group), pred, atol=tol, rtol=0)
    # and against the continuous parabola, whose offset from the discrete one is |g|/2 * t * dt
    t = k_end * gp.dt
    cont = com0 + vel0 * t
    cont[:, 1] += 0.5 * gp.gravity * t * t
    assert np.abs(disc_com(frames["x"][-1], mass, group) - cont).max() < tol + 25 * t * gp.dt
    # rigid translation: free discs neither deform nor carry stress beyond float noise
    assert np.abs(frames["F"][-1] - np.eye(2)).max() < 1e-3


def test_grid_mass_equals_particle_mass():
    cfg = scenario("discs_small")
    gp, mp = physics_params(cfg)
    sim = MPMSimulator(initial_state(cfg, 0), gp, mp)
    for k in range(3):
        gm = sim.grid_mass()
        assert gm.shape == (64, 64) and (gm >= 0).all()
        np.testing.assert_allclose(gm.double().sum().item(), sim.state.mass.double().sum().item(), rtol=1e-6)
        for _ in range(200):
            sim.step()


def test_momentum_conserved_without_gravity_and_walls():
    """Two discs collide head-on in mid-air (gravity off): total momentum stays put through the impact."""
    cfg = scenario("collision", "scenario.physics.gravity=0.0", "scenario.physics.mass_eps=0.0",
                   "scenario.physics.n_grid=64", "scenario.init.discs.0.centre=[0.36,0.5]",
                   "scenario.init.discs.1.centre=[0.64,0.5]", "scenario.init.discs.0.n_particles=1200",
                   "scenario.init.discs.1.n_particles=600", "scenario.init.discs.0.velocity=[3.0,0.5]",
                   "scenario.init.discs.1.velocity=[-3.0,0.0]")
    frames = run(cfg, 0, 300, every=25)
    m = initial_state(cfg, 0).mass.numpy().astype(np.float64)
    p = (frames["v"].astype(np.float64) * m[None, :, None]).sum(1)  # (T, 2)
    scale = (np.abs(frames["v"][0]).astype(np.float64) * m[:, None]).sum()
    assert np.abs(p - p[0]).max() < 1e-5 * scale
    # the discs did interact (otherwise this is not a test of the internal forces)
    v_jelly = frames["v"][:, -600:, 0].mean(1)
    assert v_jelly[-1] > v_jelly[0] + 1.0
    x = frames["x"][-1]
    assert x.min() > 0.1 and x.max() < 0.9  # never near a wall


@pytest.fixture(scope="module")
def small_run() -> tuple[dict, dict, np.ndarray]:
    """discs_small seed 0 for 700 steps, every frame (discs have met each other and the floor)."""
    cfg = scenario("discs_small")
    return cfg, run(cfg, 0, 700), initial_state(cfg, 0).mtype.numpy()


def test_liquid_F_is_sqrtJ_identity_and_jelly_liquid_Jp_exactly_one(small_run):
    _, fr, mt = small_run
    F = fr["F"][:, mt == LIQUID]
    assert (F[..., 0, 1] == 0).all() and (F[..., 1, 0] == 0).all() and (F[..., 0, 0] == F[..., 1, 1]).all()
    assert np.abs(F[-1, :, 0, 0] - 1).max() > 1e-3  # the liquid was compressed or stretched at all
    assert (fr["Jp"][:, mt != SNOW] == 1.0).all()


def test_snow_singular_values_within_clamps_and_snow_yields(small_run):
    _, fr, mt = small_run
    mp = physics_params(scenario("discs_small"))[1]
    sig = np.linalg.svd(fr["F"][1:, mt == SNOW].astype(np.float64).reshape(-1, 2, 2), compute_uv=False)
    assert sig.min() >= mp.snow_sig_min - 1e-5 and sig.max() <= mp.snow_sig_max + 1e-5
    Jp = fr["Jp"][-1, mt == SNOW]
    assert Jp.min() < 0.99 or Jp.max() > 1.01  # plasticity was actually exercised


def test_saved_S_symmetric_and_equal_to_formula_on_saved_F_and_previous_Jp(small_run):
    cfg, fr, mt = small_run
    gp, mp = physics_params(cfg)
    S = fr["S"]
    assert (S[0] == 0).all()
    assert np.array_equal(S[..., 0, 1], S[..., 1, 0])  # symmetric bit for bit
    scale = np.abs(S[1:]).max()
    assert scale > 1e-4
    for k in (1, 250, 500, 700):
        ref = saved_stress_reference(fr["F"][k], fr["Jp"][k - 1], mt, gp.dt, mp)
        np.testing.assert_allclose(S[k], ref, atol=2e-4 * scale, rtol=0)


def test_frame_identities(small_run):
    """x[k+1] = x[k] + dt v[k+1]; frame 0 is the initial condition."""
    cfg, fr, _ = small_run
    dt = physics_params(cfg)[0].dt
    np.testing.assert_allclose(fr["x"][1:], fr["x"][:-1] + dt * fr["v"][1:], atol=2e-7)
    assert (fr["C"][0] == 0).all() and (fr["F"][0] == np.eye(2)).all()


def test_same_seed_bit_identical_and_thread_count_independent():
    cfg = scenario("discs_small")
    a = run(cfg, 3, 150, every=150)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = run(cfg, 3, 150, every=150)
    finally:
        torch.set_num_threads(threads)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_particle_leaving_the_box_is_bounds_safe():
    cfg = copy.deepcopy(scenario("discs_small"))
    gp, mp = physics_params(cfg)
    s = initial_state(cfg, 0)
    s.x[:, :5] = torch.tensor([[-0.5, 1.7, float("nan"), 0.0, 1.0], [0.5, 0.5, 0.5, -3.0, 2.0]])
    sim = MPMSimulator(s, gp, mp)
    sim.step()
    assert torch.isfinite(sim.state.x[:, 10:]).all()
    assert np.isfinite(sim.grid_mass().numpy()).sum() > 0


@pytest.mark.parametrize("friction", [0.0, 1.0])
def test_floor_is_separating_and_friction_damps_sliding(friction):
    """A jelly disc thrown at the floor stops at the wall band (and bounces); friction 1 brakes its sliding."""
    cfg = scenario("discs_small", f"scenario.physics.friction={friction}")
    cfg["init"] = {"kind": "discs", "discs": [
        {"centre": [0.4, 0.15], "radius": 0.05, "n_particles": 150, "material": 1, "velocity": [1.0, -3.0]}]}
    fr = run(cfg, 0, 300, every=300)  # step 300: in contact with the floor
    gp, _ = physics_params(cfg)
    y_min = fr["x"][-1, :, 1].min()
    assert (gp.wall_cells - 1.5) * gp.dx < y_min < gp.wall_cells * gp.dx  # in the wall band, not through it
    vx = fr["v"][-1, :, 0].mean()
    if friction == 0.0:
        assert vx > 0.99  # separating, frictionless: the floor does not touch the tangential velocity
    else:
        assert vx < 0.85  # sticky floor brakes the sliding disc


def test_bench_sim_reports_rate():
    from mpm_inr.bench_sim import bench_sim

    r = bench_sim(scenario("discs_small"), "cpu", n_steps=5, warmup=1, repeats=2, threads=1)
    assert r["steps_per_s"] > 0 and r["n_particles"] == 900 and r["finite"] and r["torch_threads"] == 1
    assert r["extrapolated_s_for_n_frames"] == pytest.approx(999 / r["steps_per_s"])
    with pytest.raises(ConfigError):
        bench_sim(scenario("discs_small"), "cpu", n_steps=0)
