"""`course-grade EXERCISE SUBMISSIONS_DIR -o OUT`: grade every entry of a folder of submissions.

Every directory entry gets exactly one row in OUT/grades.csv (symbolic links, folders, FIFOs and
unreadable files included, as `error` rows; links are never followed), keyed by a student id: the
file name without its extension, NFC-normalised; entries whose ids collide get `error` rows, never
a grade. Names that cannot be file names (too long, control characters) get feedback and log files
named by a readable prefix and a hash (`escape.file_stem`). Each notebook's code cells run in a
sandbox (`isolation`, `sandbox`) that only answers requests in plain data; the tests run here and
compute the verdict (`verdict`). Rows are appended to OUT/grades.csv.partial as they finish (flushed
to disk) and OUT/grades.csv is written atomically at the end, sorted by file name; neither holds
timings, so regrading a notebook under the same secret gives the same row. Feedback goes to
OUT/feedback/<student>.txt, the sandbox's (capped) output to OUT/logs/<student>.txt. Text of a
submission is escaped for where it lands (`escape`): quoted lines in feedback, visible escapes in
logs, no formula in CSV.

OUT/run.json saves the exercise, the bundle's hash, the secret and the profile before grading
(`regrade`). Grading into an OUT that holds grades is a regrade: it refuses another exercise, bundle,
profile or `--seed`, reuses the saved secret, and merges by student: this run's rows replace those
of the same students (keeping their hand-graded written scores), every other row stays, and the
rows of an interrupted run's partial file count as earlier rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import stat
import sys
import tempfile
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_utils.grading import (
    escape,
    export,
    gradescope,
    isolation,
    otter_cells,
    regrade,
    report,
    verdict,
    written,
)
from course_utils.grading import summary as class_summary
from course_utils.grading.generate import AUTOGRADER_DIR, SOLUTIONS_DIR

DEFAULT_TIMEOUT_S = 600.0
MAX_SUBMISSION_BYTES = 32 * 2**20


@dataclass
class Outcome:
    """The grading result of one directory entry."""

    file: str
    student: str
    status: str
    scores: dict[str, float] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""
    feedback_name: str = ""  # relative to OUT/feedback (and OUT/logs); default <student>.txt

    def __post_init__(self) -> None:
        self.feedback_name = self.feedback_name or f"{escape.file_stem(self.student)}.txt"


def student_ids(names: list[str]) -> dict[str, str | None]:
    """Student id of each entry name (NFC stem), or None where ids collide (case-insensitively)."""
    ids = {n: unicodedata.normalize("NFC", Path(n).stem) for n in names}
    counts: dict[str, int] = {}
    for i in ids.values():
        counts[i.casefold()] = counts.get(i.casefold(), 0) + 1
    return {n: (i if counts[i.casefold()] == 1 else None) for n, i in ids.items()}


def read_entry(folder: Path, name: str) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file in `folder`, never following a link; or why not."""
    path = folder / name
    try:
        st = os.lstat(path)
    except OSError as e:
        return None, f"cannot be examined ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return None, "a symbolic link (not followed)"
    if stat.S_ISDIR(st.st_mode):
        return None, "a directory"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file (FIFO, socket or device)"
    if st.st_size > MAX_SUBMISSION_BYTES:
        return None, f"larger than {MAX_SUBMISSION_BYTES // 2**20} MiB"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return None, f"unreadable ({e.strerror})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None, "not a regular file"
        data = f.read(MAX_SUBMISSION_BYTES + 1)
    if len(data) > MAX_SUBMISSION_BYTES:
        return None, f"larger than {MAX_SUBMISSION_BYTES // 2**20} MiB"
    return data, None


def code_cells(data: bytes) -> tuple[list[str] | None, str | None]:
    """The code cells' sources of a notebook file's bytes, or why it is not a notebook."""
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # not UTF-8, not JSON, not a notebook: all unreadable
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return None, f"{type(e).__name__}: {first}"
    return [c.source for c in nb.cells if c.cell_type == "code"], None


