"""pyproject.toml and environment.yml declare the same dependencies."""

import re
from pathlib import Path

import pytest
from test_install_cell import PLATFORMS  # what Colab and Kaggle preinstall

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


# --------------------------------------------------------------------------------------------
# Lower bounds and the lock

# An API the library uses -> the first release of its package that has it. Each pattern must still
# occur in the code (a stale row fails), and pyproject's lower bound must be at least that release.
API_MINIMUMS = [
    (r"torch\.amp\.GradScaler\(", "course_utils/runtime.py", "torch", "2.3"),
    (r"init_process_group\([^)]*device_id=", "course_utils/distributed.py", "torch", "2.3"),
    (r"F\.scaled_dot_product_attention\(", "course_utils/models.py", "torch", "2.0"),
    (r"from torchvision\.transforms import v2", "notebooks/05_simclr.ipynb", "torchvision", "0.16"),
]


def _requirements() -> dict[str, str]:
    """pyproject's runtime dependencies: name -> specifier text."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d[len(_name(d)) :].strip() for d in deps}


def _lower_bound(spec: str) -> tuple[int, ...] | None:
    found = re.search(r">=\s*([\d.]+)", spec)
    return None if found is None else tuple(map(int, found.group(1).split(".")))


def _version(text: str) -> tuple[int, ...]:
    return tuple(map(int, text.split(".")))


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    missing = [name for name, spec in _requirements().items() if _lower_bound(spec) is None]
    assert not missing, f"dependencies without a '>=' lower bound: {missing}"


@pytest.mark.parametrize(("pattern", "path", "package", "minimum"), API_MINIMUMS)
def test_lower_bound_covers_the_apis_used(
    pattern: str, path: str, package: str, minimum: str
) -> None:
    assert re.search(pattern, (ROOT / path).read_text()), f"{pattern!r} no longer in {path}"
    bound = _lower_bound(_requirements()[package])
    assert bound is not None and bound >= _version(minimum), (
        f"{path} uses {pattern!r} (since {package} {minimum}); pyproject says {package}"
        f"{_requirements()[package]}"
    )


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_ranges_admit_the_platforms_preinstalled_versions(platform: str) -> None:
    from packaging.specifiers import SpecifierSet

    for package, version in PLATFORMS[platform][1].items():
        spec = _requirements()[package]
        assert SpecifierSet(spec).contains(version), (
            f"{package}{spec} would replace {platform}'s {package} {version}"
        )


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_lock_pins_every_dependency_within_its_range() -> None:
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    lock = _lock()
    for text in requirements:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"requirements.lock pins {name}=={lock[name]}, outside pyproject's {text!r}: run `make lock`"
        )


def test_lock_lines_are_exact_pins() -> None:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    loose = [line for line in lines if line and not line.startswith("#") and "==" not in line]
    assert not loose, f"requirements.lock lines without an exact version: {loose}"
