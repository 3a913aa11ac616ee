"""Verdicts computed in the grader's own process from plain data answered by a submission's sandbox.

The autograder bundle's otter test files are read here and never sent anywhere. For each question the
test functions run in this process with their parameters bound to what `Session.lookup` returns
(plain values rebuilt here, or `Remote`s whose calls run in the sandbox), and otter's own runner turns
passed and failed cases into points. Nothing that comes back from the sandbox is code, so comparisons
use this process's untouched torch, numpy and builtins.

Per-run secret inputs: every integer literal seed in a test (`manual_seed(3)`, `default_rng(0)`,
`np.random.seed(1)`) is replaced by a hash of itself and a secret drawn once per output folder
(`--seed` fixes it; saved in OUT/run.json for regrades), and the global RNGs are reseeded from it before each question, so a submission
cannot hard-code the outputs the public masters' tests expect, and an input it receives reveals
nothing about the secret or about another test's inputs.

Points: otter's per-test-case points (`points:` in a test's config; form checks are worth 0). A
test case named `test_<question>_rule_...` states a rule of the question ("write the loss
yourself"): when it fails, the whole question scores 0. The library paths a rule case passes to
`library_uses` are also watched while the code runs: every call the tests make into the
submission for that question runs under the sandbox's `watch`, and a call that reaches forbidden
code zeroes the question too. A question whose function the notebook does not define scores 0 and
says so. A failure whose message has no words (a bare
`AssertionError`, a raw tuple) is reported by the test case's name in words.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import math
import random
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_utils.grading import escape, isolation
from course_utils.grading.session import TRUSTED_PHASE, SandboxGone, Session

SEED_CALLS = {"manual_seed", "default_rng", "seed", "RandomState"}
TEST_CASE_HEADER = re.compile(r"^❌ Test case failed\nError at line \d+ in test [^\n]*:\n[^\n]*\n")
RULE_CASE = re.compile(r"^test_\w+?_rule_")
WORDLESS = re.compile(r"^(AssertionError|[\w.]*Error)(: [(\[{<].*)?$", re.DOTALL)
MAX_RESTARTS = 2  # a sandbox that dies while a question is tested is restarted for the next ones


def read_test_sources(bundle: Path) -> dict[str, str]:
    """Path -> source of otter's exception-based test files in an autograder bundle."""
    with zipfile.ZipFile(bundle) as zf:
        names = sorted(n for n in zf.namelist() if re.fullmatch(r"tests/[^/]+\.py", n))
        sources = {n: zf.read(n).decode() for n in names}
    if not sources:
        raise ValueError(f"bundle {bundle} holds no tests/*.py files")
    for name, source in sources.items():
        if not re.search(r"^OK_FORMAT = False$", source, re.MULTILINE):
            raise ValueError(f"{bundle}:{name}: expected otter's exception-based format")
    return sources


