"""Config identity (agent.study.identity): resolved values on the allow-listed keys, not override strings.

The skeleton shortcut (compose group choices once, overlay a node's plain keys) must give exactly what the full
composition gives; spelled-out defaults, int/float spellings and train_overrides are the same config; configs
that do not compose fall back to the override-list hash; and every consumer (the view, the heuristic's fresh
check, the Claude reply check, the loop's gate on a resumed pre-identity journal) uses it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakeapp import SyntheticStudy, write_fake_app

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.policies.claude.policy import check_children
from agent.policies.heuristic import Candidate, HeuristicPolicy, Settings
from agent.runs.overrides import config_hash
from agent.study.identity import ConfigIdentity
from agent.study.journal import Journal
from agent.study.proposal import BlockEndDecision, Proposal
from agent.study.state import fold

REPO = Path(__file__).resolve().parents[1]
BASE = ["data.n_training_frames=48", "field=Jp"]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_fake_app(tmp_path_factory.mktemp("idapp"))


@pytest.fixture(scope="module")
def repo_id() -> ConfigIdentity:
    return ConfigIdentity(REPO, ["scenario=discs_small", "train.total_steps=300", "trainer=cpu"])


CASES = [
    BASE,
    BASE + ["optimizer.lr=0.0002"],
    BASE + ["train.total_steps=300"],
    BASE + ["model.omega=30", "seed=3"],
    ["data.n_training_frames=48", "field=F", "model.hidden_dim=128"],
    BASE + ["inr_type=siren_txy", "model.omega=20.0"],
    BASE + ["inr_type=ngp", "model.n_levels=4"],
    BASE + ["optimizer=adamw", "scheduler=none"],
]


@pytest.mark.parametrize("overrides", CASES, ids=lambda c: " ".join(c))
def test_shortcut_equals_the_full_composition(repo_id, overrides):
    fast = repo_id.values(overrides)
    assert fast is not None and fast == repo_id.values_composed(overrides)
    assert fast["field"] == next(o for o in overrides if o.startswith("field=")).split("=")[1]


def test_a_spelled_out_default_is_the_same_config(repo_id):
    vals = repo_id.values(BASE)
    lr, steps, omega = vals["optimizer.lr"], vals["train.total_steps"], vals["model.omega"]
    assert steps == "300"  # train_overrides are part of the config
    same = [BASE + [f"optimizer.lr={lr}"], BASE + ["train.total_steps=300"],
            BASE + [f"model.omega={int(float(omega))}"], BASE + [f"optimizer.lr={float(lr):e}"]]
    assert {repo_id(o) for o in same} == {repo_id(BASE)}
    assert repo_id(BASE + [f"optimizer.lr={float(lr) * 2!r}"]) != repo_id(BASE)
    assert repo_id(BASE + ["seed=1"]) != repo_id(BASE)


def test_a_config_that_does_not_compose_keeps_its_override_hash(repo_id):
    bad = BASE + ["model.n_levels=4"]  # an ngp key on the default (lagrangian) model
    assert repo_id.values(bad) is None
    assert repo_id(bad) == config_hash(bad) != repo_id(BASE)


def test_interpolated_defaults_use_the_full_composition(tmp_path):
    """omega_lr: ${optimizer.lr} follows a node's lr: the shortcut must not freeze it at the skeleton's value."""
    app = write_fake_app(tmp_path)
    (app / "conf" / "optimizer" / "adam.yaml").write_text("name: adam\nlr: 1.0e-4\nomega_lr: ${optimizer.lr}\n")
    ident = ConfigIdentity(app)
    vals = ident.values(BASE + ["optimizer.lr=0.0002"])
    assert vals["optimizer.omega_lr"] == "0.0002" and vals == ident.values_composed(BASE + ["optimizer.lr=0.0002"])
    assert ident(BASE + ["optimizer.lr=0.0002"]) == ident(BASE + ["optimizer.lr=0.0002", "optimizer.omega_lr=0.0002"])


def _study_with_failed_baseline(app: Path, tmp_path: Path):
    """A synthetic block whose base config (lr = the fake trainer's default 1e-4, not spelled out) failed."""
    s = SyntheticStudy(tmp_path / "syn", frames=48)
    a = s.add(None, r2=0.9)
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.95)
    failed = s.add(None, {"model.hidden_dim": 128}, status="crashed", strategy="explore")
    view = replace(s.view(), identity=ConfigIdentity(app))
    return s, view, a, failed


