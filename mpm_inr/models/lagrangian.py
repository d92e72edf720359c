"""Lagrangian INRs: a SIREN over t shared by all particles, specialised per particle.

MPM fields are smooth along each particle's trajectory and rough across particles, so the particle axis gets
free per-particle parameters (a head row or a latent code) and only time goes through the smooth network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mpm_inr.config.choices import CODES_MODES, DECODERS, GROUPINGS
from mpm_inr.errors import ConfigError
from mpm_inr.models import flops
from mpm_inr.models.code_statistics import CodeStatistics, ridge_solve
from mpm_inr.models.context import NetworkContext
from mpm_inr.models.field_network import FieldNetwork
from mpm_inr.models.siren import Siren, SirenTrunk


class PerParticleHead(FieldNetwork):
    """siren_t: t -> all particles x components via a head of width x particles x components (memorises)."""

    particle_labels = frozenset()

    def __init__(self, ctx: NetworkContext, in_dim: int, hidden_dim: int, n_layers: int, omega: float,
                 learn_omega: bool = False) -> None:
        super().__init__()
        self.trunk = SirenTrunk(in_dim, hidden_dim, n_layers, omega, learn_omega)
        bound = (6.0 / hidden_dim) ** 0.5 / float(omega)
        self.weight = nn.Parameter(torch.empty(ctx.n_particles, hidden_dim, ctx.n_components).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(ctx.n_particles, ctx.n_components))

    def forward(self, coords: Tensor, particle_idx: Tensor) -> Tensor:
        h = self.trunk(coords)
        return torch.einsum("bh,bhc->bc", h, self.weight[particle_idx]) + self.bias[particle_idx]

    def forward_grid(self, t_grid: Tensor, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
        """Same as forward, but the trunk runs once per frame of the window instead of once per point."""
        h = self.trunk(t_grid)[frame_idx]
        return torch.einsum("bh,bhc->bc", h, self.weight[particle_idx]) + self.bias[particle_idx]

    def forward_dense(self, t_frames: Tensor) -> Tensor:
        """Every particle at the given frames: (F, 1) -> (F, N, C) as one matrix product."""
        return torch.einsum("fh,nhc->fnc", self.trunk(t_frames), self.weight) + self.bias

    @staticmethod
    def flop_costs(model: Mapping[str, Any], in_dim: int, n_components: int) -> tuple[float, float]:
        """(FLOPs of the trunk, which sees t alone; FLOPs of the per-particle head row per point)."""
        h, n = flops.size(model, "hidden_dim"), flops.size(model, "n_layers")
        return flops.siren_trunk(in_dim, h, n), 2.0 * h * n_components + n_components


class LatentCodeField(FieldNetwork):
    """Per-particle latent codes z_i in R^K and a temporal basis g(t).

    decoder='bilinear': pred_c = sum_k z_ik g_kc(t), with g a SIREN t -> K x C. Parameters: N*K + a small net.
    decoder='mlp': a small SIREN on [z_i, features(t)] for non-separable fields.
    shared_codes='material'|'object': z_i = z_group(i) + z_i, so a particle starts from its group's code.
    basis_groups='material'|'object': the basis is g(t, e_group) with a learned embedding e per group, so each
    group (a disc, a material) gets its own K temporal curves for a few parameters more. One shared basis caps
    a bilinear model at the rank-K SVD of the whole particles x (frames*components) matrix; per-object bases
    raise that cap to the per-object rank-K SVD (C, 100 frames, K=18: 0.996 -> 0.998; 400 frames, K=36:
    0.988 -> 0.996).
    time_scale: t (in [-1, 1] over the window) is multiplied by this before the basis. A longer window packs more
    events into the same t range; scaling t with the window keeps the basis's first-layer frequencies per frame
    what they were at 100 frames (C, 1000 frames: basis fit to the per-disc SVD curves 0.971 -> 0.984 at 10).
    codes='solved' (bilinear only): the codes are linear given the basis, so each step solves them exactly
    (per-group ridge least squares, K x K systems) and Adam trains only the basis: variable projection. The
    basis then never chases stale codes (C, 100 frames, seed 0: R² 0.9978 in 300 steps, where learned codes
    needed 1200; 1000 frames, 1200 steps: 0.987 -> 0.995 together with time_scale).
    """

    LATENT_GROUP = "latents"  # parameter-name prefix the optimiser uses for the latent lr multiplier

    def __init__(self, ctx: NetworkContext, in_dim: int, latent_dim: int, hidden_dim: int, n_layers: int,
                 omega: float, learn_omega: bool = False, decoder: str = "bilinear", decoder_hidden: int = 64,
                 latent_init_std: float = 0.1, shared_codes: str = "none", basis_groups: str = "none",
                 group_embedding_dim: int = 4, time_scale: float = 1.0, codes: str = "learned") -> None:
        super().__init__()
        self.latent_dim, self.n_components, self.decoder = latent_dim, ctx.n_components, decoder
        self.time_scale = float(time_scale)
        if codes not in CODES_MODES:
            raise ValueError(f"unknown codes {codes!r}; valid: {', '.join(CODES_MODES)}")
        if codes == "solved" and (decoder != "bilinear" or shared_codes != "none"):
            raise ValueError("codes=solved needs decoder=bilinear and shared_codes=none: only then are the codes "
                             "a linear least-squares problem given the basis")
        self.solve_codes = codes == "solved"
        self.particle_labels = frozenset(kind for kind in (shared_codes, basis_groups) if kind != "none")
        self.latents = nn.Parameter(torch.randn(ctx.n_particles, latent_dim) * latent_init_std)
        shared = _particle_groups(ctx, shared_codes, "shared_codes")
        self.register_buffer("group", shared, persistent=False)
        self.latents_shared = None if shared is None else nn.Parameter(torch.zeros(int(shared.max()) + 1, latent_dim))
        self._init_basis_groups(ctx, basis_groups, group_embedding_dim)
        basis_in = in_dim + (0 if self.group_embedding is None else group_embedding_dim)
        if decoder == "bilinear":
            self.basis = Siren(basis_in, latent_dim * ctx.n_components, hidden_dim, n_layers, omega, learn_omega)
        elif decoder == "mlp":
            self.basis = SirenTrunk(basis_in, hidden_dim, n_layers, omega, learn_omega)
            self.head = nn.Sequential(nn.Linear(hidden_dim + latent_dim, decoder_hidden), nn.SiLU(),
                                      nn.Linear(decoder_hidden, ctx.n_components))
        else:
            raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")

    def _init_basis_groups(self, ctx: NetworkContext, basis_groups: str, embedding_dim: int) -> None:
        """Group index per particle, the particles sorted by group, group sizes, and the padded (G, max size)
        layout the Gram form batches over (pad slots point at row N, a zero code and a zero target)."""
        group = _particle_groups(ctx, basis_groups, "basis_groups")
        if group is None:
            group = torch.zeros(ctx.n_particles, dtype=torch.long)
            self.group_embedding = None
        else:
            if embedding_dim < 1:
                raise ValueError(f"group_embedding_dim must be >= 1, got {embedding_dim}")
            n_groups = int(group.max()) + 1
            # uniform in [-1, 1] like the time coordinate, so the first sine layer sees both on one scale
            self.group_embedding = nn.Parameter(torch.rand(n_groups, embedding_dim) * 2 - 1)
        order = torch.argsort(group, stable=True)
        self.group_sizes: list[int] = torch.bincount(group).tolist()
        padded = torch.full((len(self.group_sizes), max(self.group_sizes)), ctx.n_particles, dtype=torch.long)
        for g, members in enumerate(torch.split(order, self.group_sizes)):
            padded[g, :members.numel()] = members
        self.register_buffer("basis_group", group, persistent=False)
        self.register_buffer("group_order", order, persistent=False)
        self.register_buffer("group_padded", padded, persistent=False)
        # integer indices, not a boolean mask: masked indexing syncs with the host on a GPU (it must count first)
        real_slots = torch.flatten(torch.nonzero(padded.flatten() != ctx.n_particles))
        self.register_buffer("_real_slots", real_slots, persistent=False)  # slot positions in the padded layout
        self.register_buffer("_slot_particles", padded.flatten()[real_slots], persistent=False)  # their particles

    @property
    def linear_in_codes(self) -> bool:
        """Whether the prediction is <z_i, g(t)>, linear in each particle's code (the codec transform-codes it)."""
        return self.decoder == "bilinear"

    @property
    def n_basis_groups(self) -> int:
        return len(self.group_sizes)

    def codes(self, particle_idx: Tensor) -> Tensor:
        z = self.latents[particle_idx]
        if self.latents_shared is not None:
            z = z + self.latents_shared[self.group[particle_idx]]
        return z

    def basis_per_group(self, t_frames: Tensor) -> Tensor:
        """The basis network at every (frame, group): (F, 1) -> (F, G, out). Costs F*G evaluations, not F*N."""
        t_frames = t_frames * self.time_scale
        if self.group_embedding is None:
            return self.basis(t_frames).unsqueeze(1)
        n_frames, (n_groups, dim) = t_frames.shape[0], self.group_embedding.shape
        x = torch.cat((t_frames.unsqueeze(1).expand(n_frames, n_groups, t_frames.shape[1]),
                       self.group_embedding.unsqueeze(0).expand(n_frames, n_groups, dim)), dim=-1)
        return self.basis(x)

    def forward(self, coords: Tensor, particle_idx: Tensor) -> Tensor:
        coords = coords * self.time_scale
        if self.group_embedding is not None:
            coords = torch.cat((coords, self.group_embedding[self.basis_group[particle_idx]]), dim=-1)
        return self._decode(self.basis(coords), particle_idx)

    def forward_grid(self, t_grid: Tensor, frame_idx: Tensor, particle_idx: Tensor) -> Tensor:
        """The temporal basis depends on t (and the group) only: evaluate it once per frame and group, then gather."""
        return self._decode(self.basis_per_group(t_grid)[frame_idx, self.basis_group[particle_idx]], particle_idx)

    def forward_dense(self, t_frames: Tensor) -> Tensor:
        """Every particle at the given frames: (F, 1) -> (F, N, C); bilinear is one matrix product per group."""
        basis = self.basis_per_group(t_frames)
        n_frames, n_particles = t_frames.shape[0], self.latents.shape[0]
        if self.decoder == "bilinear":
            basis = basis.view(n_frames, self.n_basis_groups, self.latent_dim, self.n_components)
            out = basis.new_empty(n_frames, n_particles, self.n_components)
            for g, members in enumerate(self._members()):
                out[:, members] = torch.einsum("nk,fkc->fnc", self.codes(members), basis[:, g])
            return out
        frame_idx = torch.arange(n_frames, device=basis.device).repeat_interleave(n_particles)
        particle_idx = torch.arange(n_particles, device=basis.device).repeat(n_frames)
        return self._decode(basis[frame_idx, self.basis_group[particle_idx]], particle_idx).view(
            n_frames, n_particles, self.n_components)

    def pack_targets(self, targets: Tensor) -> Tensor | None:
        """(F, N, C) -> (G, max group size, F·C): each group's particles (zero rows as padding), contiguous, the
        layout `dense_sse` multiplies by. None for the mlp decoder, which has no Gram form (it is not bilinear)."""
        if self.decoder != "bilinear":
            return None
        n_frames, n_particles, n_comp = targets.shape
        by_particle = targets.permute(1, 0, 2).reshape(n_particles, n_frames * n_comp)
        return self._pad_rows(by_particle).contiguous()

    def loss_targets(self, packed_targets: Tensor) -> Tensor:
        """Targets for `dense_sse` during training. With solved codes the loss depends on a group's targets Y_g only
        through YᵀY, so where a group has at least twice as many particles as F·C values per particle, Y_g is
        replaced by the (F·C, F·C) triangular R with RᵀR = YᵀY (Cholesky): same loss, same gradient, and the two
        big products per step shrink by N_g / (F·C), 22x for F on 9000 particles at 100 frames. Learned codes
        are per particle, so they need the real rows; `refresh_codes` always takes the real rows."""
        n_rows, n_cols = packed_targets.shape[1:]
        if not self.solve_codes or 2 * n_cols > n_rows:
            return packed_targets
        wide = torch.float32 if packed_targets.device.type == "mps" else torch.float64
        rows = packed_targets.to(wide)
        gram = torch.bmm(rows.transpose(1, 2), rows)
        jitter = 1e-12 * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)  # YᵀY is only semi-definite
        eye = torch.eye(n_cols, dtype=wide, device=gram.device)
        lower = torch.linalg.cholesky_ex(gram + jitter[:, None, None] * eye)[0]
        return lower.transpose(1, 2).to(packed_targets.dtype).contiguous()

    def dense_sse(self, t_frames: Tensor, packed_targets: Tensor, targets_sq: Tensor) -> Tensor:
        """Sum of squared errors over every particle x frame x component, without forming the prediction.

        For the bilinear decoder each group's prediction is Z_g·B_g (B_g: K x F·C), so ||Z_g B_g - Y_g||² =
        <Z_gᵀZ_g, B_g B_gᵀ> - 2<B_g, Z_gᵀY_g> + ||Y_g||²: K-row matrix products, batched over groups, instead of
        materialising (and back-propagating through) F·N·C values, about 5x faster per step on a CPU.
        packed_targets: from `pack_targets` (or `loss_targets`, solved codes only); targets_sq: ||Y||².
        With codes='solved' the codes are the least-squares optimum for the current basis, held constant: at an
        optimum the codes' gradient is zero, so the basis gets the exact gradient of the projected loss
        (envelope theorem) without back-propagating through the solve.
        """
        basis = self._packed_basis(t_frames)
        if self.solve_codes:
            codes = self._solved_codes(basis.detach(), packed_targets)
        else:
            codes = self._pad_rows(self.codes(torch.arange(self.latents.shape[0], device=basis.device)))
        return self._gram_sse(basis, codes, packed_targets, targets_sq)

    def sampled_sse(self, t_frames: Tensor, positions: Tensor, packed_targets: Tensor, targets_sq: Tensor,
                    statistics: CodeStatistics | None) -> Tensor:
        """Sum of squared errors over a sample of the window's frames (every particle), in Gram form: a step whose
        cost is its frames', whatever the window's length; scaled by frames/sample it estimates `dense_sse`.

        positions: the sampled frames' positions in the window (the statistics' frame index); packed_targets:
        their targets from `pack_targets`. With codes='solved' the codes come from `statistics` (whole-window
        sufficient statistics, these frames' terms first renewed with the current basis) and are held constant,
        as in `dense_sse`; learned codes are used as they are (statistics None)."""
        basis = self._packed_basis(t_frames)
        if self.solve_codes:
            if statistics is None:
                raise ValueError("codes='solved' on sampled frames needs the window's CodeStatistics")
            statistics.replace(positions, basis.detach(), packed_targets)
            codes = statistics.codes().to(basis.dtype)
        else:
            codes = self._pad_rows(self.codes(torch.arange(self.latents.shape[0], device=basis.device)))
        return self._gram_sse(basis, codes, packed_targets, targets_sq)

    def code_statistics(self, n_frames: int) -> CodeStatistics | None:
        """Empty whole-window statistics of the solved codes (None for learned codes, which need none)."""
        if not self.solve_codes:
            return None
        device = self.latents.device
        return CodeStatistics(n_frames, self.n_basis_groups, self.group_padded.shape[1], self.latent_dim,
                              self.n_components, device, self._wide(self.latents))

    @torch.no_grad()
    def accumulate_statistics(self, statistics: CodeStatistics, t_frames: Tensor, positions: Tensor,
                              packed_targets: Tensor) -> None:
        """Renew the statistics' terms of these frames with the current basis (a pass over every frame after
        `reset` makes them exact)."""
        statistics.replace(positions, self._packed_basis(t_frames), packed_targets)

    @torch.no_grad()
    def store_codes_from(self, statistics: CodeStatistics) -> None:
        """Store the codes the statistics solve for, so evaluation and checkpoints see them."""
        self._store_codes(statistics.codes().to(self.latents.dtype))

    @staticmethod
    def _gram_sse(basis: Tensor, codes: Tensor, packed_targets: Tensor, targets_sq: Tensor) -> Tensor:
        """||Z B - Y||² = <ZᵀZ, B Bᵀ> - 2<B, ZᵀY> + ||Y||², batched over groups."""
        codes_t = codes.transpose(1, 2)
        zz, zy = torch.bmm(codes_t, codes), torch.bmm(codes_t, packed_targets)
        return targets_sq + (zz * torch.bmm(basis, basis.transpose(1, 2))).sum() - 2 * (basis * zy).sum()

    @torch.no_grad()
    def refresh_codes(self, t_frames: Tensor, packed_targets: Tensor) -> None:
        """codes='solved': store the codes that are optimal for the current basis (after the last optimiser
        step), so evaluation and checkpoints see a consistent model. No-op for learned codes."""
        if self.solve_codes:
            self._store_codes(self._solved_codes(self._packed_basis(t_frames), packed_targets))

    def _store_codes(self, codes: Tensor) -> None:
        """(G, max group size, K) padded codes -> the per-particle latents."""
        self.latents.index_copy_(0, self._slot_particles, codes.flatten(0, 1).index_select(0, self._real_slots))

    def _packed_basis(self, t_frames: Tensor) -> Tensor:
        """(F, 1) -> (G, K, F·C), the basis in the layout `pack_targets` gives the targets."""
        n_frames, n_groups = t_frames.shape[0], self.n_basis_groups
        basis = self.basis_per_group(t_frames).view(n_frames, n_groups, self.latent_dim, self.n_components)
        return basis.permute(1, 2, 0, 3).reshape(n_groups, self.latent_dim, n_frames * self.n_components)

    @torch.no_grad()
    def _solved_codes(self, basis: Tensor, packed_targets: Tensor) -> Tensor:
        """argmin_Z ||Z B - Y||² + ridge·||Z||² per group, (G, max group size, K); padding rows stay zero because
        their targets are zero. The K x K systems are solved in float64: B Bᵀ squares the basis's condition number.
        The ridge (1e-6 of the mean diagonal) only keeps a rank-deficient basis (early in training) solvable.
        `dense_sse` also forms B Bᵀ, in float32 for the loss; the solve forms its own in float64 on purpose. The
        duplicate is 2% of a step by FLOP count (C, 1000 frames, K 102), and sharing the float32 one was within
        the timing noise (CPU, 700 ms/step either way) while it moved C's R² in the 4th digit."""
        gram = torch.bmm(basis.to(self._wide(basis)), basis.transpose(1, 2).to(self._wide(basis)))
        rhs = torch.bmm(basis, packed_targets.transpose(1, 2)).to(gram.dtype)  # (G, K, max group size)
        return ridge_solve(gram, rhs).to(basis.dtype)

    @staticmethod
    def _wide(like: Tensor) -> torch.dtype:
        """float64 for the normal equations (B Bᵀ squares the basis's condition number); MPS has no float64."""
        return torch.float32 if like.device.type == "mps" else torch.float64

    def _pad_rows(self, rows: Tensor) -> Tensor:
        """(N, D) per-particle rows -> (G, max group size, D); without groups a free view."""
        if self.group_embedding is None:
            return rows.unsqueeze(0)
        return torch.cat((rows, rows.new_zeros(1, rows.shape[1]))).index_select(0, self.group_padded.flatten()).view(
            *self.group_padded.shape, rows.shape[1])

    def _members(self) -> list[Tensor]:
        return list(torch.split(self.group_order, self.group_sizes))

    def _decode(self, basis: Tensor, particle_idx: Tensor) -> Tensor:
        z = self.codes(particle_idx)
        if self.decoder == "bilinear":
            return torch.einsum("bk,bkc->bc", z, basis.view(-1, self.latent_dim, self.n_components))
        return self.head(torch.cat((basis, z), dim=-1))


    # --- cost estimates (mpm_inr.training.cost), from the model config alone -----------------------------------

    @staticmethod
    def flop_costs(model: Mapping[str, Any], in_dim: int, n_components: int) -> tuple[float, float]:
        """(FLOPs of one basis evaluation, which sees t (and the group embedding) alone; decoding FLOPs per point)."""
        h, n, k = (flops.size(model, key) for key in ("hidden_dim", "n_layers", "latent_dim"))
        grouped = model.get("basis_groups", "none") != "none"
        embedding = flops.size(model, "group_embedding_dim") if grouped else 0
        trunk = flops.siren_trunk(in_dim + embedding, h, n)
        if model.get("decoder", "bilinear") == "mlp":
            dh = flops.size(model, "decoder_hidden")
            return trunk, flops.dense(h + k, dh) + flops.dense(dh, n_components, act=False)
        return trunk + flops.dense(h, k * n_components, act=False), 2.0 * k * n_components

    @staticmethod
    def t_evals_per_frame(model: Mapping[str, Any], group_sizes: Mapping[str, Sequence[int]]) -> int:
        """Basis evaluations per frame on the whole-window path: one per basis group."""
        return len(_group_sizes(model, group_sizes, 1))

    @staticmethod
    def has_gram_form(model: Mapping[str, Any]) -> bool:
        """Whether `dense_sse` can compute the MSE without decoding points (the bilinear decoder)."""
        return model.get("decoder", "bilinear") == "bilinear"

    @staticmethod
    def gram_flops(model: Mapping[str, Any], n_frames: int, n_components: int, n_particles: int,
                   group_sizes: Mapping[str, Sequence[int]], sampled: bool = False) -> float:
        """Forward FLOPs of `dense_sse` beyond the basis: per group the K x K basis Gram, the two K x values x rows
        products, the codes' K x K Gram and, for solved codes, the K x K solve. rows: the padded group size, or
        the values per particle where `loss_targets` swaps in Cholesky rows. sampled: `sampled_sse` on n_frames
        sampled frames, whose solved codes also renew the statistics (one K x values x rows product, two K x K
        Grams) and solve for every row (K x K x rows), with no Cholesky rows."""
        k = flops.size(model, "latent_dim")
        sizes = _group_sizes(model, group_sizes, n_particles)
        values = n_frames * n_components
        solved = model.get("codes", "learned") == "solved"
        rows = max(sizes)  # groups are padded to the largest
        if solved and not sampled and rows >= 2 * values:
            rows = values
        per_group = 2.0 * k * k * values + 4.0 * k * values * rows + 2.0 * k * k * rows + (k ** 3 if solved else 0.0)
        if solved and sampled:
            per_group += 2.0 * k * values * rows + 4.0 * k * k * values + 2.0 * k * k * rows
        return len(sizes) * per_group


def _group_sizes(model: Mapping[str, Any], group_sizes: Mapping[str, Sequence[int]], n_particles: int) -> Sequence[int]:
    """Particles per basis group for the cost estimates: all particles in one group unless basis_groups is set."""
    kind = model.get("basis_groups", "none")
    if kind == "none":
        return (n_particles,)
    sizes = group_sizes.get(kind)
    if not sizes:
        raise ConfigError(f"the cost of model.basis_groups={kind} needs the {kind} group sizes of the window")
    return sizes


def _particle_groups(ctx: NetworkContext, kind: str, knob: str) -> Tensor | None:
    """Per-particle group index 0..G-1 for 'material' / 'object' (ids made contiguous); None for 'none'."""
    if kind == "none":
        return None
    labels = {"material": ctx.material, "object": ctx.object_id}.get(kind)
    if labels is None:
        raise ValueError(f"unknown {knob} {kind!r}; valid: {', '.join(GROUPINGS)}")
    return torch.unique(labels.long().cpu(), return_inverse=True)[1]
