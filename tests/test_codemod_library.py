"""The heuristic's modification library: real diffs of this repository's files, proposed only when R² is stuck."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeapp import SyntheticStudy
from toyrepo import write_toy_repo

from agent.codemod import gitops
from agent.codemod.diffparse import parse
from agent.codemod.guard import check_patches, check_sources
from agent.codemod.library import propose_modification, stuck
from agent.codemod.modifications import LIBRARY
from agent.codemod.settings import CodeModSettings
from agent.policies import PolicyContext
from agent.policies.heuristic import build as build_heuristic

REPO = Path(__file__).resolve().parents[1]
ON = {"codemod": {"enabled": True}}


@pytest.mark.parametrize("mid", sorted(LIBRARY))
def test_each_entry_is_a_real_diff_that_applies_and_passes_the_guardrails(mid, tmp_path):
    mod = LIBRARY[mid]
    diff = mod.diff(REPO)
    assert diff is not None, f"{mid}: its anchor text is no longer in {mod.path}"
    settings = CodeModSettings(enabled=True)
    patches = parse(diff)
    check_patches(patches, settings)
    old = (REPO / mod.path).read_text()
    new = mod.apply_to(old)
    compile(new, mod.path, "exec")
    check_sources(mod.path, old, new, settings)
    assert mod.hypothesis and mod.description and f"code modification {mid}" in new
    repo = write_toy_repo(tmp_path / "repo")
    gitops.apply(repo, diff, check_only=True)  # what the handler runs before applying it
    assert mod.diff(tmp_path / "missing") is None and mod.apply_to(new) is None  # no anchor: skipped


def study(tmp_path, r2s: list[float | None], **cfg) -> SyntheticStudy:
    """A block whose runs have these R² (None: a failed run), each a child of the previous."""
    s = SyntheticStudy(tmp_path / "s", "s", frames=48, config={**ON, **cfg})
    parent = None
    for i, r2 in enumerate(r2s):
        changes = {"optimizer.lr": 1e-4 * (1 + i)} if i else None
        parent = s.add(parent, changes, r2=r2 or 0.0, status="ok" if r2 is not None else "failed",
                       strategy="baseline" if i == 0 else "exploit")
    return s


def test_proposed_when_r2_is_stuck_below_the_threshold_for_four_iterations(tmp_path):
    s = study(tmp_path, [0.960, 0.955, 0.9605, 0.959, 0.958])
    view = s.view()
    assert stuck(view, CodeModSettings.from_config(ON))
    p = propose_modification(view)
    assert p is not None and p.strategy == "code-modification" and p.overrides == {}
    assert p.parent_id == 3 and p.mutation.startswith("[code] lr_warmup: ")  # best node, first library entry
    assert "Hypothesis: " in p.log_entry and p.code_diff.startswith("diff --git a/mpm_inr/training/optim.py")
    assert p.code_diff == LIBRARY["lr_warmup"].diff(REPO)
    # the heuristic policy's strategy table hands it over for "auto" / "explore" slots only
    pol = build_heuristic({"seed": 0}, PolicyContext(study_dir=s.dir, config=s.cfg))
    assert pol.propose(view, ["auto"])[0].code_diff == p.code_diff
    batch = pol.propose(view, ["exploit", "explore", "explore"])
    assert [x.code_diff is not None for x in batch] == [False, True, False]


STUCK = [0.960, 0.955, 0.9605, 0.959, 0.958]
STUCK4 = [0.960, 0.9605, 0.959, 0.958]  # no earlier run: the first of the window is the running best


@pytest.mark.parametrize("r2s, cfg", [
    (STUCK4, {"codemod": {"enabled": True, "protect_first": 5}}),  # stuck, but iteration 5 is protected
    ([0.90, 0.92, 0.94, 0.96, 0.97], {}),                              # still improving
    ([0.960, 0.955, None, 0.959, 0.958], {}),                          # a failed run in the window
    ([0.995, 0.996, 0.996, 0.995, 0.996], {}),                         # above the threshold
    (STUCK, {"codemod": {"enabled": False}}),
    (STUCK, {"codemod": {"enabled": True, "heuristic": {"stuck_r2": 0.95}}}),
])
def test_not_proposed_otherwise(tmp_path, r2s, cfg):
    s = study(tmp_path, r2s, **cfg)
    assert propose_modification(s.view()) is None
    if r2s == STUCK4:
        s.cfg["codemod"]["protect_first"] = 4
        assert propose_modification(s.view()) is not None


def code_node(s: SyntheticStudy, nid: int, mutation: str, *, rejected: bool = False) -> None:
    """A code-modification node (run, or a rejected proposal) carrying a library id in its mutation."""
    s.node_id = nid
    ev = {"node_id": nid, "parent_id": 3, "block": 1, "strategy": "code-modification", "mutation": mutation}
    if rejected:
        s.journal.append({"event": "rejected", **ev, "reason": "smoke test failed"})
        return
    s.iteration += 1
    s.journal.append({"event": "planned", **ev, "iteration": s.iteration, "overrides": s.state().nodes[3].overrides,
                      "code_diff": "diff", "config_hash": "h"})
    s.finish(nid, r2=0.957, overrides=s.state().nodes[3].overrides)


def test_each_entry_once_per_study_and_a_pause_after_an_attempt(tmp_path):
    s = study(tmp_path, STUCK)
    code_node(s, 6, "[code] lr_warmup: linear LR warm-up")
    code_node(s, 7, "[code] grad_clip_default: clip", rejected=True)
    assert propose_modification(s.view()) is None  # an attempt inside the window: wait
    for i in range(4):  # four more stuck iterations without a code change
        s.add(3, {"model.omega": 31.0 + i}, r2=0.955 - i * 0.001)
    p = propose_modification(s.view())
    assert p is not None and p.mutation.startswith("[code] huber_loss")  # lr_warmup ran, grad_clip was refused
