"""A tiny git repository for code-modification tests and demos: the fake trainer + the real allow-listed modules.

`write_toy_repo(dir)` writes and commits (on branch `main`):
- `train.py` + `conf/`: tests/fakeapp.py's fake trainer, extended to report which code it ran: `metrics.json` gets
  `code_marker` (the value of `mpm_inr.models.toy.MARKER`, imported from the code dir the run started in) and
  `code_sha256` (hashes of the allow-listed files it sits next to); a run with `train.total_steps` above
  `toy.MAX_STEPS` crashes, so a change can pass the smoke test (few steps) and still fail its run;
- `mpm_inr/models/toy.py` (no torch: imports in milliseconds), and copies of this repository's
  `mpm_inr/models/siren.py`, `mpm_inr/training/{optim,module,run}.py`, `mpm_inr/errors.py` (which siren.py
  imports) and `mpm_inr/config/{__init__,build,choices}.py` (which optim.py and siren.py import), so the library's and the recorded Claude diffs apply to it, and import, exactly as they do here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fakeapp import TRAIN_PY, write_fake_app

from agent.codemod.gitops import AGENT_IDENT

REPO = Path(__file__).resolve().parents[1]
COPIED = ("mpm_inr/models/siren.py", "mpm_inr/training/optim.py", "mpm_inr/training/module.py",
          "mpm_inr/training/run.py", "mpm_inr/errors.py",  # siren.py imports mpm_inr.errors
          "mpm_inr/config/__init__.py", "mpm_inr/config/build.py",  # optim.py builds its optimiser through build
          "mpm_inr/config/choices.py")  # siren.py reads its init options from the declared choices
HASHED = COPIED + ("mpm_inr/models/toy.py",)
TOY = 'MARKER = "base"\nMAX_STEPS = 1000000\n'

_ANCHOR = '    if c["outputs"]["plot"]:\n'  # after the metrics are made, before the optional plot
_MARKERS = '''    import mpm_inr.models.toy as toy
    here = Path(__file__).resolve().parent
    m["code_marker"] = toy.MARKER
    m["code_sha256"] = {rel: hashlib.sha256((here / rel).read_bytes()).hexdigest()
                        for rel in HASHED if (here / rel).exists()}
    if steps > toy.MAX_STEPS:
        raise RuntimeError(f"toy: {steps} steps > MAX_STEPS={toy.MAX_STEPS}")
'''


def toy_train_py() -> str:
    if _ANCHOR not in TRAIN_PY:
        raise RuntimeError("fakeapp.TRAIN_PY changed: update toyrepo._ANCHOR (both in tests/)")
    text = TRAIN_PY.replace(_ANCHOR, _MARKERS + _ANCHOR, 1)
    return text.replace("\n\ndef flat(", f"\n\nHASHED = {HASHED!r}\n\n\ndef flat(", 1)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *AGENT_IDENT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def write_toy_repo(root: str | Path) -> Path:
    """Create the repository at `root` (see module docstring) and return its path."""
    root = Path(root)
    write_fake_app(root)
    (root / "train.py").write_text(toy_train_py().lstrip())
    for rel in COPIED:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, dst)
    (root / "mpm_inr" / "__init__.py").write_text('"""Toy copy of mpm_inr for code-modification tests."""\n')
    (root / "mpm_inr" / "models" / "__init__.py").write_text('"""Toy models package (no torch import)."""\n')
    (root / "mpm_inr" / "models" / "toy.py").write_text(TOY)
    (root / ".gitignore").write_text("__pycache__/\n*.pyc\n")
    _git(root, "init", "--quiet", "-b", "main")
    _git(root, "add", "--all")
    _git(root, "commit", "--quiet", "-m", "toy repository")
    return root
