"""Instructor tooling around otter-grader: generate student exercises, grade submitted notebooks.

`generate` turns each master in solutions/ into exercises/<name>.ipynb, its visible tests and the
autograder bundle build/autograder/<name>.zip; `grade` (the `course-grade` command) grades a folder
of submissions, each in its own process; `visible` gives students' notebooks their visible tests.
Only `visible` is imported here: the rest needs the `instructor` extra (otter-grader).
"""

from course_utils.grading.visible import visible_tests

__all__ = ["visible_tests"]
