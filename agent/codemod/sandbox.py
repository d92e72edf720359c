"""Confinement of code a policy modified: every process that runs it (the smoke test, the study's training jobs)
starts inside a bubblewrap (`bwrap`) sandbox.

The guardrails (agent.codemod.guard) are a static screen; they cannot see every way Python and torch reach a
file (`torch.profiler` traces, `numpy.ndarray.dump`, `torch.serialization._open_file_like`, ...). The sandbox is
the mechanism that holds whatever the screen misses. Inside it:

- read-only: the system (/usr, /bin, /lib*, /sys and a few /etc files the loader, Python and torch read; the
  directories on LD_LIBRARY_PATH, e.g. a cluster's CUDA driver), the Python installation that runs the code (its
  venv and base prefix), the code dir, the dataset roots and the agent's launcher plugins;
- writable: only the run dir(s) the caller names (the smoke run dir, the round's sweep dir);
- private and empty: a scratch dir under /tmp that is TMPDIR and holds HOME (so MPLCONFIGDIR, the torch and W&B
  caches land there), and /dev/shm; every other path is read-only, so a write outside the run dir fails at
  once (EROFS) instead of landing somewhere private and passing unnoticed;
- no network (W&B logs offline into the run dir; `make wandb-sync` uploads later), its own pid and IPC
  namespaces.

Everything else (the user's repository, $HOME, the study's journal and other studies, other datasets) does not
exist inside. The process group is kept (no `--new-session`) so the runner's `killpg` still reaches every job;
the jobs have no terminal (their session is new and stdin is /dev/null), so there is none to inject into. Like an
unconfined round, a confined one outlives an agent killed with -9 (no `--die-with-parent`): the restarted agent
finds it by its round token and waits for it or stops it.

Where bubblewrap is missing or cannot start (e.g. unprivileged user namespaces disabled), `probe` raises
`SandboxError`: codemod refuses to start unless the user opts out with `codemod.sandbox=false` (unsafe).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpm_inr.errors import ConfigError

BWRAP = "bwrap"
#: top-level system directories (symbolic links such as /bin -> usr/bin are recreated as links)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
#: the /etc entries a Python + torch process reads (loader cache, users and groups by name, time zone, fonts)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
             "hosts", "host.conf", "alternatives", "fonts", "mime.types", "os-release")
SCRATCH = "/tmp/.sandbox"
HOME = f"{SCRATCH}/home"
#: environment inside: a private HOME and TMPDIR, caches under them (user-set cache dirs point outside)
ENV = {"HOME": HOME, "TMPDIR": SCRATCH, "XDG_CACHE_HOME": f"{HOME}/.cache", "XDG_CONFIG_HOME": f"{HOME}/.config",
       "MPLCONFIGDIR": f"{HOME}/.config/matplotlib"}
UNSET = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR",
         "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCH_HOME", "HF_HOME")
_FIX = ("install bubblewrap (apt-get install bubblewrap), or set codemod.sandbox=false to run modified code "
        "unconfined (unsafe: it can then read and write every file you can)")
_PYTHON_PATHS = ("import json, site, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
                 "sys.base_exec_prefix, site.getusersitepackages()]))")


class SandboxError(ConfigError):
    """No sandbox can be made here; the message names the fix (one line)."""


@dataclass(frozen=True)
class Sandbox:
    """A bubblewrap command line builder; `read_only` is what every confined process may read besides its own
    code dir and datasets (the Python installation, the launcher plugins)."""

    bwrap: str
    read_only: tuple[Path, ...] = ()

    def wrap(self, cmd: Sequence[str], *, cwd: Path, read: Iterable[Path] = (), write: Iterable[Path] = (),
             env: Mapping[str, str] | None = None) -> list[str]:
        """`cmd` run inside the sandbox from `cwd`, reading `read` (missing ones skipped) and writing `write`
        (which must exist). A path nested in another gets its own mode (the deeper bind is mounted last)."""
        args = [self.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-net"]
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                args += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                args += ["--ro-bind", d, d]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]
        for dev in sorted(Path("/dev").glob("nvidia*")):  # GPU jobs: the driver's device nodes
            args += ["--dev-bind", str(dev), str(dev)]
        args += ["--tmpfs", "/tmp", "--dir", SCRATCH]  # binds under /tmp (the host's) are mounted onto it
        binds = [(Path(p), False) for p in (*self.read_only, *read)] + [(Path(p), True) for p in write]
        for path, writable in sorted(_absolute(binds), key=lambda b: (len(b[0].parts), b[1])):
            args += ["--bind" if writable else "--ro-bind-try", str(path), str(path)]
        # then every directory bwrap made on the way (/, /tmp, the parents of the binds) becomes read-only
        args += ["--remount-ro", "/tmp", "--tmpfs", SCRATCH, "--dir", HOME, "--remount-ro", "/"]
        for k, v in ENV.items():
            args += ["--setenv", k, v]
        for k in UNSET:
            args += ["--unsetenv", k]
        if (env if env is not None else os.environ).get("WANDB_MODE", "online") not in ("disabled", "offline",
                                                                                        "dryrun"):
            args += ["--setenv", "WANDB_MODE", "offline"]   # no network inside: log offline, sync afterwards
        return args + ["--chdir", str(Path(cwd).resolve()), "--", *cmd]


def _absolute(binds: Iterable[tuple[Path, bool]]) -> list[tuple[Path, bool]]:
    """Resolved, de-duplicated binds (a path both read and written is written)."""
    out: dict[Path, bool] = {}
    for p, w in binds:
        r = p.resolve()
        out[r] = out.get(r, False) or w
    return list(out.items())


def python_paths(python: str) -> tuple[Path, ...]:
    """The directories a Python installation needs to run (venv, base prefix, user site-packages)."""
    try:
        r = subprocess.run([python, "-c", _PYTHON_PATHS], capture_output=True, text=True, timeout=60, check=True)
        paths = json.loads(r.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise SandboxError(f"cannot ask {python} where its installation lives ({e}); check codemod's python") \
            from None
    return tuple(dict.fromkeys(Path(p).resolve() for p in paths if p and Path(p).is_dir()))


def probe(python: str, extra_read: Sequence[Path] = (), bwrap: str | None = None) -> Sandbox:
    """The sandbox for `python`, checked by starting that interpreter inside it; SandboxError if none works."""
    exe = bwrap or shutil.which(BWRAP)
    if not exe:
        raise SandboxError(f"codemod runs modified code in a bubblewrap sandbox, and `{BWRAP}` is not on PATH; "
                           f"{_FIX}")
    libs = tuple(Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if os.path.isabs(p))
    box = Sandbox(exe, python_paths(python) + libs + tuple(Path(p) for p in extra_read))
    cmd = box.wrap([python, "-c", "import sys; sys.exit(0)"], cwd=Path("/"))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxError(f"bubblewrap ({exe}) cannot start a sandbox here: {e}; {_FIX}") from None
    if r.returncode != 0:
        lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        why = lines[-1][:200] if lines else f"exit code {r.returncode}"
        raise SandboxError(f"bubblewrap ({exe}) cannot start a sandbox here ({why}; unprivileged user namespaces "
                           f"may be disabled: sysctl kernel.unprivileged_userns_clone=1); {_FIX}")
    return box
