"""Grading into an output folder that already holds grades: the saved run and merging by student.

OUT/run.json holds what a folder's grades depend on: the exercise, the autograder bundle's SHA-256,
the secret added to the tests' seeds and the profile, then one entry per run (UTC time, course
version, submissions folder). A later run into the same OUT must match the first four (`settle`)
and reuses the secret, so a regraded notebook gets exactly the row it got before. The file is
readable by its owner only: whoever knows the secret can compute the tests' hidden inputs.

Rows are matched by student id as grades.csv writes it, ignoring case (`student_key`), as
`grade.student_ids` matches ids within a run: a run's rows replace the earlier rows of the same
students and keep their hand-graded written scores (`merge`); the rows of every other student stay.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path

from course_utils.grading import written
from course_utils.grading.escape import csv_cell

RUN_FILE = "run.json"
PARTIAL_FILE = "grades.csv.partial"
NEW_FOLDER = "grade into a new -o folder"


def student_key(student: str) -> str:
    """How the rows of one student are matched across runs: the id as in grades.csv, any case."""
    return csv_cell(student).casefold()


def course_version() -> str | None:
    """The installed version of this course package, if it is installed."""
    try:
        return importlib.metadata.version("learning-at-scale")
    except importlib.metadata.PackageNotFoundError:
        return None


def has_grades(out: Path) -> bool:
    """Whether OUT holds grades.csv or the partial file of a run."""
    return (out / "grades.csv").is_file() or (out / PARTIAL_FILE).is_file()


def settle(out: Path, exercise: str, bundle_hash: str, profile: str, seed: int | None) -> dict:
    """The run record to grade into OUT with: the saved one if it matches this run, else a new one."""
    path = out / RUN_FILE
    if not path.is_file():
        if has_grades(out) and seed is None:
            raise ValueError(
                f"{out} holds grades of a run that saved no {RUN_FILE} (its secret is unknown): "
                f"{NEW_FOLDER}, or pass --seed with the secret that run used to merge into it"
            )
        secret = secrets.randbelow(2**31 - 1) + 1 if seed is None else seed
        return {"exercise": exercise, "bundle_sha256": bundle_hash, "secret": secret, "profile": profile, "runs": []}  # fmt: skip
    run = json.loads(path.read_text())
    if run["exercise"] != exercise:
        raise ValueError(f"{out} holds grades of exercise {run['exercise']!r}, not {exercise!r}: {NEW_FOLDER}")  # fmt: skip
    if run["bundle_sha256"] != bundle_hash:
        raise ValueError(
            f"{out} was graded with another autograder bundle (sha256 {run['bundle_sha256'][:12]}..., "
            f"this one {bundle_hash[:12]}...): grades of two bundles would be mixed; {NEW_FOLDER}"
        )
    if run["profile"] != profile:
        raise ValueError(
            f"COURSE_PROFILE is {profile!r} but {out} was graded under {run['profile']!r}: "
            f"set COURSE_PROFILE={run['profile']} to regrade there, or {NEW_FOLDER}"
        )
    if seed is not None and seed != run["secret"]:
        raise ValueError(
            f"--seed {seed} is not the secret saved in {path}: grades under two secrets would be "
            f"mixed; leave out --seed to reuse the saved one, or {NEW_FOLDER}"
        )
    if seed is None:
        print(f"regrading into {out}: reusing the secret saved in {path}", file=sys.stderr)
    return run


def save_run(out: Path, run: dict, submissions: Path) -> None:
    """Write OUT/run.json (owner-only), adding this run's time, course version and folder."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {"started_utc": started, "course_version": course_version(), "submissions": str(submissions.resolve())}  # fmt: skip
    run = run | {"runs": [*run["runs"], entry]}
    tmp = out / f"{RUN_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(run, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / RUN_FILE)


def read_rows(path: Path, header: list[str]) -> list[dict[str, str]]:
    """The complete rows of a grades CSV (a last line cut short by a crash is dropped)."""
    lines = path.read_text().split("\n")[:-1]  # grades cells hold no line break: one row a line
    if not lines:
        return []
    found = next(csv.reader(lines[:1]))
    if found != header:
        raise ValueError(
            f"{path} has the columns {found}, this run writes {header} (another master's "
            f"written questions?): {NEW_FOLDER}"
        )
    return [dict(zip(header, r, strict=True)) for r in csv.reader(lines[1:]) if len(r) == len(header)]  # fmt: skip


def earlier_rows(out: Path, header: list[str], questions: dict) -> tuple[list[dict[str, str]], list[str]]:  # fmt: skip
    """The rows of grades.csv merged with an interrupted run's partial file; students with written scores kept."""  # fmt: skip
    rows = read_rows(out / "grades.csv", header) if (out / "grades.csv").is_file() else []
    if not (out / PARTIAL_FILE).is_file():
        return rows, []
    return merge(rows, read_rows(out / PARTIAL_FILE, header), questions)


def merge(
    earlier: list[dict[str, str]], new: list[dict[str, str]], questions: dict
) -> tuple[list[dict[str, str]], list[str]]:
    """Rows by file: earlier ones of students not in `new`, and `new` with their earlier written scores; those students."""  # fmt: skip
    before: dict[str, list[dict[str, str]]] = {}
    for row in earlier:
        before.setdefault(student_key(row["student"]), []).append(row)
    counts: dict[str, int] = {}
    for row in new:
        counts[student_key(row["student"])] = counts.get(student_key(row["student"]), 0) + 1
    rows = [r for r in earlier if student_key(r["student"]) not in counts]
    kept = []
    for row in new:
        key = student_key(row["student"])
        scores = {q: r[q] for r in before.get(key, []) for q in questions["written"] if r[q] != ""}
        if scores and counts[key] == 1:  # an id shared by two entries of this run gets no grade
            row = row | scores
            row["total"] = f"{written.total(row, questions):g}"
            kept.append(row["student"])
        rows.append(row)
    return sorted(rows, key=lambda r: r["file"]), kept
