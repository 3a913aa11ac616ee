"""Colab links and the install cell, stamped into every notebook and the README from one repository URL."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
# A badge in the README names the notebook it opens after /blob/<branch>/.
LINKED_BADGE_RE = re.compile(
    r"\[!\[Open In Colab\]\([^)]*\)\]"
    r"\(https://colab\.research\.google\.com/github/[^/)]+/[^/)]+/blob/[^/)]+/(?P<path>[^)]+)\)"
)
INSTALL_RE = re.compile(r'%pip install -q "learning-at-scale @ git\+[^"]*"')


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The repository URL configured under [project.urls] in pyproject.toml."""
    match = re.search(r'^Repository\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{pyproject} has no [project.urls] Repository entry")
    return match.group(1).rstrip("/")


def badge(relative_path: str, repo: str) -> str:
    """Markdown for the 'Open In Colab' badge of a notebook at `relative_path` in the repo."""
    slug = repo.removeprefix("https://github.com/")
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{slug}/blob/main/{relative_path})"
    )


def install_line(repo: str) -> str:
    """The pip line that installs the course library from the repository."""
    return f'%pip install -q "learning-at-scale @ git+{repo}"'


# Every notebook's first code cell, library-free: it runs before the course is importable.
INSTALL_CELL = """\
import contextlib
import importlib.metadata as metadata
import importlib.util

spec = importlib.util.find_spec("course_utils")
if spec is None:  # Colab, Kaggle, a fresh Jupyter: install the course
    # Pin the torch and torchvision already installed: pip keeps them (and their CUDA build).
    keep = []
    for name in ("torch", "torchvision"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            keep.append(f"{{name}}=={{metadata.version(name)}}")
    pins = " ".join(keep)
    {install} {{pins}}
{extra}    print(f"installed the course library, kept {{pins or 'no preinstalled torch'}}")
else:
    print(f"nothing installed: course_utils is at {{spec.origin}}")
"""
EXTRA_PIP_RE = re.compile(r"^[ \t]*(%pip install (?!-q \"learning-at-scale)[^\n]*)$", re.MULTILINE)


def install_cell(repo: str, extra: Sequence[str] = ()) -> str:
    """The first code cell of every notebook: install the course where `course_utils` is not
    importable, keep the platform's torch and torchvision, and print what it did. `extra`: further
    pip lines run after the course's (the exercises' otter-grader)."""
    lines = "".join(f"    {line}\n" for line in extra)
    return INSTALL_CELL.format(install=install_line(repo), extra=lines).rstrip("\n")


def extra_pip_lines(source: str) -> list[str]:
    """The pip lines of an install cell other than the course's own, in order."""
    return EXTRA_PIP_RE.findall(source)


def stamp(path: Path, repo: str) -> bool:
    """Rewrite the badges and the install cell of one notebook; return whether it changed."""
    nb = nbformat.read(path, as_version=4)
    relative = path.resolve().relative_to(ROOT).as_posix()
    changed = False
    for cell in nb.cells:
        new = cell.source
        if cell.cell_type == "markdown":
            new = BADGE_RE.sub(lambda _: badge(relative, repo), new)
        elif cell.cell_type == "code" and INSTALL_RE.search(new):
            new = install_cell(repo, extra_pip_lines(new))
        if new != cell.source:
            cell.source, changed = new, True
    if changed:
        nbformat.write(nb, path)
    return changed


def badge_paths(markdown: str) -> list[str]:
    """The notebook path each Colab badge of a markdown text opens, in order."""
    return [m["path"] for m in LINKED_BADGE_RE.finditer(markdown)]


def stamp_markdown(path: Path, repo: str) -> bool:
    """Point every Colab badge of a markdown file at `repo`, keeping the notebook each one opens."""
    text = path.read_text(encoding="utf-8")
    new = LINKED_BADGE_RE.sub(lambda m: badge(m["path"], repo), text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main() -> int:
    """Stamp every notebook of the course and the README's badges with the configured URL."""
    repo = repository_url()
    for folder in NOTEBOOK_DIRS:
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            if stamp(path, repo):
                print(f"stamped {path.relative_to(ROOT)}")
    if stamp_markdown(README, repo):
        print(f"stamped {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
