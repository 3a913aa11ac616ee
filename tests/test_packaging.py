"""pyproject.toml and environment.yml declare the same dependencies."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    name = re.split(r"[\s<>=!~\[;@]", requirement.strip(), maxsplit=1)[0]
    return CONDA_TO_PYPI.get(name.lower(), name.lower()).replace("_", "-")


def pyproject_names(text: str) -> set[str]:
    """Every dependency name in pyproject.toml: runtime and all extras."""
    import tomllib

    project = tomllib.loads(text)["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_name(r) for r in requirements}


def environment_names(text: str) -> set[str]:
    """Every package name in environment.yml, conda and pip sections, less the project itself."""
    names = set()
    for line in text.split("dependencies:", 1)[1].splitlines():
        item = re.match(r"^\s*-\s+(.+?)\s*$", line)
        if item is None or item.group(1).endswith(":") or item.group(1).startswith("-e"):
            continue
        names.add(_name(item.group(1)))
    return names - NOT_PACKAGES


def test_environment_matches_pyproject() -> None:
    py = pyproject_names((ROOT / "pyproject.toml").read_text())
    env = environment_names((ROOT / "environment.yml").read_text())
    assert py == env, (
        f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"
    )


def test_environment_installs_the_package_editable() -> None:
    assert re.search(r"^\s*-\s+-e \.\s*$", (ROOT / "environment.yml").read_text(), re.MULTILINE)


@pytest.mark.parametrize(
    ("pyproject", "environment"),
    [
        ('[project]\ndependencies = ["numpy"]\n', "dependencies:\n  - numpy\n  - scipy\n"),
        ('[project]\ndependencies = ["torch>=2"]\n', "dependencies:\n  - numpy\n"),
    ],
)
def test_comparison_detects_a_difference(pyproject: str, environment: str) -> None:
    assert pyproject_names(pyproject) != environment_names(environment)


def test_conda_names_map_to_pypi() -> None:
    assert environment_names("dependencies:\n  - pytorch>=2.1\n  - pip:\n      - nbval\n") == {
        "torch",
        "nbval",
    }


def test_torch_is_never_pinned_above_the_supported_release() -> None:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in deps if _name(d) == "torch")
    assert "<" not in torch and "==" not in torch
    lower = re.search(r">=\s*([\d.]+)", torch)
    assert lower is None or tuple(map(int, lower.group(1).split("."))) <= (2, 14, 1)
