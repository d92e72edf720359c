"""One vectorised MLS-MPM step (APIC transfers, quadratic B-splines) and the simulator that repeats it.

The step follows the reference's order exactly (spec section 3): F <- (I + dt C) F; material law (hardening
from the previous Jp, sign-fixed SVD, snow plasticity, F reconstruction, stress S = -dt tau); Q = S + m C;
P2G; grid update (normalise, gravity, separating walls, friction); G2P; x += dt v. Two fixes to the reference:
hardening is clamped (in `material`) and no 1e-6 I is added to F. Kept from the reference: the J >= 1e-4
clamp and the 1e-10 eps in the grid velocity division (`mass_eps`). Note that this eps is not harmless: it
removes a fraction eps/node_mass of the momentum every step, about 7.5e-6 per step for snow at grid 128,
which shows as a ~1e-4 lag of a free-flying snow disc after 370 steps; `physics.mass_eps: 0` turns it off.

Tensors are component-first (particle axis last). All 9 stencil nodes are handled at once: weights and
offsets form one (3, 9, N) tensor A that serves P2G (one index_add_ of (3, 9N) values) and G2P (one gather
and one reduction). The scatter is bounds-safe: the grid has 3 pad cells on each side with velocity pinned to
zero, and the stencil base is clamped into them, so a particle that left the box (or a NaN) cannot alias.
There is no host sync inside a step, so on CUDA the step can be captured in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from mpm_inr.sim.material import MaterialParams, ParticleMaterial, material_update, mm


@dataclass(frozen=True)
class GridParams:
    """Grid, time step and boundary constants (defaults are the reference dataset's)."""

    n_grid: int = 128
    dt: float = 7.5e-5
    gravity: float = -50.0
    wall_cells: int = 3  # separating walls on nodes i < w and i > n_grid - w
    friction: float = 0.0  # tangential damping factor on wall-band nodes; 1 = sticky walls
    mass_eps: float = 1e-10  # reference HEAD: v = momentum / (mass + eps); damps v by ~eps/node_mass per step

    @property
    def dx(self) -> float:
        return 1.0 / self.n_grid

    @property
    def p_vol(self) -> float:
        """Rest area of a particle: 2x2 particles per cell. It makes the stress factor p_vol*4/dx^2 exactly 1."""
        return (0.5 * self.dx) ** 2

    @classmethod
    def from_config(cls, cfg: Mapping) -> GridParams:
        kw = {}
        for f in fields(cls):
            if f.name in cfg and cfg[f.name] is not None:
                kw[f.name] = int(cfg[f.name]) if f.type in ("int", int) else float(cfg[f.name])
        return cls(**kw)


@dataclass
class MPMState:
    """Particle state, component-first (particle axis last, contiguous) for fast batched ops.

    Per frame: x, v (2, N); C, F, S (2, 2, N), C[a][b] ~ dv_a/dx_b; Jp (N,). Per particle: mtype (N,) int64,
    mass (N,), object_id (N,) int64. `frame_view(name)` gives the dataset layout (N, ...).
    """

    x: Tensor
    v: Tensor
    C: Tensor
    F: Tensor
    Jp: Tensor
    S: Tensor  # -dt * tau of the last step (0 at frame 0)
    mtype: Tensor
    mass: Tensor
    object_id: Tensor

    FRAME_FIELDS = ("x", "v", "C", "F", "Jp", "S")

    @property
    def n_particles(self) -> int:
        return self.x.shape[-1]

    def frame_view(self, name: str) -> Tensor:
        """Field in the dataset's particle-first layout: (N, 2), (N, 2, 2) or (N,) (a view, not a copy)."""
        t = getattr(self, name)
        return t.movedim(-1, 0)

    def to(self, device: torch.device | str) -> MPMState:
        return MPMState(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def clone(self) -> MPMState:
        return MPMState(**{f.name: getattr(self, f.name).clone() for f in fields(self)})


# ----------------------------------------------------------------------------------------------- transfers
PAD = 3  # grid padding on each side: nodes of particles that leave the box land in pad cells (zero velocity)


def padded_size(n_grid: int) -> int:
    return n_grid + 2 * PAD


def stencil(x: Tensor, n_grid: int) -> tuple[Tensor, Tensor]:
    """Quadratic B-spline stencil of each particle, nodes ordered (i outer, j inner).

    Returns A (3, 9, N) = [w, w (i - fx), w (j - fy)] (offsets in grid units) and the flat index (9, N) into
    the padded grid. base = floor(x/dx - 0.5) (the reference truncates; the two differ only for x < dx/2,
    never reached inside the walls). The base is clamped to [-PAD, n_grid] (also after the integer cast,
    which is what catches NaN), so the scatter stays in bounds for any x and a garbage particle only ever
    touches pad cells.
    """
    xg = x * float(n_grid)
    basef = torch.floor(xg - 0.5)
    fx = xg - basef  # (2, N) in [0.5, 1.5)
    w = torch.stack((0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2))  # (3, 2, N)
    offs = torch.arange(3, dtype=x.dtype, device=x.device)[:, None]
    rel = offs[:, None] - fx[None]  # (3 offsets, 2 axes, N)
    W = w[:, None, 0] * w[None, :, 1]  # (3, 3, N)
    A = torch.stack((W, W * rel[:, None, 0], W * rel[None, :, 1])).reshape(3, 9, -1)
    P = padded_size(n_grid)
    base = basef.clamp(-PAD, n_grid).to(torch.int64).clamp_(-PAD, n_grid) + PAD  # padded index, first node
    ioffs = torch.arange(3, device=x.device)[:, None]
    flat = ((base[0] + ioffs) * P)[:, None] + (base[1] + ioffs)[None, :]  # (3, 3, N)
    return A, flat.reshape(9, -1)


def p2g(A: Tensor, flat: Tensor, mass: Tensor, v: Tensor, Q: Tensor, n_grid: int) -> Tensor:
    """Scatter mass and APIC momentum w (m v + Q d) to the padded grid; returns (3, P*P) [mass, px, py].

    d = node - x = (offset - fx) dx, so Q d = dx (Q[:, 0] (i - fx) + Q[:, 1] (j - fy)).
    """
    dx = 1.0 / n_grid
    W, A1, A2 = A[0], A[1], A[2]
    mv = mass * v  # (2, N)
    vals = torch.empty(3, *W.shape, dtype=v.dtype, device=v.device)
    torch.mul(W, mass, out=vals[0])
    vals[1:] = W[None] * mv[:, None] + A1[None] * (dx * Q[:, 0])[:, None] + A2[None] * (dx * Q[:, 1])[:, None]
    P = padded_size(n_grid)
    grid = torch.zeros(3, P * P, dtype=v.dtype, device=v.device)
    grid.index_add_(1, flat.reshape(-1), vals.reshape(3, -1))
    return grid


def wall_bounds(gp: GridParams, device: torch.device | str, dtype: torch.dtype = torch.float32
                ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-node velocity bounds (lo, hi) of the padded grid and the friction scale (or None), each (2, P*P).

    Separating walls: in the low band (index < w) the normal velocity may not be negative, in the high band
    (index > n - w) not positive. Pad cells are pinned to zero velocity (nodes outside the grid contribute
    nothing in G2P). Precomputed once so that the wall update is a single clamp.
    """
    n, w, P = gp.n_grid, gp.wall_cells, padded_size(gp.n_grid)
    idx = torch.arange(P, device=device) - PAD
    inside = (idx >= 0) & (idx < n)
    inf = float("inf")
    lo1 = torch.where(idx < w, 0.0, -inf).to(dtype)
    hi1 = torch.where(idx > n - w, 0.0, inf).to(dtype)
    ones = torch.ones(P, P, dtype=dtype, device=device)
    lo = torch.stack((lo1[:, None] * ones, lo1[None, :] * ones))  # vx bounded by the x index, vy by the y index
    hi = torch.stack((hi1[:, None] * ones, hi1[None, :] * ones))
    pad = ~(inside[:, None] & inside[None, :])
    lo[:, pad] = 0.0
    hi[:, pad] = 0.0
    fric = None
    if gp.friction != 0.0:
        keep = (1.0 - gp.friction * ((idx < w) | (idx > n - w)).to(dtype))
        # nodes in the x-wall band damp vy, nodes in the y-wall band damp vx
        fric = torch.stack((keep[None, :] * ones, keep[:, None] * ones)).reshape(2, -1)
    return lo.reshape(2, -1), hi.reshape(2, -1), fric


def grid_update(grid: Tensor, gp: GridParams, lo: Tensor, hi: Tensor, fric: Tensor | None) -> Tensor:
    """Grid velocity (2, P*P): momentum / (mass + eps), gravity where mass > 0, walls, friction."""
    gm = grid[0]
    vg = grid[1:] / (gm + gp.mass_eps)
    vg[1] += (gp.dt * gp.gravity) * (gm > 0).to(grid.dtype)
    vg = torch.clamp(vg, min=lo, max=hi)
    if fric is not None:
        vg = vg * fric
    return vg


def g2p(A: Tensor, flat: Tensor, vg: Tensor, n_grid: int) -> tuple[Tensor, Tensor]:
    """Gather APIC velocity v = sum w v_i (2, N) and affine C = 4/dx sum w v_i (x) (offset - fx) (2, 2, N)."""
    vn = vg.index_select(1, flat.reshape(-1)).view(2, 1, *flat.shape)  # (2, 1, 9, N)
    B = (vn * A[None]).sum(2)  # (2, 3, N)
    return B[:, 0], (4.0 * n_grid) * B[:, 1:]


# ----------------------------------------------------------------------------------------------- the step
def mpm_step(s: MPMState, gp: GridParams, mp: MaterialParams, lo: Tensor, hi: Tensor,
             fric: Tensor | None, material: ParticleMaterial | None = None
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Pure function: the state after one step, as (x, v, C, F, Jp, S). Allocates new tensors.

    `material` is the prebuilt per-particle table of `s.mtype` (built here when not given).
    """
    dt = gp.dt
    F_trial = s.F + dt * mm(s.C, s.F)
    mat = material_update(F_trial, s.Jp, s.mtype if material is None else material, dt, mp)
    Q = mat.S + s.mass * s.C  # the stress factor dt * p_vol * 4 / dx^2 is exactly dt, already in S
    A, flat = stencil(s.x, gp.n_grid)
    grid = p2g(A, flat, s.mass, s.v, Q, gp.n_grid)
    vg = grid_update(grid, gp, lo, hi, fric)
    v_new, C_new = g2p(A, flat, vg, gp.n_grid)
    x_new = s.x + dt * v_new
    return x_new, v_new, C_new, mat.F, mat.Jp, mat.S


class MPMSimulator:
    """Owns the state and advances it in place; on CUDA the step can be replayed from a captured CUDA graph.

    `step()` never syncs with the host, so a generation loop can queue many steps and copy frames out in
    chunks.
    """

    def __init__(self, state: MPMState, grid: GridParams, material: MaterialParams,
                 cuda_graph: bool | None = None) -> None:
        self.state = state
        self.grid = grid
        self.material = material
        self.device = state.x.device
        self._lo, self._hi, self._fric = wall_bounds(grid, self.device, state.x.dtype)
        self._pm = ParticleMaterial.build(state.mtype, material, state.x.dtype)
        self._graph: torch.cuda.CUDAGraph | None = None
        self.n_steps = 0
        if cuda_graph is None:
            cuda_graph = self.device.type == "cuda"
        if cuda_graph:
            if self.device.type != "cuda":
                raise ValueError("cuda_graph=True needs the state on a CUDA device")
            self._capture()

    def _step_eager(self) -> None:
        s = self.state
        with torch.inference_mode():
            out = mpm_step(s, self.grid, self.material, self._lo, self._hi, self._fric, self._pm)
            for name, t in zip(MPMState.FRAME_FIELDS, out):
                getattr(s, name).copy_(t)

    def _capture(self) -> None:
        """Capture one step in a CUDA graph. Warm-up steps run on a copy of the state, which is restored."""
        backup = self.state.clone()
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step_eager()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step_eager()
        for name in MPMState.FRAME_FIELDS:
            getattr(self.state, name).copy_(getattr(backup, name))
        torch.cuda.synchronize(self.device)
        self._graph = graph

    @property
    def uses_cuda_graph(self) -> bool:
        return self._graph is not None

    def step(self) -> None:
        """Advance the state by one MPM step (in place)."""
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step_eager()
        self.n_steps += 1

    def grid_mass(self) -> Tensor:
        """Grid mass field (n_grid, n_grid) of the current state (P2G of the masses), padding dropped."""
        s, n = self.state, self.grid.n_grid
        with torch.inference_mode():
            A, flat = stencil(s.x, n)
            g = p2g(A, flat, s.mass, s.v, torch.zeros_like(s.C), n)
        P = padded_size(n)
        return g[0].view(P, P)[PAD:PAD + n, PAD:PAD + n].clone()
