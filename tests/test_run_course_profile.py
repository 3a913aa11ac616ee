"""scripts/run_course.py without COURSE_PROFILE: `ci` without a GPU, said in one line."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_course.py"
PROBE = "from course_utils.runtime import profile\nprint('profile is', profile().name)"


def _run(tmp_path: Path, profile: str | None) -> tuple[subprocess.CompletedProcess, str]:
    """Run a one-lesson course that prints its profile; return the process and the lesson's HTML."""
    src = tmp_path / "notebooks"
    src.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, src / "01_probe.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "COURSE_PROFILE"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPT.parent.parent), env.get("PYTHONPATH", "")])
    if profile is not None:
        env["COURSE_PROFILE"] = profile
    out = tmp_path / "build"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(src), str(out), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result, (out / "01_probe.html").read_text()


def test_no_profile_and_no_gpu_runs_ci_and_says_so(tmp_path: Path) -> None:
    result, html = _run(tmp_path, None)
    assert "profile is ci" in html
    said = [line for line in result.stdout.splitlines() if "COURSE_PROFILE" in line]
    assert len(said) == 1 and "'ci'" in said[0] and "no GPU" in said[0]


def test_a_chosen_profile_is_kept_silently(tmp_path: Path) -> None:
    result, html = _run(tmp_path, "cpu")
    assert "profile is cpu" in html
    assert "COURSE_PROFILE" not in result.stdout
