"""The FLOP proxy of one training step (mpm_inr.training.cost, the networks' flop_costs): by hand and per path."""

from __future__ import annotations

import pytest

from mpm_inr.errors import ConfigError
from mpm_inr.models import INR_TYPES, InrType
from mpm_inr.models import coordinates as coords
from mpm_inr.models.field_network import FieldNetwork
from mpm_inr.models.flops import ACT_FLOPS
from mpm_inr.training.cost import (
    STEP_FACTOR,
    DataShape,
    flops_per_point,
    split_costs,
    step_flops,
    step_path,
)

LAGRANGIAN = {"hidden_dim": 64, "n_layers": 3, "latent_dim": 18, "basis_groups": "object", "group_embedding_dim": 4,
              "codes": "solved"}
GRAM = {"sampler": "full", "loss": "mse", "batch_size": 2}
DISCS = DataShape(100, 9000, 4, {"object": [1000] * 9, "material": [3000] * 3})


def test_flops_by_hand():
    # siren_txy, width 4, 2 sine layers, 1 component: 3->4 (sine), 4->4 (sine), 4->1 (linear)
    a = ACT_FLOPS
    expected = (2 * 3 * 4 + 4 + a * 4) + (2 * 4 * 4 + 4 + a * 4) + (2 * 4 * 1 + 1)
    assert flops_per_point("siren_txy", {"hidden_dim": 4, "n_layers": 2}, 1) == expected
    # lagrangian bilinear K=2, C=4: trunk 1->4, 4->4; head 4->8 (all t alone); <z, g> 2*K*C per point
    per_t = (2 * 1 * 4 + 4 + a * 4) + (2 * 4 * 4 + 4 + a * 4) + (2 * 4 * 8 + 8)
    assert split_costs("lagrangian", {"hidden_dim": 4, "n_layers": 2, "latent_dim": 2}, 4) == (per_t, 2 * 2 * 4)
    assert flops_per_point("lagrangian", {"hidden_dim": 4, "n_layers": 2, "latent_dim": 2}, 4) == per_t + 16


@pytest.mark.parametrize("inr,base,grow", [
    ("siren_txy", {"hidden_dim": 64, "n_layers": 3}, ["hidden_dim", "n_layers"]),
    ("siren_id", {"hidden_dim": 64, "n_layers": 3}, ["hidden_dim", "n_layers"]),
    ("siren_t", {"hidden_dim": 64, "n_layers": 3}, ["hidden_dim", "n_layers"]),
    ("lagrangian", {"hidden_dim": 64, "n_layers": 3, "latent_dim": 8}, ["hidden_dim", "n_layers", "latent_dim"]),
    ("ngp", {"n_levels": 16, "features_per_level": 2, "hidden_dim": 64, "n_layers": 2},
     ["n_levels", "features_per_level", "hidden_dim", "n_layers"]),
])
def test_flops_grow_with_every_size_knob(inr, base, grow):
    f0 = flops_per_point(inr, base, 4)
    assert f0 > 0 and flops_per_point(inr, base, 1) < f0
    for key in grow:
        assert flops_per_point(inr, {**base, key: base[key] * 2}, 4) > f0, key


def test_flops_errors():
    with pytest.raises(ConfigError, match="unknown inr_type 'transformer'"):
        flops_per_point("transformer", {}, 1)
    with pytest.raises(ConfigError, match="model.hidden_dim"):
        flops_per_point("siren_txy", {"n_layers": 3}, 1)
    with pytest.raises(ConfigError, match="object group sizes"):
        step_flops("lagrangian", LAGRANGIAN, GRAM, DataShape(100, 9000, 4))
    with pytest.raises(ConfigError, match="train.batch_size"):
        step_flops("siren_txy", {"hidden_dim": 8, "n_layers": 2}, {"sampler": "points", "batch_size": 0}, DISCS)


