"""Resume after a `kill -9` of the agent: every node planned or running without a `finished` event is finished
from its run's files, relaunched once with the same id, or recorded as lost, so no run is ever duplicated
(the rule is in agent.loop.explorer's docstring and docs/contracts.md, Contract 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.loop.context import StudyContext
from agent.runs.runner import (
    MARKER,
    JobResult,
    classify,
    kill_group,
    read_json,
    round_alive,
)
from agent.study.state import NodeState, StudyState


def recover(study: StudyContext, st: StudyState, *, finish: Callable[[JobResult], None],
            relaunch: Callable[[list[NodeState]], None]) -> None:
    """Settle the unfinished nodes of `st`: stop the dead agent's round if it still runs, then finish each node
    from its run dir, relaunch it (`relaunch`, once, with the same id) or record it as crashed ("lost")."""
    unfinished = st.unfinished()
    if not unfinished:
        return
    ids = {n.node_id for n in unfinished}
    for ev in st.launches:
        if ids & {int(i) for i in ev.get("node_ids", [])} and round_alive(ev.get("token")):
            study.out(f"stopping the previous agent's round {ev.get('round')} (still running)")
            kill_group(None, ev.get("token"))
    again: list[NodeState] = []
    for n in unfinished:
        done, started = None, 0
        for run_dir in n.run_dirs:  # every launch of this node, oldest first
            rd = Path(run_dir)
            marker = read_json(rd / MARKER)
            started += bool(marker and "started" in marker)
            if (rd / "metrics.json").exists() or (marker and marker.get("outcome") == "timeout"):
                done = classify(n.node_id, rd, marker, killed=False, rc=None, log_path=rd.parent / "multirun.log")
        if done is not None:
            study.emit({"event": "recovered", "node_id": n.node_id, "action": "finished"})
            finish(done)
        elif started < 2:
            study.emit({"event": "recovered", "node_id": n.node_id, "action": "relaunch", "started": started})
            again.append(n)
        else:
            study.emit({"event": "recovered", "node_id": n.node_id, "action": "lost", "started": started})
            finish(JobResult(n.node_id, "crashed", f"lost: the agent stopped {started} times while this "
                             "run was in flight", {}, n.run_dir or ""))
    if again:
        study.out(f"relaunching {len(again)} run(s) that were in flight: nodes "
                  f"{', '.join(str(n.node_id) for n in again)}")
        relaunch(again)
