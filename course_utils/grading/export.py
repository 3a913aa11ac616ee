"""`course-grade export OUT --format canvas|gradescope|csv`: gradebook import files from OUT/grades.csv.

Every row is keyed by the student id of grades.csv (the submission's file name without extension).
- `canvas`: Canvas's gradebook import CSV (Instructor Guide, "How do I import grades in the
  Gradebook?"): the columns Student, ID, SIS User ID, SIS Login ID, Section, then one column per
  assignment; the student id goes in `SIS User ID` (or `--id-column`), a "Points Possible" row
  follows the header as in Canvas's own export.
- `gradescope`: the CSV Gradescope's score upload reads (Help Center, "Uploading scores" of an
  assignment): a student identifier column (`SID`, or `Email` with `--id-column Email`) and
  `Total Score`.
- `csv`: student, each question, total and max, for any other spreadsheet.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from course_utils.grading import written

FORMATS = ("canvas", "gradescope", "csv")
CANVAS_IDS = ("SIS User ID", "SIS Login ID", "ID")
GRADESCOPE_IDS = ("SID", "Email")


def export(
    out: Path,
    fmt: str,
    dest: Path | None = None,
    *,
    assignment: str | None = None,
    id_column: str | None = None,
) -> Path:
    """Write the import file of `fmt` for OUT/grades.csv; its path (default OUT/export-<fmt>.csv)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    questions = written.read_questions(out)
    _, rows = written.read_grades(out)
    names = [*questions["autograded"], *questions["written"]]
    maximum = sum(questions["autograded"].values()) + sum(questions["written"].values())
    assignment = assignment or questions["exercise"]
    ungraded = [r["student"] for r in rows if any(r.get(q, "") == "" for q in questions["written"])]
    dest = Path(dest or out / f"export-{fmt}.csv")
    if fmt == "canvas":
        id_column = id_column or CANVAS_IDS[0]
        if id_column not in CANVAS_IDS:
            raise ValueError(f"--id-column for canvas must be one of {CANVAS_IDS}, got {id_column!r}")  # fmt: skip
        header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", assignment]
        lines = [["Points Possible", "", "", "", "", f"{maximum:g}"]]
        for r in rows:
            line = dict.fromkeys(header, "") | {id_column: r["student"], assignment: _total(r, questions)}  # fmt: skip
            lines.append([line[h] for h in header])
    elif fmt == "gradescope":
        id_column = id_column or GRADESCOPE_IDS[0]
        if id_column not in GRADESCOPE_IDS:
            raise ValueError(f"--id-column for gradescope must be one of {GRADESCOPE_IDS}, got {id_column!r}")  # fmt: skip
        header = [id_column, "Total Score"]
        lines = [[r["student"], _total(r, questions)] for r in rows]
    else:
        header = ["student", *names, "total", "max", "status"]
        lines = [[r["student"], *(r.get(q, "") for q in names), _total(r, questions), f"{maximum:g}", r["status"]] for r in rows]  # fmt: skip
    with open(dest, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
    if ungraded:
        print(f"note: {len(ungraded)} students have written questions without a score (counted as 0)")  # fmt: skip
    return dest


def _total(row: dict[str, str], questions: dict) -> str:
    return f"{written.total(row, questions):g}"


def main(argv: list[str] | None = None) -> int:
    """Command line of `course-grade export`."""
    parser = argparse.ArgumentParser(prog="course-grade export", description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("out", type=Path, help="the output folder of a course-grade run")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default OUT/export-FORMAT.csv)")  # fmt: skip
    parser.add_argument("--assignment", help="the gradebook's assignment column (canvas)")
    parser.add_argument("--id-column", help="where the student id goes (see docs/instructors.md)")
    args = parser.parse_args(argv)
    try:
        path = export(args.out, args.format, args.output, assignment=args.assignment, id_column=args.id_column)  # fmt: skip
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote {path}")
    return 0
