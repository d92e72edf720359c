"""The library of hypothesis-tagged code modifications the heuristic policy may propose (agent.codemod.library
decides when): each entry is exact `old -> new` snippet replacements in one allow-listed file, turned into a git
diff against the study's current code. Data only, so the config check (agent.codemod.settings) can name the
entries without importing the policy-facing library."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path


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
            '    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)\n',
            '    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup(step, total_steps))\n',
        ), (
            'def constant_schedule(',
            ('def warmup(step: int, total_steps: int) -> float:\n'
             '    """code modification lr_warmup: linear warm-up over the first 2% of steps"""\n'
             '    return min(1.0, (step + 1) / max(1, int(0.02 * total_steps)))\n\n\n'
             'def constant_schedule('),
        ), (
            '        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))\n',
            '        return warmup(step, total_steps) * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))\n',
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
            '    make = partial_of(cfg, "optimizer")\n    return make(groups)\n',
            ('    make = partial_of(cfg, "optimizer")\n'
             '    if make.func is torch.optim.Adam:  # code modification adamw_decoupled\n'
             '        for group in groups:\n'
             '            group["weight_decay"] = 1e-4 if group["name"] == "main" else 0.0\n'
             '        return torch.optim.AdamW(groups, **make.keywords)\n'
             '    return make(groups)\n'),
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
