"""codes=solved (variable projection) and time_scale of the Lagrangian model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpm_inr.errors import ConfigError
from mpm_inr.models import NetworkContext, build_network, get_inr_type
from mpm_inr.models.coordinates import CoordinateSource

INR = get_inr_type("lagrangian")


def _setup(codes: str = "solved", basis_groups: str = "object", **extra):
    torch.manual_seed(0)
    n, t, c = 60, 15, 3
    ctx = NetworkContext(n, c, torch.randint(3, (n,)), torch.cat((torch.zeros(10), torch.ones(20), 2 * torch.ones(30))))
    net = build_network("lagrangian", ctx, {"latent_dim": 5, "hidden_dim": 16, "n_layers": 2, "omega": 10.0,
                                            "basis_groups": basis_groups, "codes": codes, **extra})
    src = CoordinateSource(torch.linspace(-1, 1, t), torch.arange(n), torch.zeros(t, n, 2))
    return net, src, torch.randn(t, n, c, dtype=torch.float64).float()


def _lstsq_sse(net, src, frames, y) -> float:
    """Hand computation: per group, the least-squares codes for the current basis and their residual."""
    basis = net.basis_per_group(src.t[frames].unsqueeze(-1)).detach()  # (F, G, K*C)
    n_frames, n_groups = basis.shape[:2]
    basis = basis.view(n_frames, n_groups, net.latent_dim, -1).permute(1, 2, 0, 3).reshape(n_groups, net.latent_dim, -1)
    sse = 0.0
    for g in range(n_groups):
        members = (net.basis_group == g).nonzero().squeeze(1)
        y_g = y[frames][:, members].permute(1, 0, 2).reshape(members.numel(), -1).double()
        b = basis[g].double()
        z = torch.linalg.lstsq(b.T, y_g.T).solution.T
        sse += float(((z @ b - y_g) ** 2).sum())
    return sse


@pytest.mark.parametrize("basis_groups", ["none", "object"])
def test_solved_sse_is_the_least_squares_residual_for_the_basis(basis_groups):
    net, src, y = _setup(basis_groups=basis_groups)
    frames = torch.tensor([0, 1, 4, 6, 9, 10, 14])
    sse = INR.dense_sse(net, src, frames, INR.pack_dense_targets(net, y[frames]), (y[frames] ** 2).sum())
    assert float(sse) == pytest.approx(_lstsq_sse(net, src, frames, y), rel=1e-4)


def test_solved_codes_get_no_gradient_and_the_basis_gets_the_projected_one():
    net, src, y = _setup()
    frames = torch.arange(15)
    sse = INR.dense_sse(net, src, frames, INR.pack_dense_targets(net, y), (y ** 2).sum())
    sse.backward()
    assert net.latents.grad is None
    grad = net.basis.head.weight.grad.clone()
    # Envelope theorem: with the codes at their optimum, the gradient of the loss with those codes held constant
    # equals the gradient of the loss as a function of the basis alone (codes re-solved), checked by differences.
    head = net.basis.head.weight
    direction = torch.randn_like(head)
    eps = 1e-3
    with torch.no_grad():
        head += eps * direction
        up = _lstsq_sse(net, src, frames, y)
        head -= 2 * eps * direction
        down = _lstsq_sse(net, src, frames, y)
        head += eps * direction
    assert float((grad * direction).sum()) == pytest.approx((up - down) / (2 * eps), rel=2e-2)


def test_refresh_stores_codes_that_reproduce_the_solved_loss():
    net, src, y = _setup()
    frames = torch.arange(15)
    packed = INR.pack_dense_targets(net, y)
    before = net.latents.detach().clone()
    INR.refresh_codes(net, src, frames, packed)
    assert not torch.equal(before, net.latents.detach())
    direct = float(((INR.query_frames(net, src, frames) - y) ** 2).sum())
    assert direct == pytest.approx(float(INR.dense_sse(net, src, frames, packed, (y ** 2).sum())), rel=1e-4)


def test_refresh_leaves_learned_codes_alone():
    net, src, y = _setup(codes="learned")
    before = net.latents.detach().clone()
    INR.refresh_codes(net, src, torch.arange(15), INR.pack_dense_targets(net, y))
    assert torch.equal(before, net.latents.detach())


def test_time_scale_multiplies_t_before_the_basis():
    scaled, src, _y = _setup(time_scale=3.0)
    plain, _src, _ = _setup(time_scale=1.0)
    frames = torch.arange(15)
    stretched = CoordinateSource(src.t * 3.0, src.particle, src.xy)
    torch.testing.assert_close(INR.query_frames(scaled, src, frames), INR.query_frames(plain, stretched, frames))
    f, p = torch.tensor([0, 3, 14]), torch.tensor([5, 40, 59])
    torch.testing.assert_close(INR.query(scaled, src, f, p), INR.query(plain, stretched, f, p))


@pytest.mark.parametrize("extra", [{"decoder": "mlp"}, {"shared_codes": "material"}])
def test_solved_codes_refuse_non_linear_setups(extra):
    with pytest.raises(ValueError, match="codes=solved needs decoder=bilinear"):
        _setup(**extra)


@pytest.mark.parametrize(("override", "match"), [
    ("train.sampler=points", "needs train.sampler=full"),
    ("train.loss=huber", "needs train.sampler=full and train.loss=mse"),
    ("model.decoder=mlp", "needs model.decoder=bilinear"),
    ("model.codes=fitted", "valid: learned, solved"),
    ("model.time_scale=0", "model.time_scale=0 is out of range"),
])
def test_config_validation_names_the_conflict(override, match):
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.training.validate import validate_train_config

    cfg = compose_train_config(["field=C", "inr_type=lagrangian", "model.codes=solved", "train.sampler=full", override])
    with pytest.raises(ConfigError, match=match):
        validate_train_config(cfg)


def test_training_with_solved_codes_ends_with_codes_matching_the_basis(tiny_train_overrides, tmp_path):
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.training.run import run_training

    overrides = tiny_train_overrides + ["field=S", "inr_type=lagrangian", "train.sampler=full", "model.codes=solved",
                                        "model.latent_dim=6", "outputs.plot=false", "outputs.checkpoint=false"]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    assert m["status"] == "ok"
    # the final loss (codes solved for the basis before the last step) and the final R² (codes refreshed after
    # it) describe nearly the same model; with stale codes the metric would lag the loss
    assert m["final_r2"] > 1 - 1.5 * m["loss_curve_tail"][-1]


@pytest.mark.parametrize("basis_groups", ["none", "object"])
def test_compressed_targets_give_the_same_solved_loss_and_gradient(basis_groups):
    """In float64, so that the two orders of summation agree to rounding on any CPU: in float32 one gradient element
    of 256 differed by 1.3e-3 relative on an AVX-512 host (the same computation, summed in another order)."""
    net, src, y = _setup(basis_groups=basis_groups)
    net, y = net.double(), y.double()
    src = CoordinateSource(src.t.double(), src.particle.double(), None)
    frames = torch.tensor([0, 5, 9, 14])  # 4 frames x 3 components = 12 values per particle, groups of 10-30
    packed = INR.pack_dense_targets(net, y[frames])
    small = INR.loss_targets(net, packed)
    assert small.shape[1] == 12 < packed.shape[1]  # the padded group of 30 rows became 12
    sq = (y[frames] ** 2).sum()
    full_sse = INR.dense_sse(net, src, frames, packed, sq)
    g_full = torch.autograd.grad(full_sse, [p for p in net.parameters() if p is not net.latents])
    small_sse = INR.dense_sse(net, src, frames, small, sq)
    g_small = torch.autograd.grad(small_sse, [p for p in net.parameters() if p is not net.latents])
    assert float(small_sse) == pytest.approx(float(full_sse), rel=1e-10)
    for a, b in zip(g_full, g_small, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_targets_stay_real_rows_for_learned_codes_or_too_few_particles():
    learned, _src, y = _setup(codes="learned")
    packed = INR.pack_dense_targets(learned, y)
    assert INR.loss_targets(learned, packed) is packed  # per-particle codes need each particle's row
    solved, _src, _y = _setup()
    packed = INR.pack_dense_targets(solved, y)  # 15 frames x 3 = 45 values > half of the largest group (30)
    assert INR.loss_targets(solved, packed) is packed


def _window_statistics(net, src, y, chunk: int):
    """Statistics of the whole window, filled `chunk` frames at a time with the current basis."""
    frames = torch.arange(y.shape[0])
    stats = net.code_statistics(y.shape[0])
    for lo in range(0, y.shape[0], chunk):
        part = frames[lo:lo + chunk]
        INR.accumulate_statistics(net, src, part, part, INR.pack_dense_targets(net, y[part]), stats)
    return stats


@pytest.mark.parametrize("basis_groups", ["none", "object"])
def test_statistics_after_a_full_pass_give_the_dense_solve(basis_groups):
    net, src, y = _setup(basis_groups=basis_groups)
    frames = torch.arange(15)
    packed = INR.pack_dense_targets(net, y)
    INR.refresh_codes(net, src, frames, packed)
    dense = net.latents.detach().clone()
    net.latents.data.zero_()
    net.store_codes_from(_window_statistics(net, src, y, chunk=4))
    torch.testing.assert_close(net.latents.detach(), dense, rtol=1e-4, atol=1e-5)


def test_statistics_replace_stale_terms_so_they_track_the_current_basis():
    """Fill with one basis, change the basis, renew every frame in a scrambled order: the statistics equal a fresh
    fill with the new basis, i.e. no term of the old basis is left behind."""
    net, src, y = _setup()
    stats = _window_statistics(net, src, y, chunk=15)
    with torch.no_grad():
        net.basis.head.weight.mul_(1.7).add_(0.1)
    for part in (torch.tensor([3, 9, 14]), torch.tensor([0, 1, 2, 4, 5]), torch.tensor([6, 7, 8, 10, 11, 12, 13])):
        INR.accumulate_statistics(net, src, part, part, INR.pack_dense_targets(net, y[part]), stats)
    fresh = _window_statistics(net, src, y, chunk=15)
    torch.testing.assert_close(stats.cross, fresh.cross, rtol=1e-5, atol=1e-5)  # rows x values products in float32
    torch.testing.assert_close(stats.gram, fresh.gram, rtol=1e-9, atol=1e-9)
    assert stats.frames_touched == 30


def test_sampled_sse_estimates_the_dense_loss_and_its_gradient():
    """With exact statistics the codes are the dense solve, so the mean of the sampled-frame losses over a partition
    of the window is the dense loss, and so is the mean of their gradients (the step is unbiased)."""
    net, src, y = _setup()
    frames = torch.arange(15)
    stats = _window_statistics(net, src, y, chunk=15)
    dense = INR.dense_sse(net, src, frames, INR.pack_dense_targets(net, y), (y ** 2).sum())
    g_dense = torch.autograd.grad(dense, [net.basis.head.weight])[0]
    total, g_total = 0.0, torch.zeros_like(g_dense)
    for part in torch.split(frames, 5):
        sse = INR.sampled_sse(net, src, part, part, INR.pack_dense_targets(net, y[part]), (y[part] ** 2).sum(), stats)
        total += float(sse)
        g_total += torch.autograd.grad(sse, [net.basis.head.weight])[0]
    assert total == pytest.approx(float(dense), rel=1e-4)
    torch.testing.assert_close(g_total, g_dense, rtol=1e-3, atol=1e-4)


def test_a_sampled_step_touches_its_frames_whatever_the_window():
    """The statistics read only the step's frames: the work of a step is counted, not timed."""
    for n_frames in (15, 150):
        torch.manual_seed(0)
        net, _src, _y = _setup()
        src = CoordinateSource(torch.linspace(-1, 1, n_frames), torch.arange(60), torch.zeros(n_frames, 60, 2))
        y = torch.randn(n_frames, 60, 3)
        stats = net.code_statistics(n_frames)
        part = torch.tensor([1, 4, 7])
        INR.sampled_sse(net, src, part, part, INR.pack_dense_targets(net, y[part]), (y[part] ** 2).sum(), stats)
        assert stats.frames_touched == 3


@pytest.mark.parametrize("k", [8, 320, 570])
def test_ridge_solve_handles_the_long_window_code_counts(k):
    """C at 10 000 frames solves 9 groups of K = 570 codes: torch's batched LU solve (oneMKL) raised there; the
    Cholesky solve gives the ridge least-squares codes (checked against an explicit float64 solve)."""
    from mpm_inr.models.code_statistics import RIDGE, ridge_solve

    g = torch.Generator().manual_seed(k)
    basis = torch.randn(3, k, k + 40, generator=g, dtype=torch.float64)
    gram = basis @ basis.transpose(1, 2)
    rhs = torch.randn(3, k, 50, generator=g, dtype=torch.float64)
    codes = ridge_solve(gram, rhs)
    ridged = gram + RIDGE * gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(k, dtype=gram.dtype)
    expected = torch.stack([torch.from_numpy(np.linalg.solve(a.numpy(), b.numpy())) for a, b in
                            zip(ridged, rhs)]).transpose(1, 2)
    assert codes.shape == (3, 50, k)
    assert torch.allclose(codes, expected, rtol=1e-7, atol=1e-9)
