"""Every notebook opens with one install cell: it installs the course wherever `course_utils` is not
importable (Colab, Kaggle, a fresh Jupyter), keeps the platform's torch and says what it did.

The platforms are stood in for by an empty virtual environment holding the metadata of the
platform's packages at their versions; `pip install --dry-run --report` of the cell's own pip line
(the course resolved from a wheel with the course's declared metadata, nothing from an index)
then lists what a student's run would install. Offline and a few seconds. Colab's Python 3.12 is
checked against the course's Requires-Python; the resolution itself runs under this Python.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import tomllib
from packaging.specifiers import SpecifierSet

from course_utils.colab import ROOT, extra_pip_lines, install_cell, repository_url

NOTEBOOKS = sorted(
    p for folder in ("notebooks", "solutions", "exercises") for p in (ROOT / folder).glob("*.ipynb")
)
# What each platform preinstalls, of the course's dependencies (Kaggle's and Colab's images, late
# 2025); the pip line must leave every one of them as it is.
PLATFORMS = {
    "kaggle": (
        "3.11",
        {
            "torch": "2.6.0+cu124",
            "torchvision": "0.21.0+cu124",
            "numpy": "1.26.4",
            "ipywidgets": "8.1.5",
            "matplotlib": "3.7.2",
            "tqdm": "4.67.1",
            "scikit-learn": "1.2.2",
            "scipy": "1.15.2",
            "transformers": "4.52.4",
        },
    ),
    "colab-torch2.8": (
        "3.12",
        {
            "torch": "2.8.0+cu126",
            "torchvision": "0.23.0+cu126",
            "numpy": "2.0.2",
            "ipywidgets": "7.7.1",
            "matplotlib": "3.10.0",
            "tqdm": "4.67.1",
            "scikit-learn": "1.6.1",
            "scipy": "1.16.2",
            "transformers": "4.57.1",
        },
    ),
    "colab-torch2.9": (
        "3.12",
        {
            "torch": "2.9.0+cu126",
            "torchvision": "0.24.0+cu126",
            "numpy": "2.0.2",
            "ipywidgets": "7.7.1",
            "matplotlib": "3.10.0",
            "tqdm": "4.67.1",
            "scikit-learn": "1.6.1",
            "scipy": "1.16.2",
            "transformers": "4.57.1",
        },
    ),
}


def _first_code_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def test_every_notebook_opens_with_the_install_cell(path: Path) -> None:
    first = _first_code_cell(path)
    assert first == install_cell(repository_url(), extra_pip_lines(first)), (
        f"{path.relative_to(ROOT)}: stale install cell, run python -m course_utils.colab"
    )
    if path.parent.name == "notebooks":
        assert extra_pip_lines(first) == [], "lessons install the course only"
    else:
        assert len(extra_pip_lines(first)) == 1 and "otter-grader==" in extra_pip_lines(first)[0]


def run_install_cell(
    source: str, monkeypatch: pytest.MonkeyPatch, capsys, *, preinstalled: dict[str, str] | None
) -> tuple[list[str], str]:
    """Run an install cell in IPython with `%pip` recorded instead of run: (pip argument lines,
    printed text). `preinstalled`: the platform's package versions, with `course_utils` not
    importable; None: this environment, where it is."""
    from IPython.core.interactiveshell import InteractiveShell

    if preinstalled is not None:
        real_find_spec = importlib.util.find_spec

        def version(name: str) -> str:
            if name not in preinstalled:
                raise importlib.metadata.PackageNotFoundError(name)
            return preinstalled[name]

        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "course_utils" else real_find_spec(name, *a),
        )
        monkeypatch.setattr(importlib.metadata, "version", version)
    shell = InteractiveShell.instance()
    calls: list[str] = []
    shell.register_magic_function(calls.append, "line", "pip")
    try:
        result = shell.run_cell(source)
    finally:
        InteractiveShell.clear_instance()
    assert result.success, result.error_in_exec or result.error_before_exec
    return calls, capsys.readouterr().out


def test_where_the_course_is_importable_nothing_is_installed(monkeypatch, capsys) -> None:
    calls, out = run_install_cell(
        install_cell(repository_url()), monkeypatch, capsys, preinstalled=None
    )
    assert calls == []
    origin = importlib.util.find_spec("course_utils").origin
    assert out.strip() == f"nothing installed: course_utils is at {origin}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_cell_pins_the_platforms_torch(platform: str, monkeypatch, capsys) -> None:
    _, versions = PLATFORMS[platform]
    cell = install_cell(repository_url(), ["%pip install -q otter-grader==7.0.0"])
    calls, out = run_install_cell(cell, monkeypatch, capsys, preinstalled=versions)
    pins = f"torch=={versions['torch']} torchvision=={versions['torchvision']}"
    assert calls == [
        f'install -q "learning-at-scale @ git+{repository_url()}" {pins}',
        "install -q otter-grader==7.0.0",
    ]
    assert out.strip() == f"installed the course library, kept {pins}"


def test_without_torch_the_cell_pins_nothing(monkeypatch, capsys) -> None:
    calls, out = run_install_cell(
        install_cell(repository_url()), monkeypatch, capsys, preinstalled={}
    )
    assert calls == [f'install -q "learning-at-scale @ git+{repository_url()}" ']
    assert out.strip() == "installed the course library, kept no preinstalled torch"


def _course_wheel(folder: Path) -> Path:
    """A wheel carrying the course's declared metadata (name, version, Python, dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Requires-Python: {project['requires-python']}",
    ]
    metadata += [f"Requires-Dist: {requirement}" for requirement in project["dependencies"]]
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{info}/METADATA", "\n".join(metadata) + "\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def _platform(folder: Path, versions: dict[str, str]) -> Path:
    """An empty virtual environment with the metadata of `versions` installed; its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    (site,) = folder.glob("lib/python3*/site-packages")
    for name, version in versions.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text("")
    return folder / "bin" / "python"


def dry_run(pip_line: str, platform: dict[str, str], tmp_path: Path) -> list[tuple[str, str]]:
    """(name, version) of what `pip_line` (a recorded `%pip` line) would install on `platform`,
    the course taken from a local wheel; pip's error if it cannot keep to the platform."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _course_wheel(wheels)
    python = _platform(tmp_path / "platform", platform)
    args = [
        "learning-at-scale" if a.startswith("learning-at-scale @") else a
        for a in shlex.split(pip_line)
    ]
    assert args[0] == "install"
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "--python", str(python), *args[:1], "--dry-run"]
    cmd += ["--report", str(report), "--no-index", "--find-links", str(wheels), *args[1:]]
    # nothing of this environment: no pip settings, no PYTHONPATH (a checkout's egg-info)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"pip could not install the course alone:\n{done.stderr[-2000:]}")
    install = json.loads(report.read_text())["install"]
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in install]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_on_the_platform_only_the_course_is_installed(
    platform: str, monkeypatch, capsys, tmp_path
) -> None:
    python_version, versions = PLATFORMS[platform]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python_version in SpecifierSet(requires)
    calls, _ = run_install_cell(
        install_cell(repository_url()), monkeypatch, capsys, preinstalled=versions
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dry_run(calls[0], versions, tmp_path) == [("learning-at-scale", project["version"])]


def test_the_check_sees_a_platform_the_course_would_change(monkeypatch, capsys, tmp_path) -> None:
    # torch 1.13 is below the course's torch range: pip must replace it, which the check reports
    old = PLATFORMS["kaggle"][1] | {"torch": "1.13.1", "torchvision": "0.14.1"}
    calls, _ = run_install_cell(
        install_cell(repository_url()), monkeypatch, capsys, preinstalled=old
    )
    with pytest.raises(AssertionError, match="could not install the course alone"):
        dry_run(calls[0], old, tmp_path)
