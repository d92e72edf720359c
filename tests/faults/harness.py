"""Helpers of the fault-injection suite: a fake trainer whose faults are chosen by config, agent processes, and
the accounting of lost and duplicated runs from a study's journal and run dirs.

Faults are injected from the outside, never through a production hook: the fake trainer of `tests/fakeapp.py` is
written with one extra function that reads `MPM_FAULT_RULES` (a JSON list of `{"if": {dotted key: value},
"do": kind}`) from its environment, which the agent passes on to its children. A fault therefore follows a
*config*, like a real out-of-memory does, so a policy that retried the same config would hit it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakeapp import TRAIN_PY, write_fake_app

from agent.runs.runner import round_alive
from agent.study.journal import Journal
from agent.study.state import StudyState, fold

REPO = Path(__file__).resolve().parents[2]
RULES_ENV = "MPM_FAULT_RULES"

# Messages worded like the real failures they stand for (the fake trainer has no torch).
CUDA_OOM_MSG = ("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.11 GiB total capacity; "
                "71.52 GiB already allocated)")
HOST_OOM_MSG = "Unable to allocate 64.0 GiB for an array with shape (2000000, 8192) and data type float32"

_FAULT_FN = f'''
class OutOfMemoryError(RuntimeError):
    """Named and worded like torch.cuda.OutOfMemoryError."""


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _injected_fault(c):
    """The fault kind of the first {RULES_ENV} rule whose `if` matches this run's resolved config, or None."""
    values = flat(c)
    for rule in json.loads(os.environ.get("{RULES_ENV}") or "[]"):
        if all(_same(values.get(k), v) for k, v in rule["if"].items()):
            return rule["do"]
    return None


