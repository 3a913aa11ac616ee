"""The student notebooks' otter-grader install line: grader.check works with only what it installs.

Colab has IPython, ipywidgets 7, nbconvert, pandas and the like; installing otter-grader with its
dependencies upgraded ipywidgets to 8 and pulled ~30 packages. The line from `otter_install_line()`
is installed here from PyPI (pip's cache after the first run) into a folder of its own, next to
Colab's ipywidgets 7.7.1, and `grader.check` runs on exercise ex1's visible tests with every other
otter-grader dependency made unimportable.
"""

import hashlib
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="the install line is generated with the instructor extra")

from course_utils.colab import ROOT  # noqa: E402
from course_utils.grading.generate import otter_install_line, with_otter_install  # noqa: E402

COLAB_HAS = ("ipywidgets==7.7.1", "ipython_genutils==0.2.0")  # Colab's widgets, not in the venv
# otter-grader's requirements that the line leaves out and Colab does not have, and the heavy
# packages behind them (nbconvert[webpdf], fica's docs tooling): none may be needed.
UNIMPORTABLE = ("click", "jupytext", "python_on_whales", "playwright", "sphinx", "docutils")

PROBE = textwrap.dedent(
    """
    import sys

    class Unimportable:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {unimportable!r}:
                raise ImportError(f"{{name}} is not installed by the student's line")

    sys.meta_path.insert(0, Unimportable())

    import ipywidgets
    import otter
    import torch
    import torch.nn.functional as F

    from course_utils.grading import visible_tests

    print("otter from", otter.__file__)
    print("ipywidgets", ipywidgets.__version__)
    grader = otter.Notebook(tests_dir=visible_tests("ex1_infonce"))

    def info_nce_scratch(queries, keys, temperature):  # a correct answer to q1
        logits = F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T / temperature
        return F.cross_entropy(logits, torch.arange(len(queries)))

    print("correct", grader.check("q1").grade)

    def info_nce_scratch(queries, keys, temperature):  # a wrong one: a constant
        return torch.tensor(0.0)

    wrong = grader.check("q1")
    print("wrong", wrong.grade)
    print(wrong)
    """
)


def _pip_target(target: Path, args: list[str]) -> None:
    """pip install `args` into `target` once (a stamp file marks a finished install)."""
    stamp = target / ".installed"
    if stamp.exists():
        return
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--target"]
    done = subprocess.run(
        [*cmd, str(target), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"pip install {args} failed:\n{done.stderr[-3000:]}"
    stamp.touch()


@pytest.fixture(scope="module")
def light_install() -> tuple[Path, Path]:
    """(folder with what the student's line installs, folder with Colab's ipywidgets 7)."""
    line = otter_install_line()
    key = hashlib.sha256((line + " ".join(COLAB_HAS)).encode()).hexdigest()[:12]
    base = ROOT / "build" / "otter-light" / key
    light, colab = base / "light", base / "colab"
    _pip_target(light, shlex.split(line.removeprefix("%pip install")))
    _pip_target(colab, ["-q", "--no-deps", *COLAB_HAS])
    return light, colab


def test_the_line_installs_no_dependencies_of_its_own() -> None:
    args = shlex.split(otter_install_line().removeprefix("%pip install"))
    assert "--no-deps" in args
    packages = [a for a in args if not a.startswith("-")]
    assert packages[0].startswith("otter-grader==")
    assert not any(p.split("=")[0].split(">")[0] in ("ipywidgets", "nbconvert") for p in packages)


def test_grader_check_runs_with_only_the_light_install(light_install, tmp_path) -> None:
    light, colab = light_install
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(light), str(colab), str(ROOT)])
    probe = PROBE.format(unimportable=set(UNIMPORTABLE))
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,  # otter writes its .OTTER_LOG there
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"otter from {light / 'otter' / '__init__.py'}"  # not the venv's otter
    assert lines[1] == "ipywidgets 7.7.1"  # Colab's, left as it is
    assert lines[2] == "correct 1.0"
    assert (
        lines[3] == "wrong 0.0"
    )  # the finite-scalar gate (0 points) passes, orthonormal keys fail
    assert "expected 0.340753, got 0.000000" in done.stdout  # the orthonormal-keys message


def test_the_masters_otter_line_is_replaced() -> None:
    install = '%pip install -q "learning-at-scale @ git+https://github.com/o/r"'
    master = f"if colab:\n    {install}\n    %pip install -q otter-grader==7.0.0\nimport x"
    assert with_otter_install(master) == (
        f"if colab:\n    {install}\n    {otter_install_line()}\nimport x"
    )
    bare = f"if colab:\n    {install}\nimport x"  # no otter line: added after the course's
    assert with_otter_install(bare) == with_otter_install(master)
