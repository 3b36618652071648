"""Helpers for the tests that execute notebooks with papermill."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"


def run_notebook(notebook: Path, out: Path, **parameters) -> nbformat.NotebookNode:
    """Execute ``notebook`` into ``out`` from the repository root, as the reproduce runner does."""
    papermill = pytest.importorskip("papermill")
    from tal_kit.kernels import kernel_manager_class

    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(REPO), kernel_manager_class=kernel_manager_class())
    return nbformat.read(str(out), as_version=4)


def shown_images(nb: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook displayed (a figure that is saved but not shown counts 0)."""
    return sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))


def output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook printed or displayed as text or markdown."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)
