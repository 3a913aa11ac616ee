"""Exercise 4 graded end to end by the `course-grade` command line: the master scores full marks, a
wrong answer to each question loses at least half of it, and a few correct answers in other styles
(q2's fit feeding q3a, allowed library calls) keep full marks everywhere.

Submissions are built from the master (every answer cell solved), then one answer cell is replaced
by a variant of test_grading_ex4_variants.py (where every variant is scored in process); all of
them are graded in one call.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import answered, solved  # noqa: E402
from test_grading_ex4_variants import ANSWER, CORRECT, POINTS, Q1_TAIL, WRONG  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade  # noqa: E402

NAME = "ex4_pythia_scaling"
# Wrong answers only a sandbox can catch: q1's definition calls nothing but np.polyfit, which another
# part of the cell rebinds to the library's fit (the static check reads the definition only; the
# grader's watch sees the call into course_utils.scaling while q1 is tested).
RUN_TIME_ONLY = {
    "q1": {
        "patched_numpy_delegates": """\
import course_utils.scaling as _lib

_real_polyfit = np.polyfit


def _polyfit(x, y, deg, *args, **kwargs):
    if deg == -1:  # the answer's own call
        law = _lib.fit_power_law(x, y)
        return law.exponent, np.log(law.coef)
    return _real_polyfit(x, y, deg, *args, **kwargs)


np.polyfit = _polyfit


def fit_power_law_scratch(x, y):
    k, log_c = np.polyfit(x, y, -1)
    return float(np.exp(log_c)), float(k)
"""
        + Q1_TAIL
    }
}
# file -> (question whose answer cell is replaced, its variant, whether it is a wrong one)
CASES = {
    "solved": (None, None, False),
    **{f"{q}_{v}": (q, v, True) for q, v in [
        ("q1", "linear_space"),
        ("q2", "squared_loss"),
        ("q3a", "outliers_kept"),
        ("q4", "pure_power_law"),
        ("q5", "no_margin"),
        ("q6", "summed_stderrs"),
        ("q1", "patched_numpy_delegates"),
    ]},
    **{f"{q}_{v}": (q, v, False) for q, v in [
        ("q2", "scipy_special_bfgs"),
        ("q3a", "symmetric_formula_library_fit"),
        ("q4", "library_law_with_offset"),
    ]},
}  # fmt: skip


def _submission(question: str | None, variant: str | None, wrong: bool) -> nbformat.NotebookNode:
    """The solved notebook with the answer cell of `question` replaced by `variant`."""
    nb = solved(NAME)
    if question is None:
        return nb
    wrongs = WRONG[question] | RUN_TIME_ONLY.get(question, {})
    return answered(nb, ANSWER[question], (wrongs if wrong else CORRECT[question])[variant])


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict[str, float]]:
    """CSV rows (by student) of grading every case in one `course-grade` call, and the points."""
    root = tmp_path_factory.mktemp("ex4")
    bundle = gen.generate(
        gen.SOLUTIONS_DIR / f"{NAME}.ipynb",
        root / "exercises",
        root / "visible",
        root / "autograder",
    ).autograder
    folder = root / "submissions"
    folder.mkdir()
    for name, case in CASES.items():
        nbformat.write(_submission(*case), folder / f"{name}.ipynb")
    command = [sys.executable, "-m", "course_utils.grading.grade", NAME, str(folder)]
    # --timeout is one budget for the whole notebook (cells and every question)
    command += ["-o", str(root / "out"), "--autograder", str(bundle), "-j", "2", "--timeout", "600"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, grade.questions(bundle)


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_scores(case: str, graded: tuple[dict[str, dict], dict[str, float]]) -> None:
    rows, points = graded
    row = rows[case]
    assert row["status"] == "ok", row
    question, _, wrong = CASES[case]
    if wrong:  # the wrong answer loses at least half of its own question, a delegation all
        assert float(row[question]) <= (0 if "delegates" in case else points[question] / 2), row
    else:  # the master and other correct methods: full marks everywhere
        assert {q: float(row[q]) for q in points} == points, row


def test_ex4_questions_and_points(graded: tuple[dict[str, dict], dict[str, float]]) -> None:
    _, points = graded
    assert points == POINTS
