"""`python -m mpm_inr.bench train` on a tiny window: every part runs and its tables agree with its JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mpm_inr.bench.__main__ import main
from mpm_inr.bench.compose import compose_train_config
from mpm_inr.bench.compression_bench import RESTING_NOTE, SPLIT_NOTES
from mpm_inr.bench.compression_tables import ratio_text
from mpm_inr.bench.train_bench import BenchSettings, markdown, run


def test_bench_parts_and_tables(data_root, tmp_path):
    s = BenchSettings(fields=["Jp"], scenario="discs_small", device="cpu", seeds=[0], frames=20, root=str(data_root),
                      ref_cap_s=0.5, holdout_every=4, eulerian=["siren_txy"], eulerian_cap_s=0.5, fixed_cost=False)
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
    run0 = sweep["runs"][0]  # wall ÷ fit per run: the in-process wall_time over the training time
    assert run0["wall_over_fit"] == pytest.approx(run0["wall_time_s"] / run0["training_time_s"])
    assert run0["wall_over_fit"] > 1
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
    _check_compression_table(saved, table)


def _cell(point: dict, extra: str = "") -> str:
    return f"{ratio_text(point['ratio'])} (R² {point['r2']:.5f}" + (f", {extra}" if extra else "") + ")"


def _check_compression_table(saved: dict, table: str) -> None:
    """Ours (float32, codec file) against the quantised SVD, SVD, SZ3 and ZFP at R² 0.995 and 0.999, and the
    held-out comparison of the window: the table is the JSON."""
    sweep = saved["seed_sweep"][0]
    assert "compression" not in sweep  # the seeds part's models are compared in the window's block
    blocks = {(b["window"], b["holdout_every"]): b for b in saved["compression"]}
    assert set(blocks) == {(20, 0), (20, 4)}  # the held-out row exists because the run holds frames out
    (comp,) = blocks[(20, 0)]["fields"]
    assert comp["field"] == "Jp" and comp["targets"] == [0.995, 0.999]
    (seed,) = comp["seeds"]
    c = seed["comparison"]
    raw = c["raw_bytes"]
    assert raw == 4 * 20 * 900  # float32 training frames of the 20-frame Jp window (one component, 900 particles)
    assert c["ours"]["ratio"] == pytest.approx(sweep["runs"][0]["compression_ratio"])  # 4 bytes per parameter
    assert c["ours"]["r2"] == sweep["runs"][0]["final_r2"] == seed["training"]["final_r2"]
    lines = table.split("### Field Jp", 2)[1].split("## Compression")[0].splitlines()
    rows = {tuple(cell.strip() for cell in line.strip("|").split(" | ")[:2]): line for line in lines
            if line.startswith("| ") and not line.startswith("| method")}
    assert rows[("ours, float32 parameters", "its own")].startswith(
        f"| ours, float32 parameters | its own | {_cell(c['ours'])} | {_cell({**c['ours'], 'seeds': 1})} |")
    for target in ("0.995", "0.999"):
        got = c["targets"][target]
        codec = got["codec"]
        assert codec["ratio"] == pytest.approx(raw / codec["bytes"])
        assert codec["target_met"] == (codec["r2"] >= float(target) - 1e-9)
        notes = ", ".join([*([] if codec["target_met"] else ["target missed"]),
                           *([RESTING_NOTE] if codec["centre"] == "rest" else []),
                           *([SPLIT_NOTES[codec["components"]]] if codec["components"] in SPLIT_NOTES else []),
                           f"slope {codec['slope']:.4f}", f"coded in {codec['coding_s']:.1f} s"])
        assert 0.99 <= codec["slope"] <= 1.01  # issue #19's bound, recomputed from the decoded file
        assert codec["components"] == "shared"  # one component: the model's layout is already each value alone
        assert codec["coding_s"] > 0 and codec["threads"] >= 1  # the file's encode + decode, timed
        assert f"| ours, codec file | {target} | {_cell(codec, notes)} | {_cell(codec)} |" in table
        for method, name in (("svd_q", "SVD, quantised + lzma (as our codec)"), ("svd", "SVD (centred, float32)"),
                             ("sz3", "SZ3"), ("zfp", "ZFP")):
            point = got[method]
            if point is None:
                assert f"| {name} | {target} | none reaches it | - |" in table
                continue
            assert point["r2"] >= float(target) and point["ratio"] == pytest.approx(raw / point["bytes"])
            assert f"| {name} | {target} | {_cell(point, point['setting'])} | {_cell(point)} |" in table
        svd = got["svd"]
        if svd is not None:  # float32 U_k, S_k, V_k and the mean: 4·(k·(T + N·C + 1) + C)
            rank = int(svd["setting"].removeprefix("rank "))
            assert svd["bytes"] == 4 * (rank * (20 + 900 + 1) + 1)
            # the same rank quantised and lzma-coded is smaller than its float32 numbers
            assert got["svd_q"] is not None and got["svd_q"]["bytes"] < svd["bytes"]
    lo, hi = c["targets"]["0.995"]["svd"], c["targets"]["0.999"]["svd"]
    if lo is not None and hi is not None:  # the SVD's R² grows with its rank: a stricter target, no fewer bytes
        assert hi["bytes"] >= lo["bytes"]
    (held,) = blocks[(20, 4)]["fields"]
    h = held["seeds"][0]["comparison"]
    assert h["holdout_every"] == 4 and h["holdout_frames"] == 5 and h["raw_bytes"] == 4 * 15 * 900
    for target in ("0.995", "0.999"):
        got = h["targets"][target]
        for method in ("svd", "sz3", "zfp"):  # matched size: within the codec file's bytes
            assert got[method] is None or got[method]["bytes"] <= got["codec"]["bytes"]
        assert -1.0 < got["codec"]["holdout_r2"] <= 1.0 and math.isfinite(got["codec"]["holdout_slope"])
    goal_rows = table.split("## Goal", 1)[1].split("\n## ", 1)[0]
    assert "| 20 frames | 0.995: " in goal_rows and "| 20 frames, held-out (every 4th frame) | 0.995: " in goal_rows
    assert "Slope of the decoded values on the truth within [0.99, 1.01] for every file: " in goal_rows


def test_bench_cli_rejects_unknown_eulerian_type(capsys):
    assert main(["train", "--eulerian", "siren_xyz", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown Eulerian type") and err.count("\n") == 1  # one line, no usage dump
    assert main(["train", "--only-compression", "--only-fixed-cost", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "error: --only-compression and --only-fixed-cost exclude each other\n"


@pytest.mark.slow  # four train.py processes: about 30 s on the 2-core VM
def test_fixed_cost_reports_wall_over_fit_of_one_run_and_of_a_multirun_s_jobs(tiny_train_overrides):
    """Part 4 of the bench: whole train.py commands, one run on a cold and then a warm window, two handed to a
    warm server, and a 2-job --multirun, each with its wall ÷ fit; the dataset's own folder gets no cache file."""
    from mpm_inr.bench import fixed_cost

    base = [o for o in tiny_train_overrides if not o.startswith("logger=")] + ["logger=none", "inr_type=lagrangian"]
    root = next(Path(o.split("=", 1)[1]) for o in base if o.startswith("data.root="))
    cached_before = sorted((root / "discs_small_seed0").glob("baselines/*"))
    row = fixed_cost.fixed_cost("Jp", base, jobs=2)
    one, cold, many = row["single"], row["single_cold"], row["multirun"]
    assert sorted((root / "discs_small_seed0").glob("baselines/*")) == cached_before
    assert cold["final_r2"] == one["final_r2"] and cold["cpu_threads"] == one["cpu_threads"] >= 1
    assert one["baseline_compressions"] == 0  # the warm window: its tables came from the cold run's cache
    assert one["wall_over_fit"] == pytest.approx(one["wall_time_s"] / one["fit_s"]) and one["wall_over_fit"] > 1
    assert one["command_wall_s"] > one["wall_time_s"]  # the interpreter's start and imports come on top
    assert len(many["jobs"]) == 2 and many["later_wall_over_fit_median"] == many["jobs"][1]["wall_over_fit"]
    assert many["jobs"][0]["final_r2"] == one["final_r2"]  # seed 0 of the multirun is the single run
    warm = row["warm_server"]["runs"]  # handed to the bench's own warm server: its imports are not paid again
    assert [r["final_r2"] for r in warm] == [one["final_r2"]] * 2
    assert all(r["command_wall_s"] < one["command_wall_s"] for r in warm)
    sized = row["warm_server"]["one_second"]  # the same command sized for a one-second fit
    sizing = sized["sizing_run"]  # sized from the first run, then from a run of those steps
    assert sizing["steps"] == max(1, round(warm[0]["steps"] * fixed_cost.ONE_SECOND_S / warm[0]["fit_s"]))
    assert sized["total_steps"] == max(1, round(sizing["steps"] * fixed_cost.ONE_SECOND_S / sizing["fit_s"]))
    assert [r["steps"] for r in sized["runs"]] == [sized["total_steps"]] * 2
    tabled = row["warm_server"]["one_second_tabled"]  # again, on the window's full tables: no compression
    assert [r["steps"] for r in tabled["runs"]] == [sized["total_steps"]] * 2 and tabled["tables_s"] > 0
    assert [r["baseline_compressions"] for r in tabled["runs"]] == [0, 0]
    assert len({r["final_r2"] for r in (*sized["runs"], *tabled["runs"])}) == 3  # seeds 0, 1, 2: their own R²s
    table = fixed_cost.markdown([row])
    row_line = next(line for line in table if line.startswith("| Jp | ") and "**" not in line)
    assert "wall ÷ fit" in "\n".join(table) and row_line.startswith(f"| Jp | {one['cpu_threads']} | {one['fit_s']:.2f} |")
    assert table[-1].startswith(f"| Jp | {row['warm_server']['start_s']:.1f} | {warm[0]['fit_s']:.2f} |")
    assert table[-1].endswith(f"| {sized['total_steps']} | {'/'.join(format(r['fit_s'], '.2f') for r in sized['runs'])} "
                              f"| {'/'.join(format(r['command_wall_s'], '.2f') for r in sized['runs'])} "
                              f"| {'/'.join(str(r['baseline_compressions']) for r in sized['runs'])} "
                              f"| **{sized['command_over_fit_median']:.2f}** | {tabled['tables_s']:.1f} | "
                              f"{'/'.join(format(r['fit_s'], '.2f') for r in tabled['runs'])} "
                              f"| {'/'.join(format(r['command_wall_s'], '.2f') for r in tabled['runs'])} | 0/0 "
                              f"| **{tabled['command_over_fit_median']:.2f}** |")
