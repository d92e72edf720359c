"""`make landscape` = `python -m agent landscape [--dry-run] [--out DIR] [explore overrides...]`: one command for the
reference study. It makes the datasets the plan reads if they are missing (the study's scenario on dataset seed
`data.seed` and on every seed-spread seed), runs (or resumes) the study, and exports it into `--out`
(docs/landscape by default; agent.reporting.export) with its report and a provenance record. Run it again after
any interruption, kill -9 included: the study resumes from its journal, and the export is redone from scratch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.loop.explorer import REPO, Explorer
from agent.loop.plan_estimate import describe
from agent.reporting.export import (
    copy_baseline_caches,
    export_study,
    provenance,
    provenance_md,
)
from agent.reporting.render import render_all
from agent.reporting.report import write_report
from agent.runs.overrides import Validator, as_dict
from agent.study.plan import parse_plan
from mpm_inr.errors import ConfigError, StudyError

DEFAULT_OUT = Path("docs/landscape")


def dataset_dirs(cfg: Mapping[str, Any]) -> list[tuple[str, int, Path]]:
    """(scenario, seed, dir) of every dataset the plan reads: the study's scenario (train_overrides) on its
    data.seed and on each seed-spread seed. Empty when train_overrides name no scenario (the trainer's default
    dataset is then made by the first run, as train.py always does)."""
    ov = as_dict([str(o) for o in cfg.get("train_overrides") or [] if "=" in str(o)])
    scenario = ov.get("scenario")
    if not scenario:
        return []
    root = Path(ov.get("data.root") or "data")
    plan = parse_plan(cfg.get("plan"), Validator(limits=cfg.get("limits") or None,
                                                  progression=cfg.get("frames_progression")))
    seeds = [int(ov.get("data.seed") or 0)]
    if plan is not None and plan.seed_spread is not None:
        seeds += [s for s in plan.seed_spread.seeds if s not in seeds]
    return [(scenario, s, (root / f"{scenario}_seed{s}").resolve()) for s in seeds]


def ensure_datasets(cfg: Mapping[str, Any], code_dir: Path, python: str, out: Callable[[str], None]) -> None:
    """Generate each missing dataset with the code dir's own generate.py (one at a time; ~50 s each for
    discs_3types on one CPU thread)."""
    for scenario, seed, d in dataset_dirs(cfg):
        if (d / "meta.json").exists():
            continue
        out(f"landscape: generating {d.name} (missing)")
        r = subprocess.run([python, str(code_dir / "generate.py"), f"scenario={scenario}", f"seed={seed}",
                            f"root={d.parent}", "progress=false"], cwd=str(code_dir), check=False)
        if r.returncode != 0 or not (d / "meta.json").exists():
            raise StudyError(f"generating {d.name} failed (exit {r.returncode}); run python generate.py "
                             f"scenario={scenario} seed={seed} root={d.parent} to see why")


def export(cfg: Mapping[str, Any], code_dir: Path, out_dir: Path, out: Callable[[str], None]) -> None:
    """The study's portable copy in out_dir: journal, metrics and small text files, rendered files, the report,
    provenance.json and provenance.md."""
    study_dir = (Path(cfg.get("root") or "explorations") / str(cfg["name"])).resolve()
    counts = export_study(study_dir, out_dir, code_dir)
    counts["caches"] = copy_baseline_caches([d for _, _, d in dataset_dirs(cfg)], out_dir)
    render_all(out_dir)
    # the report names the folder it reads (e.g. in its predict-time hint): relative, as it will be committed
    write_report(Path(os.path.relpath(out_dir)) if out_dir.is_relative_to(Path.cwd().resolve()) else out_dir)
    prov = provenance(out_dir, code_dir, [d for _, _, d in dataset_dirs(cfg)])
    (out_dir / "provenance.json").write_text(json.dumps(prov, indent=1, sort_keys=True) + "\n")
    (out_dir / "provenance.md").write_text(provenance_md(prov))
    out(f"landscape: exported {counts['events']} journal events, {counts['files']} run files and "
        f"{counts['caches']} baseline cache files to {out_dir} "
        f"(report.md, provenance.md); regenerate the report with python -m agent report {out_dir}")


def run(cfg: Mapping[str, Any], *, dry_run: bool = False, out_dir: Path = DEFAULT_OUT,
        out: Callable[[str], None] = print) -> int:
    code_dir = Path(cfg.get("code_dir") or REPO).resolve()
    if parse_plan(cfg.get("plan"), Validator(limits=cfg.get("limits") or None,
                                             progression=cfg.get("frames_progression"))) is None:
        raise ConfigError("landscape runs a study plan; pick one with plan=<name> (default plan=landscape)")
    if dry_run:
        out(describe(cfg, code_dir))
        return 0
    ensure_datasets(cfg, code_dir, str(cfg.get("python") or sys.executable), out)
    rc = Explorer(dict(cfg), out=out).run()
    if rc != 0:
        return rc
    export(cfg, code_dir, out_dir.resolve(), out)
    return 0


def split_args(argv: Sequence[str]) -> tuple[bool, Path, list[str]]:
    """(--dry-run, --out DIR, explore overrides with plan=landscape and name=landscape unless given)."""
    dry, out_dir, rest = False, DEFAULT_OUT, []
    it = iter(argv)
    for a in it:
        if a == "--dry-run":
            dry = True
        elif a == "--out" or a.startswith("--out="):
            val = a.split("=", 1)[1] if "=" in a else next(it, None)
            if not val:
                raise ConfigError("--out needs a folder, e.g. --out docs/landscape")
            out_dir = Path(val)
        elif a.startswith("--"):
            raise ConfigError(f"unknown option {a}; landscape takes --dry-run, --out DIR and explore overrides")
        else:
            rest.append(a)
    keys = {a.split("=", 1)[0] for a in rest}
    defaults = [d for d in ("plan=landscape", "name=landscape") if d.split("=", 1)[0] not in keys]
    return dry, out_dir, defaults + rest
