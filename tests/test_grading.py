"""Exercise generation and batch grading (course_utils.grading, on top of otter-grader).

The committed student notebooks and visible tests must equal a fresh regeneration from solutions/;
no hidden test or solution may reach a student artifact; every master must score full marks through
the grader; and a folder of broken and hostile submissions must give one exact CSV row per file,
the same CSV on a rerun, and untouched submissions.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import subprocess
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import yaml

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import answered, solved  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade, isolation, verdict  # noqa: E402
from course_utils.grading.visible import VISIBLE_DIR, load_visible_tests, visible_tests  # noqa: E402

MASTERS = gen.masters()
NAMES = [m.stem for m in MASTERS]
# Time budget per notebook (cells and all questions together) in the folder test: the busy loop hits
# it, every real notebook must stay well under it (ex1 grades in ~8 s on 2 idle cores, up to ~60 s on
# this 2-core machine shared with other jobs). Graded two at a time, the loop overlaps the others.
LOOP_TIMEOUT_S = 120
SEED = 2026  # the secret shift of the tests' seeds (fixed here: the same CSV on every run)
# Without bubblewrap these tests still check grading (unisolated); the red-team suite fails instead.
UNSAFE = isolation.bubblewrap()[0] is None


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, gen.Generated]:
    """Every master regenerated into a temporary folder."""
    out = tmp_path_factory.mktemp("generated")
    return {
        m.stem: gen.generate(m, out / "exercises", out / "visible", out / "autograder")
        for m in MASTERS
    }


def test_there_are_masters() -> None:
    assert "ex1_infonce" in NAMES


def _master_points(master: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(autograded, manual) question -> points, from the master's BEGIN QUESTION cells."""
    auto, manual = {}, {}
    for cell in nbformat.read(master, as_version=4).cells:
        if cell.cell_type == "raw" and cell.source.startswith("# BEGIN QUESTION"):
            config = yaml.safe_load(cell.source.removeprefix("# BEGIN QUESTION"))
            (manual if config.get("manual") else auto)[config["name"]] = config["points"]
    return auto, manual


def _table_points(cell: str) -> dict[str, int]:
    """'11 (q1: 3, q2a: 2)' -> {'q1': 3, 'q2a': 2}, checking the sum."""
    total, _, rest = cell.strip().partition(" ")
    points = {q: int(p) for q, p in re.findall(r"(\w+): (\d+)", rest)}
    assert sum(points.values()) == int(total), f"{cell!r}: the points do not add up to {total}"
    return points


def test_instructors_points_table_matches_the_masters() -> None:
    doc = (gen.ROOT / "docs" / "instructors.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(ex\w+)`[^|]*\|(.*)\|$", doc, re.M)}
    assert sorted(rows) == NAMES, "docs/instructors.md needs one points row per exercise"
    for master in MASTERS:
        auto_cell, manual_cell, total = rows[master.stem].split("|")
        auto, manual = _master_points(master)
        assert _table_points(auto_cell) == auto, f"{master.stem}: autograded points"
        assert _table_points(manual_cell) == manual, f"{master.stem}: points graded by hand"
        assert int(total) == sum(auto.values()) + sum(manual.values()), f"{master.stem}: total"


def test_instructors_rubric_table_matches_the_bundles(
    regenerated: dict[str, gen.Generated],
) -> None:
    doc = (gen.ROOT / "docs" / "instructors.md").read_text()
    pattern = r"^\| (ex\w+) \| (\w+) \| `(test_\w+)` \| ([\d.]+) \| ([^|]+) \|$"
    table = {
        m.group(1, 2, 3): (float(m.group(4)), m.group(5)) for m in re.finditer(pattern, doc, re.M)
    }
    cases = {}
    for name, paths in regenerated.items():
        for test in verdict.load_tests(verdict.read_test_sources(paths.autograder)):
            for tc in test.test_cases:
                function = tc.body.test_func.__name__
                kind = "hidden" if tc.hidden else "visible"
                if verdict.RULE_CASE.match(function):
                    kind = "rule: a failure zeroes the question"
                elif tc.points == 0:
                    kind += ", form gate"
                cases[(name, test.name, function)] = (float(tc.points), kind)
    assert table == cases


