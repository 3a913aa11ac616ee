"""The visible tests of an exercise, shipped inside the package so grader.check works anywhere.

otter's `grader.check("q1")` reads test files from a folder. A student notebook opened on Colab from
its GitHub link has no folder next to it, so `make exercises` stores each exercise's visible tests
in course_utils/grading/visible/<name>.json, and the notebook's init cell writes them out here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

VISIBLE_DIR = Path(__file__).resolve().parent / "visible"


def load_visible_tests(name: str) -> dict[str, str]:
    """Question name -> otter test file source of the visible tests of exercise `name`."""
    path = VISIBLE_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in VISIBLE_DIR.glob("*.json"))
        raise ValueError(f"name must be one of the generated exercises {known}, got {name!r}")
    return json.loads(path.read_text())


def visible_tests(name: str) -> str:
    """A fresh folder holding exercise `name`'s visible tests as otter test files (q1.py, ...)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-visible-tests-"))
    for question, source in load_visible_tests(name).items():
        (folder / f"{question}.py").write_text(source)
    return str(folder)
