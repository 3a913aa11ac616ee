"""Grade one notebook in this process: run its code cells, then the autograder's tests on the result.

`course-grade` starts `python -m course_utils.grading.worker BUNDLE NOTEBOOK` in a scratch folder
holding a copy of one submission, inside its own process (and, where the platform allows, its own
network and PID namespaces) with a wall-clock timeout; it sends the path for the result JSON on stdin.

Why not `otter run`: otter executes the notebook in a Jupyter kernel and runs the tests inside that
same kernel, from a tests/ folder in the notebook's working directory, so a cell can rewrite the
tests or patch otter's checker before the tests run. Here otter's test files are read from the bundle
into memory before any student code runs, the student's cells run in an IPython shell (magics work,
an exception or `sys.exit()` in a cell is recorded and execution goes on, as with otter's
`allow_errors`), and then otter's own test runner grades the resulting namespace after every function
and class of the test machinery (otter, course_utils, builtins and each module the tests import, e.g.
torch) has been put back as it was before the notebook ran. Replacements are reported in the feedback;
a replacement made while a question's tests run scores that question 0.

This stops accidents and casual tampering. Code that runs in this process can still, with effort,
reach the grader itself (e.g. through the garbage collector): read the feedback's tampering notes and
review suspicious notebooks by hand.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

GUARDED_ROOTS = ("builtins", "otter", "course_utils", "__main__", "json", "os", "sys", "math")
NOTEBOOK_FILE_PREFIXES = ("<ipython-input", "<string>")  # code compiled from the notebook's cells
CELL_NAME = re.compile(r"<ipython-input-[^>]*>")  # holds a random hash: keep feedback stable
TEST_CASE_HEADER = re.compile(r"^❌ Test case failed\nError at line \d+ in test [^\n]*:\n[^\n]*\n")


def load_tests(bundle: Path) -> list[Any]:
    """otter's exception-based test files of an autograder bundle, sorted by question name."""
    from otter.test_files import ExceptionTestFile

    with zipfile.ZipFile(bundle) as zf:
        names = sorted(n for n in zf.namelist() if re.fullmatch(r"tests/[^/]+\.py", n))
        sources = {n: zf.read(n).decode() for n in names}
    if not sources:
        raise ValueError(f"bundle {bundle} holds no tests/*.py files")
    tests = []
    for name, source in sources.items():
        if not re.search(r"^OK_FORMAT = False$", source, re.MULTILINE):
            raise ValueError(f"{bundle}:{name}: expected otter's exception-based format")
        tests.append(ExceptionTestFile.from_string(source, path=name))
    return sorted(tests, key=lambda t: t.name)


def imported_modules(tests: list[Any]) -> list[str]:
    """Every module a test file imports, anywhere in its source."""
    names = set()
    for test in tests:
        for node in ast.walk(ast.parse(test.source)):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return sorted(names)


def _guarded(value: object) -> bool:
    """Whether a module or class attribute is machinery (code or a type), not mutable state."""
    return callable(value) or isinstance(value, staticmethod | classmethod | property | type(sys))


class Machinery:
    """A snapshot of the functions and classes of the modules the tests rely on."""

    def __init__(self, roots: set[str]) -> None:
        self.entries: list[tuple[object, str, str, object]] = []
        with warnings.catch_warnings():  # isinstance on deprecated aliases (torch) warns
            warnings.simplefilter("ignore")
            self._snapshot(roots)

    def _snapshot(self, roots: set[str]) -> None:
        """Record the guarded entries of every loaded module under `roots`."""
        for modname, module in sorted(sys.modules.items()):
            if module is None or modname.split(".")[0] not in roots:
                continue
            for key, value in list(vars(module).items()):
                if _guarded(value):
                    self.entries.append((module, key, f"{modname}.{key}", value))
                    if isinstance(value, type) and value.__module__ == modname:
                        for attr, member in list(vars(value).items()):
                            if _guarded(member) and attr != "__class__":
                                label = f"{modname}.{value.__qualname__}.{attr}"
                                self.entries.append((value, attr, label, member))

    def restore(self) -> list[str]:
        """Put back every entry the notebook deleted or replaced; return their names.

        Libraries patch themselves lazily (importing torch._dynamo wraps torch.manual_seed, the first
        SGD instance wraps SGD.step): a replacement defined in the entry's own package, outside the
        notebook's cells, is left alone. Anything else (a cell's lambda, a builtin, another
        package's function) counts as tampering.
        """
        changed = []
        for owner, key, label, value in self.entries:
            current = vars(owner).get(key, _MISSING)
            if current is value or not _tampering(label, current):
                continue
            try:
                setattr(owner, key, value)
            except (AttributeError, TypeError):
                pass
            changed.append(label)
        return sorted(set(changed))


