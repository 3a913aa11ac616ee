"""Committed notebooks carry no outputs and a kernelspec; Colab badges and install lines match the repo.

The checks read each notebook as git stages it (what a commit takes), not the working copy: running a
lesson in JupyterLab autosaves its outputs into the file, and a student who did so can still run
`make test`, while a commit of a notebook with outputs still fails here (and in CI).
"""

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from course_utils.colab import (
    NOTEBOOK_DIRS,
    README,
    ROOT,
    badge,
    badge_paths,
    install_line,
    repository_url,
    stamp_markdown,
)

NOTEBOOKS = sorted(p for d in NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def _dirty_cells(nb: dict) -> list[int]:
    return [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]


def test_there_are_notebooks() -> None:
    assert any(p.parent.name == "notebooks" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_are_stripped(path: Path, staged: Callable[..., bytes]) -> None:
    dirty = _dirty_cells(json.loads(staged(path)))
    assert not dirty, (
        f"cells {dirty} have outputs: clear them (jupyter nbconvert --clear-output --inplace) "
        "and stage the notebook again"
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_outputs_in_the_working_copy_pass_until_staged(
    tmp_path: Path, staged: Callable[..., bytes]
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    clean = {"cells": [{"cell_type": "code", "outputs": [], "execution_count": None}]}
    run = {"cells": [{"cell_type": "code", "outputs": [{"text": "42"}], "execution_count": 1}]}
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps(clean))
    git("init", "-q")
    git("add", "lesson.ipynb")
    path.write_text(json.dumps(run))  # what JupyterLab's autosave leaves after Run All
    assert _dirty_cells(json.loads(staged(path, tmp_path))) == []
    git("add", "lesson.ipynb")
    staged.cache_clear()
    assert _dirty_cells(json.loads(staged(path, tmp_path))) == [0]
    untracked = tmp_path / "new.ipynb"
    untracked.write_text(json.dumps(run))
    assert _dirty_cells(json.loads(staged(untracked, tmp_path))) == [0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_kernelspec_is_python3(path: Path, staged: Callable[..., bytes]) -> None:
    spec = json.loads(staged(path))["metadata"].get("kernelspec", {})
    assert spec.get("name") == "python3" and spec.get("language") == "python", (
        f"{path.relative_to(ROOT)}: metadata.kernelspec must name the python3 kernel "
        "(without it JupyterLab opens a 'Select Kernel' dialog)"
    )
    assert spec.get("display_name"), "the kernelspec needs a display_name"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_colab_badge_and_install_line_match_the_repository(
    path: Path, staged: Callable[..., bytes]
) -> None:
    repo = repository_url()
    assert repo.startswith("https://github.com/")
    nb = json.loads(staged(path))
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    relative = path.relative_to(ROOT).as_posix()
    expected_link = f"https://colab.research.google.com/github/{repo[19:]}/blob/main/{relative}"
    assert badge(relative, repo).endswith(f"({expected_link})")
    assert expected_link in markdown, (
        f"{relative}: badge missing or stale, run python -m course_utils.colab"
    )
    assert install_line(repo) in code, f"{relative}: Colab install line missing or stale"


MASTERS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", MASTERS, ids=_ids(MASTERS))
def test_masters_install_the_pinned_otter_on_colab(
    path: Path, staged: Callable[..., bytes]
) -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [r for r in extras["optional-dependencies"]["instructor"] if r.startswith("otter")]
    code = "".join("".join(c["source"]) for c in json.loads(staged(path))["cells"])
    assert f"%pip install -q {pin}" in code, (
        f"{path.name}: setup cell lacks `%pip install -q {pin}`"
    )


def test_readme_badges_open_every_lesson_and_exercise_of_this_repository() -> None:
    repo = repository_url()
    text = README.read_text(encoding="utf-8")
    paths = badge_paths(text)
    for path in paths:
        assert (ROOT / path).is_file(), f"README badge opens {path}, which does not exist"
        assert badge(path, repo) in text, (
            f"README badge of {path} is stale: run python -m course_utils.colab"
        )
    expected = {
        p.relative_to(ROOT).as_posix()
        for d in ("notebooks", "exercises")
        for p in NOTEBOOKS
        if p.parent.name == d
    }
    assert expected <= set(paths), f"no README badge for {sorted(expected - set(paths))}"


def test_stamping_points_readme_badges_at_the_configured_repository(tmp_path: Path) -> None:
    old = badge("notebooks/01_x.ipynb", "https://github.com/someone/fork")
    readme = tmp_path / "README.md"
    readme.write_text(f"| 1 | Lesson | {old} |\n| 2 | no badge |\n")
    assert stamp_markdown(readme, "https://github.com/learning-at-scale/course")
    assert readme.read_text() == (
        f"| 1 | Lesson | {badge('notebooks/01_x.ipynb', 'https://github.com/learning-at-scale/course')} |\n"
        "| 2 | no badge |\n"
    )
    assert not stamp_markdown(readme, "https://github.com/learning-at-scale/course")
