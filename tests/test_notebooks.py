"""The notebooks run end to end (nbclient, a kernel of this interpreter) and are committed without outputs."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from test_report_helpers import FIXTURE

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def execute(name: str, parameters: str) -> nbformat.NotebookNode:
    """Run a notebook with its first (parameter) cell replaced; raises CellExecutionError on any error."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.cells[0].cell_type == "code" and "=" in nb.cells[0].source
    nb.cells[0].source = parameters
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


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
    nb = execute("landscape.ipynb", f"STUDY = {str(FIXTURE)!r}\nDATA_ROOT = None")
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


def test_fields_notebook_shows_a_dataset(data_root):
    dataset = Path(data_root) / "discs_small_seed0"
    nb = execute("fields.ipynb", f"DATASET = {str(dataset)!r}\nN_TIMES = 3\nHIST_FIELD = 'F'")
    shown = images(nb)
    assert len(shown) == 2 and all(png[:8] == PNG_MAGIC and len(png) > 10000 for png in shown)
    out = text(nb)
    assert "1000 frames x 900 particles" in out and "'xx'" in out and "'yy'" in out
