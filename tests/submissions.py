"""Submissions built from the exercises for the grading tests: solved, or with one answer replaced."""

from __future__ import annotations

import re

import nbformat

from course_utils.grading import generate as gen


def solved(name: str) -> nbformat.NotebookNode:
    """The student notebook with every answer cell replaced by the master's solution."""
    master = nbformat.read(gen.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
    nb = nbformat.read(gen.EXERCISES_DIR / f"{name}.ipynb", as_version=4)
    by_first_line = {
        c.source.split("\n")[0]: c.source for c in master.cells if c.cell_type == "code"
    }
    for cell in nb.cells:
        if cell.cell_type == "code" and "otter_answer_cell" in cell.metadata.get("tags", []):
            source = by_first_line[cell.source.split("\n")[0]]
            lines = [
                ln for ln in source.split("\n") if not re.match(r"\s*# (BEGIN|END) SOLUTION", ln)
            ]
            cell.source = re.sub(r"\s*# SOLUTION$", "", "\n".join(lines), flags=re.MULTILINE)
    return nb


def answered(nb: nbformat.NotebookNode, func: str, source: str) -> nbformat.NotebookNode:
    """`nb` with the answer cell defining `func` replaced by `source`."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(f"def {func}(")]
    cell.source = source
    return nb
