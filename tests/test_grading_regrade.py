"""Regrading is safe: grading into an output folder that holds grades merges by student.

One real `course-grade` run of exercise 4 (the quickest to grade) builds OUT: alice solved it, bob
answered q2 wrongly (its feedback quotes values computed from the run's secret). Each test grades
into a copy of that OUT: another student, a regraded one, an interrupted run's leftovers; and the
runs that must be refused leave OUT unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import answered, solved  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade, isolation, verdict  # noqa: E402

NAME = "ex4_pythia_scaling"
Q2_SQUARED_LOSS = """\
def parametric_objective(params, log_n, log_d, loss, delta=1e-3):
    e, a, b, alpha, beta = params
    predicted = e + np.exp(a - alpha * log_n) + np.exp(b - beta * log_d)
    return float(np.mean((np.log(predicted) - np.log(loss)) ** 2))
"""  # q2's Huber loss replaced by a squared loss: the hidden test's message quotes both objectives
UNSAFE = ["--unsafe-no-isolation"] if isolation.bubblewrap()[0] is None else []


def _blank() -> nbformat.NotebookNode:
    return nbformat.read(gen.EXERCISES_DIR / f"{NAME}.ipynb", as_version=4)


def _folder(path: Path, **notebooks: nbformat.NotebookNode) -> Path:
    """A submissions folder with one notebook per student."""
    path.mkdir()
    for student, nb in notebooks.items():
        nbformat.write(nb, path / f"{student}.ipynb")
    return path


def _grade(folder: Path, out: Path, bundle: Path, *extra: str, exercise: str = NAME) -> int:
    """`course-grade EXERCISE FOLDER -o OUT --autograder BUNDLE ...`."""
    return grade.main([exercise, str(folder), "-o", str(out), "--autograder", str(bundle), *UNSAFE, *extra])  # fmt: skip


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """OUT of grading alice (solved) and bob (q2 wrong) with a drawn secret; the bundle."""
    root = tmp_path_factory.mktemp("regrade")
    bundle = gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", root / "e", root / "v", root / "a").autograder  # fmt: skip
    bob = answered(solved(NAME), "parametric_objective", Q2_SQUARED_LOSS)
    folder = _folder(root / "in", alice=solved(NAME), bob=bob)
    assert _grade(folder, root / "out", bundle) == 0
    run = json.loads((root / "out" / "run.json").read_text())
    return SimpleNamespace(root=root, bundle=bundle, folder=folder, out=root / "out", run=run)


@pytest.fixture
def out(first: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the first run's OUT to grade into."""
    return Path(shutil.copytree(first.out, tmp_path / "out"))


