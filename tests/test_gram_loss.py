"""The Gram-form MSE of the bilinear Lagrangian model equals the materialised one, in value and gradient."""

from __future__ import annotations

import pytest
import torch

from mpm_inr.models import NetworkContext, build_network, get_inr_type
from mpm_inr.models.coordinates import CoordinateSource


def _setup(decoder: str = "bilinear", shared: str = "none", basis_groups: str = "none"):
    torch.manual_seed(0)
    n, t, c = 50, 12, 4
    ctx = NetworkContext(n, c, torch.randint(3, (n,)), torch.randint(5, (n,)))
    net = build_network("lagrangian", ctx, {"latent_dim": 6, "hidden_dim": 16, "n_layers": 2, "omega": 10.0,
                                            "decoder": decoder, "shared_codes": shared,
                                            "basis_groups": basis_groups})
    src = CoordinateSource(torch.linspace(0, 1, t), torch.arange(n), torch.zeros(t, n, 2))
    return net, src, torch.randn(t, n, c)


@pytest.mark.parametrize(("shared", "basis_groups"), [("none", "none"), ("object", "none"), ("none", "object"),
                                                     ("material", "object")])
def test_gram_sse_matches_the_materialised_sse_and_its_gradient(shared, basis_groups):
    net, src, y = _setup(shared=shared, basis_groups=basis_groups)
    inr = get_inr_type("lagrangian")
    frames = torch.tensor([0, 2, 3, 7, 11])
    direct = ((inr.query_frames(net, src, frames) - y[frames]) ** 2).sum()
    g_direct = torch.autograd.grad(direct, list(net.parameters()))
    gram = inr.dense_sse(net, src, frames, inr.pack_dense_targets(net, y[frames]), (y[frames] ** 2).sum())
    g_gram = torch.autograd.grad(gram, list(net.parameters()))
    assert gram.item() == pytest.approx(direct.item(), rel=1e-4)
    for a, b in zip(g_direct, g_gram, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_other_decoders_and_types_fall_back():
    net, _src, y = _setup(decoder="mlp")
    assert get_inr_type("lagrangian").pack_dense_targets(net, y[:3]) is None
    assert get_inr_type("siren_txy").pack_dense_targets(net, y[:3]) is None


@pytest.mark.parametrize(("loss", "uses_gram"), [("mse", True), ("huber", False)])
def test_training_uses_the_gram_form_for_full_batch_mse_only(loss, uses_gram, tiny_train_overrides, tmp_path,
                                                             monkeypatch):
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.models.lagrangian import LatentCodeField
    from mpm_inr.training.run import run_training

    calls = []
    original = LatentCodeField.dense_sse
    monkeypatch.setattr(LatentCodeField, "dense_sse", lambda self, *a: calls.append(1) or original(self, *a))
    overrides = tiny_train_overrides + ["field=S", "inr_type=lagrangian", "train.sampler=full", f"train.loss={loss}",
                                        "model.codes=learned", "outputs.plot=false", "outputs.checkpoint=false"]
    m = run_training(compose_train_config(overrides), tmp_path, overrides, progress=False)
    assert m["status"] == "ok" and m["steps"] == 20
    assert len(calls) == (20 if uses_gram else 0)  # one Gram-form loss per optimiser step
    assert min(m["loss_curve_tail"]) >= 0