def digest(data: bytes) -> str:
    """SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


class Bookkeeper:
    """This run's rows, appended (and flushed) to a partial file as they finish; merged into grades.csv at the end."""  # fmt: skip

    def __init__(self, out: Path, exercise: str, questions: dict[str, dict[str, float]]) -> None:
        self.out, self.exercise, self.questions = out, exercise, questions
        self.points, self.written = questions["autograded"], questions["written"]
        self.header = ["student", "file", *self.points, *self.written, "total", "status"]
        self.partial = out / regrade.PARTIAL_FILE
        self.earlier, self.kept = regrade.earlier_rows(out, self.header, questions)
        self._lock = threading.Lock()
        self.rows: list[dict[str, str]] = []

    def start(self) -> None:
        """Fold an interrupted run's partial file into grades.csv, then start this run's."""
        for sub in ("feedback", "logs"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        if self.partial.is_file():
            written.write_grades(self.out, self.header, self.earlier)
        with open(self.partial, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(self.header)

    def row(self, o: Outcome) -> list[str]:
        """The CSV row of an outcome."""
        scores = [o.scores.get(q, 0.0) for q in self.points]
        manual = [""] * len(self.written)  # filled in by `course-grade merge`
        cells = [o.student, o.file, *(f"{s:g}" for s in scores), *manual, f"{sum(scores):g}", o.status]  # fmt: skip
        return [escape.csv_cell(c) for c in cells]

    def add(self, o: Outcome) -> None:
        """Record one outcome: its feedback and log files, and its row (flushed to disk)."""
        scores = [o.scores.get(q, 0.0) for q in self.points]
        header = [
            f"exercise {self.exercise}, student {escape.one_line(o.student)} (file {escape.one_line(o.file)})",
            f"status: {escape.one_line(o.status)}",
            f"autograded score: {sum(scores):g} / {sum(self.points.values()):g}"
            " (written questions are graded by hand)",
            "",
        ]
        row = self.row(o)
        with self._lock:  # the row first: a feedback file that cannot be written loses no row
            with open(self.partial, "a", newline="") as f:
                csv.writer(f, lineterminator="\n").writerow(row)
                f.flush()
                os.fsync(f.fileno())
            self.rows.append(dict(zip(self.header, row, strict=True)))
            path = self.out / "feedback" / o.feedback_name
            path.parent.mkdir(exist_ok=True)
            path.write_text(escape.log_text("\n".join(header + o.feedback) + "\n"))
            log = self.out / "logs" / o.feedback_name
            if o.log:
                log.write_text(escape.log_text(o.log))
            else:  # no log of an earlier grading may pass for this one's
                log.unlink(missing_ok=True)

    def finish(self) -> None:
        """Write grades.csv atomically: the earlier rows merged with this run's by student; remove the partial file."""  # fmt: skip
        rows, kept = regrade.merge(self.earlier, self.rows, self.questions)
        written.write_grades(self.out, self.header, rows)
        self.partial.unlink()
        if self.earlier:
            print(f"{self.out / 'grades.csv'}: {len(rows) - len(self.rows)} rows of earlier runs kept, {len(self.rows)} from this run", file=sys.stderr)  # fmt: skip
        if self.kept or kept:
            students = ", ".join(sorted(set(self.kept + kept)))
            print(f"regraded students whose written scores were kept (check them again): {students}", file=sys.stderr)  # fmt: skip


def grade_entry(
    folder: Path, name: str, student: str | None, grader: verdict.Grader, check_bundle
) -> Outcome:
    """Grade one directory entry; never raises."""
    start = time.perf_counter()
    if student is None:  # feedback/collisions/<file name>.txt: file names are unique
        sid = unicodedata.normalize("NFC", Path(name).stem)
        why = f"student id {sid!r} is shared with another file (rename one)"
        return Outcome(
            name,
            sid,
            f"error: {why}",
            {},
            [why],
            feedback_name=f"collisions/{escape.file_stem(name)}.txt",
        )
    sid = student
    try:
        data, why = read_entry(folder, name)
        if data is None:
            return Outcome(name, sid, f"error: {why}", feedback=[f"not graded: {why}"])
        cells, why = code_cells(data)
        if cells is None:
            return Outcome(name, sid, "unreadable", feedback=[f"not a notebook: {why}"])
        check_bundle()
        with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch:
            os.chmod(scratch, 0o700)
            v = grader.grade(otter_cells.without_otter_init(cells), scratch)
        return Outcome(
            name, sid, v.status, v.scores, v.feedback, time.perf_counter() - start, v.log
        )
    except Exception as e:
        return Outcome(name, sid, f"error: grader failed ({type(e).__name__})", feedback=[escape.one_line(str(e)[:500])])  # fmt: skip


def grade_folder(
    exercise: str,
    submissions: Path,
    out: Path,
    *,
    bundle: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    jobs: int = 1,
    seed: int | None = None,
    unsafe_no_isolation: bool = False,
    master: Path | None = None,
) -> list[Outcome]:
    """Grade every entry directly inside `submissions` into OUT (run.json, grades.csv, feedback/, logs/)."""
    from tqdm import tqdm

    bundle = Path(bundle or AUTOGRADER_DIR / f"{exercise}.zip").resolve()
    if not bundle.is_file():
        raise ValueError(f"no autograder bundle at {bundle}: run `make exercises` first")
    if not submissions.is_dir():
        raise ValueError(f"submissions must be a folder, got {submissions}")
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"timeout must be > 0 and jobs >= 1, got {timeout} and {jobs}")
    master = Path(master or SOLUTIONS_DIR / f"{exercise}.ipynb")
    if not master.is_file():
        raise ValueError(f"no master at {master} (its written questions): pass --master")
    bwrap, why = isolation.bubblewrap()
    if bwrap is None and not unsafe_no_isolation:
        raise ValueError(
            f"cannot isolate submissions here: {why}. Install bubblewrap, or pass "
            "--unsafe-no-isolation to grade anyway (read what that risks in docs/instructors.md)"
        )
    if bwrap is None:
        print(isolation.UNSAFE_RISKS, file=sys.stderr)
    bundle_bytes = bundle.read_bytes()
    bundle_hash = digest(bundle_bytes)
    sources = verdict.read_test_sources(bundle)
    points = verdict.questions(sources)  # the bundle is read once; its hash is checked later
    written_points = {q.name: q.points for q in written.written_questions(master)}
    profile = os.environ.get("COURSE_PROFILE", "ci")
    run = regrade.settle(out, exercise, bundle_hash, profile, seed)
    books = Bookkeeper(out, exercise, {"autograded": points, "written": written_points})

    def check_bundle() -> None:
        if digest(bundle.read_bytes()) != bundle_hash:
            raise RuntimeError(f"the autograder bundle {bundle} changed during grading")

    grader = verdict.Grader(
        sources,
        isolated=bwrap is not None,
        timeout=timeout,
        secret=run["secret"],
        profile=profile,
    )
    names = sorted(os.listdir(submissions))
    ids = student_ids(names)
    out.mkdir(parents=True, exist_ok=True)  # nothing is written before every check has passed
    regrade.save_run(out, run, submissions)
    books.start()
    written.write_questions(out, exercise, points, written_points)
    report.record_answers(out, submissions, master)
    what = why if bwrap else "NONE (--unsafe-no-isolation)"
    print(f"grading {len(names)} entries for {exercise}; isolation: {what}", file=sys.stderr)
    if bwrap:
        caps = isolation.caps_in_force(grader.limits)
        print("caps in force per submission:\n  " + "\n  ".join(caps), file=sys.stderr)
    outcomes = []
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(grade_entry, submissions, n, ids[n], grader, check_bundle)
                for n in names
            ]
            for future in tqdm(futures, desc="grading", unit="notebook"):
                outcome = future.result()
                outcomes.append(outcome)
                books.add(outcome)
    finally:  # whatever stopped the run, grades.csv holds every row recorded so far
        books.finish()
    return outcomes


