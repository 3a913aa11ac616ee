"""Grade answer variants through the grader's verdict code without a kernel per variant.

`Questions` loads an exercise's hidden and visible tests from its autograder bundle (the files
`course-grade` reads, seeds replaced under a secret) and scores one question for a variant: the
variant's source runs as a module in this process (its functions stand for the notebook's names),
and `verdict.score_question` runs the question's test cases against them, rules included.
`master_cell` gives a master's cells (given code, answers) for a variant's module to run first.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import nbformat

from course_utils.grading import generate as gen
from course_utils.grading import verdict

SECRET = 2026
_COUNTER = itertools.count()


class Questions:
    """The test files of one autograder bundle, scored under one secret."""

    def __init__(self, bundle: Path, folder: Path, secret: int = SECRET) -> None:
        self.sources = verdict.read_test_sources(bundle)
        self.folder, self.secret = folder, secret
        self.names = [t.name for t in verdict.load_tests(self.sources)]

    def score(self, question: str, source: str, env: dict[str, Any] | None = None) -> float:
        """The points `source` (a module's code: imports, then the answer) earns on `question`;
        `env` adds notebook names (plain values) the tests take as parameters."""
        module = _load(source, self.folder)
        tests = verdict.load_tests(self.sources, self.secret)
        (index,) = [i for i, t in enumerate(tests) if t.name == question]
        test = tests[index]
        names = verdict._parameters(test)
        bound = {n: getattr(module, n) for n in names if hasattr(module, n)}
        bound |= {n: v for n, v in (env or {}).items() if n in names and n not in bound}
        lines: list[str] = []
        score = verdict.score_question(test, bound, self.secret, index, lines)
        self.feedback = "\n".join(lines)
        return score


def _load(source: str, folder: Path) -> Any:
    """`source` imported as a fresh module from a file (so `inspect.getsource` reads it)."""
    name = f"variant_{next(_COUNTER)}"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def _code_cells(name: str) -> tuple[str, ...]:
    nb = nbformat.read(gen.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
    return tuple(c.source for c in nb.cells if c.cell_type == "code")


def master_cell(name: str, first_line: str) -> str:
    """The code cell of master `name` that starts with `first_line`, as a solved notebook runs it
    (solution markers removed): a variant's module takes the master's given code from here."""
    (source,) = [s for s in _code_cells(name) if s.startswith(first_line)]
    lines = [ln for ln in source.split("\n") if not re.match(r"\s*# (BEGIN|END) SOLUTION", ln)]
    return re.sub(r"\s*# SOLUTION$", "", "\n".join(lines), flags=re.MULTILINE) + "\n\n"
