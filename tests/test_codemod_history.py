"""agent.codemod.history: code events -> one-line notes tied to block, iteration and node."""

from __future__ import annotations

from agent.codemod.history import code_history, log_fields, note_text


def ev(kind: str, **kw) -> dict:
    return {"event": kind, **kw}


def test_notes_are_tied_to_their_node_iteration_and_block():
    events = [
        ev("block_start", block=1),
        ev("code", action="base", branch="explore/s", base_commit="1" * 40, head="1" * 40),
        ev("planned", node_id=1, block=1, iteration=1),
        # the handler raised something unexpected: only the Explorer's rejection exists
        ev("rejected", node_id=2, block=1, reason="code modification failed: OSError: disk full"),
        ev("rejected", node_id=3, block=1, reason="parent 9 is not a finished node"),  # not a code note
        ev("code", action="committed", commit="2" * 40, iteration=2, block=1, files=["a.py"], added=1, removed=0,
           description="d", hypothesis="h", head="2" * 40),
        ev("planned", node_id=4, block=1, iteration=2, code_diff="x", code_commit="2" * 40),
        ev("code", action="reverted", node_id=4, commit="2" * 40, revert_commit="3" * 40, head="3" * 40,
           reason="code modification did not help: R² 0.5 < 0.6 of parent node 1 (same config, previous code)"),
        ev("code", action="committed", commit="4" * 40, iteration=3, block=1, head="4" * 40),  # never planned
        ev("code", action="reset", **{"from": "4" * 40}, to="3" * 40, head="3" * 40, reason="resume: dropped"),
        ev("planned", node_id=5, block=1, iteration=3),
    ]
    h = code_history(events)
    assert h.base is not None and h.head == "3" * 40
    by_action = {n.action: n for n in h.notes}
    assert [n.action for n in h.notes] == ["failed", "committed", "reverted", "committed", "reset"]
    assert by_action["failed"].node_id == 2 and by_action["failed"].iteration == 2
    assert by_action["failed"].text == "code modification failed: OSError: disk full"
    rev = by_action["reverted"]
    assert rev.node_id == 4 and rev.iteration == 2 and rev.block == 1
    assert rev.text == ("code modification reverted: did not help: R² 0.5 < 0.6 of parent node 1 (same config, "
                        "previous code); revert commit 333333333333")
    orphan = h.notes[3]
    assert orphan.node_id is None and orphan.iteration == 3
    reset = by_action["reset"]
    assert reset.iteration == 3 and reset.text == "code branch reset from 444444444444 to 333333333333: resume: dropped"
    assert h.summary(1) == ("Code modifications in block 1: 2 committed (0 kept, 1 reverted), 1 failed before "
                            "running (smoke test), 0 rejected, 1 branch reset(s).")
    assert h.summary(2) is None


def test_rejection_matches_its_code_event_by_reason():
    events = [ev("block_start", block=3), ev("planned", node_id=1, block=3, iteration=7),
              ev("code", action="rejected", iteration=8, block=3, reason="code change refused: adds an import of os"),
              ev("rejected", node_id=2, block=3, reason="duplicate of another proposal of this round"),
              ev("rejected", node_id=3, block=3, reason="code change refused: adds an import of os")]
    (n,) = code_history(events).notes
    assert (n.node_id, n.iteration, n.block) == (3, 8, 3)
    assert n.text == "code modification rejected: adds an import of os"


def test_note_texts_are_one_line_and_clipped():
    long = "code modification failed: smoke test (train): " + "Traceback line\n" * 200
    text = note_text({"action": "smoke_failed", "reason": long})
    assert "\n" not in text and len(text) <= 500 and text.startswith("code modification failed: smoke test (train)")
    assert note_text({"action": "kept", "commit": "f" * 40}) == "code modification kept: ffffffffffff (its run ended ok)"
    assert note_text({"action": "odd", "reason": "x"}) == "code event odd: x"
    assert log_fields("CODE MODIFICATION:\n  File: a.py\n  Function: f\n  Change: c\n") == {
        "File": "a.py", "Function": "f", "Change": "c"}
