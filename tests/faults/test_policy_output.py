"""Hostile or malformed policy output, fuzzed with hypothesis: rejected with a reason, never run.

Three layers, each with every `subprocess.Popen` of the process watched:
- the loop's gate (`RoundPlanner.validate`, agent/loop/planner.py), which every policy's proposal goes through;
- the Claude policy's reply check (`check_children`), fed raw tool inputs of any shape;
- whole studies whose policy answers only hostile proposals: each is journaled as `rejected` with its reason,
  the heuristic fills the slot, and the jobs files and command lines of the rounds that do run hold nothing
  but validated overrides.
Unknown keys, `hydra.*`, `_target_`, `+`/`~` syntax, `${oc.env:...}` interpolations, paths, shell
metacharacters, huge values, NaN/inf, wrong types, bad parents and strategies are all generated.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from agent.__main__ import compose_explore
from agent.loop.explorer import Explorer
from agent.policies.claude.policy import check_children
from agent.runs.overrides import ALLOWED, Validator
from agent.study.proposal import BlockEndDecision, Proposal, Rejection
from agent.study.view import STRATEGIES

from .conftest import SEED
from .harness import events, state, write_faulty_app

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

SECRET_REF = "${oc.env:ANTHROPIC_API_KEY}"
METACHARS = list(";|&$`()<>\n\r\x00 '\"\\*?{}[],=#!") + ["&&", "$(id)", "`id`", "\t"]
NUMERIC = sorted(k for k, s in ALLOWED.items() if s.kind in ("int", "float"))
CHOICE = sorted(k for k, s in ALLOWED.items() if s.kind in ("choice", "bool"))
HOSTILE_KEYS = ["hydra.run.dir", "hydra.job.chdir", "hydra.sweep.dir", "hydra/launcher", "hydra.launcher.n_jobs",
                "model._target_", "_target_", "optimizer._partial_", "model.__class__", "data.root", "logger.project",
                "trainer.accelerator", "scenario.physics.dt", "train.sampler", "debug.inject_nonfinite_step",
                "outputs.plot", "study.name", "fake.crash", "model", "optimizer.lr.x", "", " ", "model.hidden_dim ",
                "optimizer.lr;rm", "a" * 100, "x" * 81]
PATHS = ["/etc/passwd", "../../../etc/shadow", "~/.ssh/id_rsa", "/tmp/pwn", "C:\\Windows", "file:///etc/hosts"]
INTERP = [SECRET_REF, "${hydra:runtime.cwd}", "${now:%H}", "${oc.decode:'1'}", "${model.hidden_dim}", "$HOME"]

valid_entry = st.sampled_from([("model.hidden_dim", 128), ("optimizer.lr", 2e-4), ("model.n_layers", 2),
                               ("model.omega", 20.0), ("train.total_steps", 200), ("data.t_period", 0.5)])
dangerous_text = st.builds(lambda a, m, b: a + m + b, st.text(max_size=6), st.sampled_from(METACHARS),
                           st.text(max_size=6))
hostile_string = st.one_of(st.sampled_from(PATHS + INTERP), dangerous_text,
                           st.text(min_size=201, max_size=400, alphabet="0123456789"))
out_of_range = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                         st.floats(min_value=1e13, allow_infinity=False), st.integers(min_value=10**13),
                         st.integers(max_value=-10**13), st.just(-1.0))
bad_type = st.one_of(st.none(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                     st.integers(), max_size=2),
                     st.binary(max_size=8), st.just(object()))
hostile_entry = st.one_of(
    st.tuples(st.sampled_from(HOSTILE_KEYS), st.one_of(st.integers(), st.text(max_size=10))),
    st.tuples(st.builds(lambda p, k: p + k, st.sampled_from(["+", "++", "~"]), st.sampled_from(sorted(ALLOWED))),
              st.just(1)),
    st.tuples(st.text(min_size=1, max_size=30).filter(lambda k: k not in ALLOWED), st.integers()),
    st.tuples(st.one_of(st.integers(), st.none(), st.binary(min_size=1, max_size=8)), st.integers()),
    st.tuples(st.sampled_from(NUMERIC), st.one_of(out_of_range, hostile_string, bad_type, st.booleans())),
    st.tuples(st.sampled_from(CHOICE), st.one_of(hostile_string, bad_type, st.integers(min_value=10**6))),
    st.tuples(st.sampled_from(["field", "data.n_training_frames"]), st.sampled_from(["F", "S", 100, 200])),
)


@st.composite
def hostile_overrides(draw) -> dict:
    d = dict(draw(st.lists(valid_entry, max_size=2)))
    for k, v in draw(st.lists(hostile_entry, min_size=1, max_size=3)):
        d.pop(k, None)  # a hostile entry is always present with its hostile value
        d[k] = v
    return d


def proposals():
    """Every value this strategy yields must be rejected."""
    ok_parent = st.sampled_from([None, 1])
    ok_strategy = st.sampled_from(["exploit", "explore", "boundary"])
    build = lambda parent, strat, ov: Proposal(parent_id=parent, strategy=strat, overrides=ov,
                                               mutation="m", rationale="r")
    cases = [st.builds(build, ok_parent, ok_strategy, hostile_overrides())] * 6 + [  # the main attack surface
        st.builds(build, st.one_of(st.sampled_from([999, -1, 0, 2**70, True, "1", 1.0, "root"]),
                                   st.integers(min_value=2)), ok_strategy,
                  st.dictionaries(st.just("model.hidden_dim"), st.just(128), min_size=1)),
        st.builds(build, ok_parent, st.one_of(dangerous_text, st.text(max_size=20)).filter(
            lambda s: s not in STRATEGIES), st.just({"model.n_layers": 2})),
        st.builds(build, ok_parent, ok_strategy, st.one_of(st.lists(st.text(max_size=10), max_size=3),
                                                           st.text(max_size=20), st.none(), st.integers())),
        st.one_of(st.none(), st.text(max_size=20), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                  st.builds(lambda ov: {"parent_id": None, "strategy": "exploit", "overrides": ov},
                            hostile_overrides())),
    ]
    return st.integers(0, len(cases) - 1).flatmap(lambda i: cases[i])


REASONS = {  # what the recorded reasons say, for the summary (a reason listing several problems counts for each)
    "hydra.*": ["hydra.* keys"], "_target_-like": ["special keys"], "+/~ syntax": ["'+', '++' and '~'"],
    "interpolation": ["interpolations"], "non-literal/metachar": ["only plain literals", "not a plain"],
    "NaN/inf": ["NaN and infinity"], "huge/out of range": ["out of range", "too large", "too long"],
    "wrong type": ["not a string", "not a number", "boolean", "must be true or false", "must be one of",
                   "must be an integer", "must be a mapping", "not a Proposal", "expected key=value"],
    "unknown key": ["unknown key", "not a plain dotted name"], "bad parent": ["parent"],
    "bad strategy": ["unknown strategy"], "block-level key": ["only between blocks"],
}


class PopenSpy:
    """Records every subprocess.Popen of this process (subprocess.run included)."""

    def __init__(self, monkeypatch):
        self.calls: list[list[str]] = []
        real = subprocess.Popen
        spy = self

        class Spy(real):  # type: ignore[misc, valid-type]
            def __init__(self, args, *a, **k):
                spy.calls.append([str(x) for x in (args if isinstance(args, (list, tuple)) else [args])])
                super().__init__(args, *a, **k)

        monkeypatch.setattr(subprocess, "Popen", Spy)

    def train_calls(self) -> list[list[str]]:
        return [c for c in self.calls if any(x.endswith("train.py") for x in c)]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return write_faulty_app(tmp_path_factory.mktemp("faultyapp"))


@pytest.fixture(scope="module")
def study(app, tmp_path_factory):
    """A finished one-node study: the explorer and view a proposal is checked against."""
    root = tmp_path_factory.mktemp("gate")
    ex = Explorer(compose_explore([f"code_dir={app}", f"root={root}", "name=g", "n_training_frames=48", "n_blocks=1",
                                   "n_iter_block=1"]), out=lambda s: None)
    assert ex.run() == 0
    return ex, ex.study.view(ex.study.state())


def test_hostile_proposals_are_rejected_at_the_loop_gate(study, monkeypatch, fault_row):
    ex, view = study
    spy = PopenSpy(monkeypatch)
    seen: dict = {"n": 0, "accepted": [], "reasonless": 0, "kinds": {}}

    @seed(SEED)
    @settings(max_examples=600, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(p=proposals())
    def check(p):
        seen["n"] += 1
        try:
            ex.planner.validate(p, view, set())
        except Rejection as r:
            seen["reasonless"] += not str(r).strip()
            for kind in [k for k, words in REASONS.items() if any(w in str(r) for w in words)] or ["other"]:
                seen["kinds"][kind] = seen["kinds"].get(kind, 0) + 1
            return
        seen["accepted"].append(repr(p)[:200])

    check()
    # control: a legitimate proposal passes the same gate, so the rejections above are not vacuous
    ex.planner.validate(Proposal(parent_id=1, strategy="exploit", overrides={"model.hidden_dim": 128}, mutation="m",
                          rationale="r"), view, set())
    bad = len(seen["accepted"]) + seen["reasonless"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(seen["kinds"].items(), key=lambda kv: -kv[1]))
    fault_row("hostile policy output at the loop gate (hypothesis)", trials=seen["n"], survived=seen["n"] - bad,
              notes=f"reasons given (a proposal may have several): {kinds}; {len(spy.calls)} subprocess calls"
                    + (f"; ACCEPTED: {seen['accepted'][:3]}" if seen["accepted"] else ""))
    assert not seen["accepted"] and not seen["reasonless"] and not spy.calls


raw_child = st.fixed_dictionaries(
    {"slot": st.one_of(st.just(0), st.integers(), st.text(max_size=3)),
     "parent": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
     "strategy": st.one_of(st.sampled_from(STRATEGIES), st.text(max_size=10)),
     "overrides": st.one_of(st.builds(dict, st.lists(hostile_entry.filter(lambda e: isinstance(e[0], str)),
                                                     min_size=1, max_size=3)),
                            bad_type.filter(lambda v: v != {})),  # {}: the base config, a legitimate child
     "mutation": st.one_of(st.text(max_size=10), st.integers()),
     "rationale": st.text(max_size=10), "observation": st.text(max_size=10)},
    optional={"code_diff": st.one_of(st.none(), st.text(max_size=10)), "hydra": st.text(max_size=5),
              "_target_": st.just("os.system")})
raw_reply = st.one_of(st.fixed_dictionaries({"children": st.lists(raw_child, max_size=3)}),
                      st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
                      st.fixed_dictionaries({"children": st.one_of(st.text(max_size=5), st.integers(), st.none())}))


def test_hostile_llm_replies_are_refused_by_the_claude_policy_check(study, monkeypatch, fault_row):
    _, view = study
    spy = PopenSpy(monkeypatch)
    seen = {"n": 0, "accepted": []}

    @seed(SEED)
    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=raw_reply)
    def check(data):
        seen["n"] += 1
        children, errors = check_children(view, ["auto"], data)
        if children or not errors:
            seen["accepted"].append(repr(data)[:200])

    check()
    good, errors = check_children(view, ["auto"], {"children": [
        {"slot": 0, "parent": 1, "strategy": "exploit", "overrides": {"model.hidden_dim": 128}, "mutation": "m",
         "rationale": "r", "observation": "o"}]})
    assert good and not errors  # control
    fault_row("hostile LLM tool input at the Claude policy's check (hypothesis)", trials=seen["n"],
              survived=seen["n"] - len(seen["accepted"]),
              notes="schema + allow-list + parent checks; every malformed reply gives errors for the repair "
                    f"turn; {len(spy.calls)} subprocess calls"
                    + (f"; ACCEPTED: {seen['accepted'][:3]}" if seen["accepted"] else ""))
    assert not seen["accepted"] and not spy.calls


class Hostile:
    """A policy that only ever answers the proposals it is given."""

    name = "hostile"

    def __init__(self, draw):
        self.draw = draw
        self.given: list = []

    def propose(self, view, slots):
        out = [self.draw(proposals()) for _ in slots]
        self.given += out
        return out

    def end_block(self, view):
        return BlockEndDecision(next_field="X", next_n_training_frames=7, instruction_edits="", summary="")


#: the keys the agent itself adds to every job (the study's bookkeeping and its per-job settings:
#: agent.loop.rounds), never a policy's
ALLOWED_JOB_KEYS = {"study.name", "study.node_id", "study.parent_id", "study.block", "study.iteration",
                    "study.strategy", "data.root", "hydra.sweep.subdir", "outputs.plot", "trainer.cpu_threads",
                    "logger.group", "logger.tags"}


def _job_problems(jobs_file: Path, validator: Validator) -> list[str]:
    probs = []
    for job in json.loads(jobs_file.read_text()):
        own = [o for o in job if o.split("=", 1)[0] not in ALLOWED_JOB_KEYS]
        try:
            validator.normalise(own)
        except Exception as e:  # noqa: BLE001 - any failure is a problem to report
            probs.append(f"{jobs_file.name}: {e}")
        for o in job:
            if any(m in o for m in ("${", "$(", "`", ";", "|", "&", "_target_", "hydra.run", "/etc", "..")):
                probs.append(f"{jobs_file.name}: {o!r}")
    return probs


def test_studies_driven_by_a_hostile_policy_run_only_validated_jobs(app, tmp_path, monkeypatch, fault_row):
    spy = PopenSpy(monkeypatch)
    tally = {"studies": 0, "proposals": 0, "rejected": 0, "reasonless": 0, "launched_hostile": 0, "problems": []}
    validator = Validator()

    @seed(SEED)
    @settings(max_examples=4, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def study_run(data):
        tally["studies"] += 1
        root = tmp_path / f"s{tally['studies']}"
        ex = Explorer(compose_explore([f"code_dir={app}", f"root={root}", "name=h", "n_training_frames=48",
                                       "n_blocks=1", "n_iter_block=2", "batch=2"]), out=lambda s: None)
        pol = Hostile(data.draw)
        ex.study.policy, ex.study.policy_name = pol, pol.name
        assert ex.run() == 0
        d = root / "h"
        evs = events(d)
        rejected = [e for e in evs if e["event"] == "rejected"]
        tally["proposals"] += len(pol.given)
        tally["rejected"] += len(rejected)
        tally["reasonless"] += sum(not (e.get("reason") or "").strip() for e in rejected)
        st_ = state(d)
        tally["launched_hostile"] += sum(n.policy == "hostile" for n in st_.launched_nodes())
        for jf in d.glob("runs/*/jobs*.json"):
            tally["problems"] += _job_problems(jf, validator)
        if len(st_.launched_nodes()) != 2 or not st_.ended:
            tally["problems"].append(f"study {tally['studies']} did not complete")

    study_run()
    cmds = spy.train_calls()
    for c in cmds:  # the command lines themselves: the agent's fixed flags only
        for a in c[2:]:
            if not a.split("=", 1)[0] in ("--multirun", "hydra/sweeper", "hydra.sweeper.jobs_file",
                                          "hydra.sweeper.job_timeout_s", "hydra.sweep.dir", "hydra/launcher"):
                tally["problems"].append(f"unexpected argument {a!r}")
    survived = tally["rejected"] - tally["reasonless"]
    fault_row("hostile policy drives whole studies (fake trainer)", trials=tally["proposals"],
              survived=min(survived, tally["proposals"]),
              notes=f"{tally['studies']} studies, {tally['rejected']} proposals journaled as rejected with a reason, "
                    f"heuristic filled every slot; {len(cmds)} train.py launches, all with validated overrides only"
                    + ("; PROBLEMS: " + " | ".join(tally["problems"][:5]) if tally["problems"] else ""))
    assert tally["rejected"] == tally["proposals"] and not tally["reasonless"]
    assert not tally["launched_hostile"] and not tally["problems"]


class Scripted:
    """Answers fixed proposals in order and records what each view showed of the rejections."""

    name = "scripted"

    def __init__(self, plan):
        self.plan = list(plan)
        self.rejections_seen: list[list[str]] = []

    def propose(self, view, slots):
        self.rejections_seen.append([n.error or "" for n in view.recent_rejections])
        return [Proposal(parent_id=None, strategy="explore", overrides=self.plan.pop(0), mutation="m",
                         rationale="r") for _ in slots]

    def end_block(self, view):
        return BlockEndDecision(next_field="F", next_n_training_frames=48, instruction_edits="", summary="s")


def test_each_rejection_of_an_attempt_keeps_its_own_node(app, tmp_path, fault_row):
    """Two proposals of one round rejected in the same attempt: both journaled under distinct node ids, and the
    policy's next view shows both reasons (regression test: `_reject` used to take the id from the attempt's
    stale state, so the second rejection reused the first one's id and vanished from the folded state)."""
    pol = Scripted([{"hydra.run.dir": "/tmp/pwn"}, {"model.hidden_dim": 10**9}, {}, {"model.n_layers": 2}])
    ex = Explorer(compose_explore([f"code_dir={app}", f"root={tmp_path}", "name=r", "n_training_frames=48",
                                   "n_blocks=1", "n_iter_block=2", "batch=2"]), out=lambda s: None)
    ex.study.policy, ex.study.policy_name = pol, pol.name
    assert ex.run() == 0
    rej_events = [e for e in events(tmp_path / "r") if e["event"] == "rejected"]
    folded = [n for n in state(tmp_path / "r").nodes.values() if n.status == "rejected"]
    shown = pol.rejections_seen[1] if len(pol.rejections_seen) > 1 else []
    ids = [e["node_id"] for e in rej_events]
    ok = len(set(ids)) == 2 and len(folded) == 2 and any("hydra" in r for r in shown) and \
        any("out of range" in r for r in shown)
    fault_row("two proposals rejected in one attempt", trials=2, survived=len(folded) if ok else 1,
              notes=f"journal node ids {ids}; folded rejected nodes {len(folded)}; reasons shown to the policy "
                    f"{[r[:40] for r in shown]}" + ("" if ok else "; BUG agent/loop/planner.py RoundPlanner.reject: "
                                                            "nid = st.next_node_id reuses an id"))
    assert ok, (ids, [n.error for n in folded], shown)


