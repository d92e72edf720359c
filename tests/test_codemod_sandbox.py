"""The sandbox of modified code (agent.codemod.sandbox): the command line it builds, what a process inside can
read and write (with the real bubblewrap), and the one-line refusals where no sandbox can be made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.codemod.datasets import need, prepare
from agent.codemod.sandbox import Sandbox, SandboxError, probe, python_paths
from agent.codemod.settings import CodeModSettings
from agent.codemod.smoke import run_smoke
from mpm_inr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# what a confined process tries; each entry becomes "ok" or the error's class and errno name
PROBES = r"""
import errno, json, os, socket, sys
args = json.loads(sys.argv[1])
out = {}
def attempt(name, fn):
    try:
        out[name] = fn() or "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def write(p):
    with open(p, "w") as fh:
        fh.write("x")
def read(p):
    with open(p) as fh:
        return "read:" + fh.read()
attempt("write_run_dir", lambda: write(os.path.join(args["run"], "m.json")))
attempt("write_code_dir", lambda: write(os.path.join(args["code"], "train.py")))
attempt("write_data_root", lambda: write(os.path.join(args["data"], "x")))
attempt("write_tmp", lambda: write(args["tmp_probe"]))
attempt("write_tmpdir", lambda: write(os.path.join(os.environ["TMPDIR"], "x")))
attempt("write_home", lambda: write(os.path.join(os.environ["HOME"], "x")))
attempt("write_next_to_run_dir", lambda: write(os.path.join(os.path.dirname(args["run"]), "journal.jsonl")))
attempt("write_root", lambda: write(os.path.join(args["repo"], "x.py")))
attempt("read_code", lambda: read(os.path.join(args["code"], "train.py")))
attempt("read_data", lambda: read(os.path.join(args["data"], "meta.json")))
attempt("read_secret", lambda: read(args["secret"]))
attempt("read_shadow", lambda: read("/etc/shadow"))
out["repo_listing"] = sorted(os.listdir(args["repo"]))
out["home"] = os.environ["HOME"]
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def box() -> Sandbox:
    """The real sandbox for this interpreter (fails with the install hint where bubblewrap is missing)."""
    return probe(sys.executable, extra_read=[REPO / "hydra_plugins"])


def test_the_command_line_binds_read_only_write_only_the_run_dir_and_nests_deeper_paths_last(tmp_path):
    py, code, run = tmp_path / "py", tmp_path / "code", tmp_path / "runs"
    inner = run / "round_1" / "data"  # a read-only path inside the writable one stays read-only
    cmd = Sandbox("/x/bwrap", (py,)).wrap(["python", "train.py"], cwd=code, read=[code, inner], write=[run],
                                          env={"WANDB_MODE": "online"})
    assert cmd[0] == "/x/bwrap" and cmd[-3:] == ["--", "python", "train.py"]
    assert {"--unshare-net", "--unshare-pid", "--unshare-ipc"} <= set(cmd)
    assert "--new-session" not in cmd  # the runner's killpg must still reach every job
    assert "--die-with-parent" not in cmd  # a round outlives a killed agent, as an unconfined one does
    pairs = [(cmd[i], cmd[i + 1], cmd[i + 2]) for i in range(len(cmd) - 2) if cmd[i].startswith("--")]
    binds = [(kind, src) for kind, src, dst in pairs if kind in ("--ro-bind-try", "--bind") and src == dst]
    mine = [b for b in binds if b[1].startswith(str(tmp_path))]
    assert mine == [("--ro-bind-try", str(py)), ("--ro-bind-try", str(code)), ("--bind", str(run)),
                    ("--ro-bind-try", str(inner))]
    assert cmd.index("/tmp") < cmd.index(str(py))  # the private /tmp first, so binds under /tmp survive it
    assert ("--setenv", "WANDB_MODE", "offline") in pairs and ("--setenv", "HOME", "/tmp/.sandbox/home") in pairs
    assert cmd.index("--remount-ro") > cmd.index(str(inner))  # read-only everywhere else, once all is mounted
    assert ("--chdir", str(code), "--") in pairs
    quiet = Sandbox("bwrap").wrap(["true"], cwd=code, env={"WANDB_MODE": "disabled"})
    assert "WANDB_MODE" not in quiet


@pytest.mark.bwrap
def test_inside_the_sandbox_only_the_run_dir_is_writable_and_outside_files_do_not_exist(tmp_path, box):
    code, data, run, outside = (tmp_path / d for d in ("code", "data", "run", "outside"))
    for d in (code, data, run, outside):
        d.mkdir()
    (code / "train.py").write_text("print('train')\n")
    (data / "meta.json").write_text("{}")
    token = uuid.uuid4().hex
    (outside / "secret.txt").write_text(token)
    tmp_probe = Path("/tmp") / f"sandbox_probe_{token}"
    args = {"run": str(run), "code": str(code), "data": str(data), "secret": str(outside / "secret.txt"),
            "tmp_probe": str(tmp_probe), "repo": str(REPO)}
    cmd = box.wrap([sys.executable, "-c", PROBES, json.dumps(args)], cwd=code, read=[code, data], write=[run])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["write_run_dir"] == "ok" and (run / "m.json").read_text() == "x"
    assert out["write_code_dir"] == "EROFS" and (code / "train.py").read_text() == "print('train')\n"
    assert out["write_data_root"] == "EROFS" and not (data / "x").exists()
    assert out["write_tmp"] == "EROFS" and not tmp_probe.exists()  # no silent private copies either
    assert out["write_tmpdir"] == out["write_home"] == "ok"         # a private scratch for TMPDIR and HOME
    assert out["write_next_to_run_dir"] == out["write_root"] == "EROFS"
    assert not (tmp_path / "journal.jsonl").exists() and not (REPO / "x.py").exists()
    assert out["read_code"] == "read:print('train')\n" and out["read_data"] == "read:{}"
    assert out["read_secret"] == "ENOENT" and token not in r.stdout + r.stderr
    assert out["read_shadow"] == "ENOENT"
    # the agent's repository: its launcher plugins only, and the Python installation where it lives inside (make
    # install puts .venv there)
    python_here = {q.relative_to(REPO).parts[0] for q in python_paths(sys.executable) if REPO in q.parents}
    assert out["repo_listing"] == sorted({"hydra_plugins"} | python_here)
    assert out["home"] == "/tmp/.sandbox/home" and out["interfaces"] == ["lo"]


