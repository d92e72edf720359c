"""The journal's `code` events read back as one-line notes, for the memory, the analysis and the policy's prompt.

`agent.study.state.fold` keeps nodes, not code steps, so everything that shows code modifications reads them here and
the wording lives in one place:

    code modification rejected: <reason>      guardrails, rules or `git apply --check` refused the diff; nothing ran
    code modification failed: <reason>        its smoke test failed (branch reset) or its run failed (reverted)
    code modification committed: <sha12> "[Iter N] <description>"; File: <files>; Changes: +X -Y; Hypothesis: <h>
    code modification kept: <sha12> (...)     its run ended ok (and, with revert_if_worse, R² >= its parent's)
    code modification reverted: <reason>; revert commit <sha12>
    code branch reset from <sha12> to <sha12>: <reason>

Each note knows its block, the iteration it was an attempt for, and its node: the node that ran the commit, or
the rejected proposal the Explorer journaled right after the code event (same reason). Rejections the Explorer
records without a code event (no handler, or the handler itself failed) are notes too when their reason starts
with "code modification".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: lines of the policy's CODE MODIFICATION log block (the design document's Log Form) that a commit message reuses
_KV = re.compile(r"^\s*(File|Function|Change|Hypothesis)\s*:\s*(.+?)\s*$", re.MULTILINE)
_REFUSED = "code change refused: "
_FAILED = "code modification failed: "
NOTE_CHARS = 500


def log_fields(log_entry: str | None) -> dict[str, str]:
    """File / Function / Change / Hypothesis lines of a proposal's CODE MODIFICATION block (last one wins)."""
    return {k: v for k, v in _KV.findall(log_entry or "")}


def short(sha: Any) -> str:
    return str(sha)[:12] if sha else "?"