def questions(bundle: Path) -> dict[str, float]:
    """Question name -> points of the autograded questions in an autograder bundle."""
    return verdict.questions(verdict.read_test_sources(bundle))


def summary(outcomes: list[Outcome], points: dict[str, float]) -> str:
    """One line: how many graded and failed, and the mean autograded score."""
    graded = [o for o in outcomes if o.status == "ok"]
    mean = sum(sum(o.scores.values()) for o in graded) / len(graded) if graded else 0.0
    failed = len(outcomes) - len(graded)
    ran = [o.seconds for o in outcomes if o.seconds]
    per = sum(ran) / len(ran) if ran else 0.0
    return (
        f"graded {len(graded)}, failed {failed} (timeout, error or unreadable), "
        f"mean score {mean:.2f} / {sum(points.values()):g} over graded; {per:.1f} s per notebook run"
    )


def merge_main(argv: list[str]) -> int:
    """`course-grade merge OUT MANUAL.csv`: add written scores to OUT/grades.csv."""
    parser = argparse.ArgumentParser(prog="course-grade merge", description=merge_main.__doc__)
    parser.add_argument("out", type=Path, help="the output folder of a course-grade run")
    parser.add_argument("manual", type=Path, help="CSV: student, then written questions' scores")
    args = parser.parse_args(argv)
    try:
        count = written.merge(args.out, args.manual)
        table = class_summary.write(args.out)
    except ValueError as e:
        parser.error(str(e))
    print(f"merged {count} scores into {args.out / 'grades.csv'}\n{table}")
    return 0


SUBCOMMANDS = {"merge": merge_main, "export": export.main, "gradescope": gradescope.main}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point of `course-grade` (and its subcommands)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
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
    parser.add_argument(
        "--seed",
        type=int,
        help="secret added to the tests' seeds (default: the one in OUT/run.json, else drawn)",
    )
    parser.add_argument(
        "--master", type=Path, help="master notebook (default solutions/EXERCISE.ipynb)"
    )
    parser.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="grade even where bubblewrap cannot isolate submissions (prints the risks)",
    )
    args = parser.parse_args(argv)
    try:
        outcomes = grade_folder(
            args.exercise,
            args.submissions,
            args.out,
            bundle=args.autograder,
            timeout=args.timeout,
            jobs=args.jobs,
            seed=args.seed,
            unsafe_no_isolation=args.unsafe_no_isolation,
            master=args.master,
        )
    except ValueError as e:
        parser.error(str(e))
    bundle = args.autograder or AUTOGRADER_DIR / f"{args.exercise}.zip"
    print(summary(outcomes, questions(bundle)))
    master = args.master or SOLUTIONS_DIR / f"{args.exercise}.ipynb"
    print(report.write_class_reports(args.exercise, args.submissions, args.out, master))
    print(f"wrote {args.out / 'grades.csv'}, summary.csv, written/ and {args.out / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
