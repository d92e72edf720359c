"""Heuristic policy decisions on synthetic journals: the design document's strategy table, magnitudes, failures,
batches."""

from __future__ import annotations

import re

import pytest
from fakeapp import SyntheticStudy

from agent.policies.heuristic import HeuristicPolicy, Settings
from agent.runs.overrides import Validator, config_hash, merge
from agent.study.stats import block_stats, principles

SEED_STEPS = {  # the design document's mutation magnitudes (ratios new/old, or differences for n_layers / omega)
    "optimizer.lr": {2.0, 0.5}, "model.hidden_dim": {2.0, 0.5}, "train.total_steps": {1.5, 2.0},
    "data.t_period": {2.0, 0.5}, "data.xy_period": {2.0, 0.5},
}


def policy(**kw) -> HeuristicPolicy:
    return HeuristicPolicy(Settings(**kw))


def one(view, p=None, role="auto"):
    (prop,) = (p or policy()).propose(view, [role])
    return prop


def child_hash(view, prop):
    return config_hash(merge(view.overrides_of(prop.parent_id), Validator().normalise(prop.overrides)))


def assert_seed_magnitude(view, prop):
    assert len(prop.overrides) == 1, prop
    (key, new), = prop.overrides.items()
    old = float(view.value(prop.parent_id, key))
    if key in SEED_STEPS:
        assert round(float(new) / old, 6) in SEED_STEPS[key], (key, old, new)
    elif key == "model.n_layers":
        assert abs(float(new) - old) == 1
    elif key == "model.omega":
        assert abs(float(new) - old) == pytest.approx(10) or float(new) / old in (pytest.approx(1.5),
                                                                                 pytest.approx(1 / 1.5))


def test_empty_block_runs_the_base_config_from_root(tmp_path):
    p = one(SyntheticStudy(tmp_path).view())
    assert p.parent_id is None and p.strategy == "baseline" and p.overrides == {}


def test_exploit_takes_top_ucb_and_one_seed_sized_mutation(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.80)
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.70)
    v = s.view()
    p = one(v)
    assert p.strategy == "exploit"
    assert p.parent_id == v.ucb[0].node_id
    assert_seed_magnitude(v, p)
    assert "Node 2" in p.observation and "0.700000" in p.observation  # a real observation from the metrics


def test_decisions_are_deterministic(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.8)
    s.add(a, {"model.hidden_dim": 512}, r2=0.85)
    v = s.view()
    assert policy().propose(v, ["auto"]) == policy().propose(v, ["auto"])
    assert policy(seed=1).propose(v, ["exploit", "exploit", "explore", "principle-test"]) == \
        policy(seed=1).propose(v, ["exploit", "exploit", "explore", "principle-test"])


def test_failure_probe_after_three_successes(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.96)
    b = s.add(a, {"model.hidden_dim": 512}, r2=0.97)
    s.add(b, {"model.n_layers": 4}, r2=0.975)
    v = s.view()
    assert block_stats(v.block_nodes).success_streak == 3
    p = one(v)
    assert p.strategy == "failure-probe"
    (key, new), = p.overrides.items()
    old = float(v.value(p.parent_id, key))
    spec = v.specs[key]
    extreme = new in (spec.lo, spec.hi) or (old and (float(new) / old in (4.0, 0.25, 2.0, 0.5) or
                                                     abs(float(new) - old) in (2, 3, 4)))
    assert extreme, (key, old, new)


def test_switch_param_after_four_mutations_of_the_same_parameter(tmp_path):
    s = SyntheticStudy(tmp_path)
    n = s.add(None, r2=0.5)
    lr = 1e-4
    for _ in range(4):
        lr /= 2
        n = s.add(n, {"optimizer.lr": lr}, r2=0.5)
    v = s.view()
    assert v.stats.same_param == "optimizer.lr" and v.stats.same_param_streak == 4
    p = one(v)
    assert p.strategy == "switch-param" and "optimizer.lr" not in p.overrides


def test_a_failed_config_is_never_proposed_again(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.5)
    v0 = s.view()
    failed = set()
    # fail every exploit child the policy proposes; it must keep moving to untried configs
    for _ in range(6):
        v = s.view()
        p = one(v)
        h = child_hash(v, p)
        assert h not in failed, "re-proposed a failed config"
        failed.add(h)
        s.add(p.parent_id, p.overrides, status="diverged", strategy=p.strategy)
    assert v0.block_nodes[0].node_id == a
    assert len(s.view().failed_hashes()) == 6


def test_exploit_follows_positive_evidence(tmp_path):
    s = SyntheticStudy(tmp_path)
    n = s.add(None, r2=0.5)
    n = s.add(n, {"model.hidden_dim": 512}, r2=0.6, strategy="exploit")
    picks = []
    for seed in range(10):
        p = policy(seed=seed).propose(s.view(), ["exploit"])[0]
        picks.append(p.overrides.get("model.hidden_dim"))
    assert picks.count(1024) >= 3  # "raising hidden_dim improved" is preferred, not ignored


