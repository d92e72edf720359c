"""Two agents on one study, and the API key: guards around a study directory.

- A second agent on a study in use refuses with one line and writes nothing; two agents started at the same
  instant on a fresh study leave exactly one study behind.
- A planted ANTHROPIC_API_KEY (a random string unique to the run) must not appear in any byte of any file the
  study writes (journal, renders, transcripts, run dirs, offline W&B runs and their config) or in the agent's
  output, nor anywhere under the HOME, TMPDIR and working directory the processes were given. The agent talks
  to a local fake Anthropic API (the e2e test's server) and trains real tiny runs with logger=wandb offline.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from .harness import (
    REPO,
    agent_cmd,
    base_env,
    events,
    ledger,
    one_line_error,
    spawn,
    state,
    wait_for,
    write_faulty_app,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
KEY_PREFIX = "sk-ant-api03-"


def test_second_agent_on_a_study_refuses(tmp_path, fault_row):
    app = write_faulty_app(tmp_path / "app")
    env = base_env()
    args = lambda name: agent_cmd("explore", f"name={name}", f"root={tmp_path}", f"code_dir={app}",
                                  "n_training_frames=48", "n_blocks=1", "n_iter_block=3",
                                  "train_overrides=[fake.sleep_s=0.3]")
    results, problems = [], []
    # 1. while an agent runs a study, the same command again
    a = spawn(args("busy"), env, tmp_path / "a.log")
    wait_for(lambda: any(e["event"] == "launched" for e in events(tmp_path / "busy")), 120)
    n0 = len(events(tmp_path / "busy"))
    b = subprocess.run(args("busy"), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    starts = [e for e in events(tmp_path / "busy") if e["event"] in ("study_start", "resume")]
    line = one_line_error(b.stderr)
    ok = (b.returncode == 2 and line is not None and "is in use by agent pid" in line
          and f"pid {a.pid}" in line and len(starts) == 1 and len(events(tmp_path / "busy")) >= n0)
    results.append(ok)
    if not ok:
        problems.append(f"busy: rc {b.returncode}, stderr {b.stderr.strip()[:200]!r}, starts {len(starts)}")
    assert a.wait(timeout=300) == 0
    # 2. two agents started at the same instant on a fresh study, twice
    for k in range(2):
        name = f"race{k}"
        ps = [spawn(args(name), env, tmp_path / f"{name}_{i}.log") for i in range(2)]
        rcs = [p.wait(timeout=300) for p in ps]
        logs = [(tmp_path / f"{name}_{i}.log").read_text() for i in range(2)]
        refused = [i for i in range(2) if rcs[i] == 2 and "is in use by agent pid" in logs[i]]
        d = tmp_path / name
        led = ledger(d)
        starts = [e["event"] for e in events(d) if e["event"] in ("study_start", "resume")]
        ok = (sorted(rcs) == [0, 2] and len(refused) == 1 and starts == ["study_start"] and led.n_nodes == 3
              and not led.duplicated and not led.unfinished)
        results.append(ok)
        if not ok:
            problems.append(f"{name}: exit codes {rcs}, starts {starts}, nodes {led.n_nodes}, dup {led.duplicated}")
    fault_row("two agents on the same study directory", trials=len(results), survived=sum(results),
              notes="the second exits 2 with one line 'error: study ... is in use by agent pid N; wait for it "
                    "to finish or stop it' and writes nothing; simultaneous starts: one runs, one refuses"
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not problems, problems


def _variants(key: str) -> dict[str, bytes]:
    """Encodings of the key a leak could take (raw, tail without the prefix, base64 at 3 alignments, hex,
    UTF-16)."""
    raw = key.encode()
    out = {"raw": raw, "random part": key[len(KEY_PREFIX):].encode(), "hex": raw.hex().encode(),
           "utf-16-le": key.encode("utf-16-le")}
    for shift in range(3):
        b64 = base64.b64encode(b"x" * shift + raw)
        out[f"base64/{shift}"] = b64[4:-4]  # the part independent of the neighbouring bytes
    return out


def _scan(paths: list[Path], needles: dict[str, bytes]) -> tuple[int, int, list[str]]:
    n_files = n_bytes = 0
    hits = []
    for top in paths:
        for p in top.rglob("*"):
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()
            n_files += 1
            n_bytes += len(data)
            hits += [f"{p} ({name})" for name, b in needles.items() if b in data]
    return n_files, n_bytes, hits


def test_planted_api_key_leaks_nowhere(tmp_path, data_root, fault_row):
    sys.path.insert(0, str(REPO / "tests"))
    from test_policy_claude_e2e import _FakeAPI  # the e2e test's fake Anthropic API

    key = KEY_PREFIX + secrets.token_urlsafe(48)
    home, tmp, cwd = (tmp_path / n for n in ("home", "tmp", "cwd"))
    for p in (home, tmp, cwd):
        p.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeAPI.calls = []
    env = base_env(ANTHROPIC_API_KEY=key, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}",
                   WANDB_MODE="offline", HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"),
                   XDG_CONFIG_HOME=str(home / ".config"), PYTHONPATH=str(REPO))
    train = (f"train_overrides=[scenario=discs_small,data.root={data_root},trainer=cpu,logger=wandb,"
             "train.total_steps=20,train.steps_per_call=10,train.eval_every=10,outputs.checkpoint=false]")
    root = tmp_path / "studies"
    t0 = time.time()
    try:
        r = subprocess.run(agent_cmd("explore", "name=secret", f"root={root}", "policy=claude",
                                     "policy.backoff_base_s=0.01", "n_blocks=1", "n_iter_block=1",
                                     "n_training_frames=48", train),
                           check=False, cwd=cwd, env=env, capture_output=True, timeout=900)
        # the key typed into a wrong override by mistake: the one-line error must not print it back
        typo = subprocess.run(agent_cmd("explore", "name=typo", f"root={root}", "policy=claude",
                                        f"policy.api_kee={key}"), check=False, cwd=cwd, env=env, capture_output=True,
                              timeout=120)
    finally:
        server.shutdown()
    d = root / "secret"
    st = state(d)
    wandb_runs = list(d.glob("runs/**/offline-run-*"))
    transcripts = list((d / "transcripts").glob("*.json"))
    from mpm_inr.wandb_offline import read_offline_run

    configs = [read_offline_run(w).config for w in wandb_runs]
    needles = _variants(key)
    n_files, n_bytes, hits = _scan([d, home, tmp, cwd], needles)
    for name, stream in (("agent stdout", r.stdout), ("agent stderr", r.stderr), ("typo stdout", typo.stdout),
                         ("typo stderr", typo.stderr)):
        hits += [f"{name} ({n})" for n, b in needles.items() if b in stream]
    hits += [f"W&B config of {w.name}" for w, c in zip(wandb_runs, configs) if key in repr(c)]
    problems = []
    if r.returncode != 0:
        problems.append(f"the study failed: {r.stderr.decode(errors='replace')[-300:]}")
    if len(st.launched_nodes()) != 1 or not all(n.status == "ok" for n in st.launched_nodes()):
        problems.append(f"runs: {[(n.node_id, n.status, n.error) for n in st.launched_nodes()]}")
    if len(wandb_runs) != 1 or len(transcripts) < 2 or not all(c.get("field.name") == "Jp" for c in configs):
        problems.append(f"{len(wandb_runs)} offline W&B runs, {len(transcripts)} transcripts: the scan would "
                        "prove little")
    if not all(c["auth"] == f"Bearer {key}" for c in _FakeAPI.calls):
        problems.append("the fake API did not receive the planted key: the key was not in use")
    if typo.returncode == 0:
        problems.append("the typo'd override was accepted")
    fault_row("planted ANTHROPIC_API_KEY: every byte scanned", trials=n_files + 4, survived=n_files + 4 - len(hits),
              notes=f"{n_files} files, {n_bytes / 1e6:.1f} MB (study with {len(transcripts)} transcripts, "
                    f"{len(list(d.rglob('offline-run-*')))} offline W&B runs (training + study), HOME, TMPDIR, cwd) + agent stdout/stderr of the study "
                    f"and of a typo'd override carrying the key; raw, base64, hex and UTF-16 forms; "
                    f"{time.time() - t0:.0f} s" + (f"; FOUND IN: {hits[:6]}" if hits else "")
                    + ("; PROBLEMS: " + " | ".join(problems) if problems else ""))
    assert not hits, hits
    assert not problems, problems