def test_a_spelled_out_default_is_not_a_new_config(app, tmp_path, fault_row):
    """{optimizer.lr: 1e-4} from root, when the block's base config already trains with lr=1e-4, is the
    baseline again: the same run must not be launched twice (regression test: the duplicate check used to hash
    override lists, so an explicit default and an absent key counted as different configs; it now compares the
    resolved config, agent.study.identity)."""
    pol = Scripted([{}, {"optimizer.lr": 1e-4}, {"model.n_layers": 2}])
    ex = Explorer(compose_explore([f"code_dir={app}", f"root={tmp_path}", "name=d", "n_training_frames=48",
                                   "n_blocks=1", "n_iter_block=2", "batch=1"]), out=lambda s: None)
    ex.study.policy, ex.study.policy_name = pol, pol.name
    assert ex.run() == 0
    nodes = state(tmp_path / "d").launched_nodes()
    same = [n.node_id for n in nodes[1:] if n.metrics.get("config") == nodes[0].metrics.get("config")
            and n.metrics.get("final_r2") == nodes[0].metrics.get("final_r2")]
    fault_row("a default value spelled out by the policy (same run, other override list)", trials=1,
              survived=int(not same), duplicated=len(same),
              notes=("rejected as a duplicate" if not same else
                     f"node(s) {same} re-ran node 1's resolved config (identical R²); BUG: the loop's gate "
                     "compares override lists, not agent.study.identity"))
    assert not same, f"nodes {same} duplicate node 1"
    rejected = [n for n in state(tmp_path / "d").nodes.values() if n.status == "rejected"]
    assert [n.error for n in rejected] and "duplicate of node 1" in rejected[0].error, [n.error for n in rejected]
