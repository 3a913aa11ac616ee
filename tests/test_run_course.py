"""scripts/run_course.py: runs lessons in order, writes HTML, stops at a failure with its name."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_course.py"


def _notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def _run(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src), str(out), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def lessons(tmp_path: Path) -> Path:
    src = tmp_path / "notebooks"
    src.mkdir()
    _notebook(src / "01_first.ipynb", "x = 6 * 7", "print('answer', x)")
    _notebook(src / "scratch.ipynb", "raise RuntimeError('not a lesson')")  # not NN_*: skipped
    return src


def test_runs_lessons_and_writes_html(lessons: Path, tmp_path: Path) -> None:
    result = _run(lessons, tmp_path / "build")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "build" / "01_first.html").read_text()
    assert "answer 42" in html
    assert not (tmp_path / "build" / "scratch.html").exists()


def test_stops_at_the_failing_notebook_with_its_error(lessons: Path, tmp_path: Path) -> None:
    _notebook(lessons / "02_broken.ipynb", "1 / 0")
    _notebook(lessons / "03_after.ipynb", "print('never')")
    result = _run(lessons, tmp_path / "build")
    assert result.returncode == 1
    assert "02_broken.ipynb" in result.stderr and "ZeroDivisionError" in result.stderr
    assert (tmp_path / "build" / "01_first.html").exists()
    assert not (tmp_path / "build" / "03_after.html").exists()