def _one(text: Any, limit: int = NOTE_CHARS) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _r2(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def note_text(e: Mapping[str, Any]) -> str:
    """The one-line note of one `code` event (see the module docstring), at most NOTE_CHARS characters."""
    return _one(_note(e))


def _note(e: Mapping[str, Any]) -> str:
    a = e.get("action")
    reason = str(e.get("reason") or "no reason recorded")
    if a == "rejected":
        return "code modification rejected: " + _one(reason.removeprefix(_REFUSED))
    if a == "smoke_failed":
        return _FAILED + _one(reason.removeprefix(_FAILED))
    if a == "committed":
        files = ", ".join(str(f) for f in (e.get("files") or [])) or "?"
        return (f'code modification committed: {short(e.get("commit"))} "[Iter {e.get("iteration", "?")}] '
                f'{_one(e.get("description") or "code modification", 160)}"; File: {files}; '
                f'Changes: +{e.get("added", "?")} -{e.get("removed", "?")}; '
                f'Hypothesis: {_one(e.get("hypothesis") or "none stated", 300)}')
    if a == "kept":
        r2, parent = e.get("r2"), e.get("parent_r2")
        how = (f"R² {_r2(r2)} vs parent {_r2(parent)}" if r2 is not None and parent is not None else
               f"R² {_r2(r2)}" if r2 is not None else "its run ended ok")
        return f"code modification kept: {short(e.get('commit'))} ({how})"
    if a == "reverted":
        rc = short(e.get("revert_commit") or e.get("head"))
        if reason.startswith(_FAILED):
            return f"{_one(reason)}; reverted by commit {rc}"
        return f"code modification reverted: {_one(reason.removeprefix('code modification '))}; revert commit {rc}"
    if a == "reset":
        return f"code branch reset from {short(e.get('from'))} to {short(e.get('to'))}: {_one(reason)}"
    if a == "base":
        return base_text(e)
    return f"code event {a}: {_one(reason)}"


def base_text(e: Mapping[str, Any]) -> str:
    text = f"study code on branch {e.get('branch', '?')}, from commit {short(e.get('base_commit'))}"
    dirty = e.get("dirty_files") or []
    if dirty:
        text += f" plus your uncommitted changes to {len(dirty)} file(s) (commit {short(e.get('head'))})"
    if e.get("adopted"):
        text += " (adopted the study's own half-made branch)"
    return text


@dataclass(frozen=True)
class CodeNote:
    seq: int                     # position of the event in the journal
    action: str                  # a code event's action, or "rejected"/"failed" for an Explorer-only rejection
    block: int | None
    iteration: int | None        # the iteration the attempt was for (kept/reverted: the node's iteration)
    node_id: int | None          # the node that ran the commit, or the rejected proposal
    text: str
    event: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def outcome(self) -> str:
        """committed | kept | reverted | failed | rejected | reset (for counting)."""
        if self.action == "smoke_failed":
            return "failed"
        return self.action


@dataclass(frozen=True)
class CodeHistory:
    base: Mapping[str, Any] | None
    notes: tuple[CodeNote, ...]
    head: str | None             # the branch head the journal vouches for

    @property
    def enabled(self) -> bool:
        return self.base is not None or bool(self.notes)

    def base_line(self) -> str:
        return base_text(self.base) if self.base is not None else "off (no code event in the journal)"

    def of_block(self, block: int) -> list[CodeNote]:
        return [n for n in self.notes if n.block == block]

    def of_node(self, node_id: int) -> list[CodeNote]:
        return [n for n in self.notes if n.node_id == node_id]

    def find(self, node_id: int, *actions: str) -> CodeNote | None:
        return next((n for n in reversed(self.notes) if n.node_id == node_id and n.action in actions), None)

    def summary(self, block: int) -> str | None:
        """One line counting the block's code modifications (None when it had none)."""
        notes = self.of_block(block)
        if not notes:
            return None
        count = {k: sum(1 for n in notes if n.outcome == k) for k in
                 ("committed", "kept", "reverted", "failed", "rejected", "reset")}
        parts = [f"{count['committed']} committed ({count['kept']} kept, {count['reverted']} reverted)",
                 f"{count['failed']} failed before running (smoke test)",
                 f"{count['rejected']} rejected"]
        if count["reset"]:
            parts.append(f"{count['reset']} branch reset(s)")
        kept = [n for n in notes if n.action == "kept"]
        text = f"Code modifications in block {block}: " + ", ".join(parts)
        if kept:
            commits = {c.event.get("commit"): c for c in notes if c.action == "committed"}
            names = []
            for k in kept:
                c = commits.get(k.event.get("commit"))
                desc = _one(c.event.get("description"), 80) if c is not None else "?"
                names.append(f'{short(k.event.get("commit"))} "{desc}"')
            text += "; kept: " + ", ".join(names)
        return text + "."


def journaled_head(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The branch head the journal vouches for (a commit no planned node uses does not count)."""
    planned = {e.get("code_commit") for e in events if e.get("event") == "planned" and e.get("code_diff")}
    head = None
    for e in events:
        if e.get("event") != "code":
            continue
        a = e.get("action")
        if a in ("base", "reverted", "reset"):
            head = e.get("head")
        elif a == "committed" and e.get("commit") in planned:
            head = e.get("commit")
    return head


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def code_history(events: Sequence[Mapping[str, Any]]) -> CodeHistory:
    """Every code step of a study, in journal order (see the module docstring)."""
    planned: dict[int, Mapping[str, Any]] = {}
    by_commit: dict[str, int] = {}
    raw: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []   # code rejections waiting for the Explorer's `rejected` event
    base: Mapping[str, Any] | None = None
    block: int | None = None
    n_planned = 0
    for seq, e in enumerate(events):
        kind = e.get("event")
        if kind == "block_start":
            block = _int(e.get("block"))
        elif kind == "planned":
            nid = _int(e.get("node_id"))
            if nid is not None and nid not in planned:
                planned[nid] = e
                n_planned += 1
                if e.get("code_diff") and e.get("code_commit"):
                    by_commit.setdefault(str(e["code_commit"]), nid)
        elif kind == "rejected":
            reason = str(e.get("reason") or "")
            match = next((p for p in pending if str(p["event"].get("reason") or "") == reason), None)
            if match is not None:
                match["node_id"] = _int(e.get("node_id"))
                pending.remove(match)
            elif reason.startswith("code modification"):
                failed = reason.startswith(_FAILED)
                raw.append({"seq": seq, "action": "failed" if failed else "rejected",
                            "block": _int(e.get("block")) or block, "iteration": n_planned + 1,
                            "node_id": _int(e.get("node_id")), "event": e,
                            "text": _one(reason) if failed or reason.startswith("code modification rejected")
                            else "code modification rejected: " + _one(reason)})
        elif kind == "code":
            a = str(e.get("action") or "?")
            if a == "base":
                base = base or e
                continue
            note = {"seq": seq, "action": a, "block": _int(e.get("block")) or block,
                    "iteration": _int(e.get("iteration")), "node_id": _int(e.get("node_id")), "event": e,
                    "text": note_text(e)}
            if a in ("rejected", "smoke_failed"):
                pending.append(note)
            if note["iteration"] is None and note["node_id"] is None:
                note["iteration"] = n_planned + 1
            raw.append(note)
    notes = []
    for r in raw:
        e = r["event"]
        if r["action"] == "committed" and r["node_id"] is None:
            r["node_id"] = by_commit.get(str(e.get("commit")))
        p = planned.get(r["node_id"]) if r["action"] in ("committed", "kept", "reverted") else None
        if p is not None:
            r["block"] = _int(p.get("block")) or r["block"]
            r["iteration"] = _int(p.get("iteration")) or r["iteration"]
        notes.append(CodeNote(seq=r["seq"], action=r["action"], block=r["block"], iteration=r["iteration"],
                              node_id=r["node_id"], text=r["text"], event=e))
    return CodeHistory(base=base, notes=tuple(notes), head=journaled_head(events))
