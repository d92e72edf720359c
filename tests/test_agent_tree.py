"""UCB1 on hand-built trees: visits, N, rewards of failed / low-compression nodes, file format, block reset."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest
from fakeapp import SyntheticStudy

from agent.reporting.render import ucb_text
from agent.study.tree import format_r2, format_scores, reward, scores, visits


@dataclass
class N:
    node_id: int
    parent_id: int | None
    status: str = "ok"
    metrics: dict = field(default_factory=dict)


def ok(i, p, r2, **m):
    return N(i, p, "ok", {"final_r2": r2, "compression_ratio": 50.0, "slope": 1.0, "training_time": 60.0, **m})


def by_id(items):
    return {s.node_id: s for s in items}


def test_single_node_has_no_bonus():
    (s,) = scores([ok(1, None, 0.9)], c=1.414)
    assert s.visits == 1 and s.ucb == pytest.approx(0.9)  # ln(1) = 0


def test_chain_visits_and_ucb1_formula():
    nodes = [ok(1, None, 0.90), ok(2, 1, 0.95), ok(3, 2, 0.99)]
    assert visits(nodes) == {1: 3, 2: 2, 3: 1}
    c = 1.5
    s = by_id(scores(nodes, c))
    ln_n = math.log(3)
    assert s[1].ucb == pytest.approx(0.90 + c * math.sqrt(ln_n / 3))
    assert s[2].ucb == pytest.approx(0.95 + c * math.sqrt(ln_n / 2))
    assert s[3].ucb == pytest.approx(0.99 + c * math.sqrt(ln_n / 1))


def test_branching_tree_counts_descendants():
    #      1
    #    /   \
    #   2     3
    #   |     |
    #   4     5
    #   |
    #   6
    nodes = [ok(1, None, 0.5), ok(2, 1, 0.6), ok(3, 1, 0.7), ok(4, 2, 0.8), ok(5, 3, 0.9), ok(6, 4, 0.95)]
    assert visits(nodes) == {1: 6, 2: 3, 3: 2, 4: 2, 5: 1, 6: 1}
    s = by_id(scores(nodes, c=1.0))
    assert s[4].ucb == pytest.approx(0.8 + math.sqrt(math.log(6) / 2))
    ranked = [x.node_id for x in scores(nodes, c=1.0)]
    assert ranked[0] == 6  # leaf with the best R²
    assert ranked == sorted(ranked, key=lambda i: -s[i].ucb)


def test_c_zero_is_pure_exploitation():
    nodes = [ok(1, None, 0.5), ok(2, 1, 0.97), ok(3, 1, 0.6)]
    assert [x.node_id for x in scores(nodes, c=0.0)] == [2, 3, 1]


def test_failed_nodes_score_zero_reward_but_still_count_as_visits():
    nodes = [ok(1, None, 0.9), N(2, 1, "diverged", {"error": "nan"}), N(3, 1, "timeout"), N(4, 1, "crashed")]
    s = by_id(scores(nodes, c=1.0))
    assert [s[i].reward for i in (2, 3, 4)] == [0.0, 0.0, 0.0]
    assert s[1].visits == 4
    assert s[2].ucb == pytest.approx(math.sqrt(math.log(4)))
    assert s[2].r2 is None


def test_reward_clips_and_penalises_low_compression():
    assert reward(ok(1, None, -3.0)) == 0.0
    assert reward(ok(1, None, 1.2)) == 1.0
    assert reward(ok(1, None, 0.99, compression_ratio=0.5)) == 0.0
    assert reward(ok(1, None, 0.99, compression_ratio=0.5), min_compression=0.1) == pytest.approx(0.99)
    assert reward(N(1, None, "ok", {"final_r2": float("nan")})) == 0.0


@pytest.mark.parametrize("bad", [
    [ok(1, None, 0.9), ok(2, 3, 0.9), ok(3, 1, 0.9)],   # parent after child
    [ok(1, None, 0.9), ok(2, 7, 0.9)],                   # parent not in the tree (e.g. another block)
    [ok(1, 1, 0.9)],                                     # self-parent
])
def test_invalid_trees_are_rejected_so_cycles_cannot_exist(bad):
    with pytest.raises(ValueError):
        visits(bad)


def test_format_matches_seed_line_and_digits():
    nodes = [ok(1, None, 0.9995), ok(2, 1, 0.99995)]
    text = format_scores(scores(nodes, 1.414), block=2, first_iteration=13, last_iteration=24, c=1.414)
    lines = [ln for ln in text.splitlines() if ln.startswith("Node ")]
    pat = re.compile(r"^Node \d+: UCB=\d+\.\d{4}, parent=(root|\d+), visits=\d+, R2=-?\d\.\d{6}, slope=\S+, "
                     r"time=\S+min")
    assert all(pat.match(ln) for ln in lines), lines
    assert "R2=0.999500" in text and "R2=0.999950" in text  # the reference printed 1.000 for both
    assert lines[0].startswith("Node 2:")  # sorted by UCB
    assert format_r2(0.9995) != format_r2(0.99995)


def test_empty_tree_gives_empty_file():
    assert format_scores([], block=1, first_iteration=1, last_iteration=12, c=1.0) == ""


def test_failed_line_is_marked():
    text = format_scores(scores([ok(1, None, 0.9), N(2, 1, "diverged")], 1.0), block=1, first_iteration=1,
                         last_iteration=4, c=1.0)
    assert "Node 2:" in text and "status=diverged" in text and "R2=nan" in text


def test_scores_reset_at_block_boundary(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=2)
    a = s.add(None, r2=0.9)
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.95)
    assert "Node 2:" in ucb_text(s.state())
    s.end_block()
    s.start_block("F", 100)
    assert ucb_text(s.state()) == ""  # new block, no node yet: parent=root
    s.add(None, r2=0.8)
    text = ucb_text(s.state())
    assert "Node 3: " in text and "parent=root" in text and "Node 1:" not in text and "Node 2:" not in text
