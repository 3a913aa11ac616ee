"""Write requirements.lock: the exact versions pip resolves today for the package and every extra."""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = "test,lab,instructor,bench"
PROJECT = "learning-at-scale"
HEADER = """\
# Exact versions of every dependency of learning-at-scale and all its extras ({extras}),
# as pip resolved them for Python {python} on Linux x86_64. `make test`, `make course`, `make lab`
# and .ci/run install from this file; pyproject.toml keeps the ranges Colab and Kaggle install from.
# Regenerate with `make lock` (then run `make test`); `make test-latest` tests the newest versions.
"""


def resolve(root: Path, extras: str) -> dict[str, str]:
    """Ask pip which version of each package it would install into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed"]
        cmd += ["--report", str(report), f"{root}[{extras}]"]
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    pins = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
    pins.pop(PROJECT, None)
    return pins


def render(pins: dict[str, str], python: str) -> str:
    """The lock file's text: a header, then one `name==version` line per package, sorted."""
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    return HEADER.format(extras=EXTRAS, python=python) + "\n".join(lines) + "\n"


def main() -> None:
    """Resolve and write the lock file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "requirements.lock")
    args = parser.parse_args()
    python = ".".join(map(str, sys.version_info[:2]))
    args.output.write_text(render(resolve(ROOT, EXTRAS), python))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
