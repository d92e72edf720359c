"""The warm server (mpm_inr/warm): its protocol, and the hand-off of a command to a fork of it.

Most tests serve tests/warm_fake_script.py from the real WarmServer (no preload: it starts at once); the last
ones start the real `python -m mpm_inr.warm serve` and hand it real train.py commands."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpm_inr.training.loggers import SHARED_SERVICE_ENV
from mpm_inr.wandb_offline import read_offline_run
from mpm_inr.warm import client
from mpm_inr.warm.child import exit_status
from mpm_inr.warm.protocol import (
    OFF,
    SOCKET_ENV,
    Channel,
    ProtocolError,
    code_fingerprint,
    environment_difference,
    socket_path,
)
from mpm_inr.warm.wandb_service import SharedWandbService

REPO = Path(__file__).resolve().parents[1]
FAKE_SERVER = REPO / "tests" / "warm_fake_server.py"
FAKE_SCRIPT = REPO / "tests" / "warm_fake_script.py"
CLIENT = "import sys; from mpm_inr.warm.client import hand_off; code = hand_off(sys.argv[2:], sys.argv[1]); " \
         "sys.exit(99 if code is None else code)"  # 99: not handed off


def _wait_for(condition, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """A served fake script; yields (socket, watched dir, server process, its log file)."""
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "code.py").write_text("x = 1\n")
    path = tmp_path / "w.sock"
    log = tmp_path / "server.log"
    env = {**os.environ, "WARM_SERVER_SECRET": "s3cr3t-value"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(FAKE_SERVER), str(path), str(watched), "30"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    monkeypatch.setenv(SOCKET_ENV, str(path))
    _wait_for(lambda: path.exists() or process.poll() is not None, what="the fake server's socket")
    assert process.poll() is None, log.read_text()
    yield path, watched, process, log
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=20)


def _client(args: list[str], env: dict | None = None, script: Path = FAKE_SCRIPT, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLIENT, str(script), *args], env={**os.environ, **(env or {})},
                            **kwargs)


# -- protocol -----------------------------------------------------------------------------------------------------


def test_channel_carries_messages_and_descriptors():
    left, right = socket.socketpair()
    read, write = os.pipe()
    try:
        Channel(left).send({"op": "run", "n": 1}, fds=[write])
        Channel(left).send({"second": True})
        channel = Channel(right)
        message, fds = channel.receive(max_fds=3)
        assert message == {"op": "run", "n": 1} and len(fds) == 1
        os.write(fds[0], b"through the passed descriptor")
        assert os.read(read, 100) == b"through the passed descriptor"
        os.close(fds[0])
        assert channel.receive()[0] == {"second": True}
        left.close()
        assert channel.receive() == (None, [])
    finally:
        for fd in (read, write):
            os.close(fd)
        right.close()


@pytest.mark.parametrize("raw", [b"\xff\xff\xff\xff", b"\x00\x00\x00\x03[1]", b"\x00\x00\x00\x02{x"])
def test_channel_rejects_what_is_not_a_message(raw):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        with pytest.raises(ProtocolError):
            Channel(right).receive()


def test_socket_path_is_off_given_or_private(tmp_path):
    assert socket_path({SOCKET_ENV: OFF}) is None
    assert socket_path({SOCKET_ENV: str(tmp_path / "s")}) == tmp_path / "s"
    default = socket_path({})
    assert default.parent.name == f"mpm-inr-{os.getuid()}" and default.suffix == ".sock"


def test_environment_difference_names_import_time_variables_only():
    server = {"OMP_NUM_THREADS": "1", "WANDB_API_KEY": "a", "PATH": "/bin"}
    caller = {"OMP_NUM_THREADS": "2", "WANDB_API_KEY": "b", "LD_PRELOAD": "x.so", "PATH": "/usr/bin"}
    assert environment_difference(server, caller) == ["LD_PRELOAD", "OMP_NUM_THREADS"]


def test_code_fingerprint_follows_python_files(tmp_path):
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "a.py"
    module.write_text("x = 1\n")
    before = code_fingerprint([tmp_path], import_paths=[])
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.py").write_text("cache")
    assert code_fingerprint([tmp_path], import_paths=[]) == before
    module.write_text("x = 22\n")
    assert code_fingerprint([tmp_path], import_paths=[]) != before


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), (256 + 2, 2), ("a message", 1)])
def test_exit_status_is_the_interpreters(code, status, capsys):
    assert exit_status(code) == status
    assert ("a message" in capsys.readouterr().err) == (code == "a message")


@pytest.mark.parametrize("argv", [["--multirun", "seed=0,1"], ["-m", "seed=0,1"], ["--cfg", "job"], ["--help"]])
def test_multiruns_and_hydra_flags_are_not_handed_off(argv):
    assert not client.handed_off(argv)
    assert client.hand_off(argv, str(FAKE_SCRIPT)) is None


def test_no_server_means_the_command_runs_itself(tmp_path, monkeypatch):
    monkeypatch.setenv(SOCKET_ENV, str(tmp_path / "none.sock"))
    assert client.hand_off(["field=F"], str(FAKE_SCRIPT)) is None
    (tmp_path / "stale.sock").write_text("")  # a server killed with -9 leaves its socket file
    monkeypatch.setenv(SOCKET_ENV, str(tmp_path / "stale.sock"))
    assert client.hand_off(["field=F"], str(FAKE_SCRIPT)) is None


# -- the server, with a fake script -------------------------------------------------------------------------------


def test_a_run_gets_the_callers_arguments_directory_environment_and_streams(fake_server, tmp_path):
    _, _, _, log = fake_server
    work = tmp_path / "work"
    work.mkdir()
    done = _client(["echo", "a=1", "b=two words"], env={"WARM_TEST_VALUE": "from the caller"}, cwd=work,
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = done.communicate("the caller's stdin\n", timeout=30)
    assert done.returncode == 0, err
    assert json.loads(out) == {"argv": ["echo", "a=1", "b=two words"], "cwd": str(work), "value": "from the caller"}
    assert "stdin: the caller's stdin" in err
    for code in (0, 3, 2):
        assert _client(["exit", str(code)]).wait(timeout=30) == code
    text = log.read_text()
    assert "run 4 (pid" in text and "s3cr3t-value" not in text and "from the caller" not in text


def test_status_and_stop(fake_server):
    _, _, process, _ = fake_server
    status = client.request({"op": "status"})
    assert status["server_pid"] == process.pid and status["running"] == 0 and status["current"]
    assert client.request({"op": "bogus"}) == {"error": "unknown op 'bogus'"}
    assert client.request({"op": "stop"})["stopping"]
    assert process.wait(timeout=20) == 0
    assert client.request({"op": "status"}) is None


def test_garbage_on_the_socket_loses_nothing(fake_server):
    path = fake_server[0]
    for raw in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b""):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(raw)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a run request without its descriptors
        sock.connect(str(path))
        Channel(sock).send({"op": "run", "argv": ["exit", "0"], "cwd": "/", "env": {}, "executable": sys.executable})
        assert Channel(sock).receive()[0] == {"declined": "a malformed request"}
    assert _client(["exit", "5"]).wait(timeout=30) == 5


def test_another_script_or_a_vanished_directory_is_not_handed_off(fake_server, tmp_path):
    other = tmp_path / "train.py"  # another checkout's script: the server runs only its own
    other.write_text("")
    done = _client(["exit", "0"], script=other, stderr=subprocess.PIPE, text=True)
    assert done.communicate(timeout=30)[1].startswith("note: the warm server declined (it serves ")
    assert done.returncode == 99
    gone = tmp_path / "gone"
    gone.mkdir()
    caller = subprocess.Popen([sys.executable, "-c", "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
                               + CLIENT.replace("sys.argv[2:], sys.argv[1]", "['exit', '0'], sys.argv[2]"), str(gone),
                               str(FAKE_SCRIPT)])
    assert caller.wait(timeout=30) == 99


def test_only_a_private_socket_is_used_or_served(tmp_path, monkeypatch):
    """A request carries the caller's environment (its secrets too): never to a folder others can reach."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv(SOCKET_ENV, str(shared / "w.sock"))
    assert client.connect() is None
    (tmp_path / "w").mkdir()
    done = subprocess.run(check=False, args=[sys.executable, str(FAKE_SERVER), str(shared / "w.sock"),
                                             str(tmp_path / "w"), "30"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "is not private to this user (owner uid" in done.stderr


def test_a_second_server_on_the_same_socket_refuses(fake_server, tmp_path):
    path, watched, process, _ = fake_server
    done = subprocess.run(check=False, args=[sys.executable, str(FAKE_SERVER), str(path), str(watched), "30"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"another warm server is serving on {path}" in done.stderr
    assert client.request({"op": "status"})["server_pid"] == process.pid  # the first one still serves


def test_an_import_time_variable_that_differs_is_declined(fake_server):
    done = _client(["exit", "0"], env={"OMP_NUM_THREADS": "7"}, stderr=subprocess.PIPE, text=True)
    _, err = done.communicate(timeout=30)
    assert done.returncode == 99
    assert "declined (OMP_NUM_THREADS differ from the server's" in err


def test_changed_code_is_declined_and_the_server_stops(fake_server):
    path, watched, process, _ = fake_server
    (watched / "code.py").write_text("x = 2  # edited\n")
    done = _client(["exit", "0"], stderr=subprocess.PIPE, text=True)
    _, err = done.communicate(timeout=30)
    assert done.returncode == 99 and "the code changed since it started" in err
    assert process.wait(timeout=20) == 0
    assert not path.exists()


def test_ctrl_c_reaches_the_run(fake_server, tmp_path):
    pid_file = tmp_path / "run.pid"
    caller = _client(["sleep", str(pid_file)], stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the run to start")
    caller.send_signal(signal.SIGINT)
    _, err = caller.communicate(timeout=30)
    assert caller.returncode == 130 and "interrupted" in err


def test_a_killed_caller_takes_its_run_with_it(fake_server, tmp_path):
    _, _, _, log = fake_server
    pid_file = tmp_path / "run.pid"
    caller = _client(["sleep", str(pid_file)])
    _wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the run to start")
    run = int(pid_file.read_text())
    caller.kill()
    caller.wait(timeout=20)
    _wait_for(lambda: "its caller went away; run killed" in log.read_text() and f"pid {run} exited" in log.read_text(),
              what="the run to be killed")
    assert client.request({"op": "status"})["running"] == 0


def test_runs_at_once_and_a_stop_waits_for_them(fake_server, tmp_path):
    _, _, process, _ = fake_server
    pid_files = [tmp_path / f"{k}.pid" for k in range(2)]
    callers = [_client(["sleep", str(p)], stderr=subprocess.PIPE) for p in pid_files]
    _wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), what="both runs")
    assert len({p.read_text() for p in pid_files}) == 2
    assert client.request({"op": "stop"}) == {"stopping": True, "running": 2}
    assert _client(["exit", "0"]).wait(timeout=30) == 99  # a stopping server takes no new run
    assert process.poll() is None  # still serving its two runs
    for caller in callers:
        caller.send_signal(signal.SIGINT)
        assert caller.wait(timeout=30) == 130
    assert process.wait(timeout=20) == 0


def test_an_idle_server_stops(tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    done = subprocess.run(check=False, args=[sys.executable, str(FAKE_SERVER), str(tmp_path / "s.sock"), str(watched), "0.5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "idle for 0.5 s: stopping" in done.stdout
    assert not (tmp_path / "s.sock").exists()


# -- the real server and train.py ---------------------------------------------------------------------------------


def test_train_py_is_handed_to_the_real_server(tmp_path, tiny_train_overrides):
    """`python -m mpm_inr.warm start` serves train.py: a run forked from it writes what a run writes, a bad
    override still gets its one line, status counts them and stop ends it. Its offline W&B runs use the one
    W&B service it started, which ends with it."""
    env = {**os.environ, SOCKET_ENV: str(tmp_path / "w.sock"), "WANDB_MODE": "offline"}
    warm = [sys.executable, "-m", "mpm_inr.warm"]
    started = subprocess.run(check=False, args=[*warm, "start", "--idle", "120"], env=env, capture_output=True, text=True, timeout=240,
                             cwd=REPO)
    try:
        assert started.returncode == 0, started.stderr
        assert "warm server ready" in started.stdout
        run_dir = tmp_path / "run"
        done = subprocess.run(check=False, args=[sys.executable, str(REPO / "train.py"), "field=F", *tiny_train_overrides,
                               "logger=wandb", f"hydra.run.dir={run_dir}"], env=env, capture_output=True, text=True, timeout=240,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["steps"] == 20
        assert "F / lagrangian" in done.stdout
        (wandb_log,) = run_dir.glob("wandb/offline-run-*/logs/debug.log")
        assert "Connected to an existing wandb-core service via WANDB_SERVICE" in wandb_log.read_text()
        assert read_offline_run(wandb_log.parents[1]).summary["final_r2"] == \
            metrics["final_r2"]
        bad = subprocess.run(check=False, args=[sys.executable, str(REPO / "train.py"), "field=Q"], env=env, capture_output=True,
                             text=True, timeout=240, cwd=tmp_path)
        assert bad.returncode == 2
        assert bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
        status = subprocess.run(check=False, args=[*warm, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert "2 runs served, 0 running" in status.stdout
    finally:
        stopped = subprocess.run(check=False, args=[*warm, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopping" in stopped.stdout
    log = (tmp_path / "w.log").read_text()
    assert "run 2 (pid" in log
    _wait_for(lambda: "stopped after 2 runs" in (tmp_path / "w.log").read_text(), what="the server to stop")
    service = int(re.search(r"a W&B service for its offline runs: pid (\d+)", log).group(1))
    _wait_for(lambda: not _alive(service), what="the W&B service to end with the server")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    return True


def test_the_shared_wandb_service_starts_offers_and_stops(monkeypatch):
    lines = []
    assert SharedWandbService.start({"WANDB_MODE": "disabled"}, lines.append) is None  # its runs would not use it
    service = SharedWandbService.start({}, lines.append)
    assert service is not None, lines
    try:
        assert service.alive() and service.offer() == {SHARED_SERVICE_ENV: service.token}
    finally:
        service.stop()
    assert not service.alive() and service.offer() == {}
