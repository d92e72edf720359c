"""End to end: `python -m agent explore policy=claude` against a local fake API server, then `policy=replay`.

Unlike the unit tests (httpx2.MockTransport in-process), this goes through the real loop, a real socket and
ANTHROPIC_BASE_URL, trains tiny runs, and then replays the study's transcripts without a key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-ant-e2e-FAKE-0f9e8d7c6b5a"


class _FakeAPI(BaseHTTPRequestHandler):
    """First request: 429. Then tool calls: root baseline, else one step change of the top-UCB node."""

    calls: ClassVar[list[dict]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).calls.append({"body": body, "auth": self.headers.get("authorization")})
        if len(self.calls) == 1:
            return self._send(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                              {"retry-after": "0.05"})
        tool = body["tool_choice"]["name"]
        if tool == "end_block":
            data = {"next_field": "F", "next_n_training_frames": 48, "instruction_edits": "- e2e rule",
                    "summary": "e2e block summary"}
        else:
            top = re.search(r"Node (\d+): UCB=", body["messages"][0]["content"][0]["text"])
            parent = int(top.group(1)) if top else None
            data = {"children": [{"slot": 0, "parent": parent, "strategy": "baseline" if parent is None else "exploit",
                                  "overrides": {} if parent is None else {"train.total_steps": 30},
                                  "mutation": "none" if parent is None else "train.total_steps: 20 -> 30",
                                  "rationale": "e2e", "observation": "e2e observation"}]}
        self._send(200, {"id": f"msg_{len(self.calls)}", "type": "message", "role": "assistant", "model": body["model"],
                         "content": [{"type": "tool_use", "id": f"toolu_{len(self.calls)}", "name": tool, "input": data}],
                         "stop_reason": "tool_use", "stop_sequence": None,
                         "usage": {"input_tokens": 4000, "output_tokens": 300}})

    def _send(self, code, obj, headers=None):
        raw = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)


def _explore(root: Path, name: str, policy: list[str], data_root: Path, env: dict) -> subprocess.CompletedProcess:
    train = ("[scenario=discs_small,data.root=" + str(data_root) + ",trainer=cpu,logger=none,train.total_steps=20,"
             "train.steps_per_call=10,train.eval_every=10]")
    cmd = [sys.executable, "-m", "agent", "explore", f"name={name}", f"root={root}", *policy, "n_blocks=1",
           "n_iter_block=2", "n_training_frames=48", f"train_overrides={train}"]
    return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _decisions(study: Path) -> list[tuple]:
    out = []
    for line in (study / "journal.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] == "planned":
            out.append((ev["node_id"], ev.get("parent_id"), ev.get("strategy"), tuple(ev.get("overrides") or ())))
        elif ev["event"] == "block_end":
            d = ev.get("decision") or {}
            out.append(("block_end", d.get("next_field"), d.get("summary")))
    return out


@pytest.mark.slow
def test_claude_study_over_http_then_replay_without_key(tmp_path, data_root):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeAPI.calls = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(WANDB_MODE="disabled", ANTHROPIC_API_KEY=KEY,
               ANTHROPIC_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        live = _explore(tmp_path, "live", ["policy=claude", "policy.backoff_base_s=0.01"], data_root, env)
    finally:
        server.shutdown()
    assert live.returncode == 0, live.stderr[-3000:]
    study = tmp_path / "live"
    assert len(_FakeAPI.calls) == 4 and all(c["auth"] == f"Bearer {KEY}" for c in _FakeAPI.calls)
    assert sorted(p.name for p in (study / "transcripts").iterdir()) == [
        "00000_propose.json", "00001_propose.json", "00002_propose.json", "00003_end_block.json"]
    for f in study.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md", ".txt", ".yaml", ".log"):
            assert KEY not in f.read_text(errors="replace"), f
    assert KEY not in live.stdout + live.stderr
    recorded = _decisions(study)
    assert recorded[0][1] is None and recorded[1][1] == 1 and recorded[-1][0] == "block_end"

    env.pop("ANTHROPIC_API_KEY")
    env.pop("ANTHROPIC_BASE_URL")
    again = _explore(tmp_path, "again", ["policy=replay", f"policy.transcripts={study / 'transcripts'}"],
                     data_root, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _decisions(tmp_path / "again") == recorded