def test_point_samplers_evaluate_the_whole_network_per_point():
    model = {"hidden_dim": 64, "n_layers": 3, "latent_dim": 8}
    for sampler in ("points", "frames"):
        train = {"sampler": sampler, "batch_size": 3, "loss": "mse"}
        assert step_flops("lagrangian", model, train, DISCS) == STEP_FACTOR * 3 * 9000 * flops_per_point(
            "lagrangian", model, 4)


def test_full_sampler_runs_the_time_network_once_per_frame_and_group():
    huber = {**GRAM, "loss": "huber"}  # no Gram form: every point decoded
    model = {**LAGRANGIAN, "codes": "learned"}
    per_t, per_point = split_costs("lagrangian", model, 4)
    assert step_flops("lagrangian", model, huber, DISCS) == STEP_FACTOR * 100 * (9 * per_t + 9000 * per_point)
    siren = {"hidden_dim": 32, "n_layers": 2}
    assert step_flops("siren_txy", siren, huber, DISCS) == STEP_FACTOR * 100 * 9000 * flops_per_point(
        "siren_txy", siren, 4)


def test_gram_path_by_hand_with_and_without_cholesky_rows():
    k, values = 18, 400  # 100 frames x 4 components
    per_t, _ = split_costs("lagrangian", LAGRANGIAN, 4)

    def expected(rows: int, solve: bool) -> float:
        group = 2 * k * k * values + 4 * k * values * rows + 2 * k * k * rows + (k ** 3 if solve else 0)
        return STEP_FACTOR * (100 * 9 * per_t + 9 * group)

    # 1000 particles per disc >= 2 x 400 values: solved codes multiply by 400 Cholesky rows, learned ones by 1000
    assert step_flops("lagrangian", LAGRANGIAN, GRAM, DISCS) == pytest.approx(expected(400, True))
    learned = {**LAGRANGIAN, "codes": "learned"}
    assert step_flops("lagrangian", learned, GRAM, DISCS) == pytest.approx(expected(1000, False))
    # groups are padded to the largest; 700 < 2 x 400 keeps the real rows
    uneven = DataShape(100, 9000, 4, {"object": [700] * 8 + [3400]})
    assert step_flops("lagrangian", LAGRANGIAN, GRAM, uneven) == pytest.approx(expected(400, True))
    small = DataShape(100, 6300, 4, {"object": [700] * 9})
    assert step_flops("lagrangian", LAGRANGIAN, GRAM, small) == pytest.approx(expected(700, True))


def test_sampled_frames_cost_their_frames_not_the_window():
    """train.step_frames: the Gram step on 100 sampled frames costs the same on 1000 and 10000 frames, by hand: the
    dense products on 100 frames without Cholesky rows, plus renewing the statistics and solving every row."""
    k, values, rows = 18, 400, 1000
    per_t, _ = split_costs("lagrangian", LAGRANGIAN, 4)
    group = (2 * k * k * values + 4 * k * values * rows + 2 * k * k * rows + k ** 3
             + 2 * k * values * rows + 4 * k * k * values + 2 * k * k * rows)
    sampled = {**GRAM, "step_frames": 100}
    groups = {"object": [1000] * 9}
    for frames in (1000, 10000):
        shape = DataShape(frames, 9000, 4, groups)
        assert step_flops("lagrangian", LAGRANGIAN, sampled, shape) == pytest.approx(
            STEP_FACTOR * (100 * 9 * per_t + 9 * group))
    auto = {**GRAM, "step_frames": "auto"}  # auto: dense up to 1000 frames, 100 sampled frames beyond
    assert step_flops("lagrangian", LAGRANGIAN, auto, DISCS) == step_flops("lagrangian", LAGRANGIAN, GRAM, DISCS)
    assert step_flops("lagrangian", LAGRANGIAN, auto, DataShape(10000, 9000, 4, groups)) == pytest.approx(
        STEP_FACTOR * (100 * 9 * per_t + 9 * group))


