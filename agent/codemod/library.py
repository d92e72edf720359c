"""The heuristic policy's code modifications: a small library of hypothesis-tagged edits, and when to use one.

Each entry is a real edit of an allow-listed file: exact `old -> new` snippet replacements turned into a git diff
against the study's *current* code (its worktree when it has one), so the diff always applies to what the next
run will use. An entry whose anchor text is gone (the file changed, or the entry is already in) is skipped.

The design document's trigger (`landscape_study.md` Step 5.2: "when config-level parameters are insufficient",
"never in the first 4 iterations"), made precise in `stuck()`: the last `stuck_iterations` (>= 4) finished runs
of the block all ran ok (the configs are sound), all stayed below `stuck_r2`, and none of them raised the block's
running best by more than `min_gain`. The entry then runs on the block's best config (parent = best node, no
override change, so the R² difference is the code's). Each entry is tried at most once per study, and after a
code-modification attempt the next one waits `stuck_iterations` iterations.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.codemod import layout
from agent.codemod.modifications import LIBRARY
from agent.codemod.settings import CodeModSettings
from agent.study.proposal import Proposal
from agent.study.state import NodeState
from agent.study.stats import best_node
from agent.study.view import StudyView

REPO = layout.REPO
_CODE_ID = re.compile(r"^\[code\] ([a-z0-9_]+):")


def source_root(view: StudyView) -> Path:
    """Where the study's current code is: its worktree once it has one, else its code_dir (or this repo)."""
    return layout.source_root(view.study_dir, view.config.get("code_dir"))


def code_id(node: NodeState) -> str | None:
    """The library id a node's proposal carried (`[code] <id>: ...` mutation), if any."""
    m = _CODE_ID.match(node.mutation or "")
    return m.group(1) if m else None


def stuck(view: StudyView, settings: CodeModSettings) -> bool:
    """The design document's trigger for a code change (see module docstring)."""
    h = settings.heuristic
    done = sorted((n for n in view.block_nodes if n.finished and n.launched), key=lambda n: n.iteration or 0)
    if len(done) < h.stuck_iterations:
        return False
    window, before = done[-h.stuck_iterations:], done[:-h.stuck_iterations]
    if not all(n.is_ok and n.r2 is not None and n.r2 < h.stuck_r2 for n in window):
        return False
    prior = [n.r2 for n in before if n.r2 is not None]
    best = max(prior) if prior else window[0].r2
    for n in window[0 if prior else 1:]:
        if n.r2 > best + h.min_gain:
            return False
        best = max(best, n.r2)
    return True


def propose_modification(view: StudyView) -> Proposal | None:
    """The heuristic's code-modification proposal for this iteration, or None (the usual case)."""
    settings = CodeModSettings.from_config(view.config)
    if not settings.enabled or view.iter_in_block <= settings.protect_first or not stuck(view, settings):
        return None
    window_start = sorted(n.node_id for n in view.block_nodes)[-settings.heuristic.stuck_iterations]
    if any(n.strategy == "code-modification" and n.node_id >= window_start and n.block == view.block.block
           for n in view.nodes):
        return None  # the last attempt is too recent: give it stuck_iterations iterations
    tried = {code_id(n) for n in view.nodes}
    best = best_node(view.block_nodes, float((view.config.get("agent") or {}).get("min_compression", 1.0)))
    if best is None:
        return None
    root = source_root(view)
    h = settings.heuristic
    recent = [n.r2 for n in sorted(view.block_nodes, key=lambda n: n.iteration or 0)[-h.stuck_iterations:]]
    for mid in h.library:
        mod = LIBRARY[mid]
        if mid in tried or not settings.allowed(mod.path):
            continue
        diff = mod.diff(root)
        if diff is None:
            continue
        spread = f"{min(recent):.4f}-{max(recent):.4f}"
        return Proposal(
            parent_id=best.node_id, strategy="code-modification", overrides={},
            mutation=f"[code] {mid}: {mod.description}",
            rationale=f"R² stuck below {h.stuck_r2} for {h.stuck_iterations} iterations of sound configs "
                      f"({spread}): config changes are not enough, so test a code change on the block's best "
                      f"config (node {best.node_id})",
            log_entry=f"CODE MODIFICATION:\n  File: {mod.path}\n  Change: {mod.description}\n"
                      f"  Hypothesis: {mod.hypothesis}",
            code_diff=diff)
    return None