@pytest.mark.parametrize("name", NAMES)
def test_committed_exercise_is_fresh(
    name: str, regenerated: dict[str, gen.Generated], staged: Callable[..., bytes]
) -> None:
    fresh = regenerated[name]
    committed_nb = gen.EXERCISES_DIR / f"{name}.ipynb"
    committed_tests = VISIBLE_DIR / f"{name}.json"
    assert committed_nb.is_file() and committed_tests.is_file(), "run `make exercises` and commit"
    # As git stages it: a student's answers and outputs in the working copy (the lab) do not count.
    assert staged(committed_nb) == fresh.notebook.read_bytes(), (
        f"exercises/{name}.ipynb is stale: run `make exercises` and commit the result"
    )
    assert committed_tests.read_bytes() == fresh.visible_tests.read_bytes(), (
        f"visible tests of {name} are stale: run `make exercises` and commit the result"
    )


def test_no_exercise_without_a_master() -> None:
    assert sorted(p.stem for p in gen.EXERCISES_DIR.glob("*.ipynb")) == NAMES
    assert sorted(p.stem for p in VISIBLE_DIR.glob("*.json")) == NAMES


def test_generation_is_deterministic(regenerated: dict[str, gen.Generated], tmp_path: Path) -> None:
    again = gen.generate(MASTERS[0], tmp_path / "e", tmp_path / "v", tmp_path / "a")
    first = regenerated[MASTERS[0].stem]
    assert again.notebook.read_bytes() == first.notebook.read_bytes()
    assert again.visible_tests.read_bytes() == first.visible_tests.read_bytes()


def _hidden_tests(bundle: Path) -> list[tuple[str, list[str]]]:
    """(function name, assert lines) of every hidden test case in an autograder bundle."""
    found = []
    with zipfile.ZipFile(bundle) as zf:
        sources = [zf.read(n).decode() for n in zf.namelist() if re.fullmatch(r"tests/.+\.py", n)]
    for source in sources:
        for node in ast.parse(source).body:
            hidden = isinstance(node, ast.FunctionDef) and any(
                kw.arg == "hidden" and getattr(kw.value, "value", False)
                for d in node.decorator_list
                if isinstance(d, ast.Call)
                for kw in d.keywords
            )
            if hidden:
                text = ast.get_source_segment(source, node)
                asserts = [
                    ln.strip() for ln in text.splitlines() if ln.strip().startswith("assert")
                ]
                found.append((node.name, asserts))
    return found


def _student_texts(name: str) -> dict[str, str]:
    """The text a student receives for exercise `name`: notebook cells and visible tests."""
    nb = nbformat.read(gen.EXERCISES_DIR / f"{name}.ipynb", as_version=4)
    return {
        f"exercises/{name}.ipynb": "\n".join(c.source for c in nb.cells) + json.dumps(nb.metadata),
        f"visible/{name}.json": "\n".join(load_visible_tests(name).values()),
    }


@pytest.mark.parametrize("name", NAMES)
def test_hidden_tests_never_reach_students(
    name: str, regenerated: dict[str, gen.Generated]
) -> None:
    hidden = _hidden_tests(regenerated[name].autograder)
    assert hidden, f"{name} has no hidden tests"
    for artifact, text in _student_texts(name).items():
        for func, asserts in hidden:
            assert func not in text, f"hidden test {func} appears in {artifact}"
            for line in asserts:
                assert line not in text, f"hidden assert of {func} appears in {artifact}: {line}"


@pytest.mark.parametrize("name", NAMES)
def test_solutions_never_reach_students(name: str) -> None:
    for artifact, text in _student_texts(name).items():
        assert not re.search(r"#\s*(BEGIN|END) (SOLUTION|TESTS|QUESTION)|#\s*SOLUTION\b", text), (
            f"{artifact} contains otter markers: a solution cell was not stripped"
        )


def test_hidden_test_detection_finds_a_planted_leak(regenerated: dict[str, gen.Generated]) -> None:
    func, asserts = _hidden_tests(regenerated["ex1_infonce"].autograder)[0]
    assert func in f"x = 1\ndef {func}(): pass" and asserts


# ---- grading a folder of submissions -------------------------------------------------------------


def _with_cell(nb: nbformat.NotebookNode, source: str, at: int = 4) -> nbformat.NotebookNode:
    """`nb` with one extra code cell at index `at`."""
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


