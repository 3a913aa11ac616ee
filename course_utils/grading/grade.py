"""`course-grade EXERCISE SUBMISSIONS_DIR -o OUT`: grade every file of a folder of submissions.

Each file gets exactly one row in OUT/grades.csv (student id = file name without extension; the full
file name where two share a stem) and a OUT/feedback/<student>.txt, whatever it contains. Each
submission is copied into a fresh scratch folder and graded there by `course_utils.grading.worker`
in its own process, killed after `--timeout` seconds, without network where the platform allows
(`unshare`, Linux); submissions themselves are only read. Rows are sorted by file name and hold no
timings, so rerunning over the same folder gives the same CSV.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat

from course_utils.grading.generate import AUTOGRADER_DIR

DEFAULT_TIMEOUT_S = 600.0
ISOLATIONS = (
    (("unshare", "-rn", "--pid", "--fork", "--kill-child"), "no network, own PID namespace"),
    (("unshare", "-n", "--pid", "--fork", "--kill-child"), "no network, own PID namespace"),
    ((), "none: the platform has no usable `unshare`, submissions can reach the network"),
)


@dataclass
class Outcome:
    """The grading result of one submitted file."""

    file: str
    student: str
    status: str
    scores: dict[str, float] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)
    seconds: float = 0.0


@lru_cache(maxsize=1)
def isolation() -> tuple[tuple[str, ...], str]:
    """The command prefix that isolates a grading process here, and what it gives."""
    for prefix, what in ISOLATIONS:
        if not prefix:
            return prefix, what
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix, what
    raise AssertionError("unreachable: the last isolation needs no probe")


def questions(bundle: Path) -> dict[str, float]:
    """Question name -> points of the autograded questions in an autograder bundle."""
    from course_utils.grading.worker import load_tests

    return {t.name: float(t.possible) for t in load_tests(bundle)}


def student_ids(files: list[Path]) -> dict[Path, str]:
    """Student id of each file: its stem, or its full name where two files share a stem."""
    stems = [f.stem for f in files]
    return {f: f.stem if stems.count(f.stem) == 1 else f.name for f in files}


def unreadable_reason(path: Path) -> str | None:
    """Why `path` is not a readable Jupyter notebook, or None if it is one."""
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # not UTF-8, not JSON, not a notebook: all unreadable
        return (
            f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        )
    return None


def _exit_status(returncode: int) -> str:
    """The status of a worker that ended without writing its result."""
    if returncode < 0:
        return f"error: grading process killed by {signal.Signals(-returncode).name}"
    if returncode == 0:  # the worker only exits 0 after writing its result: the notebook exited
        return "error: the notebook ended the grading process (exit code 0)"
    return f"error: grading process exited with code {returncode} (see feedback)"


def grade_file(path: Path, student: str, bundle: Path, timeout: float) -> Outcome:
    """Grade one submission in its own isolated process with a wall-clock timeout."""
    start = time.perf_counter()
    reason = unreadable_reason(path)
    if reason is not None:
        return Outcome(path.name, student, "unreadable", feedback=[f"not a notebook: {reason}"])
    prefix, _ = isolation()
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    env.setdefault("COURSE_PROFILE", "ci")
    with tempfile.TemporaryDirectory(prefix="course-grade-", ignore_cleanup_errors=True) as tmp:
        scratch, result = Path(tmp) / "scratch", Path(tmp) / "result.json"
        scratch.mkdir()
        shutil.copyfile(path, scratch / "submission.ipynb")
        cmd = [*prefix, sys.executable, "-m", "course_utils.grading.worker", str(bundle)]
        with open(Path(tmp) / "log.txt", "wb") as log:
            proc = subprocess.Popen(
                [*cmd, "submission.ipynb"],
                cwd=scratch,
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            proc.stdin.write(f"{result}\n".encode())
            proc.stdin.close()
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                note = f"stopped after the {timeout:g} s time limit"
                return Outcome(path.name, student, "timeout", feedback=[note], seconds=timeout)
        seconds = time.perf_counter() - start
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError):
            tail = (Path(tmp) / "log.txt").read_text(errors="replace").strip().splitlines()[-5:]
            status = _exit_status(returncode)
            return Outcome(
                path.name, student, status, feedback=["last output:", *tail], seconds=seconds
            )
    return Outcome(path.name, student, "ok", data["scores"], data["feedback"], seconds)


def grade_file_safely(path: Path, student: str, bundle: Path, timeout: float) -> Outcome:
    """`grade_file`, turning any failure of the grader itself into an `error` row."""
    try:
        return grade_file(path, student, bundle, timeout)
    except Exception as e:
        return Outcome(
            path.name, student, f"error: grader failed ({type(e).__name__})", feedback=[str(e)]
        )


def write_outputs(
    outcomes: list[Outcome], points: dict[str, float], exercise: str, out: Path
) -> None:
    """OUT/grades.csv (one row per file, sorted) and OUT/feedback/<student>.txt."""
    feedback_dir = out / "feedback"
    feedback_dir.mkdir(parents=True, exist_ok=True)
    possible = sum(points.values())
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["student", "file", *points, "total", "status"])
        for o in sorted(outcomes, key=lambda o: o.file):
            scores = [o.scores.get(q, 0.0) for q in points]
            writer.writerow(
                [o.student, o.file, *(f"{s:g}" for s in scores), f"{sum(scores):g}", o.status]
            )
            header = [
                f"exercise {exercise}, student {o.student} (file {o.file})",
                f"status: {o.status}",
                f"autograded score: {sum(scores):g} / {possible:g}"
                " (written questions are graded by hand)",
                "",
            ]
            (feedback_dir / f"{o.student}.txt").write_text("\n".join(header + o.feedback) + "\n")


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grade_folder(
    exercise: str,
    submissions: Path,
    out: Path,
    *,
    bundle: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    jobs: int = 1,
) -> list[Outcome]:
    """Grade every file directly inside `submissions`; write OUT/grades.csv and OUT/feedback/."""
    from tqdm import tqdm

    bundle = Path(bundle or AUTOGRADER_DIR / f"{exercise}.zip").resolve()
    if not bundle.is_file():
        raise ValueError(f"no autograder bundle at {bundle}: run `make exercises` first")
    if not submissions.is_dir():
        raise ValueError(f"submissions must be a folder, got {submissions}")
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"timeout must be > 0 and jobs >= 1, got {timeout} and {jobs}")
    points = questions(bundle)
    files = sorted(p for p in submissions.iterdir() if p.is_file())
    ids = student_ids(files)
    before = {f: _digest(f) for f in files}
    _, what = isolation()
    print(f"grading {len(files)} files for {exercise}; isolation: {what}", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(grade_file_safely, f, ids[f], bundle, timeout) for f in files]
        outcomes = [f.result() for f in tqdm(futures, desc="grading", unit="notebook")]
    write_outputs(outcomes, points, exercise, out)
    changed = [f.name for f in files if _digest(f) != before[f]]
    if changed:
        print(f"WARNING: submissions changed during grading: {changed}", file=sys.stderr)
    return outcomes


def summary(outcomes: list[Outcome], points: dict[str, float]) -> str:
    """One line: how many graded and failed, and the mean autograded score."""
    graded = [o for o in outcomes if o.status == "ok"]
    mean = sum(sum(o.scores.values()) for o in graded) / len(graded) if graded else 0.0
    failed = len(outcomes) - len(graded)
    ran = [o.seconds for o in outcomes if o.status != "unreadable"]
    per = sum(ran) / len(ran) if ran else 0.0
    return (
        f"graded {len(graded)}, failed {failed} (timeout, error or unreadable), "
        f"mean score {mean:.2f} / {sum(points.values()):g} over graded; {per:.1f} s per notebook run"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point of `course-grade`."""
    parser = argparse.ArgumentParser(prog="course-grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("exercise", help="exercise name, e.g. ex1_infonce")
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--autograder", type=Path, help="bundle (default build/autograder/EXERCISE.zip)"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per notebook"
    )
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks graded at once")
    args = parser.parse_args(argv)
    try:
        outcomes = grade_folder(
            args.exercise,
            args.submissions,
            args.out,
            bundle=args.autograder,
            timeout=args.timeout,
            jobs=args.jobs,
        )
    except ValueError as e:
        parser.error(str(e))
    bundle = args.autograder or AUTOGRADER_DIR / f"{args.exercise}.zip"
    print(summary(outcomes, questions(bundle)))
    print(f"wrote {args.out / 'grades.csv'} and {args.out / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
