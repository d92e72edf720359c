"""A study as a small, portable folder for git (docs/landscape/): the journal and each run's metrics.json and small
text files, every path in them made relative, the rendered files and a provenance record; never checkpoints,
predictions, model files, plots or W&B dirs. `python -m agent report <folder>` re-renders the report from it.

Paths: the study dir becomes the folder itself (`runs/round_0001/node_0001`), the studies' root, the code dir and
the working directory `.`, a dataset root `data`, the interpreter's prefix `<python>`; an export that would keep a path under any of them, or under the home
directory, is refused (`absolute_paths`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.study.journal import Journal
from agent.study.state import fold
from mpm_inr.errors import StudyError

#: run-dir files that travel (small text); everything else stays behind
KEEP_SUFFIXES = (".json", ".log", ".txt", ".yaml", ".md")
MAX_FILE_BYTES = 256 * 1024
#: names never exported whatever their suffix (model files, arrays, plots, W&B and Lightning dirs)
DROP_PARTS = ("checkpoints", "wandb", "lightning_logs", "csv_logs")
DROP_SUFFIXES = (".ckpt", ".npy", ".npz", ".mpmc", ".png", ".pt", ".pth")

class PathRewriter:
    """Rewrites absolute paths under known roots to relative ones, in strings nested anywhere."""

    def __init__(self, roots: Mapping[str, str]):
        # longest root first, so a study dir inside the code dir becomes `runs/...`, not `./explorations/...`
        self.roots = sorted(((str(Path(k)), v) for k, v in roots.items() if k), key=lambda kv: -len(kv[0]))

    def text(self, s: str) -> str:
        for root, rel in self.roots:
            s = s.replace(root + "/", "" if rel in ("", ".") else rel + "/").replace(root, rel or ".")
        return s

    def value(self, x: Any) -> Any:
        if isinstance(x, str):
            return self.text(x)
        if isinstance(x, list):
            return [self.value(v) for v in x]
        if isinstance(x, dict):
            return {k: self.value(v) for k, v in x.items()}
        return x

def absolute_paths(x: Any, prefixes: Iterable[str]) -> list[str]:
    """Strings in `x` that still contain one of the machine-local `prefixes` (absolute paths)."""
    found: list[str] = []
    todo = [x]
    pre = [p for p in prefixes if p]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            if any(p in v for p in pre):
                found.append(v[:200])
        elif isinstance(v, list):
            todo += v
        elif isinstance(v, dict):
            todo += list(v.values())
    return found

def _keep(rel: Path, size: int) -> bool:
    if any(part in DROP_PARTS or part.startswith(("wandb", "offline-run-")) for part in rel.parts):
        return False
    return rel.suffix in KEEP_SUFFIXES and rel.suffix not in DROP_SUFFIXES and size <= MAX_FILE_BYTES

def dataset_roots(events: list[dict[str, Any]]) -> set[str]:
    """The dataset roots the runs read (parents of metrics.json `dataset`)."""
    roots = set()
    for ev in events:
        ds = (ev.get("metrics") or {}).get("dataset") if ev.get("event") == "finished" else None
        if isinstance(ds, str) and ds.startswith("/"):
            roots.add(str(Path(ds).parent))
    return roots

def export_study(study_dir: Path, out_dir: Path, code_dir: Path) -> dict[str, int]:
    """Copy the study's portable part into out_dir (replacing a previous export); returns counts."""
    study_dir, out_dir, code_dir = study_dir.resolve(), out_dir.resolve(), code_dir.resolve()
    events = Journal(study_dir).read()
    if not events:
        raise StudyError(f"{study_dir} has no journal to export")
    cwd = Path.cwd().resolve()  # the agent makes a relative data.root absolute against its working directory
    roots = {str(cwd): ".", str(study_dir.parent): ".", str(study_dir): ".", str(code_dir): "."}
    roots.update({r: "data" for r in dataset_roots(events)})
    # the interpreter that ran the jobs (multirun.log's command line)
    roots.update({str(Path(sys.executable).parent): "<python>/bin", sys.prefix: "<python>"})
    rw = PathRewriter(roots)
    local = [str(study_dir.parent), str(code_dir), str(cwd), *dataset_roots(events), str(Path.home())]
    findings = out_dir / "README.md"  # hand-written (the findings quoted from the journal): never exported over
    kept = findings.read_bytes() if findings.is_file() else None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    if kept is not None:
        findings.write_bytes(kept)
    rewritten = [rw.value(ev) for ev in events]
    left = absolute_paths(rewritten, local)
    if left:
        raise StudyError(f"export would keep {len(left)} machine-local path(s), e.g. {left[0]}")
    (out_dir / "journal.jsonl").write_text("".join(json.dumps(ev, sort_keys=True, separators=(",", ":")) + "\n"
                                                   for ev in rewritten))
    files = 0
    for p in sorted((study_dir / "runs").rglob("*")) if (study_dir / "runs").is_dir() else []:
        rel = p.relative_to(study_dir)
        if p.is_symlink() or not p.is_file() or not _keep(rel, p.stat().st_size):
            continue
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(rw.text(p.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
        files += 1
    return {"events": len(events), "files": files}

def copy_baseline_caches(dataset_dirs: Sequence[Path], out_dir: Path) -> int:
    """Each dataset's baseline cache files (mpm_inr.baselines.cache: the SVD at every rank and every SZ3/ZFP bound
    evaluated) into out_dir/baselines/<dataset>/. The report reads its baselines' full curves from them, so the
    exported report renders the same without the datasets (a fresh clone has none). Returns the files copied."""
    copied = 0
    for d in dataset_dirs:
        for src in sorted((Path(d) / "baselines").glob("*.json")):
            dest = out_dir / "baselines" / Path(d).name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied += 1
    return copied

# ------------------------------------------------------------------------------------------------ provenance

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

def _git(code_dir: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(code_dir), *args], capture_output=True, text=True, timeout=30,
                           check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None

def gpu_names() -> list[str]:
    try:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA, no driver: no GPU to report
        return []

def torch_version() -> str | None:
    try:
        import torch

        return str(torch.__version__)
    except Exception:  # noqa: BLE001
        return None

def ran_commits(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The code commits the study's rounds ran ("-dirty": with uncommitted changes), in order, each once."""
    return list(dict.fromkeys(str(e["code_commit"]) for e in events
                              if e.get("event") == "launched" and e.get("code_commit")))


def provenance(study_dir: Path, code_dir: Path, dataset_dirs: Iterable[Path]) -> dict[str, Any]:
    """Where and when the study ran: machine, date, commit, torch, and each dataset's fingerprint (meta.json)."""
    events = Journal(study_dir).read()
    st = fold(events)
    datasets = []
    for d in dataset_dirs:
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            datasets.append({"name": d.name, "missing": True})
            continue
        fp = meta.get("fingerprint") or {}
        datasets.append({"name": d.name, "seed": meta.get("seed"), "generator_version": meta.get("generator_version"),
                         "device": meta.get("device"), "torch_version": meta.get("torch_version"),
                         "created": meta.get("created"), "sha256": fp.get("sha256")})
    ran = ran_commits(events)
    if ran:  # what the jobs ran, as each round recorded it at launch (HEAD now may have moved on)
        commit = ", ".join(dict.fromkeys(c.removesuffix("-dirty") for c in ran))
        dirty = any(c.endswith("-dirty") for c in ran)
    else:  # nothing launched: the checkout as it is, less the export's own files (written just before)
        commit = _git(code_dir, "rev-parse", "HEAD")
        dirty = bool(_git(code_dir, "status", "--porcelain", "--untracked-files=no", "--", ".",
                          f":(exclude){study_dir.resolve()}"))
    t_end = (st.ended or {}).get("t")
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "gpus": gpu_names(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch_version()},
        "commit": commit, "dirty": dirty,
        "study": {"name": st.name, "plan": (st.config.get("plan") or {}).get("name"), "runs": st.n_iterations,
                  "blocks": len(st.blocks), "ended": (st.ended or {}).get("reason"),
                  "wall_s": round(t_end - st.t_start, 1) if t_end and st.t_start else None,
                  "starts": st.starts, "train_overrides": st.config.get("train_overrides")},
        "datasets": datasets,
    }

def provenance_md(p: Mapping[str, Any]) -> str:
    m, s = p["machine"], p["study"]
    lines = ["# Provenance", "",
             f"- date: {p['date']}",
             f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {', '.join(m['gpus']) or 'none'}; {m['platform']}",
             f"- python {m['python']}, torch {m['torch']}",
             f"- commit: {p['commit']}{' (uncommitted changes)' if p['dirty'] else ''}",
             (f"- study {s['name']} (plan {s['plan']}): {s['runs']} runs in {s['blocks']} blocks, {s['starts']} "
              f"start(s), wall {s['wall_s']} s, ended: {s['ended']}"),
             f"- every run: {' '.join(s['train_overrides'] or [])}", "",
             "| dataset | seed | generator | device | torch | sha256 (16) |", "|---|---|---|---|---|---|"]
    for d in p["datasets"]:
        if d.get("missing"):
            lines.append(f"| {d['name']} | missing | | | | |")
        else:
            lines.append(f"| {d['name']} | {d['seed']} | {d['generator_version']} | {d['device']} | "
                         f"{d['torch_version']} | {(d['sha256'] or '-')[:16]} |")
    return "\n".join(lines) + "\n"
