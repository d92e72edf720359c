"""`python -m mpm_inr.bench train` on a tiny window: every part runs and its tables agree with its JSON."""

from __future__ import annotations

import json

import pytest

from mpm_inr.bench.__main__ import main
from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.train_bench import BenchSettings, markdown, run


def test_bench_parts_and_tables(data_root, tmp_path):
    s = BenchSettings(fields=["Jp"], scenario="discs_small", device="cpu", seeds=[0], frames=20, root=str(data_root),
                      ref_cap_s=0.5, holdout_every=4, eulerian=["siren_txy"], eulerian_cap_s=0.5)
    results = run(s, str(tmp_path))
    saved = json.loads((tmp_path / "train_bench.json").read_text())
    assert saved["seeds"] == [0] and saved["frames"] == 20
    speed, sweep, held = saved["speed"][0], saved["seed_sweep"][0], saved["holdout"][0]
    (ref,) = speed["reference"]  # Jp has one documented reference recipe
    assert speed["ours"]["status"] == "ok" and ref["time_cap_s"] == 0.5 and ref["recipe"] == "Jp"
    assert ref["steps"] > 0 and speed["svd"]["rank_for_target"] >= 1
    # the cap is checked every step, not every 200 steps: it overshoots by at most about one step (no wall-clock bound,
    # which a busy machine would break)
    assert ref["seconds"] - 0.5 <= 3 * ref["seconds"] / ref["steps"]
    assert ref["sine_layers"] == ref["n_layers_nnr_f"] + 1 and ref["params"] == 790_529  # 512 wide, 3 + 1 sine layers
    assert ref["pearson_r2"] >= ref["r2"]  # Pearson r² forgives gain and offset errors, never the reverse
    # The reference is capped well below its need: it stops at the cap, so its speed-up is a lower bound.
    assert ref["ended_by"] == "cap" and not ref["reached"]
    if speed["ours"]["reached"]:
        assert ref["speedup_is_lower_bound"]
        assert ref["speedup"] == pytest.approx(ref["seconds"] / speed["ours"]["training_time_s"])
    assert [r["seed"] for r in sweep["runs"]] == [0]
    assert sweep["median"]["final_r2"] == pytest.approx(sweep["runs"][0]["final_r2"])
    assert held["holdout_every"] == 4 and held["best_eulerian"] == "siren_txy"
    planned = compose_train_config(["inr_type=siren_txy", "field=Jp"])["train"]["total_steps"]
    assert held["eulerian"][0]["steps"] < planned  # the time cap, not the step count, ended it
    for key in ("holdout_r2_linear", "holdout_r2_cubic", "train_r2"):
        assert -1.0 < held["svd"][key] <= 1.0
    table = (tmp_path / "train_bench.md").read_text()
    assert table == markdown(results)
    for heading in ("## Speed", "## Reference recipe", "## Default recipe on every seed", "## Held-out frames"):
        assert heading in table
    row = next(line for line in table.splitlines() if line.startswith("| Jp | Jp |"))
    assert f"| 512 × 4 (3) | 790,529 | 7.5 | 4e-05, 200,000, cosine | {ref['steps']} |" in row
    assert f"| {ref['r2']:.4g} | {ref['pearson_r2']:.4g} |" in row  # true R² and the reference's own score
    if ref["speedup_is_lower_bound"]:
        assert (f"> {ref['speedup']:.0f}× (cap ÷ ours, a lower bound; the reference was at R² {ref['r2']:.4g} "
                f"(Pearson {ref['pearson_r2']:.4g}) after {ref['steps']} steps) |") in row
    assert f"{held['ours']['holdout_r2']:.5f}" in table
    same = sweep["runs"][0]["svd_r2_same_params"]  # the SVD with no more numbers than our model
    assert -1.0 < same <= 1.0 and f"| {same:.5f} |" in table
    made = json.loads((data_root / "discs_small_seed0" / "meta.json").read_text())["fingerprint"]["sha256"]
    assert saved["datasets"] == {"0": made} and f"seed 0 `{made[:16]}`" in table  # which bytes were measured


def test_bench_cli_rejects_unknown_eulerian_type(capsys):
    with pytest.raises(SystemExit) as err:
        main(["train", "--eulerian", "siren_xyz", "--device", "cpu"])
    assert err.value.code == 2
    assert "unknown Eulerian type" in capsys.readouterr().err
