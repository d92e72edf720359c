"""Override validation: the allow-list, seed ranges, canonical output, and hostile input (hypothesis)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from agent.runs.overrides import (
    ALLOWED,
    OverrideError,
    Validator,
    config_hash,
    diff,
    merge,
)

REPO = Path(__file__).resolve().parents[1]

V = Validator()
PLAIN = re.compile(r"^[a-z_.]+=[A-Za-z0-9_.+-]+$")


def test_normalises_types_and_sorts():
    out = V.normalise({"optimizer.lr": "3e-5", "model.hidden_dim": 512.0, "model.learn_omega": True,
                       "field": "F", "data.n_training_frames": "200", "scheduler": "cosine"})
    assert out == ["data.n_training_frames=200", "field=F", "model.hidden_dim=512", "model.learn_omega=true",
                   "optimizer.lr=3e-05", "scheduler=cosine"]
    assert V.normalise(["optimizer.lr=0.00003"]) == ["optimizer.lr=3e-05"]  # same value, same string
    assert config_hash(V.normalise({"optimizer.lr": 3e-5})) == config_hash(["optimizer.lr=3e-05"])


@pytest.mark.parametrize("key,value", [
    ("optimizer.lr", 1e-7), ("optimizer.lr", 1e-1), ("train.batch_size", 32), ("model.hidden_dim", 64),
    ("model.hidden_dim", 2048), ("model.n_layers", 2), ("model.n_layers", 6), ("model.omega", 1),
    ("model.omega", 100), ("data.n_training_frames", 48), ("data.n_training_frames", 10000),
])
def test_seed_range_bounds_are_inclusive(key, value):
    assert V.normalise({key: value})


@pytest.mark.parametrize("key,value", [
    ("optimizer.lr", 0.2), ("optimizer.lr", 1e-8), ("train.batch_size", 33), ("model.hidden_dim", 32),
    ("model.hidden_dim", 4096), ("model.n_layers", 1), ("model.n_layers", 7), ("model.omega", 0.5),
    ("model.omega", 101), ("data.n_training_frames", 150), ("model.hidden_dim", 256.5),
    ("model.learn_omega", "yes"), ("model.n_layers", True), ("field", "X"), ("inr_type", "resnet"),
])
def test_out_of_range_or_wrong_type_is_rejected(key, value):
    with pytest.raises(OverrideError):
        V.normalise({key: value})


HOSTILE = [
    "hydra.run.dir=/tmp/x", "hydra/launcher=basic", "+model.extra=1", "++optimizer.lr=1e-4", "~model.omega",
    "model._target_=os.system", "optimizer._partial_=true", "optimizer.lr=${oc.env:ANTHROPIC_API_KEY}",
    "optimizer.lr=$(rm -rf /)", "optimizer.lr=1e-4;rm -rf /", "optimizer.lr=1e-4 && curl x", "optimizer.lr=`id`",
    "optimizer.lr=1e-4|tee", "optimizer.lr=1e-4\nhydra.run.dir=/", "model.hidden_dim=256,512",
    "model.hidden_dim=choice(256,512)", "model.hidden_dim=[256]", "optimizer.lr=nan", "optimizer.lr=inf",
    "optimizer.lr=-inf", "optimizer.lr=1e400", "model.hidden_dim=99999999999999999999", "train.total_steps=1e13",
    "model.hidden_dim=0x100", "optimizer.lr=1_0", "unknown.key=1", "model.hidden_dim", "=1", "model..x=1",
    "../../etc/passwd=1", "model.hidden_dim='256'", "data.root=/etc", "trainer=gpu", "logger=wandb",
    "study.name=x", "debug.inject_nonfinite_step=5", "model.name=siren_t", "optimizer.lr= 1e-4",
]


@pytest.mark.parametrize("item", HOSTILE)
def test_hostile_strings_are_rejected_with_a_reason(item):
    with pytest.raises(OverrideError) as e:
        V.normalise([item])
    assert e.value.reasons and all(isinstance(r, str) and "\n" not in str(e.value) for r in e.value.reasons)


def test_every_problem_is_reported_at_once():
    with pytest.raises(OverrideError) as e:
        V.normalise(["hydra.x=1", "optimizer.lr=nan", "model.hidden_dim=512"])
    assert len(e.value.reasons) == 2


def test_non_mapping_inputs():
    for bad in ("optimizer.lr=1e-4", 42, None, [1, 2]):
        with pytest.raises(OverrideError):
            V.normalise(bad)


def test_study_limits_only_tighten():
    v = Validator(limits={"train.total_steps": [10, 300], "model.hidden_dim": [16, 512]})
    assert v.normalise({"train.total_steps": 300})
    with pytest.raises(OverrideError):
        v.normalise({"train.total_steps": 301})
    with pytest.raises(OverrideError):
        v.normalise({"model.hidden_dim": 32})  # below the design document's 64 stays invalid
    assert Validator(progression=[10, 20]).normalise({"data.n_training_frames": 20})


def test_merge_and_diff():
    a = ["model.hidden_dim=256", "optimizer.lr=0.0001"]
    b = merge(a, ["optimizer.lr=0.0002", "model.omega=20.0"])
    assert b == ["model.hidden_dim=256", "model.omega=20.0", "optimizer.lr=0.0002"]
    assert diff(a, b) == {"model.omega": (None, "20.0"), "optimizer.lr": ("0.0001", "0.0002")}


keys = hs.one_of(hs.sampled_from(sorted(ALLOWED) + ["hydra.job.name", "model._target_", "+x", "~y"]), hs.text(max_size=30))
values = hs.one_of(hs.text(max_size=40), hs.integers(), hs.floats(allow_nan=True, allow_infinity=True),
                   hs.booleans(), hs.none(), hs.lists(hs.integers(), max_size=3))


@settings(max_examples=400, deadline=None)
@given(hs.dictionaries(keys, values, max_size=5))
def test_fuzz_mapping_output_is_always_safe(d):
    try:
        out = V.normalise(d)
    except OverrideError as e:
        assert e.reasons
        return
    for item in out:
        assert PLAIN.match(item), item
        k, v = item.split("=", 1)
        spec = ALLOWED[k]
        if spec.kind in ("int", "float"):
            x = float(v)
            assert math.isfinite(x) and spec.lo <= x <= spec.hi
        elif spec.kind == "choice":
            assert v in {str(c) for c in spec.choices}


@settings(max_examples=400, deadline=None)
@given(hs.lists(hs.text(max_size=60), max_size=4))
def test_fuzz_strings_output_is_always_safe(items):
    try:
        out = V.normalise(items)
    except OverrideError:
        return
    assert all(PLAIN.match(o) and o.split("=", 1)[0] in ALLOWED for o in out)


@pytest.mark.parametrize("key", ["optimizer._target_", "scheduler._target_", "logger._target_", "trainer._target_",
                                 "optimizer._partial_", "model._convert_"])
def test_hydra_special_keys_stay_forbidden_now_that_groups_have_targets(key):
    """conf/optimizer, scheduler, logger and trainer name a `_target_` that Hydra imports and calls: a policy must
    never choose what is called."""
    with pytest.raises(OverrideError, match="special keys"):
        Validator().normalise([f"{key}=os.system"])


def _presets_and_defaults():
    from agent.runs.overrides import FRAMES_PROGRESSION
    from mpm_inr.config.choices import INR_TYPES
    from mpm_inr.config.fields import FIELD_NAMES

    for field in FIELD_NAMES:  # the tuned presets (conf/preset, conf/accuracy_preset), at every window length a
        for frames in FRAMES_PROGRESSION:  # study may reach
            yield [f"field={field}", f"data.n_training_frames={frames}"]
            yield [f"field={field}", f"data.n_training_frames={frames}", "accuracy=r2_0999"]
    for inr_type in INR_TYPES:  # each inr_type's own defaults
        yield [f"inr_type={inr_type}"]


@pytest.mark.parametrize("overrides", list(_presets_and_defaults()), ids=" ".join)
def test_the_allow_list_brackets_every_value_our_presets_use(overrides):
    """A study inherits our presets' values: a range that excluded one would stop a policy from proposing it back
    (optimizer.lr was capped at 1e-3 while the lagrangian presets train at 3e-3)."""
    from agent.runs.trainconf import compose_train, value

    cfg = compose_train(REPO, overrides)
    values = {key: value(cfg, key) for key in ALLOWED}
    # raises OverrideError naming every value outside the allow-list
    assert Validator().normalise({k: v for k, v in values.items() if v is not None})


def test_a_numeric_key_takes_its_named_values_and_its_range():
    """train.step_frames is an integer with two named values (auto, all): a policy may propose any of them, and
    the error for anything else names all three forms."""
    v = Validator()
    assert v.normalise(["train.step_frames=auto"]) == ["train.step_frames=auto"]
    assert v.normalise({"train.step_frames": "all"}) == ["train.step_frames=all"]
    assert v.normalise({"train.step_frames": 200}) == ["train.step_frames=200"]
    with pytest.raises(OverrideError, match=r"train.step_frames=5: out of range, must be int in \[10, 2000\] or auto "
                                            r"or all"):
        v.normalise(["train.step_frames=5"])
    with pytest.raises(OverrideError, match="train.step_frames='sometimes': not a plain number"):
        v.normalise(["train.step_frames=sometimes"])
