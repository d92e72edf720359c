"""agent.policies.code_context: the claude prompt's code-modification section (rules, last steps, the code)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from fakeapp import SyntheticStudy
from toyrepo import write_toy_repo

from agent.codemod import gitops, layout
from agent.codemod.diffparse import parse
from agent.codemod.guard import (
    FORBIDDEN_IMPORTS,
    PROTECTED_FUNCTIONS,
    check_patches,
)
from agent.codemod.paths import PROTECTED
from agent.codemod.settings import CodeModSettings
from agent.policies.code_context import DISABLED, code_section, code_section_for_view

TOY = "mpm_inr/models/toy.py"
OPTIM = "mpm_inr/training/optim.py"


def settings(**codemod) -> CodeModSettings:
    return CodeModSettings.from_config({"codemod": {"enabled": True, **codemod}})


def shown_files(section: str) -> dict[str, str]:
    """path -> file text recovered from the section's line-numbered blocks."""
    out = {}
    for m in re.finditer(r"^### (\S+) \((\d+) lines\)\n```python\n(.*?)\n```", section, re.DOTALL | re.MULTILINE):
        out[m.group(1)] = "".join(re.sub(r"^ *\d+\| ", "", ln, count=1) + "\n" for ln in m.group(3).split("\n"))
    return out


def study(tmp_path: Path, codemod: dict | None, n_nodes: int = 5) -> tuple[SyntheticStudy, Path]:
    repo = write_toy_repo(tmp_path / "repo")
    cfg = {"code_dir": str(repo)}
    if codemod is not None:
        cfg["codemod"] = codemod
    s = SyntheticStudy(tmp_path / "studies" / "s", "s", config=cfg)
    n = s.add(None, r2=0.9, strategy="baseline")
    for i in range(n_nodes - 1):
        n = s.add(n, {"optimizer.lr": 1e-4 * (i + 2)}, r2=0.9 + i / 100)
    return s, repo


def test_disabled_is_one_line(tmp_path):
    assert code_section(CodeModSettings(), source=None) == DISABLED and "\n" not in DISABLED
    s, _ = study(tmp_path, None)
    assert code_section_for_view(s.view()) == DISABLED
    s2, _ = study(tmp_path / "b", {"enabled": False})
    assert code_section_for_view(s2.view()) == DISABLED


def test_rules_are_derived_from_the_settings_and_the_guardrails():
    st = settings(allow=["mpm_inr/models/*.py"], max_changed_lines=17, protect_first=6,
                  allowed_imports=["math", "torch"], revert_if_worse=False)
    text = code_section(st, source=None, iter_in_block=9)
    for pattern, why in PROTECTED:
        assert f"{why} [{pattern}]" in text
    for mod in FORBIDDEN_IMPORTS:
        assert re.search(rf"[:,] {re.escape(mod)}[,;.]", text), mod
    for fns in PROTECTED_FUNCTIONS.values():
        assert all(f in text for f in fns)
    assert "Allowed files (codemod.allow): mpm_inr/models/*.py." in text
    assert "Imports a change may add: math, torch (codemod.allowed_imports)" in text
    assert "at most 17 changed lines" in text and "the first 6 iterations" not in text
    assert "Allowed in this round (iteration 9 of the block is past the first 6)" in text
    assert "a failed run is reverted" in text and "below its parent's" not in text
    assert "code modification rejected: <reason>" in text and "code modification failed: <reason>" in text
    assert "diff --git a/<path> b/<path>" in text and "rarely" in text


def test_first_iterations_of_a_block_get_no_file_text(tmp_path):
    s, _repo = study(tmp_path, {"enabled": True}, n_nodes=1)
    view = s.view()
    assert view.iter_in_block == 2
    text = code_section_for_view(view)
    assert "NOT allowed in this round: it is iteration 2 of the block" in text
    assert "every code_diff must be null" in text and "```python" not in text
    assert "### Allow-listed files (their text is shown once a code change is allowed): " in text
    assert TOY in text and "mpm_inr/training/run.py" not in text.split("### Allow-listed files")[1]
    batch = code_section_for_view(view, n_slots=4)  # iterations 2-5: slot 3 is iteration 5
    assert "Allowed in this round only for slots 3 and later" in batch and "```python" in batch


