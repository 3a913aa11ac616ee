"""Grading a whole class: written answers and `merge`, summaries, gradebook export, similarity.

These tests build OUT folders by hand (questions.json and grades.csv as `course-grade` writes them)
or read the masters and exercises, so they run in seconds; test_grading.py grades real notebooks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import solved  # noqa: E402

from course_utils.grading import (  # noqa: E402
    export,
    grade,
    gradescope,
    isolation,
    otter_cells,
    report,
    similarity,
    summary,
    written,
)
from course_utils.grading import generate as gen  # noqa: E402

MASTER = gen.SOLUTIONS_DIR / "ex1_infonce.ipynb"
BLANK = gen.EXERCISES_DIR / "ex1_infonce.ipynb"
AUTO = {"q1": 3.0, "q2a": 2.0}
WRITTEN = {"q2b": 1.0, "q3a": 3.0}


def _out(tmp_path: Path, rows: list[list[str]]) -> Path:
    """An OUT folder with questions.json and grades.csv (student, file, q1, q2a, q2b, q3a, ...)."""
    out = tmp_path / "out"
    out.mkdir()
    written.write_questions(out, "ex1_infonce", AUTO, WRITTEN)
    header = ["student", "file", *AUTO, *WRITTEN, "total", "status"]
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for r in rows:
            writer.writerow([r[0], f"{r[0]}.ipynb", *r[1:]])
    return out


ROWS = [
    ["alice", "3", "2", "", "", "5", "ok"],
    ["bob", "1", "0", "", "", "1", "ok"],
    ["carol", "0", "0", "", "", "0", "timeout"],
]


def _grades(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


# ---- written questions ---------------------------------------------------------------------


def test_written_questions_come_from_the_master_with_model_answer_and_rubric() -> None:
    qs = written.written_questions(MASTER)
    assert [(q.name, q.points) for q in qs] == [("q2b", 1.0), ("q3a", 3.0)]
    assert all("Model answer" in q.model and "Rubric" in q.model for q in qs)
    assert "why is InfoNCE exactly this cross-entropy" in qs[0].prompt


def test_answers_are_found_per_question_and_blank_is_empty() -> None:
    qs = written.written_questions(MASTER)
    blank = nbformat.read(BLANK, as_version=4)
    assert written.answers(blank, qs) == {"q2b": "", "q3a": ""}
    nb = nbformat.read(BLANK, as_version=4)
    answer_cells = [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", []) and c.cell_type == "markdown"]  # fmt: skip
    answer_cells[0].source = "softmax row i is the InfoNCE fraction"
    answer_cells[1].source = "the optimal critic is the density ratio"
    found = written.answers(nb, qs)
    assert found == {"q2b": "softmax row i is the InfoNCE fraction", "q3a": "the optimal critic is the density ratio"}  # fmt: skip


def test_pages_gather_one_question_across_the_class_escaped(tmp_path: Path) -> None:
    qs = written.written_questions(MASTER)
    by_student = {"alice": {"q2b": "<script>alert(1)</script> ok", "q3a": ""}, "bob": {"q2b": "b's answer", "q3a": "x"}}  # fmt: skip
    written.write_pages(tmp_path, "ex1_infonce", qs, by_student)
    page = (tmp_path / "written" / "q2b.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; ok" in page
    assert "Rubric (1 point)" in page and "b&#x27;s answer" in page
    assert page.index('id="alice"') < page.index('id="bob"')
    assert "(no answer)" in (tmp_path / "written" / "q3a.html").read_text()
    with open(tmp_path / "written" / "scores.csv", newline="") as f:
        assert list(csv.reader(f)) == [
            ["student", "q2b", "q3a"],
            ["alice", "", ""],
            ["bob", "", ""],
        ]


def test_merge_adds_written_scores_and_recomputes_totals(tmp_path: Path) -> None:
    out = _out(tmp_path, ROWS)
    sheet = tmp_path / "manual.csv"
    sheet.write_text("student,q2b,q3a\nalice,1,2.5\nbob,0.5,\n")
    assert written.merge(out, sheet) == 3
    rows = _grades(out)
    assert (rows["alice"]["q2b"], rows["alice"]["q3a"], rows["alice"]["total"]) == (
        "1",
        "2.5",
        "8.5",
    )
    assert (rows["bob"]["q2b"], rows["bob"]["q3a"], rows["bob"]["total"]) == ("0.5", "", "1.5")
    assert rows["carol"]["total"] == "0"


@pytest.mark.parametrize(
    ("sheet", "message"),
    [
        ("student,q2b\nmallory,1\n", "'mallory' is not in grades.csv"),
        ("student,q9\nalice,1\n", r"\['q9'\] are not written questions"),
        ("student,q1\nalice,1\n", r"\['q1'\] are not written questions"),  # autograded: not here
        ("student,q2b\nalice,1.5\n", "outside \\[0, 1\\]"),
        ("student,q3a\nalice,-1\n", "outside \\[0, 3\\]"),
        ("student,q3a\nalice,nan\n", "outside"),
        ("student,q3a\nalice,three\n", "not a number"),
        ("student,q2b\nalice,1\nalice,0\n", "appears twice"),
        ("name,q2b\nalice,1\n", "needs a 'student' column"),
    ],
)
def test_merge_refuses_bad_sheets_and_changes_nothing(tmp_path: Path, sheet: str, message: str) -> None:  # fmt: skip
    out = _out(tmp_path, ROWS)
    before = (out / "grades.csv").read_text()
    (tmp_path / "m.csv").write_text(sheet)
    with pytest.raises(ValueError, match=message):
        written.merge(out, tmp_path / "m.csv")
    assert (out / "grades.csv").read_text() == before


def test_merge_from_the_command_line_and_unknown_folder(tmp_path: Path, capsys) -> None:
    out = _out(tmp_path, ROWS)
    (tmp_path / "m.csv").write_text("student,q3a\nbob,3\n")
    assert grade.main(["merge", str(out), str(tmp_path / "m.csv")]) == 0
    assert _grades(out)["bob"]["total"] == "4"
    assert "merged 1 scores" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        grade.main(["merge", str(tmp_path), str(tmp_path / "m.csv")])  # not an OUT folder


# ---- summaries -----------------------------------------------------------------------------


def test_summary_per_question_against_statistics(tmp_path: Path) -> None:
    out = _out(tmp_path, ROWS)
    (tmp_path / "m.csv").write_text("student,q3a\nalice,3\nbob,1\n")
    written.merge(out, tmp_path / "m.csv")
    table = {r["question"]: r for r in summary.summarize(out)}
    q1 = [3.0, 1.0, 0.0]
    assert float(table["q1"]["mean"]) == pytest.approx(statistics.fmean(q1), rel=1e-3)
    assert float(table["q1"]["median"]) == statistics.median(q1)
    assert float(table["q1"]["share_at_0"]) == pytest.approx(1 / 3, abs=1e-3)
    assert float(table["q1"]["share_at_max"]) == pytest.approx(1 / 3, abs=1e-3)
    assert table["q1"]["errors"] == "1"  # carol timed out
    assert table["q3a"]["scored"] == "2" and float(table["q3a"]["mean"]) == 2.0
    assert table["q2b"]["scored"] == "0" and table["q2b"]["mean"] == ""
    assert table["total"]["max"] == "9" and float(table["total"]["median"]) == 2.0
    text = summary.write(out)
    assert (out / "summary.png").stat().st_size > 1000
    with open(out / "summary.csv", newline="") as f:
        assert [r["question"] for r in csv.DictReader(f)] == ["q1", "q2a", "q2b", "q3a", "total"]
    assert text.splitlines()[0].split()[:3] == ["question", "max", "scored"]


# ---- export --------------------------------------------------------------------------------


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_export_canvas_gradescope_and_csv(tmp_path: Path) -> None:
    out = _out(tmp_path, ROWS)
    (tmp_path / "m.csv").write_text("student,q2b,q3a\nalice,1,3\n")
    written.merge(out, tmp_path / "m.csv")
    canvas = _read(export.export(out, "canvas", assignment="Exercise 1 (1234)"))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Exercise 1 (1234)"]  # fmt: skip
    assert canvas[1] == ["Points Possible", "", "", "", "", "9"]
    assert canvas[2] == ["", "", "alice", "", "", "9"] and canvas[4][2:] == ["carol", "", "", "0"]
    scope = _read(export.export(out, "gradescope", id_column="Email"))
    assert scope == [["Email", "Total Score"], ["alice", "9"], ["bob", "1"], ["carol", "0"]]
    plain = _read(export.export(out, "csv", tmp_path / "plain.csv"))
    assert plain[0] == ["student", "q1", "q2a", "q2b", "q3a", "total", "max", "status"]
    assert plain[2] == ["bob", "1", "0", "", "", "1", "9", "ok"]
    with pytest.raises(ValueError, match="format must be one of"):
        export.export(out, "moodle")
    with pytest.raises(ValueError, match="id-column for gradescope"):
        export.export(out, "gradescope", id_column="Name")


def test_export_command_line(tmp_path: Path, capsys) -> None:
    out = _out(tmp_path, ROWS)
    assert grade.main(["export", str(out), "--format", "gradescope"]) == 0
    assert _read(out / "export-gradescope.csv")[0] == ["SID", "Total Score"]
    assert "export-gradescope.csv" in capsys.readouterr().out


# ---- similarity ----------------------------------------------------------------------------


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return report.code(nb)


def test_normalisation_ignores_names_comments_and_strings() -> None:
    a = "def f(x, y):\n    # sum\n    '''Doc.'''\n    return x + y * 2\n"
    b = "def g(p, q):\n    return p + q * 2  # other comment\n"
    assert similarity.normalised_tokens(a) == similarity.normalised_tokens(b)
    assert similarity.normalised_tokens("return x - y * 2") != similarity.normalised_tokens("return x + y * 2")  # fmt: skip


def test_renamed_copy_and_master_copy_are_listed_and_independent_work_is_not() -> None:
    blank = _code(nbformat.read(BLANK, as_version=4))
    master = _code(nbformat.read(MASTER, as_version=4))
    solution = _code(solved("ex1_infonce"))
    renamed = [c.replace("logits", "scores_").replace("# ", "# my note ") for c in solution]
    own = [c.replace("def info_nce_scratch", "def info_nce_scratch_unused") for c in blank] + [
        "def info_nce_scratch(query, keys, temperature=0.1):\n"
        "    total = 0.0\n    for i in range(len(query)):\n"
        "        row = [float((query[i] * keys[j]).sum()) / temperature for j in range(len(keys))]\n"
        "        m = max(row)\n        s = sum(math.exp(r - m) for r in row)\n"
        "        total += -(row[i] - m - math.log(s))\n    return torch.tensor(total / len(query))\n"
    ]
    matches = similarity.similar(
        {"ann": solution, "ben": renamed, "cat": own, "dan": blank}, blank, master
    )
    pairs = {(m.a, m.b) for m in matches}
    assert ("ann", "ben") in pairs
    assert ("ann", "(master)") in pairs and ("ben", "(master)") in pairs
    assert not any("cat" in p or "dan" in p for p in pairs), matches
    with pytest.raises(ValueError, match="threshold"):
        similarity.similar({}, blank, master, threshold=0)


def test_class_reports_from_a_folder(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    nb = solved("ex1_infonce")
    (cell,) = [c for c in nb.cells if c.cell_type == "markdown" and "otter_answer_cell" in c.metadata.get("tags", [])][:1]  # fmt: skip
    cell.source = "my written answer"
    nbformat.write(nb, subs / "alice.ipynb")
    (subs / "bob.ipynb").write_text("not a notebook")
    (subs / "link.ipynb").symlink_to(subs / "alice.ipynb")
    out = _out(tmp_path, [["alice", "3", "2", "", "", "5", "ok"], ["bob", "0", "0", "", "", "0", "unreadable"]])  # fmt: skip
    report.record_answers(out, subs, MASTER)  # as `course-grade` does before grading
    text = report.write_class_reports("ex1_infonce", subs, out, MASTER)
    assert "my written answer" in (out / "written" / "q2b.html").read_text()
    assert json.loads((out / "questions.json").read_text())["written"] == WRITTEN
    assert _read(out / "similarity.csv")[1][:2] == ["alice", "(master)"]
    assert "q1" in text and (out / "summary.csv").is_file()


# ---- Gradescope autograder -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ex1's autograder bundle, regenerated from its master."""
    out = tmp_path_factory.mktemp("generated")
    return gen.generate(MASTER, out / "exercises", out / "visible", out / "autograder").autograder