def secret_seed(value: int, secret: int) -> int:
    """The seed a test's literal seed `value` becomes under `secret`: a hash of both."""
    digest = hashlib.sha256(f"{secret}:{value}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def seeded(source: str, secret: int) -> str:
    """`source` with every integer literal seed replaced by `secret_seed` (line numbers kept)."""
    if not secret:
        return source
    lines = source.split("\n")
    edits = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        arg = node.args[0]
        if name in SEED_CALLS and isinstance(arg, ast.Constant) and type(arg.value) is int:
            if arg.lineno == arg.end_lineno:
                edits.append((arg.lineno, arg.col_offset, arg.end_col_offset, arg.value))
    for lineno, start, end, value in sorted(edits, reverse=True):
        raw = lines[lineno - 1].encode()
        new = str(secret_seed(value, secret)).encode()
        lines[lineno - 1] = (raw[:start] + new + raw[end:]).decode()
    return "\n".join(lines)


def load_tests(sources: dict[str, str], secret: int = 0) -> list[Any]:
    """Fresh otter test file objects from their sources, seeds shifted, sorted by question."""
    from otter.test_files import ExceptionTestFile

    tests = [ExceptionTestFile.from_string(seeded(s, secret), path=n) for n, s in sources.items()]
    return sorted(tests, key=lambda t: t.name)


def forbidden_paths(sources: dict[str, str]) -> dict[str, list[str]]:
    """Question name -> the library paths its rule cases forbid: the string lists they pass to
    `library_uses`, literally or through a name assigned a literal list in the case."""
    found: dict[str, list[str]] = {}
    for name, source in sources.items():
        paths: list[str] = []
        for case in ast.walk(ast.parse(source)):
            if not (isinstance(case, ast.FunctionDef) and RULE_CASE.match(case.name)):
                continue
            lists = {
                n.targets[0].id: n.value
                for n in ast.walk(case)
                if isinstance(n, ast.Assign)
                and len(n.targets) == 1
                and isinstance(n.targets[0], ast.Name)
                and isinstance(n.value, ast.List)
            }
            for call in ast.walk(case):
                if not (
                    isinstance(call, ast.Call)
                    and getattr(call.func, "id", getattr(call.func, "attr", None)) == "library_uses"
                    and len(call.args) == 2
                ):
                    continue
                arg = call.args[1]
                arg = lists.get(arg.id, arg) if isinstance(arg, ast.Name) else arg
                if isinstance(arg, ast.List):
                    for item in arg.elts:
                        if isinstance(item, ast.Constant) and type(item.value) is str:
                            if item.value not in paths:
                                paths.append(item.value)
        found[Path(name).stem] = paths
    return found


def questions(sources: dict[str, str]) -> dict[str, float]:
    """Question name -> points of the autograded questions."""
    return {t.name: float(t.possible) for t in load_tests(sources)}


@dataclass
class Verdict:
    """What grading one submission concluded."""

    status: str
    scores: dict[str, float] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)
    log: str = ""


def _parameters(test: Any) -> list[str]:
    """Every notebook name the test cases of a test file take as parameters."""
    names = []
    for tc in test.test_cases:
        for p in inspect.signature(tc.body.test_func).parameters:
            if p not in names and p != "env":
                names.append(p)
    return names


def _function_name(case: Any) -> str:
    """The name of a test case's function (otter names the case itself "q1 - 3")."""
    return case.body.test_func.__name__


def _in_words(name: str) -> str:
    """A test case's name as a sentence: test_q1_matches_the_library -> 'q1 matches the library'."""
    return name.removeprefix("test_").replace("_", " ")


def _failure(message: str, name: str, hidden: bool) -> str:
    """otter's failure message (for a hidden test without its source line), in words."""
    body = TEST_CASE_HEADER.sub("", message).strip()
    if WORDLESS.match(body) or "Remote" in body or "<submission's" in body:
        body = f"failed: {_in_words(name)}"
    return body if hidden else message.strip()


def _reseed(secret: int, index: int) -> None:
    """Reseed the global RNGs the tests may use, from the run's secret and the question."""
    import numpy as np
    import torch

    seed = (secret * 1009 + index) % 2**31
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _exit_status(session: Session) -> str:
    """The status of a sandbox that stopped before its cells finished."""
    if session.gone == "timeout":
        return "timeout"
    code = session.proc.returncode
    if code == 0:
        return "error: the notebook ended the grading process (exit code 0)"
    if code is not None and code < 0:
        return f"error: the grading process was killed by signal {-code}"
    return f"error: the grading process exited with code {code} (see feedback)"


