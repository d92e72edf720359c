"""`python -m agent <explore|landscape|render|report|predict-time> ...`

    python -m agent explore name=jp_study field=Jp policy=heuristic n_blocks=2 n_iter_block=12 batch=1 \
        launcher=basic 'train_overrides=[scenario=discs_small,train.total_steps=50]'
    python -m agent render explorations/jp_study

`explore` takes Hydra overrides of conf/agent/explore.yaml (composed with Hydra's compose API, so the agent does
not create a Hydra run dir of its own); `policy=` and `launcher=` select conf/agent/policy/<name>.yaml and
conf/agent/launcher/<name>.yaml. User errors print one line `error: ...` and exit 2, before anything runs.
`report` and `predict-time` are dispatched to `agent.reporting.report` and `agent.reporting.timemodel`.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from mpm_inr.errors import ConfigError, UserError

CONF = Path(__file__).resolve().parents[1] / "conf" / "agent"  # its own search path (see explore.yaml)
USAGE = ("usage: python -m agent explore name=<study> [field=Jp policy=heuristic launcher=basic n_blocks=2 "
         "n_iter_block=12 batch=1 'train_overrides=[...]' ...]\n"
         "       python -m agent landscape [--dry-run] [--out docs/landscape] [explore overrides ...]\n"
         "       python -m agent render <study dir> [--no-report]\n"
         "       python -m agent report <study dir> ...\n"
         "       python -m agent predict-time ...")
GROUPS = ("policy", "launcher", "plan")


def _options(group: str, extra_dir: Path | None = None) -> list[str]:
    dirs = [CONF / group] + ([extra_dir / group] if extra_dir is not None else [])
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml")})


def split_list(inner: str) -> list[str]:
    """Split `a=1,b=[x,y],c='p,q'` at top-level commas (brackets and quotes nest)."""
    items, depth, quote, cur = [], 0, "", []
    for ch in inner:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


def _quote(item: str) -> str:
    return "'" + item.replace("\\", "\\\\").replace("'", "\\'") + "'"


def translate(overrides: list[str]) -> list[str]:
    """`policy=X` / `launcher=X` / `plan=X`: unknown options fail with the list of choices (one line); `plan_dir=DIR`
    adds DIR/plan/<name>.yaml to the plan options (a study plan kept outside the repository);
    `train_overrides=[scenario=discs_small,train.total_steps=50]` -> a quoted Hydra list (Hydra's grammar does
    not allow `=` inside unquoted list items)."""
    out = []
    extra_dir = None
    for o in overrides:  # plan_dir=DIR: DIR/plan/<name>.yaml are plan options too (Hydra's search path)
        key, sep, val = o.partition("=")
        if sep and key == "plan_dir":
            extra_dir = Path(val).resolve()
            if not (extra_dir / "plan").is_dir():
                raise ConfigError(f"plan_dir {val} has no plan/ folder; put the plan in {val}/plan/<name>.yaml")
            out.append(f"hydra.searchpath=[file://{extra_dir}]")
    for o in overrides:
        key, sep, val = o.partition("=")
        if sep and key == "plan_dir":
            continue
        if sep and key == "train_overrides" and val.startswith("[") and val.endswith("]"):
            items = [i[1:-1] if len(i) >= 2 and i[0] == i[-1] and i[0] in "'\"" else i
                     for i in split_list(val[1:-1])]
            out.append("train_overrides=[" + ",".join(_quote(i) for i in items) + "]")
        elif sep and key in GROUPS:
            choices = _options(key, extra_dir if key == "plan" else None)
            if val not in choices:
                raise ConfigError(f"unknown {key} '{val}'; choose one of {', '.join(choices)}"
                                  + (" (or add plan_dir=DIR with DIR/plan/<name>.yaml)" if key == "plan" else ""))
            out.append(o)
        else:
            out.append(o)
    return out


def compose_explore(overrides: list[str]) -> dict[str, Any]:
    """The resolved explore config as a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    args = translate(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="explore", overrides=args)
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a required value"
        raise ConfigError(f"{key} is required, e.g. python -m agent explore name=my_study") from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - Hydra's override / composition errors: keep the message, drop the traceback
        msg = " ".join(str(e).split())
        raise ConfigError(f"bad explore option: {msg[:300]}") from None
    finally:
        GlobalHydra.instance().clear()


def cmd_explore(argv: list[str]) -> int:
    from agent.loop.explorer import REPO, Explorer

    cfg = compose_explore(argv)
    if cfg.get("dry_run"):  # print the plan and its estimate; run nothing
        from agent.loop.plan_estimate import describe

        print(describe(cfg, Path(cfg.get("code_dir") or REPO).resolve()))
        return 0
    return Explorer(cfg).run()


def cmd_landscape(argv: list[str]) -> int:
    """`make landscape`: datasets if missing, the study plan (default plan=landscape, name=landscape), the export."""
    from agent.loop.landscape import run, split_args

    dry, out_dir, overrides = split_args(argv)
    return run(compose_explore(overrides), dry_run=dry, out_dir=out_dir)


def cmd_render(argv: list[str]) -> int:
    """Re-render the study's files from its journal, then its report (agent.reporting.report) unless --no-report."""
    from agent.reporting.render import render_all

    with_report = "--no-report" not in argv
    args = [a for a in argv if a != "--no-report"]
    if len(args) != 1:
        raise ConfigError("usage: python -m agent render <study dir> [--no-report]")
    d = Path(args[0])
    if not (d / "journal.jsonl").exists():
        raise ConfigError(f"{d} is not a study directory (no journal.jsonl)")
    written = render_all(d)
    print(f"rendered {len(written)} file(s) in {d}")
    if with_report:
        try:
            from agent.reporting.report import write_report
        except ModuleNotFoundError as e:
            if e.name != "agent.reporting.report":
                raise
            return 0
        try:
            files = write_report(d)
        except UserError as e:  # the journal's files are rendered; say why the report is not
            print(f"warning: report not rendered: {e}", file=sys.stderr)
            return 0
        print(f"rendered the report: {files['report.md']} and {files['report.html']}")
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ConfigError(f"{module} is not available in this installation") from None
        raise
    rc = mod.main(argv)
    return int(rc or 0)


COMMANDS = {
    "explore": cmd_explore,
    "landscape": cmd_landscape,
    "render": cmd_render,
    "report": lambda argv: _delegate("agent.reporting.report", argv),
    "predict-time": lambda argv: _delegate("agent.reporting.timemodel", argv),
}


_KEY_RE = re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}")


def redact(message: str) -> str:
    """Errors may echo a command-line value back (Hydra does): never print an API key into a terminal log."""
    from agent.runs.runner import SECRET_ENV

    for name in SECRET_ENV:
        value = os.environ.get(name, "").strip()
        if len(value) >= 8:
            message = message.replace(value, "[REDACTED]")
    return _KEY_RE.sub("[REDACTED]", message)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command '{cmd}'; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[cmd](rest)
    except UserError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
