"""`python -m agent report DIR` is a pure function of the journal and the runs' metrics.json: two renders give the
same bytes (report.md, report.html, every PNG) whatever the caller's matplotlib settings, and the report committed
beside docs/studies/study_tiny is exactly what the command writes today."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib
import pytest
from cycler import cycler
from test_report_helpers import FIXTURE, make_study, metrics

from agent.__main__ import main as agent_main
from agent.reporting.plots import PNG_METADATA

REGENERATE = "regenerate it: python -m agent report docs/studies/study_tiny"


def files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def png_text(png: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG (keyword -> text)."""
    out, i = {}, 8
    while i < len(png):
        (n,) = struct.unpack(">I", png[i:i + 4])
        kind, data = png[i + 4:i + 8], png[i + 8:i + 8 + n]
        if kind == b"tEXt":
            key, _, text = data.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        i += 12 + n
    return out


def test_two_renders_are_byte_identical_whatever_the_rcparams(tmp_path):
    b1 = [{"metrics": metrics("F", r2=0.99, time_s=3.0, holdout_every=4, holdout_r2=0.98)},
          {"metrics": metrics("F", r2=0.995, time_s=5.0, hidden=128, holdout_every=4, holdout_r2=0.99), "parent": 0,
           "overrides": ["field=F", "data.n_training_frames=48", "model.hidden_dim=128"],
           "changes": {"model.hidden_dim": [64, 128]}}]
    d = make_study(tmp_path / "s", [b1, [{"metrics": metrics("S", r2=0.9, time_s=4.0)}]])
    assert agent_main(["report", str(d), "--out", str(tmp_path / "a")]) == 0
    with matplotlib.rc_context({"lines.linewidth": 4.0, "font.size": 17.0, "figure.facecolor": "0.8",
                                "axes.prop_cycle": cycler(color=["k", "r"])}):
        assert agent_main(["report", str(d), "--out", str(tmp_path / "b")]) == 0
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert sorted(a) == sorted(b) and len(a) >= 6  # report.md, report.html and the figures
    assert [name for name in a if a[name] != b[name]] == []
    for name, data in a.items():
        if name.endswith(".png"):
            assert png_text(data) == PNG_METADATA, name  # no date, no host: only the drawing matplotlib


def test_committed_study_tiny_report_is_its_regeneration(tmp_path):
    out = tmp_path / "report"
    assert agent_main(["report", str(FIXTURE), "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == (FIXTURE / "report.md").read_text(), REGENERATE
    committed = {p.name: p.read_bytes() for p in sorted((FIXTURE / "report_files").glob("*.png"))}
    fresh = {p.name: p.read_bytes() for p in sorted((out / "report_files").glob("*.png"))}
    assert sorted(committed) == sorted(fresh), REGENERATE
    drawn_by = {png_text(png).get("Software") for png in committed.values()}
    if drawn_by != {PNG_METADATA["Software"]}:
        pytest.skip(f"the committed figures were drawn by {sorted(drawn_by)}, this is {PNG_METADATA['Software']}: "
                    "other matplotlib versions rasterise differently (report.md matched)")
    assert [name for name in committed if committed[name] != fresh[name]] == [], REGENERATE


LANDSCAPE = FIXTURE.parents[1] / "landscape"


def test_committed_landscape_report_is_its_regeneration(tmp_path):
    """docs/landscape (the reference study, issue #22): `python -m agent report docs/landscape` writes the committed
    report.md byte for byte from the committed journal and metrics."""
    out = tmp_path / "report"
    assert agent_main(["report", str(LANDSCAPE), "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == (LANDSCAPE / "report.md").read_text(), (
        "regenerate it: python -m agent report docs/landscape")
