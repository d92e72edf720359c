"""R² judged on the nines scale, −log10(1 − R²), and results read against the same-size SVD."""

from __future__ import annotations

import math

import pytest
from fakeapp import SyntheticStudy

from agent.policies.heuristic import HeuristicPolicy, Settings
from agent.reporting.render import analysis_text
from agent.study.describe import describe_result
from agent.study.stats import beaten_by, block_stats, effects, nines


def test_nines_tells_high_r2_apart_and_keeps_its_sign():
    assert nines(0.999) == pytest.approx(3.0) and nines(0.9) == pytest.approx(1.0)
    assert nines(0.99999) - nines(0.9995) == pytest.approx(math.log10(50))  # 1.7 nines, where ΔR² is 5e-4
    assert nines(1.0) == 12.0 and nines(1.0 + 1e-15) == 12.0  # rounding above 1 is a perfect fit, not more
    assert nines(-1.0) == pytest.approx(-math.log10(2.0))


@pytest.mark.parametrize("r2s, plateau", [
    ((0.95, 0.97, 0.99), False),           # within ±0.05 in R², but 1 − R² shrank 5×: progress, not a plateau
    ((0.99950, 0.99951, 0.99952), True),
    ((0.9995, 0.99999, 0.9999), False),    # identical to four decimals, 50× apart in residual
])
def test_plateau_is_measured_in_nines(tmp_path, r2s, plateau):
    s = SyntheticStudy(tmp_path)
    n = None
    for i, r2 in enumerate(r2s):
        n = s.add(n, {"optimizer.lr": 1e-4 * 2 ** i}, r2=r2)
    assert block_stats(s.view().block_nodes).plateau is plateau


def test_effects_count_small_steps_near_one(tmp_path):
    """0.9995 -> 0.99995 is a ten-fold smaller residual: an improvement, not 'no effect' because ΔR² is 4.5e-4."""
    s = SyntheticStudy(tmp_path)
    a = s.add(None, r2=0.9995)
    s.add(a, {"train.total_steps": 4000}, r2=0.99995)
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.99951)  # 1 % of the residual: no effect
    by_param = {e.param: e for e in effects(s.view().block_nodes)}
    assert by_param["train.total_steps"].signs == {1}
    assert by_param["train.total_steps"].mean == pytest.approx(1.0)
    assert by_param["optimizer.lr"].signs == {0}
    assert "mean +1.00 nines" in by_param["train.total_steps"].statement()


def test_beaten_by_the_same_size_svd_reaches_memory_and_summaries(tmp_path):
    s = SyntheticStudy(tmp_path, n_iter_block=2)
    a = s.add(None, r2=0.999509, metrics={"svd_r2_same_params": 0.999996})
    s.add(a, {"optimizer.lr": 2e-4}, r2=0.99, metrics={"svd_r2_same_params": 0.95})
    v = s.view()
    node = v.node(a)
    assert beaten_by(node.metrics) == "beaten by the same-size SVD (R² 0.999996, 2.09 nines better)"
    assert beaten_by({"final_r2": 0.99, "svd_r2_same_params": 0.95}) is None
    assert beaten_by({"final_r2": 0.99}) is None  # runs recorded before the same-size SVD: nothing claimed
    both = {"final_r2": 0.99, "svd_r2_same_params": 0.95, "svd_r2_same_bytes": 0.98, "sz3_r2_same_bytes": 0.999,
            "zfp_r2_same_bytes": 0.9}
    assert beaten_by(both) == "beaten by SZ3 at the same size (R² 0.999000, 1.00 nines better)"
    assert beaten_by({**both, "svd_r2_same_bytes": 0.9999}).startswith("beaten by the same-size SVD (R² 0.999900")
    assert "beaten by the same-size SVD" in describe_result(node, None)
    d = HeuristicPolicy(Settings()).end_block(v)
    assert "Best R² 0.999509" in d.summary and "beaten by the same-size SVD (R² 0.999996" in d.summary
    s.end_block({"next_field": d.next_field, "next_n_training_frames": d.next_n_training_frames,
                 "instruction_edits": d.instruction_edits, "summary": d.summary},
                stats=block_stats(v.block_nodes).to_dict())
    analysis = analysis_text(s.dir, s.state())
    assert "Baseline: beaten by the same-size SVD (R² 0.999996" in analysis
    assert "best_r2=0.999509" in analysis  # six decimals: not the '1' that three significant digits printed
