"""Every config option builds, every field x inr_type composes, and mpm_inr.config holds the only lists.

In the style of lightning-hydra-template's tests/test_configs.py: instantiate-only, no training, a few seconds.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from mpm_inr.bench.compose import compose_train_config
from mpm_inr.config import choices
from mpm_inr.config.build import OWN_KEYS, partial_of
from mpm_inr.config.compose import CONF_DIR, compose_train
from mpm_inr.config.fields import FIELD_NAMES, FIELDS
from mpm_inr.config.params import PARAMS, check_value
from mpm_inr.config.schema import (
    LOGGER_SCHEMAS,
    MODEL_SCHEMAS,
    SCHEDULER_SCHEMAS,
    check_types,
)
from mpm_inr.errors import ConfigError
from mpm_inr.models.registry import INR_TYPES
from mpm_inr.training.loggers import SHARED_SERVICE_ENV, build_logger
from mpm_inr.training.optim import build_optimizer, build_scheduler
from mpm_inr.training.validate import validate_train_config


def _options(group: str) -> set[str]:
    return {p.stem for p in (CONF_DIR / group).glob("*.yaml")}


# --- the declarations are the only lists -------------------------------------------------------------------
@pytest.mark.parametrize(("group", "declared"), [
    ("field", FIELD_NAMES), ("inr_type", choices.INR_TYPES), ("optimizer", choices.OPTIMIZERS),
    ("scheduler", choices.SCHEDULERS), ("logger", choices.LOGGERS), ("trainer", choices.TRAINERS),
    ("accuracy", choices.ACCURACIES),
])
def test_config_group_files_are_the_declared_choices(group, declared):
    assert _options(group) == set(declared)
    assert len(declared) == len(set(declared))


def test_per_option_schemas_and_the_model_registry_cover_the_declared_choices():
    assert set(MODEL_SCHEMAS) == set(INR_TYPES) == set(choices.INR_TYPES)
    assert set(SCHEDULER_SCHEMAS) == set(choices.SCHEDULERS)
    assert set(LOGGER_SCHEMAS) == set(choices.LOGGERS)


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_field_yaml_states_the_declared_field(name):
    on_disk = yaml.safe_load((CONF_DIR / "field" / f"{name}.yaml").read_text())
    spec = FIELDS[name]
    assert on_disk == {"name": spec.name, "description": spec.description, "components": list(spec.components),
                       "units": spec.units}


def test_every_declared_key_exists_in_some_composed_config():
    keys: set[str] = set()
    for inr in choices.INR_TYPES:
        keys |= set(_dotted(compose_train_config([f"inr_type={inr}", "scheduler=cosine"])))
    assert set(PARAMS) - keys == set()


def test_search_ranges_lie_inside_the_valid_ranges():
    for key, param in PARAMS.items():
        if param.search is not None:
            for bound in param.search:
                check_value(key, int(bound) if param.kind == "int" else float(bound))


def test_schemas_are_in_the_config_store():
    repo = ConfigStore.instance().repo
    assert "train.yaml" in repo["schema"]
    assert {f"{n}.yaml" for n in choices.INR_TYPES} <= set(repo["schema"]["model"])


# --- every option composes and builds ----------------------------------------------------------------------
@pytest.mark.parametrize("inr_type", choices.INR_TYPES)
@pytest.mark.parametrize("field", FIELD_NAMES)
def test_every_field_and_inr_type_composes_and_validates(field, inr_type):
    """With the preset of (inr_type, field) where conf/preset has one."""
    cfg = compose_train_config([f"field={field}", f"inr_type={inr_type}", "trainer=cpu"])
    assert cfg["model"]["name"] == inr_type and cfg["field"]["name"] == field
    validate_train_config(cfg)


@pytest.mark.parametrize("frames", [48, 100, 1000, 10000])
@pytest.mark.parametrize("accuracy", choices.ACCURACIES)
def test_presets_compose_at_every_window_length(frames, accuracy):
    for field in FIELD_NAMES:
        validate_train_config(compose_train_config([f"field={field}", f"data.n_training_frames={frames}",
                                                    f"accuracy={accuracy}"]))


def test_an_accuracy_option_asks_the_codec_for_its_r2_and_trains_more_only_where_a_preset_needs_it():
    def composed(field: str, accuracy: str) -> dict:
        return compose_train_config([f"field={field}", f"accuracy={accuracy}"])

    assert composed("C", "none")["codec"]["target_r2"] is None
    for field in FIELD_NAMES:
        base = composed(field, "none")
        for option in ("r2_0995", "r2_0999"):
            cfg = composed(field, option)
            assert cfg["codec"]["target_r2"] == cfg["accuracy"]["r2"] == float("0." + option[4:])
            own = (CONF_DIR / "accuracy_preset" / f"lagrangian_{field}_{option}.yaml").exists()
            assert (cfg["model"], cfg["train"]) != (base["model"], base["train"]) if own else \
                (cfg["model"], cfg["train"]) == (base["model"], base["train"])
    assert composed("S", "r2_0999")["train"]["total_steps"] == 1000
    assert (composed("C", "r2_0999")["model"]["latent_dim"], composed("C", "r2_0999")["train"]["total_steps"]) == (
        32, 900)
    # the command line still wins over the option
    assert compose_train_config(["field=C", "accuracy=r2_0999", "codec.target_r2=0.998"])["codec"]["target_r2"] == 0.998


def test_every_accuracy_preset_names_a_real_inr_type_field_and_option():
    names = {f"{i}_{f}_{o}" for i in choices.INR_TYPES for f in FIELD_NAMES for o in choices.ACCURACIES}
    found = {path.stem for path in (CONF_DIR / "accuracy_preset").glob("*.yaml")}
    assert found and found <= names  # a misspelt file would silently never apply


@pytest.mark.parametrize("name", choices.OPTIMIZERS)
def test_every_optimizer_instantiates_with_our_parameter_groups(name):
    cfg = compose_train_config([f"optimizer={name}", "inr_type=siren_txy", "model.learn_omega=true"])
    net = torch.nn.Linear(3, 2)
    net.omega = torch.nn.Parameter(torch.tensor(30.0))
    opt = build_optimizer(net, cfg["optimizer"])
    assert type(opt).__name__.lower() == name
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == {"main": cfg["optimizer"]["lr"], "omega": cfg["optimizer"]["omega_lr"]}
    assert opt.defaults["weight_decay"] == cfg["optimizer"]["weight_decay"]
    assert tuple(opt.defaults["betas"]) == tuple(cfg["optimizer"]["betas"])


@pytest.mark.parametrize("name", choices.SCHEDULERS)
def test_every_scheduler_instantiates_and_ends_at_its_floor(name):
    cfg = compose_train_config([f"scheduler={name}"])
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    sched = build_scheduler(opt, cfg["scheduler"], total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()
    floor = cfg["scheduler"].get("eta_min_factor", 1.0)
    assert math.isclose(opt.param_groups[0]["lr"], floor)


@pytest.mark.parametrize("name", choices.LOGGERS)
def test_every_logger_instantiates(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train_config([f"logger={name}"], run_dir=str(tmp_path))
    logger = build_logger(cfg["logger"], str(tmp_path), "Jp_lagrangian", {"seed": 0})
    if name == "none":
        assert logger is None
    else:
        assert isinstance(logger, pl.loggers.Logger)
        assert Path(logger.save_dir) == tmp_path


@pytest.mark.parametrize(("mode", "given", "attached"), [
    ("offline", None, "3-1-unix-/tmp/shared.sock"), ("online", None, None),
    ("offline", "3-2-unix-/tmp/own.sock", "3-2-unix-/tmp/own.sock")])
def test_an_offline_run_attaches_to_the_wandb_service_a_warm_server_offers(mode, given, attached, tmp_path,
                                                                           monkeypatch):
    """Only an offline run takes it (an online run's service starts with its caller's environment), and never
    over a service the process was given."""
    shared = tmp_path / "shared.sock"
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(shared))
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setenv(SHARED_SERVICE_ENV, f"3-1-unix-{shared}")
    monkeypatch.setenv("WANDB_SERVICE", given or "")  # restored (to absent) after the test, whatever the run set
    if given is None:
        monkeypatch.delenv("WANDB_SERVICE")
    cfg = compose_train_config(["logger=wandb"], run_dir=str(tmp_path))
    assert build_logger(cfg["logger"], str(tmp_path), "Jp_lagrangian", {"seed": 0}) is not None
    assert os.environ.get("WANDB_SERVICE") == (attached and attached.replace("/tmp/shared.sock", str(shared)))
    listening.close()
    shared.unlink()  # a stale offer: its socket is gone
    monkeypatch.setenv("WANDB_SERVICE", "")
    monkeypatch.delenv("WANDB_SERVICE")
    build_logger(cfg["logger"], str(tmp_path), "Jp_lagrangian", {"seed": 0})
    assert "WANDB_SERVICE" not in os.environ


@pytest.mark.parametrize("name", choices.TRAINERS)
def test_every_trainer_instantiates_with_the_flags_runs_need(name):
    cfg = compose_train_config([f"trainer={name}"])
    if cfg["trainer"]["accelerator"] == "gpu" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    trainer = partial_of(cfg["trainer"], "trainer")(logger=False)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == 1 and trainer.num_sanity_val_steps == 0 and trainer.log_every_n_steps == 1
    assert trainer.num_devices == 1 and not trainer.checkpoint_callbacks and trainer.progress_bar_callback is None
    assert str(trainer.precision) == "32-true"


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "logger"])
def test_each_option_names_itself_in_an_own_key(group):
    """The agent reads a group's choice back from `<group>.name` (agent/trainconf.value), which is never passed
    to the `_target_`."""
    assert "name" in OWN_KEYS[group]
    for path in (CONF_DIR / group).glob("*.yaml"):
        assert OmegaConf.load(path).name == path.stem


# --- one-line errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "says"), [
    ("train.total_steps", "many", "train.total_steps=many is out of range: must be an integer > 0"),
    ("outputs.plot", "maybe", "outputs.plot=maybe is out of range: must be true or false"),
    ("codec.max_error_growth", "lots", "codec.max_error_growth has the wrong type"),
    ("trainer.max_epochs", "one", "trainer.max_epochs has the wrong type"),
    ("model.shared_codes", "disc", "model.shared_codes=disc is out of range: valid: none, material, object"),
])
def test_a_wrong_type_or_value_is_one_line_naming_the_key(key, value, says):
    cfg = compose_train_config(["field=C"])
    group, leaf = key.split(".")
    cfg[group][leaf] = value
    with pytest.raises(ConfigError) as err:
        validate_train_config(cfg)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_schema_alone_rejects_a_wrong_type_and_a_stray_key_in_one_line():
    cfg = compose_train(["inr_type=ngp"])
    cfg.model.n_levels = "sixteen"
    with pytest.raises(ConfigError, match=r"^model.n_levels has the wrong type: .*Integer$"):
        check_types(cfg)
    cfg = compose_train([])
    cfg.train.tf32 = "auto"
    OmegaConf.set_struct(cfg, False)
    cfg.train.totl_steps = 5
    with pytest.raises(ConfigError, match=r"^train.totl_steps is not a key of this config"):
        check_types(cfg)


def _dotted(cfg: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += _dotted(v, f"{prefix}{k}.")
    return out
