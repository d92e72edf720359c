"""Shared entry-point behaviour: user errors as one line, divergence as a non-zero exit for single runs only."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mpm_inr.errors import UserError

_HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--version", "--shell-completion",
                "-sc", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p",
                "--resolve", "--experimental-rerun")


def precheck_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Compose the command line once before @hydra.main, so a typo gives one line, not Hydra's multi-line dump.

    Runs for single runs only (sweep syntax like field=F,Jp is Hydra's to expand) and exits 2 with
    `error: ...` naming the problem and, for a bad group option, the valid choices. It also checks that the run
    directory can be created, before Hydra tries to.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-m", "--multirun") or a.split("=")[0] in _HYDRA_FLAGS for a in argv):
        return
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=argv, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        print(f"error: {_unknown_key_hint(err, conf_dir, config_name) or _one_line(err)}", file=sys.stderr)
        sys.exit(2)
    run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
    if run_dir is not None:
        _check_creatable(Path(run_dir))
    _ = cfg


def _unknown_key_hint(err: Exception, conf_dir, config_name: str) -> str | None:
    """For 'Could not override KEY', name the closest real keys instead of Hydra's advice to append +KEY."""
    import difflib
    import re

    match = re.search(r"Could not override '([^']+)'", str(err))
    if not match:
        return None
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name=config_name)
    keys = list(dict.fromkeys(list(_dotted_keys(cfg)) + [p.name for p in conf_dir.iterdir() if p.is_dir()]))
    key = match.group(1)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else "see the keys with --cfg job"
    return f"unknown key {key}; {hint}"


def _dotted_keys(node, prefix: str = ""):
    from omegaconf import DictConfig

    for k in node:
        value = node._get_node(k)
        name = f"{prefix}{k}"
        yield name
        if isinstance(value, DictConfig):
            yield from _dotted_keys(value, name + ".")


def _one_line(err: Exception) -> str:
    """Hydra's message, its 'Available options' list folded onto the same line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    head, rest = lines[0], lines[1:]
    if rest and rest[0].startswith("Available options"):
        options = []
        for line in rest[1:]:
            if line.startswith("Config search path"):
                break
            options.append(line)
        return f"{head}; valid: {', '.join(options)}"
    return " ".join([head] + [r for r in rest if not r.startswith("Set the environment variable")])


def _check_creatable(path) -> None:
    try:  # Hydra would create it next anyway; doing it here turns an OSError into one line
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create run directory {path}: {err.strerror}; pass a writable hydra.run.dir",
              file=sys.stderr)
        sys.exit(2)


INTERRUPTED_EXIT = 130  # 128 + SIGINT: what a shell reports for a command stopped with Ctrl-C


@contextlib.contextmanager
def exit_on_interrupt(what_is_left: str) -> Iterator[None]:
    """Ctrl-C as one line `error: interrupted; <what_is_left>` and exit 130, not a 20-40-line traceback.

    Cleanup has run by the time the KeyboardInterrupt arrives here (context managers and finally blocks on its
    way up), so the line can say what is left on disk.
    """
    try:
        yield
    except KeyboardInterrupt:
        print(f"error: interrupted; {what_is_left}", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_EXIT)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_hydra_task(cfg: DictConfig, task: Callable[..., dict[str, Any]]) -> float | None:
    """Run a training task inside Hydra; a failing job of a --multirun never stops its siblings.

    Returns final_r2 for a sweeper to optimise, or None for a failed job of a --multirun (and for an undefined
    R²): the Optuna sweeper records None as a failed trial and goes on, while a NaN aborts its whole sweep
    (its `study.tell` rejects NaN, then rejects the failure it reports instead). What a job did is in its
    metrics.json, which is what the agent reads; the return value is only for sweepers.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    plain = OmegaConf.to_container(cfg, resolve=True)
    multirun = is_multirun()
    try:
        metrics = task(plain, hc.runtime.output_dir, list(hc.overrides.task))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            return None
        sys.exit(err.exit_code)
    except Exception as err:  # recorded in metrics.json + traceback.txt by the task
        if multirun:
            print(f"error: job failed: {type(err).__name__}: {err}", file=sys.stderr)
            return None
        raise
    if metrics.get("status") != "ok":
        print(f"error: run {metrics.get('status')}: {metrics.get('error')}", file=sys.stderr)
        if not multirun:
            sys.exit(1)
        return None
    r2 = float(metrics["final_r2"])
    return r2 if math.isfinite(r2) else None