def test_robustness_rerun_of_a_good_config(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.80)
    s.add(a, {"model.hidden_dim": 512}, r2=0.995)
    s.add(a, {"model.n_layers": 4}, r2=0.70)
    v = s.view()
    p = one(v)
    assert p.strategy == "robustness-test" and p.parent_id == 2 and p.overrides == {"seed": 1}


def test_recombine_two_good_distant_nodes(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.90)
    b = s.add(a, {"model.hidden_dim": 512}, r2=0.97)
    c = s.add(a, {"model.omega": 20.0}, r2=0.96)
    s.add(b, {"model.n_layers": 2}, r2=0.40)  # breaks the success streak
    v = s.view()
    p = one(v)
    assert p.strategy == "recombine", p
    assert p.parent_id == b and p.overrides == {"model.omega": "20.0"} and str(c) in p.rationale


def test_compression_below_minimum_shrinks_the_model(tmp_path):
    s = SyntheticStudy(tmp_path)
    s.add(None, r2=0.99, metrics={"compression_ratio": 0.4})
    p = one(s.view(), policy(min_compression=1.0))
    assert p.overrides == {"model.hidden_dim": 128} and "compression" in p.rationale


def test_batch_slots_follow_the_parallel_roles_with_distinct_mutations(tmp_path):
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.9)
    s.add(a, {"model.hidden_dim": 512}, r2=0.92)
    v = s.view()
    props = policy().propose(v, ["exploit", "exploit", "explore", "principle-test"])
    assert [p.strategy for p in props][:3] == ["exploit", "exploit", "explore"]
    assert props[3].strategy in ("principle-test", "failure-probe")
    hashes = [child_hash(v, p) for p in props]
    assert len(set(hashes)) == 4
    keys = [next(iter(p.overrides)) for p in props]
    assert len(set(keys)) == 4  # the design document: mutations do not repeat across slots
    assert all(p.parent_id in {n.node_id for n in v.block_nodes} for p in props)


def test_first_round_of_a_batch_starts_from_root(tmp_path):
    props = policy().propose(SyntheticStudy(tmp_path).view(), ["exploit", "exploit", "explore"])
    assert props[0].strategy == "baseline"
    assert all(p.parent_id is None for p in props)
    assert all(p.overrides for p in props[1:])


def test_principle_test_challenges_an_established_principle(tmp_path):
    s = SyntheticStudy(tmp_path)
    for _ in range(3):  # three independent runs where raising hidden_dim helped: established
        a = s.add(None, {"optimizer.lr": 1e-4 * (2 ** _)}, r2=0.9)
        s.add(a, {"model.hidden_dim": 512}, r2=0.95)
    est, _ = principles(list(s.state().nodes.values()), "siren_txy")
    assert [e.verb() for e in est] == ["raising model.hidden_dim"]
    p = policy().propose(s.view(), ["exploit", "exploit", "explore", "principle-test"])[3]
    assert p.strategy == "principle-test" and "raising model.hidden_dim" in p.rationale
    assert int(p.overrides["model.hidden_dim"]) > int(s.view().value(p.parent_id, "model.hidden_dim"))


def test_block_summary_names_the_base_config_when_it_won(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=2)
    a = s.add(None, strategy="baseline", r2=0.99)
    s.add(a, {"model.hidden_dim": 512}, r2=0.95)
    assert "Best R² 0.990000 (node 1, good; the block base config)." in policy().end_block(s.view()).summary


def test_end_block_rotates_field_then_raises_frames(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=3)
    a = s.add(None, r2=0.9)
    s.add(a, {"model.hidden_dim": 512}, r2=0.95)
    s.add(a, {"model.n_layers": 4}, r2=0.85)
    d1 = policy().end_block(s.view())
    assert (d1.next_field, d1.next_n_training_frames) == ("F", 100)  # odd block: option A
    assert "Best R² 0.950000 (node 2" in d1.summary
    assert d1.principles == []  # 1 run per effect: nothing is established
    assert any("hidden_dim" in q for q in d1.open_questions)
    s.end_block(d1.to_dict(), stats=s.view().stats.to_dict())
    s.start_block("F", 100, base={"model.hidden_dim": 512, "train.total_steps": 1000})
    b = s.add(None, {"model.hidden_dim": 512, "train.total_steps": 1000}, r2=0.9)
    s.add(b, {"optimizer.lr": 2e-4}, r2=0.91)
    d2 = policy().end_block(s.view())
    assert (d2.next_field, d2.next_n_training_frames) == ("F", 200)  # even block: option B
    assert d2.next_overrides == {"train.total_steps": 2000}  # same steps per frame


def test_end_block_never_repeats_a_tested_regime(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=1)
    s.add(None, r2=0.9)
    s.end_block({"next_field": "F", "next_n_training_frames": 100, "instruction_edits": "", "summary": ""})
    s.start_block("F", 100)
    s.add(None, r2=0.9)
    s.end_block({"next_field": "Jp", "next_n_training_frames": 100, "instruction_edits": "", "summary": ""})
    s.start_block("Jp", 100)
    s.add(None, r2=0.9)
    d = policy().end_block(s.view())  # odd block 3 prefers rotating to F, but F@100 was tested
    assert (d.next_field, d.next_n_training_frames) not in {("Jp", 100), ("F", 100)}