class Grader:
    """Grades submissions of one exercise against the test sources of its bundle."""

    def __init__(
        self,
        sources: dict[str, str],
        *,
        isolated: bool,
        timeout: float,
        secret: int,
        profile: str = "ci",
        limits: isolation.Limits | None = None,
    ) -> None:
        self.sources, self.isolated, self.timeout = sources, isolated, timeout
        self.forbidden = forbidden_paths(sources)
        self.secret, self.profile = secret, profile
        self.limits = limits or isolation.Limits(cpu_seconds=int(4 * timeout) + 60)

    def _start(self, cells: list[str], scratch: str, deadline: float) -> tuple[Session, list[str]]:
        session = Session(
            cells, isolated=self.isolated, profile=self.profile, limits=self.limits, scratch=scratch
        )
        try:
            errors = session.start(deadline)
        except SandboxGone:
            return session, []
        return session, errors

    def grade(self, cells: list[str], scratch: str) -> Verdict:
        """Run `cells` in a sandbox, then every question's tests here, all within one time budget."""
        deadline = time.monotonic() + self.timeout  # cells, questions and restarts together
        session, errors = self._start(cells, scratch, deadline)
        if session.gone:
            status = _exit_status(session)
            note = f"stopped after the {self.timeout:g} s time limit" if status == "timeout" else ""
            tail = session.log.text().strip().splitlines()[-5:]
            feedback = [note] if note else ["last output:", *escape.quoted("\n".join(tail))]
            return Verdict(status, feedback=feedback, log=session.log.text())
        notes = [f"error in {e}" for e in errors]
        lines: list[str] = []
        scores: dict[str, float] = {}
        restarts = 0
        logs = []
        try:
            with TRUSTED_PHASE:
                tests = load_tests(self.sources, self.secret)
                for index, test in enumerate(tests):
                    if session.gone not in (None, "timeout") and restarts < MAX_RESTARTS:
                        logs.append(session.log.text())
                        restarts += 1
                        session, _ = self._start(cells, scratch, deadline)
                    scores[test.name] = self._question(test, session, index, lines)
        finally:
            session.close()
        logs.append(session.log.text())
        feedback = notes + ([""] if notes else []) + lines
        return Verdict("ok", scores, feedback, "\n".join(logs))

    def _question(self, test: Any, session: Session, index: int, lines: list[str]) -> float:
        """Run one question's tests against the session; its score, feedback appended to `lines`."""
        possible = float(test.possible)
        if session.gone:
            why = "the time limit was spent" if session.gone == "timeout" else "the sandbox stopped"
            lines += [f"{test.name}: 0 / {possible:g}", f"  not tested: {why} earlier"]
            return 0.0
        try:  # the question's forbidden library, watched in every call its tests make
            session.forbid(self.forbidden.get(test.name, []))
        except SandboxGone:
            pass
        env = {}
        for name in _parameters(test):
            try:
                env[name] = session.lookup(name)
            except LookupError:
                pass  # otter passes None: the case fails, and its feedback names what is missing
            except Exception:  # SandboxGone, or the lookup itself raised: noted below
                break
        own: list[str] = []
        score = score_question(test, env, self.secret, index, own)
        if session.gone:
            crash = f"the submission {session.gone.replace('timeout', 'timed out')} while this question was tested"  # fmt: skip
            lines += [f"{test.name}: 0 / {possible:g}", f"  scored 0: {crash}"]
            return 0.0
        reached = sorted(session.library_hits)
        if reached:
            score = 0.0
            own[0] = f"{test.name}: 0 / {possible:g}"
            own.insert(1, f"  scored 0: while it was tested, it ran {', '.join(reached)}, which the question forbids")  # fmt: skip
        lines += own
        return score


def score_question(
    test: Any, env: dict[str, Any], secret: int, index: int, lines: list[str]
) -> float:
    """Run one question's test cases against `env` (names -> values or Remotes); its score, with
    its feedback appended to `lines`. A failed rule case zeroes the question."""
    possible = float(test.possible)
    _reseed(secret, index)
    test.run(env)
    score = float(test.score)
    failed = [_function_name(r.test_case) for r in test.test_case_results if not r.passed]
    broken = [name for name in failed if RULE_CASE.match(name)]
    if broken:
        score = 0.0
    if not (math.isfinite(score) and 0 <= score <= possible):
        raise ValueError(f"score {score} of {test.name} outside [0, {possible}]")
    lines.append(f"{test.name}: {score:g} / {possible:g}")
    if broken:
        lines.append(
            f"  scored 0: the question's rule is broken ({', '.join(map(_in_words, broken))})"
        )
    for i, result in enumerate(test.test_case_results, start=1):
        hidden = result.test_case.hidden
        kind = "hidden test" if hidden else "test"
        if result.passed:
            lines.append(f"  {kind} {i}: passed")
        else:
            params = inspect.signature(result.test_case.body.test_func).parameters
            missing = [p for p in params if p != "env" and p not in env]
            if missing:
                detail = f"not defined in the notebook: {', '.join(missing)}"
            else:
                detail = _failure(result.message, _function_name(result.test_case), hidden)
            lines.append(f"  {kind} {i}: failed\n" + "\n".join(escape.quoted(detail)))
    return score