@hydra.main('''

_FAULT_KINDS = f'''    crash = _injected_fault(c) or fake["crash"]
    if crash == "cuda_oom":
        raise OutOfMemoryError({CUDA_OOM_MSG!r})
    if crash == "oom":
        raise MemoryError({HOST_OOM_MSG!r})
'''


def write_faulty_app(root: str | Path) -> Path:
    """`tests/fakeapp.py`'s fake trainer plus config-triggered faults (see the module docstring)."""
    root = write_fake_app(root)
    text = TRAIN_PY.lstrip()
    anchors = {"\n@hydra.main(": _FAULT_FN, '    crash = fake["crash"]\n': _FAULT_KINDS}
    for anchor, replacement in anchors.items():
        if text.count(anchor) != 1:  # the fake trainer changed shape: fail loudly rather than inject nothing
            raise RuntimeError(f"tests/fakeapp.py no longer has exactly one {anchor!r}; update tests/faults")
        text = text.replace(anchor, ("\n" if anchor.startswith("\n") else "") + replacement)
    (root / "train.py").write_text(text)
    return root


def rules(*pairs: tuple[dict[str, Any], str]) -> str:
    """`rules(({"model.hidden_dim": 512}, "cuda_oom"), ...)` -> the MPM_FAULT_RULES value."""
    return json.dumps([{"if": cond, "do": kind} for cond, kind in pairs])


def base_env(**extra: str) -> dict[str, str]:
    """Environment of every process the suite starts: one intra-op thread, no W&B, no inherited secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_") and k != RULES_ENV}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled", WANDB_SILENT="true",
               HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """Start a process with stdout and stderr appended to `log`."""
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)


def kill9(p: subprocess.Popen) -> None:
    """SIGKILL one process we started (only that pid: its round's children are deliberately left running)."""
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def events(d: Path) -> list[dict[str, Any]]:
    return Journal(d).read() if (d / "journal.jsonl").exists() else []


def state(d: Path) -> StudyState:
    return fold(events(d))


def wait_for(pred, timeout: float, poll: float = 0.05) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(poll)
    return pred()


# ------------------------------------------------------------------------------------------------ accounting
def completed_trainings(d: Path) -> Counter:
    """node id -> number of its run dirs holding a metrics.json (a training that ran to its end)."""
    out: Counter = Counter()
    for m in d.glob("runs/**/node_*/metrics.json"):
        out[int(m.parent.name.split("_")[1])] += 1
    return out


def tree_problems(st: StudyState) -> list[str]:
    """Structural invariants of a journal at any moment (also right after a kill -9)."""
    probs = []
    nodes = st.launched_nodes()
    its = [n.iteration for n in nodes]
    if its != list(range(1, len(nodes) + 1)):
        probs.append(f"iterations are not 1..{len(nodes)}: {its}")
    for n in nodes:
        if n.parent_id is not None:
            p = st.nodes.get(n.parent_id)
            if p is None or p.block != n.block or p.node_id >= n.node_id or not p.launched:
                probs.append(f"node {n.node_id} has a bad parent {n.parent_id}")
    for b in st.blocks:
        if len(st.block_nodes(b.block)) > b.n_iter_block:
            probs.append(f"block {b.block} has more than {b.n_iter_block} nodes")
    return probs


@dataclass
class Ledger:
    """What happened to the runs of one study, from its journal and its run dirs."""

    n_nodes: int
    unfinished: list[int]
    statuses: Counter
    lost: list[int]                  # finished as crashed although no fault was injected (agent deaths)
    duplicated: int                  # extra completed trainings of a node + policy-level re-runs of a config
    duplicate_detail: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def ledger(d: Path, injected: bool = False) -> Ledger:
    """Account for every node. `injected`: faults were injected, so non-ok statuses are not losses."""
    st = state(d)
    nodes = st.launched_nodes()
    done = completed_trainings(d)
    dup, detail = 0, []
    for n in nodes:
        if done[n.node_id] > 1:
            dup += done[n.node_id] - 1
            detail.append(f"node {n.node_id} trained to completion {done[n.node_id]} times")
    for b in st.blocks:
        seen: dict[str, int] = {}
        for n in st.block_nodes(b.block):
            if n.config_hash in seen and n.strategy != "robustness-test":
                dup += 1
                detail.append(f"node {n.node_id} re-runs node {seen[n.config_hash]}'s config")
            seen.setdefault(n.config_hash, n.node_id)
    lost = [n.node_id for n in nodes if n.finished and n.status == "crashed" and not injected]
    if injected:
        lost = [n.node_id for n in nodes if n.status == "crashed" and (n.error or "").startswith("lost")]
    return Ledger(len(nodes), [n.node_id for n in nodes if not n.finished], Counter(n.status for n in nodes),
                  lost, dup, detail, tree_problems(st))


RENDERED = ("ucb_scores.txt", "*_analysis.md", "*_memory.md", "*_instructions.md", "configs/*", "instructions/*")


def rendered_files(d: Path) -> dict[str, bytes]:
    out = {}
    for pattern in RENDERED:
        for p in d.glob(pattern):
            if p.is_file() and not p.name.startswith("."):
                out[str(p.relative_to(d))] = p.read_bytes()
    return out


def rerender_differences(d: Path, env: dict[str, str]) -> list[str]:
    """Re-render with `python -m agent render` and list the files that changed, appeared or vanished.

    The agent renders after every journal change, so a consistent study re-renders to the same bytes."""
    before = rendered_files(d)
    r = subprocess.run(agent_cmd("render", str(d), "--no-report"), check=False, cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        return [f"render failed ({r.returncode}): {r.stderr.strip()[-300:]}"]
    after = rendered_files(d)
    return [f"{k}: {'changed' if k in before and k in after else 'appeared' if k in after else 'vanished'}"
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


def orphans(d: Path) -> list[str]:
    """Tokens of the study's rounds that still have live processes."""
    return [ev["token"] for ev in events(d) if ev["event"] == "launched" and round_alive(ev.get("token"))]


def plan_signature(d: Path) -> list[tuple]:
    """The tree as the policy built it: (node, parent, strategy, overrides, status) in node order."""
    st = state(d)
    return [(n.node_id, n.parent_id, n.strategy, tuple(n.overrides), n.status) for n in st.launched_nodes()]


def one_line_error(stderr: str) -> str | None:
    """The single `error: ...` line of a user error, or None when stderr is not exactly that."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 and lines[0].startswith("error: ") else None
