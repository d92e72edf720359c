"""The notebooks run end to end through papermill (their first cell is tagged `parameters`, so another study or
dataset is passed without editing the notebook) and are committed without outputs."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import nbformat
import papermill
import pytest
from test_report_helpers import FIXTURE

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def execute(name: str, out_dir: Path, **parameters: object) -> nbformat.NotebookNode:
    """Run a notebook as a user would with `papermill NB OUT -p KEY VALUE`; raises PapermillExecutionError on any
    error. papermill injects the values in a cell after the one tagged `parameters`, so a notebook whose tag is
    missing would run on its defaults: the injected cell is checked to follow the parameter cell."""
    out = out_dir / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=240)
    nb = nbformat.read(out, as_version=4)
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    assert "injected-parameters" in nb.cells[1].metadata.get("tags", [])
    return nb


@pytest.mark.parametrize("name", ["landscape.ipynb", "fields.ipynb"])
def test_parameter_cell_is_tagged_for_papermill(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0] and nb.cells[0].cell_type == "code"
    assert papermill.inspect_notebook(str(NOTEBOOKS / name))  # papermill reads the names it may set


def images(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "image/png" in o.get("data", {})]


def text(nb: nbformat.NotebookNode) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") + "".join(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", ["landscape.ipynb", "fields.ipynb"])
def test_committed_notebooks_have_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"
    committed = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:notebooks/{name}"], capture_output=True,
                               text=True, check=False)
    if committed.returncode == 0:  # the version in git, not only the working copy
        for cell in nbformat.reads(committed.stdout, as_version=4).cells:
            assert cell.get("outputs", []) == []


def test_landscape_notebook_reproduces_the_report_figures(tmp_path):
    before = sorted(p.name for p in FIXTURE.iterdir())
    nb = execute("landscape.ipynb", tmp_path, STUDY=str(FIXTURE), DATA_ROOT=None)
    shown = images(nb)
    # Pareto per field, held-out per field, time model, tree (same functions as the report)
    from agent.reporting.report_data import load_study

    study = load_study(FIXTURE)
    n_fields = len(study.fields())
    assert len(shown) == 2 * n_fields + 2
    assert all(png[:8] == PNG_MAGIC and len(png) > 5000 for png in shown)
    out = text(nb)
    assert f"{study.name}: {len(study.runs)} runs" in out
    assert "| field | inr_type | frames | ok/runs |" in out and "time ≈" in out
    assert sorted(p.name for p in FIXTURE.iterdir()) == before  # the notebook only reads the study


def test_fields_notebook_shows_a_dataset(data_root, tmp_path):
    dataset = Path(data_root) / "discs_small_seed0"
    nb = execute("fields.ipynb", tmp_path, DATASET=str(dataset), N_TIMES=3, HIST_FIELD="F")
    shown = images(nb)
    assert len(shown) == 2 and all(png[:8] == PNG_MAGIC and len(png) > 10000 for png in shown)
    out = text(nb)
    assert "1000 frames x 900 particles" in out and "'xx'" in out and "'yy'" in out
