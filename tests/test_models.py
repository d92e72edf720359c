"""Networks: shapes for every inr_type, SIREN init, gradient flow to latents, one registry."""

import math

import pytest
import torch

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.reference_recipe import REFERENCE_RECIPES, reference_network
from mpm_inr.errors import ConfigError
from mpm_inr.models import (
    INR_TYPES,
    CoordinateSource,
    NetworkContext,
    build_network,
    get_inr_type,
)
from mpm_inr.models.field_network import FieldNetwork
from mpm_inr.models.hashgrid import HashGridEncoding
from mpm_inr.models.siren import Sine, Siren

N, T, C = 30, 6, 4
CTX = NetworkContext(N, C, torch.arange(N) % 3, torch.arange(N) // 10)
PARAMS = {
    "siren_t": {"hidden_dim": 16, "n_layers": 2, "omega": 30.0},
    "siren_id": {"hidden_dim": 16, "n_layers": 2, "omega": 30.0},
    "siren_txy": {"hidden_dim": 16, "n_layers": 2, "omega": 30.0, "learn_omega": True},
    "ngp": {"n_levels": 4, "features_per_level": 2, "log2_table_size": 10, "base_resolution": 4,
            "per_level_scale": 2.0, "hidden_dim": 16, "n_layers": 2},
    "lagrangian": {"latent_dim": 4, "hidden_dim": 16, "n_layers": 2, "omega": 10.0},
}


def _source() -> CoordinateSource:
    return CoordinateSource(torch.linspace(-1, 1, T), torch.linspace(-1, 1, N), torch.rand(T, N, 2) * 2 - 1)


@pytest.mark.parametrize("name", sorted(INR_TYPES))
def test_every_type_maps_points_to_components(name):
    spec = get_inr_type(name)
    net = build_network(name, CTX, PARAMS[name])
    f, p = torch.randint(T, (50,)), torch.randint(N, (50,))
    out = net(spec.coordinates(_source(), f, p), p)
    assert out.shape == (50, C)
    out.square().mean().backward()
    assert all(q.grad is not None for q in net.parameters() if q.requires_grad)


@pytest.mark.parametrize("name", sorted(INR_TYPES))
def test_tf32_is_declared_safe_exactly_where_no_sine_layer_runs(name):
    """train.tf32=auto follows the registry's tf32_safe flag: TF32's 10-bit mantissa error, amplified by omega,
    spoils sine layers, so a type may declare it safe only if its network has none."""
    net = build_network(name, CTX, PARAMS[name])
    assert isinstance(net, FieldNetwork)
    assert get_inr_type(name).tf32_safe == (not any(isinstance(m, Sine) for m in net.modules()))


def test_registry_covers_every_config_file():
    from pathlib import Path

    names = {p.stem for p in (Path(__file__).parents[1] / "conf" / "inr_type").glob("*.yaml")}
    assert names == set(INR_TYPES)


def test_unknown_type_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="valid: lagrangian, ngp"):
        get_inr_type("nerf")


def test_siren_init_follows_the_paper():
    torch.manual_seed(0)
    net = Siren(3, 2, hidden_dim=256, n_layers=3, omega=30.0)
    first, hidden = net.trunk.layers[0].linear.weight, net.trunk.layers[1].linear.weight
    assert first.abs().max() <= 1 / 3 + 1e-7 and first.abs().max() > 0.9 / 3
    bound = math.sqrt(6 / 256) / 30
    assert hidden.abs().max() <= bound + 1e-7 and hidden.abs().max() > 0.9 * bound


def _siren_params(in_dim: int, out_dim: int, width: int, sine_layers: int) -> int:
    """First sine layer, sine_layers - 1 hidden sine layers, linear head; weights and biases."""
    return (in_dim + 1) * width + (sine_layers - 1) * (width * width + width) + (width + 1) * out_dim


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("field", sorted(REFERENCE_RECIPES))
def test_reference_network_has_a_first_layer_plus_n_layers_nnr_f_sine_layers(field):
    n_components = 1 if field == "Jp" else 4
    for recipe in REFERENCE_RECIPES[field]:
        net = reference_network(recipe, n_components)
        assert len(net.trunk.layers) == recipe.n_layers_nnr_f + 1
        assert _params(net) == _siren_params(3, n_components, recipe.hidden_dim, recipe.n_layers_nnr_f + 1)


