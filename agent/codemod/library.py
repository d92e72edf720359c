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

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from agent.codemod import layout
from agent.codemod.settings import CodeModSettings
from agent.study.proposal import Proposal
from agent.study.state import NodeState
from agent.study.stats import best_node
from agent.study.view import StudyView

REPO = layout.REPO
_CODE_ID = re.compile(r"^\[code\] ([a-z0-9_]+):")


@dataclass(frozen=True)
class Modification:
    id: str
    path: str
    description: str
    hypothesis: str
    edits: tuple[tuple[str, str], ...]   # (old snippet, new snippet), each old snippet must occur exactly once

    def apply_to(self, text: str) -> str | None:
        for old, new in self.edits:
            if text.count(old) != 1:
                return None
            text = text.replace(old, new, 1)
        return text

    def diff(self, root: Path) -> str | None:
        """A `git diff` style patch of this edit against `root/path`, or None if it does not fit that file."""
        f = root / self.path
        try:
            old = f.read_text()
        except OSError:
            return None
        new = self.apply_to(old)
        if new is None or new == old:
            return None
        body = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    fromfile=f"a/{self.path}", tofile=f"b/{self.path}", n=3)
        return f"diff --git a/{self.path} b/{self.path}\n" + "".join(body)


LIBRARY: dict[str, Modification] = {m.id: m for m in (
    Modification(
        "lr_warmup", "mpm_inr/training/optim.py",
        "linear LR warm-up over the first 2% of steps, before the configured schedule",
        "the first steps at full learning rate throw SIREN's frequency-tuned initialisation off; ramping the lr "
        "up keeps the early fit stable and lifts the final R²",
        ((
            ('    name = cfg["name"]\n    if name == "none":\n'
             '        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)\n'),
            ('    name = cfg["name"]\n'
             '    warmup = max(1, int(0.02 * total_steps))  # code modification lr_warmup: linear warm-up\n\n'
             '    def ramp(step: int) -> float:\n'
             '        return min(1.0, (step + 1) / warmup)\n\n'
             '    if name == "none":\n'
             '        return torch.optim.lr_scheduler.LambdaLR(optimizer, ramp)\n'),
        ), (
            '            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))\n',
            '            return ramp(step) * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))\n',
        ))),
    Modification(
        "grad_clip_default", "mpm_inr/training/module.py",
        "gradient clipping at max-norm 1.0 by default (train.grad_clip > 0 still sets the bound)",
        "rare large gradients from the high-frequency sine layers kick the fit off its plateau; bounding the "
        "update norm lets the optimiser settle into a better minimum",
        ((
            ('            if s.grad_clip > 0:\n'
             '                torch.nn.utils.clip_grad_norm_(self.network.parameters(), s.grad_clip)\n'),
            ('            # code modification grad_clip_default: clip at max-norm 1.0 unless train.grad_clip is set\n'
             '            torch.nn.utils.clip_grad_norm_(self.network.parameters(), s.grad_clip if s.grad_clip > 0 '
             'else 1.0)\n'),
        ),)),
    Modification(
        "huber_loss", "mpm_inr/training/module.py",
        "Huber loss (delta 0.1 in z-scored units) in place of the MSE training loss (train.loss=mse)",
        "a few particles with large residuals (contact fronts, yield events) dominate the MSE gradient; a Huber "
        "loss bounds their pull so the bulk of the field is fitted better (R² is still measured on squared error)",
        ((
            '        return nn.functional.mse_loss(pred, target)\n',
            ('        # code modification huber_loss: robust loss in place of MSE\n'
             '        return nn.functional.huber_loss(pred, target, delta=0.1)\n'),
        ),)),
    Modification(
        "adamw_decoupled", "mpm_inr/training/optim.py",
        "optimizer=adam runs AdamW with decoupled weight decay 1e-4 on the network weights (none on omega and "
        "latent codes)",
        "a small decoupled weight decay keeps the sine-layer weights from growing into high-frequency noise that "
        "fits sampling artefacts; exempting omega and the per-particle codes keeps their scale",
        ((
            '    if name == "adam":\n        return torch.optim.Adam(groups, **kwargs)\n',
            ('    if name == "adam":  # code modification adamw_decoupled\n'
             '        for group in groups:\n'
             '            group["weight_decay"] = 1e-4 if group["name"] == "main" else 0.0\n'
             '        return torch.optim.AdamW(groups, **kwargs)\n'),
        ),)),
    Modification(
        "residual_siren", "mpm_inr/models/siren.py",
        "residual SIREN trunk: each hidden sine layer averaged with its input (identity skip)",
        "deep SIRENs lose gradient signal through many sine layers; identity paths ease optimisation so depth "
        "adds accuracy instead of instability",
        ((
            '    def forward(self, x: Tensor) -> Tensor:\n        return self.layers(x)\n',
            ('    def forward(self, x: Tensor) -> Tensor:\n'
             '        # code modification residual_siren: identity skips around the hidden sine layers\n'
             '        h = self.layers[0](x)\n'
             '        for layer in self.layers[1:]:\n'
             '            h = 0.5 * (h + layer(h))\n'
             '        return h\n'),
        ),)),
)}


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
