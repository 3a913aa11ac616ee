"""Per-question summaries of a graded class: OUT/summary.csv, OUT/summary.png and a short table.

Computed from OUT/grades.csv and OUT/questions.json only, so it is rewritten after `course-grade
merge` adds the written scores. Autograded questions count every row (a submission that was not
graded scores 0 and is counted in `errors`); written questions count the rows with a score filled in.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from course_utils.grading import written

COLUMNS = ["question", "kind", "max", "scored", "mean", "median", "share_at_0", "share_at_max", "errors"]  # fmt: skip


def summarize(out: Path) -> list[dict[str, str]]:
    """One row per question and one for the total: max, count, mean, median, shares, errors."""
    questions = written.read_questions(out)
    _, rows = written.read_grades(out)
    errors = sum(r["status"] != "ok" for r in rows)
    kinds = [("autograded", q, p) for q, p in questions["autograded"].items()]
    kinds += [("written", q, p) for q, p in questions["written"].items()]
    table = []
    for kind, q, maximum in kinds:
        values = [float(r[q]) for r in rows if r.get(q, "") != ""]
        table.append(_stats(q, kind, maximum, values, errors if kind == "autograded" else 0))
    maximum = sum(questions["autograded"].values()) + sum(questions["written"].values())
    totals = [written.total(r, questions) for r in rows]
    table.append(_stats("total", "total", maximum, totals, errors))
    return table


def _stats(q: str, kind: str, maximum: float, values: list[float], errors: int) -> dict[str, str]:
    n = len(values)
    row = {
        "question": q,
        "kind": kind,
        "max": f"{maximum:g}",
        "scored": str(n),
        "errors": str(errors),
    }
    if not n:
        return row | {k: "" for k in ("mean", "median", "share_at_0", "share_at_max")}
    return row | {
        "mean": f"{statistics.fmean(values):.4g}",
        "median": f"{statistics.median(values):g}",
        "share_at_0": f"{sum(v == 0 for v in values) / n:.3f}",
        "share_at_max": f"{sum(v == maximum for v in values) / n:.3f}",
    }


def write(out: Path) -> str:
    """Write OUT/summary.csv and OUT/summary.png; return the summary as a printable table."""
    table = summarize(out)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    plot(out)
    return text_table(table)


def text_table(table: list[dict[str, str]]) -> str:
    """The summary rows as aligned text."""
    shown = ["question", "max", "scored", "mean", "median", "share_at_0", "share_at_max", "errors"]
    cells = [shown, *([r[c] for c in shown] for r in table)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(shown))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def plot(out: Path) -> Path:
    """OUT/summary.png: a histogram of the scores of every question and of the totals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = written.read_questions(out)
    _, rows = written.read_grades(out)
    names = [*questions["autograded"], *questions["written"], "total"]
    maxima = {**questions["autograded"], **questions["written"]}
    maxima["total"] = sum(maxima.values())
    cols = min(4, len(names))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 2.4 * nrows), squeeze=False)
    for ax, q in zip(axes.flat, names, strict=False):
        if q == "total":
            values = [written.total(r, questions) for r in rows]
        else:
            values = [float(r[q]) for r in rows if r.get(q, "") != ""]
        ax.hist(values, bins=min(20, max(4, int(2 * maxima[q]) + 1)), range=(0, maxima[q]))
        ax.set_title(f"{q} (max {maxima[q]:g}, n={len(values)})", fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "summary.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