_MISSING = object()


def _tampering(label: str, new: object) -> bool:
    """Whether replacing the entry `label` by `new` is the notebook's doing, not its library's."""
    if new is _MISSING:
        return True
    inner = new
    for attr in ("__func__", "fget", "func"):  # methods, properties, functools.partial
        try:
            candidate = getattr(new, attr, None)
        except Exception:
            candidate = None
        if callable(candidate):
            inner = candidate
            break
    module = getattr(inner, "__module__", None)
    code = getattr(inner, "__code__", None)
    from_cell = code is not None and code.co_filename.startswith(NOTEBOOK_FILE_PREFIXES)
    same_package = isinstance(module, str) and module.split(".")[0] == label.split(".")[0]
    return from_cell or not same_package


def run_cells(notebook: Path) -> tuple[dict[str, Any], list[str]]:
    """Run every code cell of `notebook` in an IPython shell; the namespace and the cell errors."""
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    nb = nbformat.read(notebook, as_version=4)
    shell = InteractiveShell.instance()
    errors = []
    for index, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        result = shell.run_cell(cell.source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            message = CELL_NAME.sub("<cell>", str(error).strip().split("\n")[0])[:200]
            errors.append(
                f"cell {index}: {type(error).__name__}" + (f": {message}" if message else "")
            )
    return dict(shell.user_ns), errors


def failure_message(message: str, hidden: bool) -> str:
    """otter's failure message; for a hidden test without the test's source line."""
    return TEST_CASE_HEADER.sub("", message).strip() if hidden else message.strip()


def grade(tests: list[Any], env: dict[str, Any], machinery: Machinery) -> dict[str, Any]:
    """Run otter's tests on `env`: per question score, possible points and feedback lines."""
    scores, possible, lines = {}, {}, []
    for test in tests:
        possible[test.name] = float(test.possible)
        try:
            test.run(env)
            scores[test.name], crash = float(test.score), None
        except BaseException as e:  # SystemExit, KeyboardInterrupt raised by the student's code
            scores[test.name], crash = 0.0, f"{type(e).__name__} escaped the tests"
        tampered = machinery.restore()
        if tampered:
            scores[test.name] = 0.0
            crash = "the submission replaced " + ", ".join(tampered[:5]) + " while being tested"
        lines.append(f"{test.name}: {scores[test.name]:g} / {possible[test.name]:g}")
        if crash:
            lines.append(f"  scored 0: {crash}")
            continue
        for i, result in enumerate(test.test_case_results, start=1):
            hidden = result.test_case.hidden
            kind = "hidden test" if hidden else "test"
            if result.passed:
                lines.append(f"  {kind} {i}: passed")
            else:
                detail = failure_message(result.message, hidden).replace("\n", "\n    ")
                lines.append(f"  {kind} {i}: failed\n    {detail}")
    return {"scores": scores, "possible": possible, "feedback": lines}


def main() -> None:
    """Entry point: grade argv[2] with the tests of bundle argv[1]; result path on stdin."""
    bundle, notebook = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    result_path = sys.stdin.readline().strip()
    home = os.getcwd()
    tests = load_tests(bundle)
    for name in imported_modules(tests):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the test that needs it fails and says so
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.instance()
    machinery = Machinery(set(GUARDED_ROOTS) | {n.split(".")[0] for n in imported_modules(tests)})
    env, errors = run_cells(notebook)
    tampered = machinery.restore()
    os.chdir(home)
    result = grade(tests, env, machinery)
    notes = [f"error in {e}" for e in errors]
    if tampered:
        notes.append("the notebook replaced (restored before testing): " + ", ".join(tampered))
    result["feedback"] = notes + ([""] if notes else []) + result["feedback"]
    with open(result_path, "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(0)  # do not wait for threads the notebook may have left running


if __name__ == "__main__":
    main()
