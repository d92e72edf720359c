"""The prompt section that lets an LLM policy propose a code change: the rules, the last code steps, the code.

Why a section of its own: a diff the guardrails refuse costs a round, so the prompt states exactly what
agent.codemod enforces, taken from the code that enforces it (the study's `codemod` settings for the allow-list,
imports, size and protected iterations; agent.codemod.guard for the fixed protected paths, forbidden imports,
names and evaluation-path functions), and it shows the allow-listed files as the next run will use them (the
study's worktree `<study>/code/work`, before its first start the code_dir's tracked files) with line numbers, so
hunks can be written against the real text. The last code steps (rejections and failures with their reasons)
come from the journal through agent.codemod.history, worded as in the memory.

File contents are sent only in rounds where a code change is allowed (after the first `protect_first`
iterations of a block), and are clipped to a character limit; with code modifications disabled the section is
one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.codemod import gitops, layout
from agent.codemod.guard import (
    FORBIDDEN_IMPORTS,
    FORBIDDEN_NAMES,
    PROTECTED_FUNCTIONS,
    SAFE_DUNDERS,
)
from agent.codemod.history import code_history, short
from agent.codemod.paths import PROTECTED, glob_regex, protected_reason
from agent.codemod.settings import CodeModSettings
from agent.study.journal import Journal

#: characters of file text (with line numbers) the section may carry
DEFAULT_MAX_CHARS = 24000
#: code notes listed (the newest, across blocks)
DEFAULT_N_EVENTS = 8
DISABLED = "## Code modifications: disabled in this study (codemod.enabled is false); code_diff must be null."
HEADING = "## Code modifications (rare; on the study's own git branch)"


def _forbidden_imports() -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for mod, why in FORBIDDEN_IMPORTS.items():
        by_reason.setdefault(why, []).append(mod)
    return [f"{why}: {', '.join(mods)}" for why, mods in by_reason.items()]


def allowed_now(settings: CodeModSettings, iter_in_block: int | None, n_slots: int = 1) -> tuple[bool, str]:
    """(may any child of this round carry a diff, the sentence saying which)."""
    k = settings.protect_first
    if iter_in_block is None:
        return True, f"Never in the first {k} iterations of a block."
    last = iter_in_block + max(1, n_slots) - 1
    if last <= k:
        span = f"iteration {iter_in_block}" if last == iter_in_block else f"iterations {iter_in_block}-{last}"
        return False, (f"NOT allowed in this round: it is {span} of the block and code changes wait until "
                       f"iteration {k + 1}; every code_diff must be null.")
    if iter_in_block <= k:
        return True, (f"Allowed in this round only for slots {k + 1 - iter_in_block} and later (the first {k} "
                      f"iterations of a block are config-only).")
    return True, f"Allowed in this round (iteration {iter_in_block} of the block is past the first {k})."


def rules(settings: CodeModSettings, *, branch: str = "explore/<name>", iter_in_block: int | None = None,
          n_slots: int = 1) -> str:
    """The modification rules, derived from the settings and the guardrails."""
    s = settings
    _, now = allowed_now(s, iter_in_block, n_slots)
    smoke = ("import every changed module, then train a few steps (" + " ".join(s.smoke.overrides) + ")"
             if s.smoke.train else "import every changed module")
    revert = "a failed run, or a run whose R² is below its parent's, is" if s.revert_if_worse else "a failed run is"
    functions = "; ".join(f"{', '.join(fns)} in {path}" for path, fns in PROTECTED_FUNCTIONS.items())
    lines = [
        "When: rarely, and only when config overrides alone cannot test the hypothesis (R² stuck for 4+ "
        "iterations with sound configs; e.g. a learning-rate schedule, gradient clipping, Huber loss, residual "
        "connections, initialisation). At most one child per round may carry a code_diff. " + now,
        ("How: strategy \"code-modification\"; overrides {} (the parent's config runs with the new code, so the R² "
        "difference is the code's); mutation \"[code] <file>:<function>: <one-line change>\"; code_diff = the "
        "unified diff; log_entry with the block\n  CODE MODIFICATION:\n    File: <path>\n    Function: <name>\n"
        "    Change: <one line>\n    Hypothesis: <one line>\n(the commit message \"[Iter N] <Change>\" is made "
        "from it)."),
        ("Diff format (parsed strictly, then applied with `git apply`): each file starts with "
        "`diff --git a/<path> b/<path>`, then `--- a/<path>` and `+++ b/<path>`, then hunks "
        "`@@ -<start>,<count> +<start>,<count> @@` whose counts match their lines exactly (' ' context, '-' "
        "removed, '+' added); context and removed lines copied exactly from the file as shown below (the "
        "`   N| ` line-number prefix is not part of the file); plain repository-relative paths; each file once; no "
        "text outside the patches; no binary, mode, symlink or rename changes; new files only as .py inside the "
        f"allow-list; at most {s.max_changed_lines} changed lines in all."),
        (f"What happens: guardrails, `git apply --check`, smoke test ({smoke}), then the commit on {branch}; that "
        "child's run uses the commit. A refused diff is recorded as \"code modification rejected: <reason>\", a "
        "failed smoke test as \"code modification failed: <reason>\" (the change is discarded and nothing runs); "
        f"{revert} reverted by a git revert commit (\"code modification failed: <reason>\"). The next round "
        "runs on the branch head."),
        f"Allowed files (codemod.allow): {', '.join(s.allow)}.",
        "Never changed, whatever the allow-list says: "
        + "; ".join(f"{why} [{pattern}]" for pattern, why in PROTECTED) + ".",
        (f"Must stay identical (the evaluation path): {functions}. Lines that measure the training time "
        "(train_seconds, _started, perf_counter) may not change."),
        f"Imports a change may add: {', '.join(s.allowed_imports)} (codemod.allowed_imports). Never: "
        + "; ".join(_forbidden_imports()) + ".",
        "A change may not add uses of these names (file, process, network, dynamic-code, introspection, "
        "ground-truth or timing access): " + ", ".join(sorted(FORBIDDEN_NAMES)) + "; nor dunder names other "
        f"than {', '.join(sorted(SAFE_DUNDERS))}; nor getattr/setattr/hasattr with a computed or private "
        "attribute name; nor eval/exec/compile/__import__/importlib on any added line.",
    ]
    return "\n".join(lines)


def allowed_files(settings: CodeModSettings, source: Path, first: Sequence[str] = ()) -> list[str]:
    """Tracked files under `source` that a change may touch: `first` (those present), then allow-list order.

    Tracked only: the study's branch starts from code_dir's HEAD plus its changes to tracked files, so an
    untracked file is never part of the code a run uses. Raises GitError if `source` is not a git checkout.
    """
    tracked = [p for p in gitops.out(source, "ls-files", "-z").split("\0") if p]
    out: list[str] = [p for p in dict.fromkeys(first) if p in tracked and settings.allowed(p)
                      and protected_reason(p) is None and (source / p).is_file()]
    for pattern in settings.allow:
        rx = glob_regex(pattern)
        for p in sorted(tracked):
            if rx.match(p) and p not in out and protected_reason(p) is None and (source / p).is_file():
                out.append(p)
    return out


def numbered(text: str) -> list[str]:
    return [f"{i:>4}| {line}" for i, line in enumerate(text.splitlines(), 1)]


def files_text(source: Path, paths: Sequence[str], max_chars: int) -> str:
    """The files in order with line numbers, up to `max_chars`: the file that meets the limit is cut (it says
    which lines are missing) and the rest are only named."""
    out: list[str] = []
    used = 0
    left: list[str] = []
    for path in paths:
        try:
            lines = numbered((source / path).read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            out.append(f"### {path}: cannot be read ({e.strerror})")
            continue
        if left or used >= max_chars:
            left.append(f"{path} ({len(lines)} lines)")
            continue
        shown: list[str] = []
        for line in lines:
            if used + len(line) + 1 > max_chars:
                break
            shown.append(line)
            used += len(line) + 1
        if not shown and lines:
            left.append(f"{path} ({len(lines)} lines)")
            continue
        head = f"### {path} ({len(lines)} lines)"
        tail = [] if len(shown) == len(lines) else [
            f"[... lines {len(shown) + 1}-{len(lines)} not shown (character limit); do not edit them]"]
        out += [head, "```python", *shown, *tail, "```"]
        if tail:
            used = max_chars
    if left:
        out.append("Not shown (character limit): " + ", ".join(left) + ".")
    return "\n".join(out)


def code_section(settings: CodeModSettings, *, source: Path | None, events: Sequence[Mapping[str, Any]] = (),
                 iter_in_block: int | None = None, n_slots: int = 1, branch: str = "explore/<name>",
                 max_chars: int = DEFAULT_MAX_CHARS, n_events: int = DEFAULT_N_EVENTS) -> str:
    """The whole section: rules, the last code steps, the allow-listed files (see the module docstring)."""
    if not settings.enabled:
        return DISABLED
    ok, _ = allowed_now(settings, iter_in_block, n_slots)
    parts = [HEADING, rules(settings, branch=branch, iter_in_block=iter_in_block, n_slots=n_slots)]
    history = code_history(events)
    steps = [f"- iter {n.iteration if n.iteration is not None else '?'} (block {n.block}): {n.text}"
             for n in history.notes[-n_events:]]
    head = f" Branch head: {short(history.head)}." if history.head else ""
    parts.append(f"### Last code steps (newest last).{head}\n" + ("\n".join(steps) or "(none yet)"))
    if source is None:
        parts.append("### Code: the study's code is not available.")
        return "\n\n".join(parts)
    # the files the study changed come first (follow-ups target them), then codemod.allow order
    changed = [str(f) for n in reversed(history.notes) if n.action == "committed" for f in n.event.get("files") or []]
    try:
        paths = allowed_files(settings, source, first=changed)
    except gitops.GitError as e:
        parts.append(f"### Code: cannot list the allow-listed files in {source}: {e}")
        return "\n\n".join(parts)
    if not paths:
        parts.append(f"### Code: no tracked file in {source} matches the allow-list.")
    elif not ok:
        parts.append("### Allow-listed files (their text is shown once a code change is allowed): "
                     + ", ".join(paths) + ".")
    else:
        parts.append("### Allow-listed files as the next run will use them (line-numbered)\n"
                     + files_text(source, paths, max_chars))
    return "\n\n".join(parts)


def code_section_for_view(view: Any, *, n_slots: int = 1, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """`code_section` for a policy's StudyView: settings from its explore config, code steps from its journal."""
    settings = CodeModSettings.from_config(view.config)
    if not settings.enabled:
        return DISABLED
    events = Journal(view.study_dir).read()
    source = layout.source_root(view.study_dir, view.config.get("code_dir"))
    return code_section(settings, source=source, events=events, iter_in_block=view.iter_in_block,
                        n_slots=n_slots, branch=layout.branch(view.name), max_chars=max_chars)