def test_files_come_from_the_study_worktree_with_line_numbers_and_a_diff_from_them_applies(tmp_path):
    s, repo = study(tmp_path, {"enabled": True, "allow": ["mpm_inr/models/*.py", OPTIM]})
    work = layout.worktree(s.dir)
    work.parent.mkdir(parents=True)
    gitops.add_worktree(repo, work, "explore/s", gitops.head(repo))
    (work / TOY).write_text('MARKER = "study"\nMAX_STEPS = 1000000\n')
    gitops.commit(work, "[Iter 5] study marker", [TOY])
    view = s.view()
    assert view.iter_in_block == 6
    text = code_section_for_view(view)
    files = shown_files(text)
    assert list(files) == ["mpm_inr/models/__init__.py", "mpm_inr/models/siren.py", TOY, OPTIM]
    assert files[TOY] == (work / TOY).read_text() and 'MARKER = "study"' in files[TOY]  # the worktree, not repo
    assert files[OPTIM] == (repo / OPTIM).read_text()
    assert "   1| MARKER = \"study\"" in text and "   2| MAX_STEPS = 1000000" in text
    assert "then the commit on explore/s;" in text
    # a diff written against the shown text passes the strict parser + guardrails and `git apply --check`
    old = files[TOY]
    new = old.replace("1000000", "2000000")
    diff = f"diff --git a/{TOY} b/{TOY}\n" + "".join(difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), fromfile=f"a/{TOY}", tofile=f"b/{TOY}"))
    check_patches(parse(diff), CodeModSettings.from_config(view.config))
    gitops.apply(work, diff, check_only=True)


def test_clipping_cuts_one_file_and_names_the_rest(tmp_path):
    s, repo = study(tmp_path, {"enabled": True, "allow": [OPTIM, "mpm_inr/models/*.py"]})
    text = code_section_for_view(s.view(), max_chars=600)
    files_part = text[text.index("### Allow-listed files as the next run"):]
    body = [ln for ln in files_part.splitlines() if re.match(r"^ *\d+\| ", ln)]
    assert 0 < sum(len(ln) + 1 for ln in body) <= 600
    n_optim = len((repo / OPTIM).read_text().splitlines())
    assert f"### {OPTIM} ({n_optim} lines)" in files_part
    assert re.search(rf"\[\.\.\. lines \d+-{n_optim} not shown \(character limit\); do not edit them\]", files_part)
    assert "Not shown (character limit): mpm_inr/models/__init__.py (1 lines), mpm_inr/models/siren.py" in files_part
    assert f"{TOY} (2 lines)." in files_part


def test_last_code_steps_and_changed_files_first(tmp_path):
    s, _repo = study(tmp_path, {"enabled": True, "allow": [OPTIM, "mpm_inr/models/*.py"]})
    for i in range(10):
        s._emit({"event": "code", "action": "rejected", "iteration": 6, "block": 1,
                 "reason": f"code change refused: adds an import of os (attempt {i})"})
    s._emit({"event": "code", "action": "smoke_failed", "iteration": 6, "block": 1,
             "reason": "code modification failed: smoke test (import): SyntaxError: bad (toy.py, line 1)"})
    s._emit({"event": "code", "action": "committed", "iteration": 6, "block": 1, "commit": "e" * 40,
             "files": [TOY], "added": 1, "removed": 1, "description": "toy", "hypothesis": "h", "head": "e" * 40})
    text = code_section_for_view(s.view(), max_chars=100_000)
    steps = text[text.index("### Last code steps"):text.index("### Allow-listed")]
    lines = [ln for ln in steps.splitlines() if ln.startswith("- iter")]
    assert len(lines) == 8  # the newest 8
    assert "attempt 1)" not in steps and "- iter 6 (block 1): code modification rejected: adds an import of os " \
                                          "(attempt 9)" in steps
    assert "- iter 6 (block 1): code modification failed: smoke test (import): SyntaxError: bad" in steps
    assert next(iter(shown_files(text))) == TOY  # the file the study changed comes first


def test_not_a_git_checkout_is_reported_not_raised(tmp_path):
    (tmp_path / "plain").mkdir()
    text = code_section(settings(), source=tmp_path / "plain", iter_in_block=8)
    assert "### Code: cannot list the allow-listed files in" in text