def test_no_bubblewrap_refuses_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError) as e:
        probe(sys.executable)
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install bubblewrap" in msg and "codemod.sandbox=false" in msg
    assert isinstance(e.value, ConfigError)  # the agent prints it as one `error:` line and exits 2


def test_a_bubblewrap_that_cannot_start_refuses_with_its_reason(tmp_path):
    fake = tmp_path / "bwrap"  # a stand-in for a bwrap without user namespaces
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError) as e:
        probe(sys.executable, bwrap=str(fake))
    msg = str(e.value)
    assert "No permissions to create new namespace" in msg and "codemod.sandbox=false" in msg and "\n" not in msg


def test_the_sandbox_setting_is_a_boolean_on_by_default():
    assert CodeModSettings.from_config({"codemod": {"enabled": True}}).sandbox is True
    assert CodeModSettings.from_config({"codemod": {"enabled": True, "sandbox": False}}).sandbox is False
    with pytest.raises(ConfigError, match="codemod.sandbox='no': must be true or false"):
        CodeModSettings.from_config({"codemod": {"enabled": True, "sandbox": "no"}})


@pytest.mark.bwrap
def test_a_confined_smoke_test_that_hangs_is_killed_with_everything_inside(tmp_path, box):
    work = tmp_path / "w"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "slow.py").write_text("import subprocess, sys\n"  # a child that carries the marker too
                                          f"subprocess.Popen([sys.executable, '-c', 'while True: pass', {str(work)!r}])\n"
                                          "while True:\n    pass\n")
    t0 = time.time()
    res = run_smoke(work, ["pkg/slow.py"], None, log_dir=tmp_path / "log", timeout_s=3,
                    confine=lambda cmd, write: box.wrap(cmd, cwd=work, read=[work]))
    assert not res.ok and res.stage == "import" and "timed out after 3 s" in res.reason
    assert time.time() - t0 < 20
    assert not leftovers(str(work)), "a process of the sandbox outlived the smoke test"


def leftovers(marker: str, grace_s: float = 5.0) -> list[int]:
    """Live processes (not zombies waiting to be reaped) whose command line mentions `marker`, after `grace_s`
    for the kernel to finish the kill (Linux /proc)."""
    end = time.time() + grace_s
    while True:
        out = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and marker.encode() in (d / "cmdline").read_bytes() and \
                        (d / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    out.append(int(d.name))
            except OSError:
                continue
        if not out or time.time() > end:
            return out
        time.sleep(0.1)


def test_the_dataset_a_confined_run_opens_and_how_to_make_it(tmp_path):
    n = need(REPO, ["scenario=discs_small", "scenario.n_frames=64", f"data.root={tmp_path}", "data.seed=3"])
    assert n is not None and n.root == tmp_path and n.path == tmp_path / "discs_small_seed3"
    assert n.generate == ("scenario=discs_small", "scenario.n_frames=64", "seed=3", f"root={tmp_path}",
                          "progress=false")
    off = need(REPO, [f"data.root={tmp_path}", "data.generate_if_missing=false"])
    assert off is not None and off.generate == ()      # bound read-only, never generated by the agent
    assert need(REPO, ["data.root=data"]) is None       # relative roots are made absolute before this
    roots, problems = prepare(tmp_path, sys.executable, [[f"data.root={tmp_path}"]], tmp_path / "log", {})
    assert roots == [] and problems == []               # no conf/train.yaml there: nothing to read or make


@pytest.mark.slow
def test_a_missing_dataset_is_generated_by_the_users_code_before_the_confined_run(tmp_path):
    ov = ["scenario=discs_small", f"data.root={tmp_path / 'data'}"]
    roots, problems = prepare(REPO, sys.executable, [ov, ov], tmp_path / "log", dict(os.environ))
    assert problems == [] and roots == [tmp_path / "data"]
    assert (tmp_path / "data" / "discs_small_seed0" / "meta.json").exists()
    log = tmp_path / "log" / "generate_discs_small_seed0.log"
    assert log.read_text().startswith(f"$ {sys.executable} {REPO / 'generate.py'} scenario=discs_small seed=0")
    log.unlink()
    assert prepare(REPO, sys.executable, [ov], tmp_path / "log", dict(os.environ)) == ([tmp_path / "data"], [])
    assert not log.exists()                             # cached: not generated again
