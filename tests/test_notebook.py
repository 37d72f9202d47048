"""The example notebook runs, top to bottom, on the quickstart's output in a real Jupyter kernel (nbclient), so it
cannot rot: every cell executes, the plots come out as images, and the numbers it prints are the run's."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO
from pipeline import inspect

pytestmark = pytest.mark.slow

NOTEBOOK = REPO / "notebooks" / "inspect_run.ipynb"


def test_the_example_notebook_executes_on_the_quickstart_run(quickstart_run, tmp_path, monkeypatch):
    output, _ = quickstart_run
    monkeypatch.setenv("CCPIPELINE_RUN", str(output))  # the kernel inherits the environment
    monkeypatch.setenv("CCPIPELINE_REPORT", str(tmp_path / "report.html"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 9  # funnel, three signal grids, languages, domains, clusters, shards, training
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    summary = inspect.load_run(output).summary
    assert f"{summary['records_read']:,} records read, {summary['documents']:,} documents kept" in printed
    assert (tmp_path / "report.html").read_text().count("<img class='plot'") > 10
