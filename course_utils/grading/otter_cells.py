"""The student notebook's otter init cell, replaced in the sandbox by a stand-in that checks nothing.

Every exercise starts with the generated cell `grader = otter.Notebook(...)` (`generate.INIT_SOURCE`)
so that students can run `grader.check("q1")`. When grading, those visible checks decide nothing (the
verdict runs every test in the grader), yet importing otter costs each sandbox seconds. An init cell
exactly as generated is therefore swapped for a `grader` whose methods (`check`, `check_all`...) do nothing; any other cell,
an edited init cell included, runs unchanged. Cell numbers are kept.
"""

from __future__ import annotations

import re

from course_utils.grading.generate import INIT_SOURCE

INIT_RE = re.compile(re.escape(INIT_SOURCE).replace(re.escape("{name}"), r"\w+"))
STAND_IN = '''\
class _NoChecks:
    """Stands in for otter's grader while grading: the grader runs the tests itself."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


grader = _NoChecks()'''


def without_otter_init(cells: list[str]) -> list[str]:
    """`cells` with every unedited otter init cell replaced by the stand-in."""
    return [STAND_IN if INIT_RE.fullmatch(c.strip()) else c for c in cells]
