"""notebooks/conftest.py: nbval fails a lesson cell whose executed output shows a bare object repr."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

CONFTEST = Path(__file__).resolve().parent.parent / "notebooks" / "conftest.py"


def _load_hook_module():
    spec = importlib.util.spec_from_file_location("lesson_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("output", "found"),
    [
        (
            {
                "output_type": "execute_result",
                "data": {"text/plain": "<torch._C.Generator at 0x7f3a>"},
            },
            ["<torch._C.Generator at 0x7f3a>"],
        ),
        (
            {
                "output_type": "stream",
                "name": "stdout",
                "text": "<__main__.Foo object at 0xABC12>\n",
            },
            ["<__main__.Foo object at 0xABC12>"],
        ),
        (
            {
                "output_type": "display_data",
                "data": {"text/plain": "<Figure size 640x480 with 1 Axes>"},
            },
            [],
        ),
        ({"output_type": "stream", "name": "stdout", "text": "loss 0.31 at 0x10 steps\n"}, []),
    ],
)
def test_bare_reprs_finds_object_addresses_only(output: dict, found: list[str]) -> None:
    assert _load_hook_module().bare_reprs([output]) == found


def test_nbval_fails_the_cell_that_prints_a_planted_repr(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    cells = ["x = 6 * 7\nprint('answer', x)", "object()", "_ = object()\nx"]
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells]),
        tmp_path / "lesson.ipynb",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "--color=no",
            "--nbval-lax",
        ]
        + ["--nbval-current-env", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = re.findall(r"Cell (\d) (PASSED|FAILED)", result.stdout)
    assert verdicts == [("0", "PASSED"), ("1", "FAILED"), ("2", "PASSED")], result.stdout
    assert re.search(r"Cell 1: output shows a bare object repr '<object.* at 0x", result.stdout)
