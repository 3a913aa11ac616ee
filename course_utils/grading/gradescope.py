"""A Gradescope autograder that runs the same sandbox and verdict code as `course-grade`.

`course-grade gradescope EXERCISE -o FILE.zip` writes a zip following Gradescope's autograder
specification: `setup.sh` (run once when Gradescope builds the image), `run_autograder` (run once
per submission), this course package under `course/` and the exercise's otter bundle. Per
submission, `python -m course_utils.grading.gradescope [ROOT]` (ROOT: `COURSE_AUTOGRADER_ROOT`,
default `/autograder`) grades the one notebook in ROOT/submission/ and writes
ROOT/results/results.json with one test per autograded question (`score`, `max_score`, `output`).
It grades only inside bubblewrap: where bubblewrap cannot start a sandbox it writes no results and
exits non-zero (Gradescope then reports the autograder as failed), never grading unisolated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
import zipfile
from pathlib import Path

from course_utils.grading import isolation, otter_cells, verdict
from course_utils.grading.generate import AUTOGRADER_DIR, ROOT

DEFAULT_ROOT = "/autograder"
TIMEOUT_S = 600.0
BUNDLE_NAME = "otter-bundle.zip"
IMPORTS = "import torch, otter, nbformat, IPython, yaml, tqdm"
SETUP_SH = f"""\
#!/usr/bin/env bash
# Gradescope runs this once, from /autograder/source, when it builds the autograder image.
# COURSE_AUTOGRADER_PYTHON: use that interpreter instead of a new venv (when it has what is needed).
set -euo pipefail
ROOT="${{COURSE_AUTOGRADER_ROOT:-{DEFAULT_ROOT}}}"
SOURCE="$ROOT/source"
if ! command -v bwrap > /dev/null; then
    apt-get update -q && apt-get install -y -q bubblewrap python3-venv python3-pip
fi
PYTHON="${{COURSE_AUTOGRADER_PYTHON:-}}"
if [ -z "$PYTHON" ]; then
    python3 -m venv "$ROOT/venv"
    PYTHON="$ROOT/venv/bin/python"
fi
if ! "$PYTHON" -c "{IMPORTS}" 2> /dev/null; then
    "$PYTHON" -m pip install -q torch torchvision --index-url https://download.pytorch.org/whl/cpu
    "$PYTHON" -m pip install -q "$SOURCE/course[instructor]"
fi
echo "$PYTHON" > "$SOURCE/python"
"""
RUN_AUTOGRADER = f"""\
#!/usr/bin/env bash
# Gradescope runs this once per submission (in /autograder); it writes results/results.json.
ROOT="${{COURSE_AUTOGRADER_ROOT:-{DEFAULT_ROOT}}}"
cd "$ROOT"
PYTHONPATH="$ROOT/source/course" exec "$(cat "$ROOT/source/python")" -m course_utils.grading.gradescope "$ROOT"
"""


def build(exercise: str, dest: Path, *, bundle: Path | None = None) -> Path:
    """Write the Gradescope autograder zip of `exercise` to `dest`."""
    bundle = Path(bundle or AUTOGRADER_DIR / f"{exercise}.zip")
    if not bundle.is_file():
        raise ValueError(f"no autograder bundle at {bundle}: run `make exercises` first")
    verdict.read_test_sources(bundle)  # refuses a bundle without otter's exception-based tests
    package = isolation.PACKAGE_DIR
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
        zf.write(bundle, BUNDLE_NAME)
        zf.writestr("exercise.json", json.dumps({"exercise": exercise}))
        zf.write(ROOT / "pyproject.toml", "course/pyproject.toml")
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, f"course/course_utils/{path.relative_to(package)}")
    return dest


def per_question(feedback: list[str], names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split a verdict's feedback into the lines before any question and each question's lines."""
    head: list[str] = []
    blocks: dict[str, list[str]] = {}
    current = None
    for line in feedback:
        match = re.match(r"^(\w+): ", line)
        if match and match.group(1) in names:
            current = match.group(1)
        (blocks.setdefault(current, []) if current else head).append(line)
    return head, blocks


def results(root: Path) -> dict:
    """Grade the one notebook in ROOT/submission; the results.json document."""
    from course_utils.grading.grade import code_cells, read_entry

    bwrap, why = isolation.bubblewrap()
    if bwrap is None:
        raise RuntimeError(f"not grading without isolation: {why}")
    sources = verdict.read_test_sources(root / "source" / BUNDLE_NAME)
    points = verdict.questions(sources)
    folder = root / "submission"
    notebooks = sorted(p.name for p in folder.iterdir() if p.name.endswith(".ipynb"))
    cells, status, feedback = None, "", []
    if len(notebooks) != 1:
        status = f"submit exactly one .ipynb file (found {len(notebooks)})"
    else:
        data, why = read_entry(folder, notebooks[0])
        cells, why = code_cells(data) if data is not None else (None, why)
        status = "" if cells is not None else f"not graded: {why}"
    if cells is not None:
        grader = verdict.Grader(
            sources,
            isolated=True,
            timeout=TIMEOUT_S,
            secret=secrets.randbelow(2**31 - 1) + 1,
        )
        with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch:
            os.chmod(scratch, 0o700)
            v = grader.grade(otter_cells.without_otter_init(cells), scratch)
        status, feedback = v.status, v.feedback
        scores = v.scores
    else:
        scores = {}
    head, blocks = per_question(feedback, list(points))
    tests = [
        {
            "name": q,
            "score": scores.get(q, 0.0),
            "max_score": p,
            "output": "\n".join(blocks.get(q, [f"{q}: 0 / {p:g} ({status})"])),
        }
        for q, p in points.items()
    ]
    output = "\n".join([f"status: {status}", *head]).strip()
    return {"score": sum(t["score"] for t in tests), "output": output, "tests": tests}


def run(root: Path) -> int:
    """Write ROOT/results/results.json for the submission; non-zero (and no results) if it cannot."""
    try:
        document = results(root)
    except Exception as e:  # fail closed: Gradescope shows the autograder as failed, no score
        print(f"autograder failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / "results.json").write_text(json.dumps(document, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`course-grade gradescope EXERCISE -o FILE.zip`."""
    parser = argparse.ArgumentParser(prog="course-grade gradescope", description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("exercise", help="exercise name, e.g. ex1_infonce")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the zip to write")
    parser.add_argument("--autograder", type=Path, help="bundle (default build/autograder/EXERCISE.zip)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        path = build(args.exercise, args.output, bundle=args.autograder)
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote {path}: upload it as the programming assignment's autograder")
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("COURSE_AUTOGRADER_ROOT", DEFAULT_ROOT))))  # fmt: skip