@pytest.fixture
def secrets_used(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The secret of every grader made while the test runs."""
    used: list[int] = []
    init = verdict.Grader.__init__

    def spy(self: verdict.Grader, *args: object, **kwargs: object) -> None:
        used.append(kwargs["secret"])
        init(self, *args, **kwargs)

    monkeypatch.setattr(verdict.Grader, "__init__", spy)
    return used


def test_run_json_saves_the_secret_and_what_grades_depend_on(first: SimpleNamespace) -> None:
    run, path = first.run, first.out / "run.json"
    assert run["exercise"] == NAME and run["profile"] == "ci"
    assert run["bundle_sha256"] == hashlib.sha256(first.bundle.read_bytes()).hexdigest()
    assert isinstance(run["secret"], int) and run["secret"] > 0
    (entry,) = run["runs"]
    assert entry["course_version"] == importlib.metadata.version("learning-at-scale")
    started = datetime.fromisoformat(entry["started_utc"])
    assert started.utcoffset() == timedelta(0)
    assert datetime.now(timezone.utc) - started < timedelta(hours=1)
    assert path.stat().st_mode & 0o777 == 0o600, "readable by its owner only"


def test_another_folder_keeps_the_earlier_rows_and_reports_them(
    first: SimpleNamespace, out: Path, tmp_path: Path, secrets_used: list[int], capsys
) -> None:
    before = _rows(out)
    assert _grade(_folder(tmp_path / "late", carol=_blank()), out, first.bundle) == 0
    rows = _rows(out)
    assert list(rows) == ["alice", "bob", "carol"]
    assert {s: rows[s] for s in ("alice", "bob")} == before
    assert rows["carol"]["status"] == "ok" and rows["carol"]["total"] == "0"
    assert secrets_used == [first.run["secret"]]
    assert "reusing the secret saved in" in capsys.readouterr().err
    assert (out / "feedback" / "alice.txt").read_bytes() == (first.out / "feedback" / "alice.txt").read_bytes()  # fmt: skip
    with open(out / "summary.csv", newline="") as f:
        total = [r for r in csv.DictReader(f) if r["question"] == "total"][0]
    assert total["scored"] == "3"
    sheet = (out / "written" / "scores.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in sheet] == ["student", "alice", "bob", "carol"]
    page = (out / "written" / "q3b.html").read_text()
    assert all(f'id="{s}"' in page for s in ("alice", "bob", "carol"))
    assert len(json.loads((out / "run.json").read_text())["runs"]) == 2


def test_regrading_a_student_replaces_its_row_and_keeps_written_scores(
    first: SimpleNamespace, out: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "manual.csv").write_text("student,q3b\nalice,2\nbob,1.5\n")
    assert grade.main(["merge", str(out), str(tmp_path / "manual.csv")]) == 0
    merged = _rows(out)
    capsys.readouterr()
    assert _grade(_folder(tmp_path / "fixed", bob=solved(NAME)), out, first.bundle) == 0
    rows = _rows(out)
    assert list(rows) == ["alice", "bob"]
    assert rows["alice"] == merged["alice"], "a student not regraded keeps the whole row"
    points = grade.questions(first.bundle)
    assert {q: float(rows["bob"][q]) for q in points} == points, "bob's new grade"
    assert rows["bob"]["q3b"] == "1.5" and float(rows["bob"]["total"]) == sum(points.values()) + 1.5
    assert "check them again): bob\n" in capsys.readouterr().err
    assert "q2: 3 / 3" in (out / "feedback" / "bob.txt").read_text()


def test_regrading_the_same_notebook_reproduces_its_row_and_feedback(
    first: SimpleNamespace, out: Path, tmp_path: Path, secrets_used: list[int]
) -> None:
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(first.folder / "bob.ipynb", again)
    assert _grade(again, out, first.bundle) == 0
    assert secrets_used == [first.run["secret"]]
    assert (out / "grades.csv").read_bytes() == (first.out / "grades.csv").read_bytes()
    feedback = (out / "feedback" / "bob.txt").read_text()
    assert "AssertionError: objective" in feedback, "the message quotes secret-seeded values"
    assert feedback == (first.out / "feedback" / "bob.txt").read_text()


Change = Callable[[Path, SimpleNamespace, pytest.MonkeyPatch], tuple[str, list[str]]]


def _other_seed(out: Path, first: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:  # fmt: skip
    return NAME, ["--seed", str(first.run["secret"] + 1)]


def _other_exercise(out: Path, first: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:  # fmt: skip
    return "ex1_infonce", []


def _changed_bundle(out: Path, first: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:  # fmt: skip
    bundle = out.parent / "changed.zip"
    shutil.copy(first.bundle, bundle)
    with zipfile.ZipFile(bundle, "a") as zf:
        zf.writestr("extra.txt", "a changed bundle")
    return NAME, ["--autograder", str(bundle)]


def _other_profile(out: Path, first: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:  # fmt: skip
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    return NAME, []


def _no_run_json(out: Path, first: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:  # fmt: skip
    (out / "run.json").unlink()  # an OUT graded before run.json existed
    return NAME, []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _other_seed,
            r"--seed \d+ is not the secret saved in .*run.json: grades under two secrets",
        ),
        (_other_exercise, "holds grades of exercise 'ex4_pythia_scaling', not 'ex1_infonce'"),
        (_changed_bundle, r"another autograder bundle \(sha256 [0-9a-f]{12}\.\.\., this one"),
        (_other_profile, "COURSE_PROFILE is 'cpu' but .* was graded under 'ci'"),
        (_no_run_json, "saved no run.json .*pass --seed with the secret that run used"),
    ],
    ids=["seed", "exercise", "bundle", "profile", "no_run_json"],
)
def test_a_run_that_would_mix_grades_is_refused_and_changes_nothing(
    change: Change, message: str, first: SimpleNamespace, out: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # fmt: skip
    exercise, args = change(out, first, monkeypatch)
    before = _files(out)
    with pytest.raises(SystemExit):  # parser.error
        _grade(first.folder, out, first.bundle, *args, exercise=exercise)
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(message, err) and "new -o folder" in err, err
    assert _files(out) == before


def test_an_old_folder_is_merged_under_the_seed_it_was_graded_with(
    first: SimpleNamespace, out: Path, tmp_path: Path
) -> None:
    (out / "run.json").unlink()
    assert _grade(_folder(tmp_path / "none"), out, first.bundle, "--seed", "7") == 0
    assert _rows(out) == _rows(first.out)
    assert json.loads((out / "run.json").read_text())["secret"] == 7


def test_an_interrupted_runs_rows_are_kept_unless_regraded(
    first: SimpleNamespace, out: Path, tmp_path: Path
) -> None:
    rows = _rows(out)
    header = list(rows["alice"])
    dave = rows["alice"] | {"student": "dave", "file": "dave.ipynb"}
    carol = rows["alice"] | {"student": "carol", "file": "carol.ipynb"}
    bob = rows["bob"] | {"status": "timeout"}
    with open(out / "grades.csv.partial", "w", newline="") as f:  # as a killed run leaves it
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows([bob, carol, dave])
        f.write("erin,erin.ipynb,2,3")  # the row being written when it was killed
    assert _grade(_folder(tmp_path / "late", carol=_blank()), out, first.bundle) == 0
    after = _rows(out)
    assert list(after) == ["alice", "bob", "carol", "dave"]
    assert after["alice"] == rows["alice"] and after["bob"] == bob and after["dave"] == dave
    assert after["carol"]["total"] == "0", "regraded now: this run's row"
    assert not (out / "grades.csv.partial").exists()
