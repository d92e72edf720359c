"""The study-level W&B run, read back from its offline record: keys, values, tables, images and the report."""

from __future__ import annotations

import json

import pytest
from test_report_helpers import make_study, metrics

from agent.reporting import wandb_study
from agent.reporting.report_data import best_run, load_study
from agent.reporting.wandb_study import (
    BYTES_COLUMNS,
    JOURNAL_COLUMNS,
    flat_config,
    log_block_end,
    run_id,
)
from mpm_inr.errors import StudyError
from mpm_inr.wandb_offline import read_offline_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _study(tmp_path):
    b1 = [{"metrics": metrics("Jp", r2=0.9, time_s=5.0)},
          {"metrics": metrics("Jp", r2=0.97, time_s=7.0, hidden=128), "parent": 0,
           "changes": {"model.hidden_dim": [64, 128]}, "overrides": ["field=Jp", "data.n_training_frames=48",
                                                                    "model.hidden_dim=128"]},
          {"status": "failed", "error": "boom", "metrics": metrics("Jp"), "parent": 1}]
    b2 = [{"metrics": metrics("S", r2=0.8, time_s=9.0, fingerprint="c" * 64, codec_bytes=12_000,
                              baselines={"svd": ((30_000, 0.81), (12_000, 0.7)), "sz3": ((9_000, 0.805), None),
                                         "zfp": (None, (12_000, 0.6))})},
          {"metrics": metrics("S", r2=0.85, time_s=4.0), "parent": 0}]
    cfg = {"name": "wb", "policy": {"name": "claude", "api_key": "sk-secret-123", "model": "m"},
           "agent": {"min_compression": 1.0}, "n_iter_block": 3}
    return make_study(tmp_path / "wb", [b1, b2], name="wb", config=cfg)


def test_flat_config_drops_secrets():
    flat = flat_config({"policy": {"name": "claude", "api_key": "x", "auth": {"token": "y"}}, "n": 1})
    assert flat == {"policy.name": "claude", "n": 1}


def test_block_end_run_logs_journal_plots_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    d = _study(tmp_path)
    first = log_block_end(d, 1)
    assert first is not None and first.is_dir()
    assert not (d / "report.md").exists()  # block 1 is not the latest ended block: no report file from it
    run_dir = log_block_end(d, 2)
    assert "Landscape report: wb" in (d / "report.html").read_text() and (d / "report.md").exists()
    # the block-2 run supersedes the block-1 copy: exactly one offline record of the study run remains
    assert run_dir is not None and not first.exists()
    assert [p.name for p in (d / "wandb").glob("offline-run-*")] == [run_dir.name]
    run = read_offline_run(run_dir)
    study = load_study(d)
    assert run.run_id == run_id(study) and run.group == "wb" and run.job_type == "study" and run.finished
    assert "study" in run.tags and "policy_claude" in run.tags
    assert run.config["policy.name"] == "claude" and run.config["n_iter_block"] == 3
    assert "sk-secret-123" not in json.dumps(run.config) and not any("key" in k for k in run.config)

    rows = {row["_step"]: row for row in run.history}
    assert sorted(rows) == [1, 2]
    for b, n_runs in ((1, 3), (2, 2)):
        row = rows[b]
        runs = [r for r in study.runs if r.block == b]
        best = best_run(runs)
        assert row["block"] == b and row["block/n_runs"] == n_runs
        assert row["block/best_r2"] == pytest.approx(best.r2) and row["block/best_node"] == best.node_id
        assert row["block/best_training_time"] == pytest.approx(best.time)
        assert row["block/n_failed"] == (1 if b == 1 else 0)
        # the journal snapshot of that block end, as a wandb.Table file
        assert row["journal/_type"] == "table-file"
        table = json.loads((run_dir / "files" / row["journal/path"]).read_text())
        assert table["columns"] == JOURNAL_COLUMNS
        snap_ids = [r[0] for r in table["data"]]
        assert snap_ids == [r.node_id for r in study.runs if r.block <= b]
        r2_col = JOURNAL_COLUMNS.index("final_r2")
        for rec in table["data"]:
            r = next(x for x in study.runs if x.node_id == rec[0])
            assert rec[r2_col] == (pytest.approx(r.r2) if r.r2 is not None else None)
            assert rec[JOURNAL_COLUMNS.index("status")] == r.status
            assert rec[JOURNAL_COLUMNS.index("data_fingerprint")] == ("c" * 16 if r.node_id == 4 else None)
            # the run's bytes and its window's baselines, as metrics.json has them (null before them)
            flat = {c: rec[JOURNAL_COLUMNS.index(c)] for c in BYTES_COLUMNS}
            if r.node_id == 4:
                raw = r.metrics["baselines"]["raw_bytes"]
                assert flat == pytest.approx({"model_bytes": 12_000, "codec_ratio": raw / 12_000,
                                              "svd_ratio_same_r2": raw / 30_000, "sz3_ratio_same_r2": raw / 9_000,
                                              "zfp_ratio_same_r2": None, "svd_r2_same_bytes": 0.7,
                                              "sz3_r2_same_bytes": None, "zfp_r2_same_bytes": 0.6})
            else:
                assert set(flat.values()) == {None}
        for key in ["tree"] + [f"pareto/{f}" for f in {r.field for r in study.runs if r.block <= b}]:
            assert row[f"{key}/_type"] == "image-file", key
            png = (run_dir / "files" / row[f"{key}/path"]).read_bytes()
            assert png[:8] == PNG_MAGIC and len(png) > 5000
    assert "pareto/S" not in {k.rsplit("/", 1)[0] for k in rows[1]}
    # the report, as of the last block end, in the last row only
    assert "report/_type" not in rows[1] and rows[2]["report/_type"] == "html-file"
    page = (run_dir / "files" / rows[2]["report/path"]).read_text()
    assert "Landscape report: wb" in page and page.count("data:image/png;base64,") >= 3
    assert run.summary["study/best_r2/Jp"] == pytest.approx(0.97)
    assert run.summary["study/best_r2/S"] == pytest.approx(0.85) and run.summary["last_block"] == 2


def test_past_block_figures_are_drawn_once(tmp_path, monkeypatch):
    """Every call rewrites the offline run from block 1; a past block's PNGs come from the study's cache."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    d = _study(tmp_path)
    drawn = []
    real = wandb_study.block_figures
    monkeypatch.setattr(wandb_study, "block_figures",
                        lambda study, ready=None: drawn.append(max(r.block for r in study.runs)) or real(study, ready))
    log_block_end(d, 1)
    log_block_end(d, 2)
    run_dir = log_block_end(d, 2)
    assert drawn == [1, 2]  # block 1 drawn at its end, block 2 at its own; the third call draws nothing
    rows = {row["_step"]: row for row in read_offline_run(run_dir).history}
    cached = next((d / wandb_study.FIGURE_CACHE).glob("b0001_*")) / "tree.png"
    assert (run_dir / "files" / rows[1]["tree/path"]).read_bytes() == cached.read_bytes()
    (cached.parent / "names.json").unlink()  # an entry a kill left half written is drawn again
    log_block_end(d, 2)
    assert drawn == [1, 2, 1]


def test_disabled_and_unfinished_blocks(tmp_path, monkeypatch):
    d = _study(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert log_block_end(d, 1) is None and not (d / "wandb").exists()
    with pytest.raises(StudyError, match="block 3 .* has not ended"):
        log_block_end(d, 3)
