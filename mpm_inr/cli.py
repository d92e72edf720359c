"""Shared entry-point behaviour: user errors as one line, divergence as a non-zero exit for single runs only."""

from __future__ import annotations

import contextlib
import difflib
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import (
    compute_search_path_dir,
    create_automatic_config_search_path,
    detect_calling_file_or_module_from_task_function,
    detect_task_name,
    run_and_report,
)
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import run_job
from hydra.errors import HydraException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from mpm_inr.config.compose import CONF_DIR, compose
from mpm_inr.errors import UserError

_HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--version", "--shell-completion",
                "-sc", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p",
                "--resolve", "--experimental-rerun")


# Roots under which `+key=value` may add a key the config does not declare: debug.* holds fault-injection hooks
# that tests add on purpose (+debug.inject_nonfinite_step=13), hydra.* is Hydra's own config.
_ADDABLE_ROOTS = ("debug", "hydra")


def run_command(hydra_main: Callable[[], Any], config_path: str, config_name: str,
                validate: Callable[[Mapping[str, Any]], None] | None = None, argv: list[str] | None = None) -> None:
    """Run the @hydra.main function `hydra_main` (decorated with these `config_path` and `config_name`) for the
    command line, with the pre-check's one-line errors (`precheck_overrides`).

    A plain run (no Hydra flag, no --multirun) composes conf/ once: the pre-check's checks run on the very config
    Hydra's steps of a run then use (callbacks, run directory, logging, the job), as `Hydra.run` takes them.
    Hydra's main would compose it twice more, once only to read `hydra.mode`: 0.2 s of CPU, a fifth of what a
    one-second run pays besides its fit. Anything else (a sweep, a flag, a config that sets hydra.mode) takes the
    usual way: the pre-check, then Hydra's main. Returns None, as Hydra's main does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    task = hydra_main.__wrapped__  # type: ignore[attr-defined]  # functools.wraps in hydra.main
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(task)
    conf_dir = Path(compute_search_path_dir(calling_file, calling_module, config_path) or CONF_DIR)
    if any(a.startswith("-") for a in argv):
        precheck_overrides(config_name, argv, validate, conf_dir)
        return hydra_main()
    _check_added_keys(conf_dir, config_name, argv, sweep=False)  # before Hydra is set up: it composes on its own
    search_path = create_automatic_config_search_path(calling_file, calling_module, config_path)
    hydra = Hydra.create_main_hydra2(task_name=detect_task_name(calling_file, calling_module),
                                     config_search_path=search_path)
    try:
        try:
            cfg = hydra.compose_config(config_name, argv, run_mode=RunMode.RUN, with_log_configuration=True)
        except (HydraException, OmegaConfBaseException, ValueError) as err:
            _exit(_unknown_key_hint(err, conf_dir, config_name) or _one_line(err))
        if cfg.hydra.mode is not None:  # the config sets it (to sweep, say): Hydra's main runs it as it says
            GlobalHydra.instance().clear()
            precheck_overrides(config_name, argv, validate, conf_dir)
            return hydra_main()
        _check_composed(cfg, argv, validate)
        run_and_report(lambda: _run(hydra, cfg, config_name, task))
    finally:
        GlobalHydra.instance().clear()
    return None


def _run(hydra: Hydra, cfg: DictConfig, config_name: str, task: Callable[[DictConfig], Any]) -> None:
    """Hydra 1.3's `Hydra.run` after its composition, for a config that leaves hydra.mode unset: its main adds the
    override hydra.mode=RUN then, which shows in .hydra/hydra.yaml."""
    cfg.hydra.mode = RunMode.RUN
    cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=config_name)
    ret = run_job(hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                  task_function=task, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None,
                  configure_logging=True)
    callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
    _ = ret.return_value  # raises what the job raised


def precheck_overrides(config_name: str, argv: list[str] | None = None,
                       validate: Callable[[Mapping[str, Any]], None] | None = None,
                       conf_dir: Path = CONF_DIR) -> None:
    """Compose the command line once before @hydra.main, so a mistake gives one line, not Hydra's multi-line dump
    or a run directory with nothing in it.

    Exits 2 with `error: ...` naming the problem and its fix: a bad group option (with the valid choices), a
    misspelt key, a `+key` that adds a key the config does not have (nothing would read it), a value `validate`
    rejects (range checks, before any heavy import), or a run directory that cannot be created. A --multirun is
    Hydra's to expand: only its `+key`s are checked, on its first job.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=")[0] in _HYDRA_FLAGS for a in argv):
        return
    if any(a in ("-m", "--multirun") for a in argv):
        _check_added_keys(conf_dir, config_name, [a for a in argv if a not in ("-m", "--multirun")], sweep=True)
        return
    try:
        cfg = compose(config_name, argv, conf_dir, hydra_node=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        _exit(_unknown_key_hint(err, conf_dir, config_name) or _one_line(err))
    _check_added_keys(conf_dir, config_name, argv, sweep=False)
    _check_composed(cfg, argv, validate)


def _check_composed(cfg: DictConfig, argv: list[str], validate: Callable[[Mapping[str, Any]], None] | None) -> None:
    """The pre-check's checks of a composed config: `validate`'s range checks and a creatable hydra.run.dir."""
    if validate is not None:
        _validate(validate, cfg)
    run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
    if run_dir is not None:
        _check_creatable(Path(run_dir))


def _exit(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _validate(validate: Callable[[Mapping[str, Any]], None], cfg: DictConfig) -> None:
    """Run the job's own range checks on the composed config. Values resolve as the job reads them; the hydra
    node is left out (its runtime values, like the job number, exist only once Hydra runs the job)."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        validate(job)
    except UserError as err:
        _exit(str(err))
    except OmegaConfBaseException as err:  # an interpolation the values make unresolvable
        _exit(_one_line(err))


def _check_added_keys(conf_dir: Path, config_name: str, argv: list[str], sweep: bool) -> None:
    """Refuse `+key=value` / `++key=value` for a key the composed config does not have (outside _ADDABLE_ROOTS):
    Hydra adds it and nothing ever reads it, so `+train.totl_steps=5` would train the default number of steps.

    Presence is judged on the config composed without the adding overrides (with the first value of each sweep
    for a --multirun); a command line Hydra cannot parse or compose is left for Hydra to report."""
    if not any(a.lstrip().startswith("+") for a in argv):  # no override adds a key: nothing to parse (10 ms)
        return
    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except HydraException:
        return
    added = [o for o in parsed if (o.is_add() or o.is_force_add()) and not _is_group(conf_dir, o.key_or_group)
             and o.key_or_group.split(".")[0] not in _ADDABLE_ROOTS]
    if not added:
        return
    adding = {id(o) for o in added}
    rest = [_first_job_override(o, arg) if sweep else arg for o, arg in zip(parsed, argv) if id(o) not in adding]
    try:
        base = compose(config_name, [r for r in rest if r is not None], conf_dir)
    except (HydraException, OmegaConfBaseException, ValueError):
        return
    for o in added:
        if OmegaConf.select(base, o.key_or_group, default=_ABSENT) is _ABSENT:
            _exit(f"{o.get_key_element()} adds a key the {config_name} config does not have, and nothing would "
                  f"read it; {_closest_keys(o.key_or_group, base, conf_dir)} (set an existing key without '+')")


_ABSENT = object()


def _is_group(conf_dir: Path, key: str) -> bool:
    return "/" in key or (conf_dir / key).is_dir()


def _first_job_override(o: Override, arg: str) -> str | None:
    """The override as the sweep's first job sees it; None for a sweep with no first value (an interval)."""
    if not o.is_sweep_override():
        return arg
    if not o.is_discrete_sweep():
        return None
    return f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"


def _unknown_key_hint(err: Exception, conf_dir: Path, config_name: str) -> str | None:
    """For 'Could not override KEY', name the closest real keys instead of Hydra's advice to append +KEY."""
    match = re.search(r"Could not override '([^']+)'", str(err))
    if not match:
        return None
    key = match.group(1)
    return f"unknown key {key}; {_closest_keys(key, compose(config_name, [], conf_dir), conf_dir)}"


def _closest_keys(key: str, cfg: DictConfig, conf_dir: Path) -> str:
    keys = list(dict.fromkeys(list(_dotted_keys(cfg)) + [p.name for p in conf_dir.iterdir() if p.is_dir()]))
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(close)}?" if close else "see the keys with --cfg job"


def _dotted_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    for k in node:
        value = node._get_node(k)
        name = f"{prefix}{k}"
        yield name
        if isinstance(value, DictConfig):
            yield from _dotted_keys(value, name + ".")


def _one_line(err: Exception) -> str:
    """Hydra's message, its 'Available options' list folded onto the same line. A resolver's own error (a value
    it cannot use) is shown without OmegaConf's wrapping, which names the key it was resolving, not the user's."""
    if isinstance(err, InterpolationResolutionError):
        found = re.match(r"ValueError raised while resolving interpolation: (.*?)\s*full_key:", str(err),
                         re.DOTALL)
        if found:
            return " ".join(found.group(1).split())
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


def _check_creatable(path: Path) -> None:
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