def test_reference_parameter_counts_equal_the_originals():
    # Counted on MPM_pytorch's own Siren at its documented settings (issue #18): F 256 wide with
    # n_layers_nnr_f = 4, S 1280 wide with n_layers_nnr_f = 3, both with 4 components.
    (f,), s = REFERENCE_RECIPES["F"], REFERENCE_RECIPES["S"]
    assert _params(reference_network(f, 4)) == 265_220
    assert [_params(reference_network(r, 4)) for r in s] == [4_929_284, 4_929_284]
    assert [(r.lr, r.total_steps, r.cosine) for r in s] == [(2e-5, 300_000, False), (3e-5, 500_000, True)]


def _tight(t: torch.Tensor, bound: float) -> bool:
    return 0.9 * bound < float(t.abs().max()) <= bound * (1 + 1e-6)


def test_reference_init_bounds():
    """First layer U(±1/3), hidden U(±sqrt(6/h)/ω), head U(±sqrt(0.1/h)/ω); biases U(±1/sqrt(fan_in))."""
    torch.manual_seed(0)
    (recipe,) = REFERENCE_RECIPES["F"]
    h, omega = recipe.hidden_dim, recipe.omega
    net = reference_network(recipe, 4)
    first, *hidden = net.trunk.layers
    assert _tight(first.linear.weight, 1 / 3) and _tight(first.linear.bias, 1 / math.sqrt(3))
    for layer in hidden:
        assert _tight(layer.linear.weight, math.sqrt(6 / h) / omega) and _tight(layer.linear.bias, 1 / math.sqrt(h))
    assert _tight(net.head.weight, math.sqrt(0.1 / h) / omega)
    assert 0 < float(net.head.bias.abs().max()) <= 1 / math.sqrt(h)  # 4 draws: bounded and not zeroed
    wide_head = Siren(3, 256, h, 2, omega, head_init="reference", bias_init="fan_in").head.bias
    assert _tight(wide_head, 1 / math.sqrt(h))


def test_siren_txy_config_builds_the_reference_network():
    """`inr_type=siren_txy` with the design document's keys (n_layers = n_layers_nnr_f + 1) is the reference's
    network."""
    (recipe,) = REFERENCE_RECIPES["F"]
    cfg = compose_train_config(["inr_type=siren_txy", f"model.hidden_dim={recipe.hidden_dim}",
                                f"model.n_layers={recipe.n_layers_nnr_f + 1}", f"model.omega={recipe.omega}"])
    params = {k: v for k, v in cfg["model"].items() if k != "name"}
    ctx = NetworkContext(N, 4, CTX.material, CTX.object_id)
    torch.manual_seed(0)
    ours = build_network("siren_txy", ctx, params)
    torch.manual_seed(0)
    reference = reference_network(recipe, 4)
    assert _params(ours) == 265_220
    assert all(torch.equal(a, b) for a, b in zip(ours.net.state_dict().values(), reference.state_dict().values(),
                                                  strict=True))


def test_unknown_init_choice_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"model.head_init='tiny' is unknown; valid: hidden, reference"):
        Siren(3, 1, 8, 2, 30.0, head_init="tiny")
    with pytest.raises(ConfigError, match=r"model.bias_init='zero' is unknown; valid: weight_bound, fan_in"):
        build_network("siren_txy", CTX, {"hidden_dim": 8, "n_layers": 2, "omega": 30.0, "bias_init": "zero"})


def test_lagrangian_latents_receive_gradient_and_group_codes_share():
    net = build_network("lagrangian", CTX, {**PARAMS["lagrangian"], "shared_codes": "material", "decoder": "mlp"})
    p = torch.tensor([0, 3, 1])
    out = net(torch.zeros(3, 1), p)
    out.sum().backward()
    assert net.latents.grad[p].abs().sum() > 0
    assert net.latents.grad[2].abs().sum() == 0  # untouched particle
    assert net.latents_shared.grad[0].abs().sum() > 0  # particles 0 and 3 are both material 0


