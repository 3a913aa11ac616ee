"""Seconds per graded submission: course-grade now and before its otter-init cut, vs `otter run`.

    python benchmarks/bench_grading.py [--exercises ex1_infonce ...] [--repeats 3]
    (needs the `instructor` extra and the bundles of `make exercises`)

For each exercise, two submissions built from the student notebook: the master's answers filled in
(`tests/submissions.solved`) and the blank exercise. Each is graded, interleaved, `--repeats` times:
- course-grade: `grade_folder` on a folder holding only that notebook (bubblewrap sandbox when
  available), in this process;
- course-grade before: the same with the otter init cell run as written (what main did before
  `otter_cells`);
- otter: `otter run -a BUNDLE` in a fresh process (otter-grader's own grading without containers;
  `otter grade` needs a running Docker daemon, and runs the same per-notebook in a container).
Prints a markdown table of median wall seconds per submission (the sandboxes run in their own PID
namespaces, so their CPU time does not reach this process's accounting), ratios to otter, and the
class-of-300 estimate: course-grade's start-up (importing it, measured in a fresh process) plus
300 times the mean of master and blank medians, divided by the parallel jobs (1 or 2; assumes a
core per job).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from submissions import solved  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade, isolation, otter_cells  # noqa: E402

CLASS = 300
OTTER = Path(sys.executable).parent / "otter"


def ours(name: str, nb: nbformat.NotebookNode, bundle: Path, before: bool) -> float:
    """Wall seconds of grading one notebook with grade_folder."""
    cut = otter_cells.without_otter_init
    if before:
        otter_cells.without_otter_init = lambda cells: cells
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "in").mkdir()
            nbformat.write(nb, Path(tmp) / "in" / "student.ipynb")
            wall = time.perf_counter()
            (o,) = grade.grade_folder(name, Path(tmp) / "in", Path(tmp) / "out", bundle=bundle, seed=1, unsafe_no_isolation=True)  # fmt: skip
            wall = time.perf_counter() - wall
    finally:
        otter_cells.without_otter_init = cut
    if o.status != "ok":
        raise RuntimeError(f"{name}: course-grade status {o.status}")
    return wall


def otter(nb: nbformat.NotebookNode, bundle: Path) -> float:
    """Wall seconds of `otter run` on one notebook."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.ipynb"
        nbformat.write(nb, path)
        env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        wall = time.perf_counter()
        run = subprocess.run([OTTER, "run", "-a", bundle, "-o", tmp, path], env=env, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - wall
    if run.returncode != 0:
        raise RuntimeError(f"otter run failed: {run.stderr[-500:]}")
    return wall


def startup() -> float:
    """Seconds to start Python and import course-grade, in a fresh process."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import course_utils.grading.grade"], check=True, env=os.environ | {"PYTHONPATH": str(REPO)})  # fmt: skip
    return time.perf_counter() - t


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercises", nargs="*", default=[m.stem for m in gen.masters()])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_PROFILE", "ci")
    print(f"isolation: {isolation.bubblewrap()[1]}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    start = startup()
    engines = ("course-grade", "course-grade before", "otter run")
    per: dict[str, list[float]] = {e: [] for e in engines}
    print(f"\nmedian wall seconds of {args.repeats} per submission (ratio to otter run)\n")
    print("| exercise | submission | " + " | ".join(engines) + " |")
    print("|---|---|" + "---|" * len(engines), flush=True)
    for name in args.exercises:
        bundle = gen.AUTOGRADER_DIR / f"{name}.zip"
        if not bundle.is_file():
            raise SystemExit(f"no bundle {bundle}: run `make exercises` first")
        subs = {"master": solved(name), "blank": nbformat.read(gen.EXERCISES_DIR / f"{name}.ipynb", as_version=4)}  # fmt: skip
        for kind, nb in subs.items():
            times: dict[str, list[float]] = {e: [] for e in engines}
            for _ in range(args.repeats):  # interleaved: load changes hit every engine alike
                times["course-grade"].append(ours(name, nb, bundle, before=False))
                times["course-grade before"].append(ours(name, nb, bundle, before=True))
                times["otter run"].append(otter(nb, bundle))
            med = {e: statistics.median(t) for e, t in times.items()}
            for e in engines:
                per[e].append(med[e])
            ref = med["otter run"]
            cells = " | ".join(f"{med[e]:.1f} s ({med[e] / ref:.2f}x)" for e in engines)
            print(f"| {name} | {kind} | {cells} |", flush=True)  # a long run may be cut short
    print(f"\ncourse-grade start-up (python + import): {start:.1f} s")
    print(f"\nclass of {CLASS}, every student submitting {', '.join(args.exercises)} (a notebook: mean of master and blank):\n")  # fmt: skip
    for e in engines:
        student = statistics.fmean(per[e]) * len(args.exercises)
        hours = [((start if e != "otter run" else 0) + CLASS * student / j) / 3600 for j in (1, 2)]
        print(f"- {e}: {student:.1f} s per student; {hours[0]:.2f} h at -j 1, {hours[1]:.2f} h at -j 2")  # fmt: skip


if __name__ == "__main__":
    main()