def test_the_view_and_the_claude_check_compare_resolved_configs(app, tmp_path):
    _, view, _, failed = _study_with_failed_baseline(app, tmp_path)
    spelled = view.overrides_of(failed) + ["optimizer.lr=0.0001"]
    assert view.config_id(sorted(spelled)) in view.failed_hashes()
    data = {"children": [{"slot": 0, "parent": None, "strategy": "explore",
                          "overrides": {"model.hidden_dim": 128, "optimizer.lr": 1e-4},
                          "mutation": "m", "rationale": "r", "observation": "o"}]}
    children, errors = check_children(view, ["auto"], data)
    assert not children and any("already failed" in e for e in errors), errors
    children, errors = check_children(replace(view, identity=None), ["auto"], data)  # override hashes differ
    assert errors == [] and len(children) == 1


@pytest.mark.parametrize("key,value", [("field", "F"), ("field", "S"), ("data.n_training_frames", 100)])
def test_the_claude_check_refuses_block_keys_as_the_gate_does(app, tmp_path, key, value):
    """field and n_training_frames change only at a block-end decision: the loop's gate refuses them, and the
    Claude policy's reply check now refuses them too (even the block's own value), so the model gets a repair
    turn instead of its child being dropped at the gate. An empty overrides mapping is the base config: valid."""
    _, view, _, _ = _study_with_failed_baseline(app, tmp_path)
    child = {"slot": 0, "parent": None, "strategy": "exploit", "overrides": {key: value}, "mutation": "m",
             "rationale": "r", "observation": "o"}
    children, errors = check_children(view, ["auto"], {"children": [child]})
    why = f"{key} changes only between blocks (block-end decision), not within block {view.block.block}"
    assert not children and errors == [f"children[slot 0].overrides: {why}"]
    base = check_children(replace(view, identity=None), ["auto"], {"children": [{**child, "overrides": {}}]})
    assert len(base[0]) == 1 and base[1] == []


def test_the_heuristic_does_not_rerun_a_block_config_spelled_differently(app, tmp_path):
    _, view, _, _ = _study_with_failed_baseline(app, tmp_path)
    b = next(n.node_id for n in view.block_nodes if "optimizer.lr=0.0002" in n.overrides)
    back = Candidate(b, "optimizer.lr", 2e-4, 1e-4, "optimizer.lr: 0.0002 -> 0.0001", {"optimizer.lr": 1e-4})
    pol = HeuristicPolicy(Settings())
    assert pol._fresh(view, [back], set()) == []  # lr=1e-4 spelled out is node a's config, run in this block
    assert pol._fresh(replace(view, identity=None), [back], set()) == [back]  # what override hashes believed


class Scripted:
    name = "scripted"

    def __init__(self, plan):
        self.plan = list(plan)

    def propose(self, view, slots):
        return [Proposal(parent_id=None, strategy="explore", overrides=self.plan.pop(0), mutation="m",
                         rationale="r") for _ in slots]

    def end_block(self, view):
        return BlockEndDecision(next_field="F", next_n_training_frames=48, instruction_edits="", summary="s")


def test_a_journal_written_before_identity_resumes_and_still_dedupes(app, tmp_path):
    """Old journals stored override-list hashes; a resumed study recomputes identities from the overrides."""
    args = [f"code_dir={app}", f"root={tmp_path}", "name=old", "n_training_frames=48", "n_blocks=1",
            "n_iter_block=2"]
    assert Explorer(compose_explore(args + ["budget.max_iterations=1"]), out=lambda s: None).run() == 0
    path = tmp_path / "old" / "journal.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "planned":
            ev["config_hash"] = config_hash(ev["overrides"])  # what the journal held before agent.study.identity
        lines.append(json.dumps(ev))
    path.write_text("\n".join(lines) + "\n")
    ex = Explorer(compose_explore(args), out=lambda s: None)
    ex.study.policy, ex.study.policy_name = Scripted([{"optimizer.lr": 1e-4}, {"model.n_layers": 2}]), "scripted"
    assert ex.run() == 0
    st = fold(Journal(tmp_path / "old").read())
    launched = st.launched_nodes()
    rejected = [n for n in st.nodes.values() if n.status == "rejected"]
    assert len(launched) == 2 and [n.status for n in launched] == ["ok", "ok"]
    assert len(rejected) == 1 and "duplicate of node 1" in (rejected[0].error or ""), [n.error for n in rejected]
    assert "model.n_layers=2" in launched[1].overrides
    assert launched[1].config_hash == ex.study.identity(launched[1].overrides)  # new entries store the identity