def test_bilinear_lagrangian_is_a_sum_over_latent_dims():
    net = build_network("lagrangian", CTX, PARAMS["lagrangian"])
    p = torch.tensor([5])
    t = torch.tensor([[0.3]])
    g = net.basis(t).view(4, C)
    assert torch.allclose(net(t, p)[0], net.latents[5] @ g, atol=1e-6)


def test_hash_grid_interpolates_continuously_and_dense_levels_do_not_collide():
    enc = HashGridEncoding(2, n_levels=2, features_per_level=1, log2_table_size=12, base_resolution=4, per_level_scale=2)
    with torch.no_grad():
        enc.embeddings.copy_(torch.randn_like(enc.embeddings))
    assert bool(enc.dense.all())
    x = torch.tensor([[0.5, 0.5], [0.5 + 1e-5, 0.5]])
    y = enc(x)
    assert torch.allclose(y[0], y[1], atol=1e-3)
    # at a grid vertex the encoding returns that vertex's feature exactly
    v = enc(torch.tensor([[0.25, 0.5]]))[0, 0]
    assert torch.isclose(v, enc.embeddings[1 + 2 * 5][0])


def _grid_corner_indices(enc: HashGridEncoding, base: torch.Tensor) -> torch.Tensor:
    """The textbook formula: every corner's coordinates on a (B, L, 2^d, d) grid, then dense or hashed index."""
    grid = base.unsqueeze(2) + enc.corners.view(1, 1, -1, enc.in_dim)
    res1 = (enc.resolutions.long() + 1).view(1, -1, 1)
    strides = res1.unsqueeze(-1) ** torch.arange(enc.in_dim).view(1, 1, 1, -1)
    hashed = grid * enc.primes.view(1, 1, 1, -1)
    hash_idx = hashed[..., 0]
    for dim in range(1, enc.in_dim):
        hash_idx = torch.bitwise_xor(hash_idx, hashed[..., dim])
    return torch.where(enc.dense.view(1, -1, 1), (grid * strides).sum(-1), hash_idx) % enc.sizes.view(1, -1, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(INR_TYPES))
def test_every_type_runs_on_cuda_as_on_the_cpu(name, monkeypatch):
    """CUDA lacks some ops the CPU has (an int64 matmul once crashed every ngp run on a GPU): each type's forward
    and backward run there, with the CPU's outputs to float32 rounding (tf32 off)."""
    torch.manual_seed(0)
    spec = get_inr_type(name)
    net = build_network(name, CTX, PARAMS[name])
    f, p = torch.randint(T, (50,)), torch.randint(N, (50,))
    coords = spec.coordinates(_source(), f, p)
    on_cpu = net(coords, p).detach()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    gpu = net.to("cuda")
    out = gpu(coords.to("cuda"), p.to("cuda"))
    out.square().mean().backward()
    assert all(q.grad is not None and q.grad.is_cuda for q in gpu.parameters() if q.requires_grad)
    torch.testing.assert_close(out.detach().cpu(), on_cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("in_dim", [1, 2, 3])
def test_hash_grid_corner_indices_equal_the_grid_formula(in_dim):
    """Dense and hashed levels alike (the table is small enough that fine levels hash), x = 1 included."""
    enc = HashGridEncoding(in_dim, n_levels=8, features_per_level=2, log2_table_size=10 if in_dim > 1 else 6,
                           base_resolution=4, per_level_scale=1.8)
    assert bool(enc.dense.any()) and not bool(enc.dense.all())
    x = torch.cat([torch.rand(500, in_dim, generator=torch.Generator().manual_seed(in_dim)), torch.ones(1, in_dim),
                   torch.zeros(1, in_dim)])
    base = (x.unsqueeze(1) * enc.resolutions.view(1, -1, 1)).floor().long()
    assert torch.equal(enc.corner_indices(base), _grid_corner_indices(enc, base))
    frac = x.unsqueeze(1) * enc.resolutions.view(1, -1, 1) - base
    grid_weights = torch.where(enc.corners.view(1, 1, -1, in_dim).bool(), frac.unsqueeze(2), 1.0 - frac.unsqueeze(2))
    assert torch.equal(enc.corner_weights(frac), grid_weights.prod(-1, keepdim=True))


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="inr_type=siren_txy"):
        build_network("siren_txy", CTX, {"hidden_dim": 8, "n_layers": 2, "omega": 30.0, "latent_dim": 3})


