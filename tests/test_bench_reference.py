"""`python -m mpm_inr.bench reference`: the reference recipe run to its documented steps, alone."""

from __future__ import annotations

import json

import pytest

from mpm_inr.bench import reference_bench
from mpm_inr.bench.__main__ import main
from mpm_inr.bench.reference_recipe import ReferenceRecipe


def _tiny(total_steps: int) -> ReferenceRecipe:
    return ReferenceRecipe("F tiny", 16, 1, 12.0, 5e-5, total_steps, True, None, "a test's recipe")


def test_runs_every_documented_step_and_says_it_never_got_there(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(reference_bench, "REFERENCE_RECIPES", {"F": (_tiny(30),)})
    s = reference_bench.ReferenceSettings(fields=["F"], scenario="discs_small", device="cpu", frames=10,
                                          root=str(data_root), check_every=7)
    results = reference_bench.run(s, str(tmp_path))
    saved = json.loads((tmp_path / "reference_bench.json").read_text())
    (r,) = saved["recipes"]
    assert saved["cap_s"] is None and r["time_cap_s"] is None  # no cap: the documented steps decide alone
    assert r["steps"] == 31 and r["ended_by"] == "all steps"  # its loop is range(total_steps + 1)
    assert not r["reached"] and r["r2"] < 0.995  # 16 wide, 31 steps at lr 5e-5: nowhere near
    assert r["steps_per_s"] == pytest.approx(r["steps"] / r["seconds"])
    assert [step for step, *_ in r["trace"]] == [7, 14, 21, 28, 31]  # checks every 7, and at the end
    table = (tmp_path / "reference_bench.md").read_text()
    assert table == reference_bench.markdown(results)
    assert f"| never: all 30 documented steps ended at R² {r['r2']:.4g} | 31 |" in table
    made = json.loads((data_root / "discs_small_seed0" / "meta.json").read_text())["fingerprint"]["sha256"]
    assert saved["dataset"] == made and f"`{made[:16]}`" in table


def test_a_cap_ends_a_recipe_before_its_steps(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(reference_bench, "REFERENCE_RECIPES", {"F": (_tiny(10**9),)})
    s = reference_bench.ReferenceSettings(fields=["F"], scenario="discs_small", device="cpu", frames=10,
                                          root=str(data_root), cap_s=0.3)
    (r,) = reference_bench.run(s, str(tmp_path))["recipes"]
    assert r["ended_by"] == "cap" and 0 < r["steps"] < 10**9
    assert f"not within the 0.3-s cap ({r['steps']:,} of 1,000,000,000 steps)" in reference_bench.markdown(
        {**json.loads((tmp_path / "reference_bench.json").read_text())})


def test_time_to_target_is_the_training_time_and_step():
    reached = {"reached": True, "seconds": 12.34, "steps": 4200}
    assert reference_bench._outcome(reached, 0.995) == "12.3 s (step 4,200)"


@pytest.mark.parametrize("args, message", [
    (["--fields", "F,X"], "--fields F,X: choose from"),
    (["--cap", "0"], "--cap 0.0 must be a positive number of seconds"),
    (["--check-every", "0"], "--check-every 0 must be at least 1"),
    (["--target", "1.5"], "--target 1.5 must lie in (0, 1)"),
])
def test_cli_rejects_bad_settings_in_one_line(capsys, args, message):
    assert main(["reference", "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
