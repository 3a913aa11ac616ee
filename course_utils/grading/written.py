"""Written (hand-graded) questions: the master's model answers, every student's answer, manual scores.

`written_questions(master)` reads the `manual: true` questions of a master (prompt, model answer and
rubric). `answers(nb, questions)` finds a submission's answer to each: the cells between otter's
`<!-- BEGIN QUESTION -->` and `<!-- END QUESTION -->` markers after the question's prompt.
`write_pages` gathers one question across the class in OUT/written/<question>.html (every text
escaped: answers are the students' own) with a score sheet OUT/written/scores.csv to fill in, from
the answers stored in OUT/written/answers.json (`read_answers`, `write_answers`), and
`merge` adds a filled sheet to OUT/grades.csv, refusing unknown students, unknown questions and
scores outside [0, points].
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from course_utils.grading.escape import csv_cell

BEGIN, END = "<!-- BEGIN QUESTION -->", "<!-- END QUESTION -->"
PLACEHOLDER = "_Type your answer here, replacing this text._"
QUESTIONS_FILE = "questions.json"  # in OUT: the exercise and the points of every question
ANSWERS_FILE = "answers.json"  # in OUT/written: every student's answers, kept across runs


@dataclass(frozen=True)
class WrittenQuestion:
    """A hand-graded question of a master: its prompt, and its model answer with the rubric."""

    name: str
    points: float
    prompt: str
    model: str

    @property
    def key(self) -> str:
        """The first line of the prompt: how the question is recognised in a submission."""
        lines = [ln.strip() for ln in self.prompt.replace(BEGIN, "").splitlines() if ln.strip()]
        return lines[0] if lines else ""


def written_questions(master: Path) -> list[WrittenQuestion]:
    """The `manual: true` questions of a master notebook, in order."""
    found: list[WrittenQuestion] = []
    config: dict | None = None
    prompt: list[str] = []
    model: list[str] = []
    in_solution = False
    for cell in nbformat.read(master, as_version=4).cells:
        source = cell.source
        if cell.cell_type == "raw" and source.startswith("# BEGIN QUESTION"):
            config = yaml.safe_load(source.removeprefix("# BEGIN QUESTION")) or {}
            prompt, model, in_solution = [], [], False
        elif config is None:
            continue
        elif cell.cell_type == "raw" and source.startswith("# BEGIN SOLUTION"):
            in_solution = True
        elif cell.cell_type == "raw" and source.startswith("# END SOLUTION"):
            in_solution = False
        elif cell.cell_type == "raw" and source.startswith("# END QUESTION"):
            if config.get("manual"):
                name, points = str(config["name"]), float(config["points"])
                found.append(WrittenQuestion(name, points, "\n\n".join(prompt), "\n\n".join(model)))  # fmt: skip
            config = None
        elif in_solution:
            model.append(source)
        elif not model and cell.cell_type == "markdown":
            prompt.append(source)
    return found


def _is_blank(text: str) -> bool:
    return not text.replace(PLACEHOLDER, "").strip()


def answers(nb: nbformat.NotebookNode, questions: list[WrittenQuestion]) -> dict[str, str]:
    """Question name -> the submission's answer text ("" when left blank or not found)."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    markers = 0
    for cell in nb.cells:
        text = cell.get("source", "")
        if not isinstance(text, str):
            continue
        if current is not None and END in text:
            current = None
        if BEGIN in text:
            by_prompt = [q.name for q in questions if q.key and q.key in text]
            by_order = questions[markers].name if markers < len(questions) else None
            current = by_prompt[0] if by_prompt else by_order
            markers += 1
            if current is not None:
                found.setdefault(current, [])
        elif current is not None:
            found[current].append(text)
    return {q.name: "\n\n".join(t for t in found.get(q.name, []) if not _is_blank(t)).strip() for q in questions}  # fmt: skip


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60rem; margin: auto; }}
pre {{ white-space: pre-wrap; background: #f6f6f6; padding: .6rem; }}
section {{ border-top: 1px solid #aaa; margin-top: 1rem; }}
.blank {{ color: #a00; }}
</style></head><body>
<h1>{title}</h1>
<h2>Prompt</h2><pre>{prompt}</pre>
<h2>Model answer and rubric</h2><pre>{model}</pre>
<h2>Answers ({count}, {blank} blank)</h2>
{answers}
</body></html>
"""


def write_pages(
    out: Path,
    exercise: str,
    questions: list[WrittenQuestion],
    by_student: dict[str, dict[str, str]],
) -> list[Path]:
    """OUT/written/<question>.html for every written question and the sheet OUT/written/scores.csv."""
    folder = out / "written"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for q in questions:
        sections, blank = [], 0
        for student in sorted(by_student):
            text = by_student[student].get(q.name, "")
            blank += not text
            body = f"<pre>{html.escape(text)}</pre>" if text else '<p class="blank">(no answer)</p>'
            sections.append(
                f'<section id="{html.escape(student, quote=True)}"><h3>{html.escape(student)}'
                f" &mdash; score: ____ / {q.points:g}</h3>{body}</section>"
            )
        page = PAGE.format(
            title=html.escape(f"{exercise} {q.name} (written, max {q.points:g})"),
            prompt=html.escape(q.prompt.replace(BEGIN, "").strip()),
            model=html.escape(q.model.strip()),
            count=len(by_student),
            blank=blank,
            answers="\n".join(sections),
        )
        path = folder / f"{q.name}.html"
        path.write_text(page)
        paths.append(path)
    with open(folder / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["student", *(q.name for q in questions)])
        for student in sorted(by_student):
            writer.writerow([csv_cell(student), *([""] * len(questions))])
    return paths


def read_questions(out: Path) -> dict:
    """OUT/questions.json: {"exercise", "autograded": {q: points}, "written": {q: points}}."""
    path = out / QUESTIONS_FILE
    if not path.is_file():
        raise ValueError(f"{out} is not a course-grade output folder (no {QUESTIONS_FILE})")
    return json.loads(path.read_text())


def write_questions(out: Path, exercise: str, autograded: dict, written: dict) -> None:
    """Write OUT/questions.json."""
    data = {"exercise": exercise, "autograded": autograded, "written": written}
    (out / QUESTIONS_FILE).write_text(json.dumps(data, indent=1) + "\n")


def read_answers(out: Path) -> dict[str, dict[str, str]]:
    """OUT/written/answers.json: student -> question -> answer, of every student graded into OUT."""
    path = out / "written" / ANSWERS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_answers(out: Path, answers: dict[str, dict[str, str]]) -> None:
    """Write OUT/written/answers.json."""
    (out / "written").mkdir(parents=True, exist_ok=True)
    (out / "written" / ANSWERS_FILE).write_text(
        json.dumps(answers, indent=1, sort_keys=True) + "\n"
    )


def read_grades(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of OUT/grades.csv."""
    path = out / "grades.csv"
    if not path.is_file():
        raise ValueError(f"no grades.csv in {out}: grade the submissions first")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_grades(out: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write OUT/grades.csv atomically."""
    tmp = out / "grades.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / "grades.csv")


def total(row: dict[str, str], questions: dict) -> float:
    """The sum of a row's autograded and (filled-in) written points."""
    names = [*questions["autograded"], *questions["written"]]
    return sum(float(row[q]) for q in names if row.get(q, "") != "")


def _score(text: str, maximum: float, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: score {text!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= maximum):
        raise ValueError(f"{where}: score {value:g} is outside [0, {maximum:g}]")
    return value


def merge(out: Path, manual: Path) -> int:
    """Add the written scores of the CSV `manual` (student, question...) to OUT/grades.csv.

    Empty cells are left as they were. Refuses, changing nothing, unknown or repeated students,
    columns that are not written questions, and scores that are not numbers in [0, points].
    Returns the number of scores written.
    """
    questions = read_questions(out)
    written = questions["written"]
    header, rows = read_grades(out)
    with open(manual, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        sheet = list(reader)
    if "student" not in columns:
        raise ValueError(f"{manual}: needs a 'student' column, got {columns}")
    unknown = [c for c in columns if c != "student" and c not in written]
    if unknown:
        raise ValueError(f"{manual}: {unknown} are not written questions (expected some of {list(written)})")  # fmt: skip
    index: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        index.setdefault(row["student"], []).append(row)
    seen: set[str] = set()
    updates = []
    for line, entry in enumerate(sheet, start=2):
        student = csv_cell(entry["student"] or "")
        if len(index.get(student, [])) != 1:
            why = "not in grades.csv" if student not in index else "on several rows of grades.csv"
            raise ValueError(f"{manual}:{line}: student {entry['student']!r} is {why}")
        if student in seen:
            raise ValueError(f"{manual}:{line}: student {entry['student']!r} appears twice")
        seen.add(student)
        for q in (c for c in columns if c != "student"):
            text = (entry.get(q) or "").strip()
            if text:
                value = _score(text, written[q], f"{manual}:{line} ({q})")
                updates.append((index[student][0], q, value))
    for row, q, value in updates:
        row[q] = f"{value:g}"
    for row in rows:
        row["total"] = f"{total(row, questions):g}"
    write_grades(out, header, rows)
    return len(updates)
