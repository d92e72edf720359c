"""Journal: append/read, torn tails, corruption, concurrency, the study lock, and folding events into nodes."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys

import pytest
from fakeapp import SyntheticStudy

from agent.study.journal import Journal, StudyLock
from agent.study.state import fold
from mpm_inr.errors import StudyError


def test_append_read_roundtrip_is_strict_json(tmp_path):
    j = Journal(tmp_path)
    j.append({"event": "x", "v": float("nan"), "w": (1, 2)})
    j.append({"event": "y", "t": 5.0})
    evs = j.read()
    assert [e["event"] for e in evs] == ["x", "y"]
    assert evs[0]["v"] is None and evs[0]["w"] == [1, 2] and evs[1]["t"] == 5.0
    for line in j.path.read_text().splitlines():
        json.loads(line)  # no NaN tokens


def test_torn_last_line_is_ignored_then_cut(tmp_path):
    j = Journal(tmp_path)
    j.append({"event": "a"})
    with open(j.path, "ab") as f:
        f.write(b'{"event": "b", "node')  # a writer killed mid-line
    assert [e["event"] for e in j.read()] == ["a"]
    j.append({"event": "c"})
    assert [e["event"] for e in j.read()] == ["a", "c"]
    assert j.path.read_bytes().endswith(b"\n")


def test_corrupt_line_in_the_middle_raises(tmp_path):
    j = Journal(tmp_path)
    j.append({"event": "a"})
    with open(j.path, "ab") as f:
        f.write(b"garbage\n")
    j.append({"event": "b"})
    with pytest.raises(StudyError, match="line 2 is corrupt"):
        j.read()


def _writer(path: str, k: int, n: int) -> None:
    j = Journal(path)
    for i in range(n):
        j.append({"event": "w", "writer": k, "i": i, "pad": "x" * (i * 37 % 3000)})


def test_concurrent_writers_never_interleave(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), k, 40)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    evs = Journal(tmp_path).read()
    assert len(evs) == 160
    for k in range(4):
        assert [e["i"] for e in evs if e["writer"] == k] == list(range(40))


def test_second_lock_on_same_study_refuses(tmp_path):
    with StudyLock(tmp_path):
        with pytest.raises(StudyError, match="in use by agent pid"):
            StudyLock(tmp_path).acquire()
        code = ("import sys; from agent.study.journal import StudyLock\n"
                "try:\n    StudyLock(sys.argv[1]).acquire()\nexcept Exception as e:\n    print(e); sys.exit(3)\n")
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
        assert r.returncode == 3 and "in use" in r.stdout
    StudyLock(tmp_path).acquire().release()  # released: free again


def test_fold_node_lifecycle_and_first_finish_wins(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.9)
    b = s.add(a, {"optimizer.lr": 2e-4}, finish=False)
    st = s.state()
    assert st.nodes[a].status == "ok" and st.nodes[b].status == "running" and st.nodes[b].launches == 1
    assert [n.node_id for n in st.unfinished()] == [b]
    s.finish(b, status="diverged")
    s.finish(b, status="ok", r2=0.5)  # a replayed second finish cannot rewrite history
    st = s.state()
    assert st.nodes[b].status == "diverged" and st.nodes[b].r2 is None
    assert st.nodes[b].changes == {"optimizer.lr": ["0.0001", "0.0002"]}
    assert st.n_iterations == 2 and st.next_node_id == 3


def test_fold_rejected_nodes_are_not_iterations(tmp_path):
    s = SyntheticStudy(tmp_path)
    s.add(None)
    s.journal.append({"event": "rejected", "node_id": 2, "block": 1, "parent_id": 9, "reason": "bad key",
                      "strategy": "exploit"})
    st = fold(s.journal.read())
    assert st.nodes[2].status == "rejected" and st.nodes[2].iteration is None
    assert st.n_iterations == 1 and not st.nodes[2].launched and st.next_node_id == 3