def test_instruction_edits_follow_the_block_statistics(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=5)
    n = s.add(None, r2=0.9)
    for i in range(4):  # a chain: branching rate 0%
        n = s.add(n, {"optimizer.lr": 1e-4 / 2 ** (i + 1)}, r2=0.9 - 0.01 * i)
    d = policy().end_block(s.view())
    assert "branching rate 0% < 20%" in d.instruction_edits
    assert "improvement rate 0% < 30%" in d.instruction_edits
    assert d.ucb_c == 2.0  # plateau (all within ±0.05): raise c


@pytest.mark.parametrize("rules", [True, False])
def test_rules_written_at_a_block_end_change_later_behaviour(tmp_path, rules):
    s = SyntheticStudy(tmp_path, n_iter_block=8)
    s.add(None, r2=0.5)
    stats = {"branching_rate": 0.0, "improvement_rate": 0.1} if rules else {"branching_rate": 0.5,
                                                                              "improvement_rate": 0.5}
    s.end_block({"next_field": "F", "next_n_training_frames": 100, "instruction_edits": "-", "summary": ""},
                stats=stats)
    s.start_block("F", 100)
    a = s.add(None, r2=0.96)
    s.add(a, {"model.hidden_dim": 512}, r2=0.60)   # weak leaves: higher UCB (1 visit) but below success_r2
    s.add(a, {"model.n_layers": 4}, r2=0.50)
    v = s.view()
    assert v.iter_in_block == 4 and v.ucb[0].node_id != a
    # "branching < 20%" rule: every n_iter_block/4 = 2 iterations one explores
    assert one(v).strategy == ("explore" if rules else "exploit")
    s.add(a, {"model.omega": 40.0}, r2=0.55)
    v = s.view()
    assert v.iter_in_block == 5 and v.ucb[0].node_id != a
    # "improvement < 30%" rule: a parent with R² >= success_r2 beats higher-UCB weak nodes
    p = one(v)
    assert p.strategy == "exploit"
    assert (p.parent_id == a) == rules


def test_failed_nodes_are_never_exploit_parents_and_rank_last(tmp_path):
    """With min_compression=1, an ok node below it scores R=0 like a crash, so a crashed leaf's exploration
    bonus tops the UCB list: the heuristic used to chain children on crashes. Every child here is made to crash,
    and no proposal may ever take a failed node as parent."""
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.9, metrics={"compression_ratio": 0.5})
    s.add(a, {"optimizer.lr": 2e-4}, status="crashed")
    s.add(a, {"optimizer.lr": 5e-5}, status="failed")
    v = s.view()
    assert v.ucb[0].status != "ok", "the scenario needs a failed node on top of the UCB list"
    p = policy(min_compression=1.0)
    ranked = p._ranked_parents(v)
    statuses = [v.node(i).status for i in ranked]
    assert statuses == sorted(statuses, key=lambda st: st != "ok")  # every ok node before any failed one
    assert p._ranked_parents(v, failed=False) == [a]
    for _ in range(5):
        v = s.view()
        for role in ("auto", "exploit"):
            prop = one(v, policy(min_compression=1.0), role=role)
            assert prop.parent_id is None or v.node(prop.parent_id).is_ok, (role, prop)
        s.add(prop.parent_id, prop.overrides, status="crashed", strategy=prop.strategy)


def test_exploit_from_root_when_every_node_failed(tmp_path):
    s = SyntheticStudy(tmp_path)
    s.add(None, status="crashed")
    s.add(None, {"model.hidden_dim": 128}, status="timeout", strategy="explore")
    prop = one(s.view(), role="exploit")
    assert prop.parent_id is None and prop.strategy == "exploit"


def test_explore_parent_is_outside_the_chain_it_names(tmp_path):
    """The explore rationale names the recent chain (the newest node and its ancestors). Its parent is outside that
    chain, or, when every node of the block is on it, the rationale says so instead of claiming "outside"."""
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.9)
    s.add(a, {"model.hidden_dim": 512}, r2=0.92)  # one line: 1 -> 2
    p = one(s.view(), role="explore")
    assert p.strategy == "explore" and p.parent_id in (1, 2)
    assert "select outside" not in p.rationale
    assert p.rationale.startswith("every node of the block is on the recent chain (nodes 1, 2): branch from the "
                                  "least-visited node")
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.91)  # node 3, child of 1: the chain is now 1 -> 3
    p = one(s.view(), role="explore")
    chain = {int(x) for x in re.search(r"recent chain \(nodes ([\d, ]+)\)", p.rationale).group(1).split(", ")}
    assert p.rationale.startswith("select outside the recent chain") and chain == {1, 3}
    assert p.parent_id == 2
