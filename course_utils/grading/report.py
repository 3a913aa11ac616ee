"""What `course-grade` writes about the whole class after grading: written answers, similarity, summary.

Reads the submissions again in the grader's process as text only (no code is run): the entries are
read as grading read them (never following links; colliding ids skipped) and parsed as notebooks.
Written answers are stored in OUT (`record_answers`, before grading), so the pages cover every
student of grades.csv across runs into the same OUT; similarity compares this run's folder only.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import nbformat

from course_utils.grading import similarity, summary, written
from course_utils.grading.generate import EXERCISES_DIR
from course_utils.grading.regrade import student_key


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


def record_answers(out: Path, submissions: Path, master: Path) -> None:
    """Store the written answers of the folder's students in OUT/written/answers.json, replacing theirs."""  # fmt: skip
    questions = written.written_questions(master)
    folder = {student_key(unicodedata.normalize("NFC", Path(n).stem)) for n in os.listdir(submissions)}  # fmt: skip
    stored = {s: a for s, a in written.read_answers(out).items() if student_key(s) not in folder}
    new = {s: written.answers(nb, questions) for s, nb in notebooks(submissions).items()}
    written.write_answers(out, stored | new)


def write_class_reports(
    exercise: str,
    submissions: Path,
    out: Path,
    master: Path,
    *,
    template: Path | None = None,
) -> str:
    """OUT/written/ (every student of grades.csv), OUT/similarity.csv (this folder), OUT/summary.csv and .png; the summary table."""  # fmt: skip
    _, rows = written.read_grades(out)
    graded = {student_key(r["student"]) for r in rows}
    answers = {s: a for s, a in written.read_answers(out).items() if student_key(s) in graded}
    written.write_pages(out, exercise, written.written_questions(master), answers)
    books = notebooks(submissions)
    blank = nbformat.read(template or EXERCISES_DIR / f"{exercise}.ipynb", as_version=4)
    master_nb = nbformat.read(master, as_version=4)
    matches = similarity.similar({s: code(nb) for s, nb in books.items()}, code(blank), code(master_nb))  # fmt: skip
    similarity.write(out, matches)
    table = summary.write(out)
    note = f"{len(matches)} similar pairs or master matches listed in {out / 'similarity.csv'} (review them; not a penalty)"  # fmt: skip
    return f"{table}\n{note}"