def _autograde(root: Path, notebook: nbformat.NotebookNode) -> dict:
    """Gradescope's steps for one submission: fresh submission/ and results/, then run_autograder."""
    for sub in ("submission", "results"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir()
    nbformat.write(notebook, root / "submission" / "ex1_infonce.ipynb")
    env = {"PATH": os.environ["PATH"], "COURSE_AUTOGRADER_ROOT": str(root), "COURSE_PROFILE": "ci"}
    run = subprocess.run([root / "run_autograder"], env=env, cwd=root, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text())


@pytest.mark.skipif(isolation.bubblewrap()[0] is None, reason="the autograder grades only in bubblewrap")  # fmt: skip
def test_gradescope_autograder_grades_master_and_blank(bundle: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "autograder.zip"
    assert grade.main(["gradescope", "ex1_infonce", "-o", str(zip_path), "--autograder", str(bundle)]) == 0  # fmt: skip
    root = tmp_path / "autograder"  # Gradescope's /autograder
    with zipfile.ZipFile(zip_path) as zf:
        assert {"setup.sh", "run_autograder"} <= set(zf.namelist())
        zf.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):
        os.chmod(root / "source" / script, 0o755)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    # setup.sh as Gradescope runs it, reusing this interpreter (it imports everything needed)
    env = {"PATH": os.environ["PATH"], "COURSE_AUTOGRADER_ROOT": str(root), "COURSE_AUTOGRADER_PYTHON": sys.executable}  # fmt: skip
    setup = subprocess.run(["bash", "setup.sh"], cwd=root / "source", env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    points = {"q1": 3.0, "q2a": 2.0, "q3b": 3.0, "q4": 3.0}
    master = _autograde(root, solved("ex1_infonce"))
    assert [(t["name"], t["score"], t["max_score"]) for t in master["tests"]] == [(q, p, p) for q, p in points.items()], master  # fmt: skip
    assert master["score"] == 11 and "q1: 3 / 3" in master["tests"][0]["output"]
    blank = _autograde(root, nbformat.read(BLANK, as_version=4))
    assert blank["score"] == 0 and all(t["score"] == 0 for t in blank["tests"]), blank
    assert "failed" in blank["tests"][0]["output"]


def test_gradescope_autograder_fails_closed_without_isolation(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gradescope.build("ex1_infonce", tmp_path / "ag.zip", bundle=bundle)
    with zipfile.ZipFile(tmp_path / "ag.zip") as zf:
        zf.extractall(tmp_path / "source")
    (tmp_path / "submission").mkdir()
    nbformat.write(solved("ex1_infonce"), tmp_path / "submission" / "x.ipynb")
    monkeypatch.setattr(isolation, "bubblewrap", lambda: (None, "no user namespaces here"))
    assert gradescope.run(tmp_path) == 1
    assert not (tmp_path / "results" / "results.json").exists()


def test_gradescope_feedback_is_split_per_question() -> None:
    head, blocks = gradescope.per_question(
        [
            "error in code cell 3: NameError",
            "",
            "q1: 3 / 3",
            "  test 1: passed",
            "q2a: 0 / 2",
            "  hidden test 1: failed",
        ],  # fmt: skip
        ["q1", "q2a"],
    )
    assert head == ["error in code cell 3: NameError", ""]
    assert blocks == {"q1": ["q1: 3 / 3", "  test 1: passed"], "q2a": ["q2a: 0 / 2", "  hidden test 1: failed"]}  # fmt: skip


# ---- speed: the otter init cell ------------------------------------------------------------


@pytest.mark.parametrize("name", [m.stem for m in gen.masters()])
def test_only_the_unedited_otter_init_cell_is_replaced(name: str) -> None:
    cells = report.code(nbformat.read(gen.EXERCISES_DIR / f"{name}.ipynb", as_version=4))
    new = otter_cells.without_otter_init(cells)
    changed = [i for i, (a, b) in enumerate(zip(cells, new, strict=True)) if a != b]
    assert len(changed) == 1 and "otter.Notebook" in cells[changed[0]]
    edited = [c.replace("import otter", "import otter  # mine") for c in cells]
    assert otter_cells.without_otter_init(edited) == edited


def test_the_stand_in_answers_every_grader_call() -> None:
    namespace: dict = {}
    exec(otter_cells.STAND_IN, namespace)
    grader = namespace["grader"]
    assert grader.check("q1") is None and grader.check_all() is None
    assert "otter" not in namespace
