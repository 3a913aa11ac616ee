"""Student exercises and autograder bundles, generated from the masters in solutions/ by otter assign.

For each master `solutions/<name>.ipynb` this writes
- `exercises/<name>.ipynb`: otter's student notebook (solutions and hidden tests stripped), with its
  Colab badge pointing at itself, otter-grader added to the Colab install lines of the setup cell,
  and an init cell after it that loads the visible tests from the package;
- `course_utils/grading/visible/<name>.json`: those visible tests (what `grader.check` runs);
- `build/autograder/<name>.zip`: otter's autograder bundle with every test, hidden ones included.
The committed files are byte-for-byte reproducible: cell ids are renumbered, nothing is timestamped.
Run it with `make exercises` (or `python -m course_utils.grading.generate [MASTER ...]`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import nbformat
import yaml

from course_utils.colab import BADGE_RE, INSTALL_RE, ROOT, badge, repository_url
from course_utils.grading.visible import VISIBLE_DIR

SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"
AUTOGRADER_DIR = ROOT / "build" / "autograder"
PYTHON_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
OTTER_PIP_CELL = "%pip install -q otter-grader"
OTTER_INIT_PREFIX = "# Initialize Otter"
INIT_SOURCE = """\
# Initialize Otter: grader.check("q1") runs the visible tests of q1 (offline and on Colab)
import otter

from course_utils.grading import visible_tests

grader = otter.Notebook(tests_dir=visible_tests("{name}"))"""


@dataclass(frozen=True)
class Generated:
    """Paths written for one exercise."""

    notebook: Path
    visible_tests: Path
    autograder: Path


def assignment_name(master: Path) -> str:
    """The `name` of a master's ASSIGNMENT CONFIG cell, checked to equal the file's stem."""
    nb = nbformat.read(master, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.lstrip().startswith("# ASSIGNMENT CONFIG"):
            name = (yaml.safe_load(cell.source) or {}).get("name")
            if name != master.stem:
                raise ValueError(
                    f"{master}: ASSIGNMENT CONFIG name must be the file's stem {master.stem!r}, "
                    f"got {name!r}"
                )
            return name
    raise ValueError(f"{master}: no raw cell starting with '# ASSIGNMENT CONFIG'")


# What `import otter` and `grader.check` need beyond what Colab already has (IPython, ipywidgets 7,
# Jinja2, nbconvert, nbformat, pandas, PyYAML, requests, wrapt): installed with --no-deps, so that
# otter-grader's own pins (ipywidgets 8, nbconvert[webpdf] with playwright, fica's Sphinx, jupytext,
# python-on-whales, ~30 packages) leave Colab's environment alone. Ranges are otter's; a package
# Colab already has within them is kept. tests/test_otter_install.py checks this line under
# ipywidgets 7 with the rest of otter's dependencies unimportable.
OTTER_RUNTIME_DEPS = (
    '"fica>=0.4.1"',
    '"ipylab>=1,<2"',
    '"python-frontmatter>=1.3,<2"',
    '"dill>=0.3"',
)


def otter_install_line() -> str:
    """The student notebook's pip line: this otter-grader and only what `grader.check` needs."""
    pinned = f"otter-grader=={version('otter-grader')}"
    return f"%pip install -q --no-deps {pinned} {' '.join(OTTER_RUNTIME_DEPS)}"


OTTER_LINE_RE = re.compile(r"^([ \t]*)%pip install[^\n]*\botter-grader\b[^\n]*$", re.MULTILINE)


def with_otter_install(setup: str) -> str:
    """The setup cell's source with `otter_install_line()` in place of the master's otter-grader
    line, or after the course install line when the master has none."""
    if OTTER_LINE_RE.search(setup):
        return OTTER_LINE_RE.sub(lambda m: m.group(1) + otter_install_line(), setup, count=1)
    match = INSTALL_RE.search(setup)
    indent = setup[setup.rfind("\n", 0, match.start()) + 1 : match.start()]
    end = setup.find("\n", match.end())
    end = len(setup) if end == -1 else end
    return f"{setup[:end]}\n{indent}{otter_install_line()}{setup[end:]}"


def student_notebook(nb: nbformat.NotebookNode, name: str, repo: str) -> nbformat.NotebookNode:
    """otter's student notebook with our init cell after the setup cell and stable cell ids."""
    cells = [
        c
        for c in nb.cells
        if not (
            c.cell_type == "code"
            and (c.source == OTTER_PIP_CELL or c.source.startswith(OTTER_INIT_PREFIX))
        )
    ]
    setup = next(
        (i for i, c in enumerate(cells) if c.cell_type == "code" and INSTALL_RE.search(c.source)),
        None,
    )
    if setup is None:
        raise ValueError(f"{name}: the master needs the setup cell with the Colab install line")
    cells[setup].source = with_otter_install(cells[setup].source)
    init = nbformat.v4.new_code_cell(INIT_SOURCE.format(name=name))
    init.metadata = {"deletable": False, "editable": False}
    cells.insert(setup + 1, init)
    link = badge(f"{EXERCISES_DIR.name}/{name}.ipynb", repo)
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:03d}"
        if cell.cell_type == "markdown":
            cell.source = BADGE_RE.sub(lambda _: link, cell.source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = cells
    return nb


def generate(
    master: Path,
    exercises_dir: Path = EXERCISES_DIR,
    visible_dir: Path = VISIBLE_DIR,
    autograder_dir: Path = AUTOGRADER_DIR,
) -> Generated:
    """Run otter assign on one master and write its student notebook, visible tests and bundle."""
    from otter.assign import main as otter_assign

    master = Path(master).resolve()
    name = assignment_name(master)
    with tempfile.TemporaryDirectory(prefix=f"{name}-assign-") as tmp:
        out = Path(tmp) / "out"
        source = nbformat.read(master, as_version=4)
        if "kernelspec" not in source.metadata:  # otter needs it to tell the language
            source.metadata["kernelspec"] = PYTHON_KERNELSPEC
            master = Path(tmp) / master.name
            nbformat.write(source, master)
        otter_assign(str(master), str(out), no_pdfs=True, no_run_tests=True)
        nb = nbformat.read(out / "student" / master.name, as_version=4)
        tests = {p.stem: p.read_text() for p in sorted((out / "student" / "tests").glob("*.py"))}
        (bundle,) = (out / "autograder").glob("*.zip")
        paths = Generated(
            exercises_dir / f"{name}.ipynb",
            visible_dir / f"{name}.json",
            autograder_dir / f"{name}.zip",
        )
        for path in (paths.notebook, paths.visible_tests, paths.autograder):
            path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(nb, name, repository_url()), paths.notebook)
        paths.visible_tests.write_text(json.dumps(tests, indent=1, sort_keys=True) + "\n")
        shutil.copyfile(bundle, paths.autograder)
    return paths


def masters(folder: Path = SOLUTIONS_DIR) -> list[Path]:
    """Every exercise master in `folder`, sorted."""
    return sorted(folder.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the exercises of the given masters (default: all of solutions/)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("masters", nargs="*", type=Path, help="master notebooks (default: all)")
    args = parser.parse_args(argv)
    for master in args.masters or masters():
        paths = generate(master)
        print(
            f"{master.name}: {paths.notebook.relative_to(ROOT)}, {paths.autograder.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