def _blank() -> nbformat.NotebookNode:
    return nbformat.read(gen.EXERCISES_DIR / "ex1_infonce.ipynb", as_version=4)


WRONG_LABELS = """\
def info_nce_as_classification(query, keys, temperature=0.1):
    q, k = F.normalize(query, dim=1), F.normalize(keys, dim=1)
    return q @ k.T / temperature, torch.zeros(query.shape[0], dtype=torch.int64)
"""
SYNTAX_ERROR = "def info_nce_as_classification(query, keys, temperature=0.1):\n    return (((\n"
DESTROY_CWD = """\
import os
import shutil
from collections.abc import Callable
from pathlib import Path

for p in Path(".").iterdir():
    shutil.rmtree(p) if p.is_dir() else p.unlink()
os.makedirs("tests", exist_ok=True)
for q in ("q1", "q2a", "q3b", "q4"):
    Path(f"tests/{q}.py").write_text(f"OK_FORMAT = False\\nname = '{q}'\\npoints = 99\\n")
Path("submission.ipynb").write_text("{}")
"""
PATCH_MACHINERY = """\
import builtins
import math

import otter.test_files.abstract_test as at
import otter.test_files.exception_test as et
import torch


def _pass_everything(self, env):
    self.test_case_results = [at.TestCaseResult(test_case=tc, message="ok", passed=True) for tc in self.test_cases]


et.ExceptionTestFile.run = _pass_everything
torch.allclose = lambda *a, **k: True
torch.isfinite = lambda x: torch.tensor(True)
math.isclose = lambda *a, **k: True
builtins.abs = lambda x: 0.0
"""
PATCH_AT_CALL = """\
def info_nce_scratch(query, keys, temperature=0.1):
    torch.allclose = lambda *a, **k: True  # cheat from inside the graded function
    return torch.tensor(0.0)
"""

# file name -> (content builder, expected (q1, q2a, q3b, q4) or None, expected status regex)
SUBMISSIONS = {
    "alice.ipynb": (lambda: solved("ex1_infonce"), (3, 2, 3, 3), "ok"),
    "carol.ipynb": (
        lambda: answered(solved("ex1_infonce"), "info_nce_as_classification", WRONG_LABELS),
        (3, 0, 3, 3),
        "ok",
    ),
    "blank.ipynb": (_blank, (0, 0, 0, 0), "ok"),
    "busy_loop.ipynb": (
        lambda: _with_cell(solved("ex1_infonce"), "while True:\n    pass"),
        (0, 0, 0, 0),
        "timeout",
    ),
    "syntax_error.ipynb": (
        lambda: answered(solved("ex1_infonce"), "info_nce_as_classification", SYNTAX_ERROR),
        (3, 0, 3, 3),
        "ok",
    ),
    "os_exit.ipynb": (
        lambda: _with_cell(solved("ex1_infonce"), "import os\n\nos._exit(0)"),
        (0, 0, 0, 0),
        r"error: the notebook ended the grading process \(exit code 0\)",
    ),
    "sys_exit.ipynb": (
        lambda: _with_cell(solved("ex1_infonce"), "import sys\n\nsys.exit()"),
        (3, 2, 3, 3),
        "ok",
    ),
    "destroys_cwd.ipynb": (
        lambda: _with_cell(solved("ex1_infonce"), DESTROY_CWD),
        (3, 2, 3, 3),
        "ok",
    ),
    # the patches only change the sandbox: q1 earns what `return torch.tensor(0.0)` earns (a stub
    # passes only the form check, worth 0), nothing more
    "patches_tests.ipynb": (
        lambda: answered(_with_cell(_blank(), PATCH_MACHINERY), "info_nce_scratch", PATCH_AT_CALL),
        (0, 0, 0, 0),
        "ok",
    ),
    "not_json.ipynb": ("this is not JSON {", (0, 0, 0, 0), "unreadable"),
    "not_a_notebook.ipynb": ('{"cells": "nope", "hello": [1, 2]}', (0, 0, 0, 0), "unreadable"),
    "empty.ipynb": ("", (0, 0, 0, 0), "unreadable"),
    "photo.png": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", (0, 0, 0, 0), "unreadable"),
    "dave": ("no extension, plain text", (0, 0, 0, 0), "unreadable"),
    "=HYPERLINK(1).ipynb": (_blank, (0, 0, 0, 0), "ok"),  # a formula-like id, neutralised
    # ids collide: bob and bob (two rows, no grade); bob.ipynb.ipynb has its own id "bob.ipynb"
    "bob.ipynb": (
        lambda: solved("ex1_infonce"),
        (0, 0, 0, 0),
        "error: student id 'bob' is shared",
    ),
    "bob.txt": ("text", (0, 0, 0, 0), "error: student id 'bob' is shared"),
    "bob.ipynb.ipynb": (_blank, (0, 0, 0, 0), "ok"),
    # the same name in NFC and NFD: one id after normalisation
    "zo\u00e9.ipynb": (_blank, (0, 0, 0, 0), "error: student id 'zo\u00e9' is shared"),
    "zoe\u0301.ipynb": (_blank, (0, 0, 0, 0), "error: student id 'zo\u00e9' is shared"),
}
# entries that are not plain files: never followed or read, each an error row
SPECIAL = {
    "link_to_master.ipynb": (
        lambda p: p.symlink_to(gen.SOLUTIONS_DIR / "ex1_infonce.ipynb"),
        "error: a symbolic link (not followed)",
    ),
    "dangling.ipynb": (
        lambda p: p.symlink_to(p.parent / "nowhere"),
        "error: a symbolic link (not followed)",
    ),  # fmt: skip
    "fifo.ipynb": (lambda p: os.mkfifo(p), "error: not a regular file (FIFO, socket or device)"),
    "folder.ipynb": (lambda p: p.mkdir(), "error: a directory"),
}


