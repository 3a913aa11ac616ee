"""What `course-grade` writes about the whole class after grading: written answers, similarity, summary.

Reads the submissions again in the grader's process as text only (no code is run): the entries are
read as grading read them (never following links; colliding ids skipped) and parsed as notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from course_utils.grading import similarity, summary, written
from course_utils.grading.generate import EXERCISES_DIR


def notebooks(submissions: Path) -> dict[str, nbformat.NotebookNode]:
    """Student id -> parsed notebook, for every entry that grading could read as a notebook."""
    from course_utils.grading.grade import read_entry, student_ids

    found = {}
    for name, student in student_ids(sorted(os.listdir(submissions))).items():
        if student is None:
            continue
        data, _ = read_entry(submissions, name)
        if data is None:
            continue
        try:
            found[student] = nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception:  # not a notebook: its row says so already
            continue
    return found


def code(nb: nbformat.NotebookNode) -> list[str]:
    """The code cells' sources of a notebook."""
    return [c.source for c in nb.cells if c.cell_type == "code" and isinstance(c.source, str)]


def write_class_reports(
    exercise: str,
    submissions: Path,
    out: Path,
    master: Path,
    *,
    template: Path | None = None,
) -> str:
    """OUT/written/, OUT/similarity.csv, OUT/summary.csv and .png; the summary table as text."""
    books = notebooks(submissions)
    questions = written.written_questions(master)
    written.write_pages(
        out, exercise, questions, {s: written.answers(nb, questions) for s, nb in books.items()}
    )
    blank = nbformat.read(template or EXERCISES_DIR / f"{exercise}.ipynb", as_version=4)
    master_nb = nbformat.read(master, as_version=4)
    matches = similarity.similar({s: code(nb) for s, nb in books.items()}, code(blank), code(master_nb))  # fmt: skip
    similarity.write(out, matches)
    table = summary.write(out)
    note = f"{len(matches)} similar pairs or master matches listed in {out / 'similarity.csv'} (review them; not a penalty)"  # fmt: skip
    return f"{table}\n{note}"
