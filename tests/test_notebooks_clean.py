"""Committed notebooks carry no outputs, and their Colab badge and install line match the repo."""

import json
from pathlib import Path

import pytest

from course_utils.colab import NOTEBOOK_DIRS, ROOT, badge, install_line, repository_url

NOTEBOOKS = sorted(p for d in NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def test_there_are_notebooks() -> None:
    assert any(p.parent.name == "notebooks" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_are_stripped(path: Path) -> None:
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, (
        f"cells {dirty} have outputs: clear them (jupyter nbconvert --clear-output --inplace)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_colab_badge_and_install_line_match_the_repository(path: Path) -> None:
    repo = repository_url()
    assert repo.startswith("https://github.com/")
    nb = json.loads(path.read_text())
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    relative = path.relative_to(ROOT).as_posix()
    expected_link = f"https://colab.research.google.com/github/{repo[19:]}/blob/main/{relative}"
    assert badge(relative, repo).endswith(f"({expected_link})")
    assert expected_link in markdown, (
        f"{relative}: badge missing or stale, run python -m course_utils.colab"
    )
    assert install_line(repo) in code, f"{relative}: Colab install line missing or stale"