def test_gram_path_is_far_cheaper_than_decoding_every_point():
    """Why the proxy follows the path: the presets' step costs a fraction of a per-point evaluation's."""
    points = {"sampler": "points", "batch_size": 100, "loss": "mse"}  # the same 900 000 points, decoded
    assert step_flops("lagrangian", LAGRANGIAN, GRAM, DISCS) < 0.2 * step_flops("lagrangian", LAGRANGIAN, points,
                                                                                DISCS)


def test_shape_of_particles_counts_the_groups_that_exist():
    import numpy as np
    import torch

    material = np.array([0, 0, 2, 2, 2])  # no jelly: two material groups, not three
    shape = DataShape.of_particles(50, 4, material, torch.tensor([3, 1, 1, 3, 3]))
    assert shape == DataShape(50, 5, 4, {"material": [2, 3], "object": [2, 3]})


@pytest.mark.parametrize("sampler", ["points", "full"])
def test_every_registered_type_estimates_its_own_cost_from_its_config(sampler):
    """A new inr_type brings its cost with it: every registered network answers from its composed config."""
    from mpm_inr.bench.compose import compose_train_config
    from mpm_inr.models.registry import INR_TYPES

    for name in INR_TYPES:
        cfg = compose_train_config([f"inr_type={name}", f"train.sampler={sampler}", "train.loss=mse"])
        model, train = dict(cfg["model"]), dict(cfg["train"])  # compose_train_config returns plain dicts
        if sampler == "full" and not INR_TYPES[name].time_grid:
            continue  # whole-window steps need a time-only type (validate.py refuses the others)
        cost = step_flops(name, model, train, DISCS)
        assert 0 < cost < 1e15, name


def test_step_path_names_the_branch_step_flops_takes():
    siren = {"hidden_dim": 32, "n_layers": 2}
    assert step_path("siren_txy", siren, {"sampler": "points"}) == "points"
    assert step_path("lagrangian", LAGRANGIAN, {"sampler": "frames", "loss": "mse"}) == "points"
    assert step_path("lagrangian", LAGRANGIAN, GRAM) == "gram"
    assert step_path("lagrangian", LAGRANGIAN, {**GRAM, "loss": "huber"}) == "full"
    assert step_path("lagrangian", {**LAGRANGIAN, "decoder": "mlp"}, GRAM) == "full"
    assert step_path("siren_t", siren, GRAM) == "full"  # no Gram form: every point decoded


class _GramWithoutGramCost(FieldNetwork):
    """Declares a Gram form and a forward cost, but not the Gram products' cost."""

    @staticmethod
    def flop_costs(model, in_dim, n_components):
        return 1.0, 1.0

    @staticmethod
    def has_gram_form(model):
        return True


def test_a_network_without_a_declared_cost_has_no_cost_model(monkeypatch):
    """What a network does not declare falls back to FieldNetwork's answer: no flop_costs is no cost model (a
    ConfigError the run records as no flops_per_step), no has_gram_form is a decoded whole-window step, and a Gram
    form without gram_flops has no cost on that path."""
    monkeypatch.setitem(INR_TYPES, "bare", InrType(coords.time_only, 1, FieldNetwork, time_grid=True))
    with pytest.raises(ConfigError, match="no cost model for inr_type 'bare'"):
        step_flops("bare", {}, GRAM, DISCS)
    assert step_path("bare", {}, GRAM) == "full"
    monkeypatch.setitem(INR_TYPES, "gram_only", InrType(coords.time_only, 1, _GramWithoutGramCost, time_grid=True))
    assert step_path("gram_only", {}, GRAM) == "gram"
    with pytest.raises(ConfigError, match="Gram-form step of _GramWithoutGramCost"):
        step_flops("gram_only", {}, GRAM, DISCS)
    assert step_flops("gram_only", {}, {"sampler": "points", "batch_size": 2}, DISCS) == STEP_FACTOR * 2 * 9000 * 2