@pytest.mark.parametrize("name", [n for n, t in INR_TYPES.items() if t.time_grid])
def test_time_grid_query_equals_point_query(name):
    spec = get_inr_type(name)
    net = build_network(name, CTX, PARAMS[name])
    f, p = torch.randint(T, (64,)), torch.randint(N, (64,))
    grid = spec.query(net, _source(), f, p)
    points = net(spec.coordinates(_source(), f, p), p)
    assert torch.allclose(grid, points, atol=1e-5)


@pytest.mark.parametrize(("decoder", "basis_groups"), [("bilinear", "none"), ("mlp", "none"), ("bilinear", "object"),
                                                       ("mlp", "material")])
@pytest.mark.parametrize("name", [n for n, t in INR_TYPES.items() if t.time_grid])
def test_dense_window_query_equals_point_query(name, decoder, basis_groups):
    params = {**PARAMS[name], "decoder": decoder, "basis_groups": basis_groups} if name == "lagrangian" else PARAMS[name]
    if name != "lagrangian" and (decoder, basis_groups) != ("bilinear", "none"):
        pytest.skip("decoder and basis_groups apply to lagrangian only")
    spec = get_inr_type(name)
    net = build_network(name, CTX, params)
    frames = torch.tensor([0, 2, 5])
    dense = spec.query_frames(net, _source(), frames)
    f, p = frames.repeat_interleave(N), torch.arange(N).repeat(3)
    assert torch.allclose(dense.reshape(-1, C), spec.query(net, _source(), f, p), atol=1e-5)
    assert torch.allclose(dense.reshape(-1, C), net(spec.coordinates(_source(), f, p), p), atol=1e-5)


def test_per_object_bases_give_each_object_its_own_curves_and_learn_the_embedding():
    net = build_network("lagrangian", CTX, {**PARAMS["lagrangian"], "basis_groups": "object"})
    assert net.n_basis_groups == 3 and net.group_sizes == [10, 10, 10]
    with torch.no_grad():
        net.latents[:] = 1.0  # one code everywhere: any difference comes from the basis
    t = torch.full((4, 1), 0.3)
    out = net(t, torch.tensor([0, 9, 10, 25]))  # objects 0, 0, 1, 2
    assert torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])
    assert not torch.allclose(out[2], out[3])
    out.square().sum().backward()
    assert net.group_embedding.grad.abs().sum(dim=1).gt(0).all()
    with pytest.raises(ValueError, match="unknown basis_groups 'disc'"):
        build_network("lagrangian", CTX, {**PARAMS["lagrangian"], "basis_groups": "disc"})


def test_dense_query_refuses_point_types():
    with pytest.raises(ConfigError, match="time-only inr_type"):
        get_inr_type("siren_txy").query_frames(None, _source(), torch.tensor([0]))


@pytest.mark.parametrize("name", sorted(n for n, spec in INR_TYPES.items() if not spec.time_grid))
def test_point_prediction_of_whole_frames_is_every_point_s_query_in_order(name):
    """predict_frames fills the window chunk by chunk from indices made per chunk: the values of querying the same
    chunks of the list of every (frame, particle) point in frame-major order, chunk boundaries inside frames."""
    spec = get_inr_type(name)
    net = build_network(name, CTX, PARAMS[name])
    src = _source()
    frames = torch.tensor([5, 0, 3])
    frame_idx, particle_idx = frames.repeat_interleave(N), torch.arange(N).repeat(len(frames))
    with torch.no_grad():
        for chunk in (7, N, 10_000):
            expected = torch.cat([spec.query(net, src, frame_idx[lo:lo + chunk], particle_idx[lo:lo + chunk])
                                  for lo in range(0, len(frame_idx), chunk)])
            got = spec.predict_frames(net, src, frames, chunk=chunk)
            assert got.shape == (len(frames), N, C)
            assert torch.equal(got.reshape(-1, C), expected)
