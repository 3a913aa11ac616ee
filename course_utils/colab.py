"""Colab links and install cells, stamped into every notebook and the README from one repository URL."""

from __future__ import annotations

import re
import sys
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
    """The Colab pip line that installs the course library from the repository."""
    return f'%pip install -q "learning-at-scale @ git+{repo}"'


def stamp(path: Path, repo: str) -> bool:
    """Rewrite the badge and install line of one notebook; return whether it changed."""
    nb = nbformat.read(path, as_version=4)
    relative = path.resolve().relative_to(ROOT).as_posix()
    changed = False
    for cell in nb.cells:
        new = cell.source
        if cell.cell_type == "markdown":
            new = BADGE_RE.sub(lambda _: badge(relative, repo), new)
        elif cell.cell_type == "code":
            new = INSTALL_RE.sub(lambda _: install_line(repo), new)
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