@pytest.fixture(scope="module")
def submissions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one file per case of SUBMISSIONS."""
    folder = tmp_path_factory.mktemp("submissions")
    for name, (content, _, _) in SUBMISSIONS.items():
        content = content() if callable(content) else content
        if isinstance(content, nbformat.NotebookNode):
            nbformat.write(content, folder / name)
        elif isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content)
    for name, (make, _) in SPECIAL.items():
        make(folder / name)
    return folder


def _grade(submissions: Path, regenerated: dict[str, gen.Generated], out: Path) -> list[dict]:
    bundle = regenerated["ex1_infonce"].autograder
    grade.grade_folder(
        "ex1_infonce",
        submissions,
        out,
        bundle=bundle,
        timeout=LOOP_TIMEOUT_S,
        jobs=2,
        seed=SEED,
        unsafe_no_isolation=UNSAFE,
    )
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def graded(submissions: Path, regenerated: dict[str, gen.Generated], tmp_path_factory) -> tuple:
    """Digests of the submissions, then the CSV rows and output folder of grading them."""
    before = {p.name: p.read_bytes() for p in submissions.iterdir() if p.name not in SPECIAL}
    out = tmp_path_factory.mktemp("out")
    return before, _grade(submissions, regenerated, out), out


def _csv(file: str) -> str:
    """How a file name appears in the CSV (formula-like cells get a leading quote)."""
    return grade.escape.csv_cell(file)


def test_every_file_gets_exactly_one_row(graded: tuple) -> None:
    _, rows, _ = graded
    assert sorted(r["file"] for r in rows) == sorted(_csv(f) for f in [*SUBMISSIONS, *SPECIAL])
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows), "rows sorted by file"
    assert list(rows[0]) == [
        "student",
        "file",
        "q1",
        "q2a",
        "q3b",
        "q4",
        "q2b",
        "q3a",
        "total",
        "status",
    ]


@pytest.mark.parametrize("file", sorted(SUBMISSIONS))
def test_row(file: str, graded: tuple) -> None:
    _, rows, out = graded
    (row,) = [r for r in rows if r["file"] == _csv(file)]
    _, scores, status = SUBMISSIONS[file]
    assert re.match(status, row["status"]), row
    got = tuple(float(row[q]) for q in ("q1", "q2a", "q3b", "q4"))
    assert got == scores, row
    assert float(row["total"]) == sum(scores), row
    stem = unicodedata.normalize("NFC", Path(file).stem)
    assert row["student"] == ("'" + stem if stem.startswith("=") else stem)
    shared = row["status"].startswith("error: student id")
    name = f"collisions/{file}.txt" if shared else f"{stem}.txt"
    feedback = (out / "feedback" / name).read_text()
    assert f"status: {row['status']}" in feedback


@pytest.mark.parametrize("file", sorted(SPECIAL))
def test_special_entry_row(file: str, graded: tuple) -> None:
    _, rows, _ = graded
    (row,) = [r for r in rows if r["file"] == file]
    assert row["status"] == SPECIAL[file][1] and row["total"] == "0", row


def test_feedback_hides_hidden_tests(graded: tuple) -> None:
    _, _, out = graded
    carol = (out / "feedback" / "carol.txt").read_text()
    assert "q2a: 0 / 2" in carol and "hidden test 2: failed" in carol
    assert "the label of query i is i" in carol  # the hidden test's message, not its source
    assert "info_nce(q, k, temperature=tau)" not in carol


def test_submissions_are_not_modified(graded: tuple, submissions: Path) -> None:
    before, _, _ = graded
    files = {p.name: p.read_bytes() for p in submissions.iterdir() if p.name not in SPECIAL}
    assert files == before


def test_csv_is_final_and_neutralises_formulas(graded: tuple) -> None:
    _, rows, out = graded
    assert not (out / "grades.csv.partial").exists()
    formulas = [c for r in rows for c in r.values() if c.lstrip().startswith(("=", "+", "-", "@"))]
    assert not formulas and not [c for r in rows for c in r.values() if c.startswith(("\t", "\r"))]


def test_rerun_gives_the_same_rows(
    graded: tuple, submissions: Path, regenerated: dict[str, gen.Generated], tmp_path: Path
) -> None:
    _, rows, _ = graded
    again = tmp_path / "again"
    again.mkdir()
    for name in ("carol.ipynb", "not_json.ipynb", "photo.png"):
        (again / name).write_bytes((submissions / name).read_bytes())
    rerun = _grade(again, regenerated, tmp_path / "out")
    assert rerun == [r for r in rows if r["file"] in {"carol.ipynb", "not_json.ipynb", "photo.png"}]


# Every master end to end through the grader, with a secret shift of its tests' seeds.
@pytest.mark.parametrize("name", NAMES)
def test_master_scores_full_marks(
    name: str, regenerated: dict[str, gen.Generated], tmp_path: Path
) -> None:
    bundle = regenerated[name].autograder
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "master.ipynb").write_bytes((gen.SOLUTIONS_DIR / f"{name}.ipynb").read_bytes())  # fmt: skip
    (outcome,) = grade.grade_folder(
        name, tmp_path / "in", tmp_path / "out", bundle=bundle, seed=SEED
    )
    assert outcome.status == "ok", outcome.feedback
    expected = grade.questions(bundle)
    assert outcome.scores == expected, outcome.feedback


def test_student_ids_stay_unique() -> None:
    ids = grade.student_ids(
        ["a.ipynb", "a.txt", "b.ipynb", "A.ipynb.ipynb", "c\u0327.ipynb", "\u00e7.txt"]
    )
    assert ids == {
        "a.ipynb": None, "a.txt": None, "b.ipynb": "b", "A.ipynb.ipynb": "A.ipynb",
        "c\u0327.ipynb": None, "\u00e7.txt": None,
    }  # fmt: skip


def test_secret_replaces_every_literal_seed_and_keeps_lines() -> None:
    source = "g = torch.Generator().manual_seed(3)\nrng = np.random.default_rng(0)\nx = f(3)\n"
    shifted = verdict.seeded(source, 10)
    a, b = verdict.secret_seed(3, 10), verdict.secret_seed(0, 10)
    assert shifted.splitlines() == [
        f"g = torch.Generator().manual_seed({a})", f"rng = np.random.default_rng({b})", "x = f(3)"
    ]  # fmt: skip
    assert verdict.seeded(source, 0) == source


def test_one_seen_input_reveals_neither_the_secret_nor_another_input() -> None:
    # With a shift, seed 3 + secret handed to a student's function gave the secret away; a hash does
    # not: the seeds of two tests under one secret differ by no fixed amount across secrets.
    gaps = {verdict.secret_seed(3, s) - verdict.secret_seed(0, s) for s in range(50)}
    assert len(gaps) == 50
    assert all(verdict.secret_seed(3, s) != 3 + s for s in range(50))


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="make exercises"):
        grade.grade_folder("no_such_exercise", tmp_path, tmp_path / "out")
    with pytest.raises(SystemExit):
        grade.main(["ex1_infonce", str(tmp_path)])  # -o is required


def test_a_failing_grader_still_gives_the_file_a_row(
    regenerated: dict[str, gen.Generated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "in" / "x.ipynb")

    def broken(*args: object) -> None:
        raise ZeroDivisionError("grader bug")

    monkeypatch.setattr(verdict.Grader, "grade", broken)
    bundle = regenerated["ex1_infonce"].autograder
    (outcome,) = grade.grade_folder(
        "ex1_infonce", tmp_path / "in", tmp_path / "out", bundle=bundle, unsafe_no_isolation=UNSAFE
    )
    assert (outcome.file, outcome.status) == ("x.ipynb", "error: grader failed (ZeroDivisionError)")
    assert "x,x.ipynb,0,0,0,0,,,0,error" in (tmp_path / "out" / "grades.csv").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_visible_tests_are_materialised_for_grader_check(name: str) -> None:
    folder = Path(visible_tests(name))
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(load_visible_tests(name))
    assert all("OK_FORMAT = False" in p.read_text() for p in folder.glob("*.py"))


def test_unknown_exercise_is_rejected() -> None:
    with pytest.raises(ValueError, match="ex1_infonce"):
        visible_tests("ex9_missing")


def test_a_changed_bundle_stops_grading(
    regenerated: dict[str, gen.Generated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(regenerated["ex1_infonce"].autograder.read_bytes())
    (tmp_path / "in").mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / "in" / name)

    def rewrites_the_bundle(self: verdict.Grader, cells: list, scratch: str) -> verdict.Verdict:
        with open(bundle, "ab") as f:  # what a submission outside isolation could do
            f.write(b"tampered")
        return verdict.Verdict("ok")

    monkeypatch.setattr(verdict.Grader, "grade", rewrites_the_bundle)
    a, b = grade.grade_folder(
        "ex1_infonce", tmp_path / "in", tmp_path / "out", bundle=bundle, unsafe_no_isolation=UNSAFE
    )
    assert a.status == "ok"
    assert b.status == "error: grader failed (RuntimeError)" and "changed" in b.feedback[0]


def test_without_isolation_it_refuses_unless_told(
    regenerated: dict[str, gen.Generated], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(isolation, "bubblewrap", lambda: (None, "no bwrap in this test"))
    (tmp_path / "in").mkdir()
    nbformat.write(solved("ex1_infonce"), tmp_path / "in" / "alice.ipynb")
    bundle = regenerated["ex1_infonce"].autograder
    with pytest.raises(ValueError, match="no bwrap in this test.*--unsafe-no-isolation"):
        grade.grade_folder("ex1_infonce", tmp_path / "in", tmp_path / "out", bundle=bundle)
    (alice,) = grade.grade_folder(
        "ex1_infonce", tmp_path / "in", tmp_path / "out", bundle=bundle, unsafe_no_isolation=True
    )
    assert alice.status == "ok" and sum(alice.scores.values()) == 11, alice.feedback
    assert "WITHOUT isolation" in capsys.readouterr().err


@pytest.mark.skipif(UNSAFE, reason="needs bubblewrap")
def test_a_python_under_tmp_stays_visible_in_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI may clone the course (and its .venv) under /tmp, where the sandbox mounts a private tmpfs.
    env_dir = (
        Path("/tmp") / tmp_path.relative_to("/tmp") if tmp_path.is_relative_to("/tmp") else None
    )
    if env_dir is None:
        pytest.skip("pytest's temporary folder is not under /tmp")
    (env_dir / "marker.txt").write_text("seen")
    env_dir.chmod(0o755)
    real = isolation._python_dirs()
    monkeypatch.setattr(isolation, "_python_dirs", lambda: [*real, str(env_dir)])
    limits = isolation.Limits()
    launch = isolation.bwrap_launch(shutil.which("bwrap"), os.geteuid() == 0, limits.tmpfs_bytes)
    probe = [*launch.command, "/bin/cat", str(env_dir / "marker.txt")]
    run = subprocess.run(probe, capture_output=True, env=isolation.sandbox_env("ci"))
    assert run.returncode == 0 and run.stdout == b"seen", run.stderr.decode()
