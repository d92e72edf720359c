"""Path rules of code modifications: the allow-list's glob syntax and the fixed protected list (what no change may
touch, whatever `codemod.allow` says). Both the config check (agent.codemod.settings) and the guardrails
(agent.codemod.guard) read them, so they sit below both."""

from __future__ import annotations

import re


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` matches within one path component, `**` across components; a trailing `/` means the whole folder."""
    if pattern.endswith("/"):
        pattern += "**"
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


#: paths no code modification may touch, whatever codemod.allow says, with the reason shown to the policy
PROTECTED: tuple[tuple[str, str], ...] = (
    ("mpm_inr/metrics/**", "the metrics code (mpm_inr/metrics)"),
    ("mpm_inr/codec/**", "the model-file code that re-scores decoded models (mpm_inr/codec)"),
    ("mpm_inr/data/**", "the data-loading code (mpm_inr/data)"),
    ("mpm_inr/training/run.py", "the evaluation code (mpm_inr/training/run.py)"),
    ("mpm_inr/training/outputs.py", "the code that writes metrics.json (mpm_inr/training/outputs.py)"),
    ("mpm_inr/training/datamodule.py", "the data-loading code (mpm_inr/training/datamodule.py)"),
    ("mpm_inr/training/validate.py", "the config validation (mpm_inr/training/validate.py)"),
    ("mpm_inr/sim/**", "the simulator that generates the data (mpm_inr/sim)"),
    ("mpm_inr/errors.py", "the error types (mpm_inr/errors.py)"),
    ("agent/**", "the agent itself (agent/)"),
    ("hydra_plugins/**", "the launcher plugins (hydra_plugins/)"),
    ("conf/**", "the configs (change them through overrides)"),
    ("tests/**", "the tests"),
    ("train.py", "the training entry point"),
    ("generate.py", "the data generation entry point"),
    ("setup.cfg", "the packaging"),
    ("pyproject.toml", "the packaging"),
    ("Makefile", "the build"),
)


def protected_reason(path: str) -> str | None:
    for pattern, why in PROTECTED:
        if glob_regex(pattern).match(path):
            return why
    return None
