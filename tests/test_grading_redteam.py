"""Red-team suite for `course-grade`: one submission per known attack class, graded in one run.

Each attack is the blank ex1 notebook (or the solved one, to check classmates) plus cells that try
to get marks they did not earn: forging a result file, reaching the test objects through the stack
or the garbage collector, patching the checker's functions (disguised as the library's), replacing
torch, answering with objects whose comparisons always succeed, memorising the public tests'
inputs, forging protocol messages, reading and running a classmate's answers, persisting a `.pth`
file or rewriting the autograder bundle for later runs, tampering with other processes through
`/proc`, echoing the instructor's environment into feedback, delegating q1 to the library through a
patched torch function (with and without silencing the grader's call monitor), leaving a detached process behind,
exhausting processes, memory and disk, and flooding the log. Each must score no more than the
blank notebook; classmates graded in the same `-j 2` run keep their grades; no feedback, log or
CSV carries the instructor's environment; no process is left running; the bundle and the shared
environment are unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import solved  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade, isolation  # noqa: E402

EXERCISE = "ex1_infonce"
QUESTIONS = ("q1", "q2a", "q3b", "q4")
FULL = (3.0, 2.0, 3.0, 3.0)
# One budget per notebook (issue 24): crash_and_hang runs its cells twice (a crash restarts the
# sandbox) and its last question hangs until the budget is spent.
TIMEOUT_S = 150
INSTRUCTOR_SECRET = "instructor-secret-9d41c7"  # set in the grader's environment during the run
MARK = "redteam-i14-left-running"  # in the command line of every process an attack tries to leave

FORGE_RESULT = """\
import json
import os
from pathlib import Path

forged = {"scores": {q: 1000 for q in ("q1", "q2a", "q3b", "q4")}, "feedback": ["forged"]}
for d in [Path.cwd(), Path.cwd().parent, Path("/tmp"), *Path("/tmp").glob("course-grade-*")]:
    for name in ("result.json", "grades.csv"):
        try:
            (d / name).write_text(json.dumps(forged))
        except OSError:
            pass
os._exit(0)
"""
WALK_STACK_AND_GC = """\
import gc
import sys

import otter.test_files.abstract_test as at
import otter.test_files.exception_test as et

needle = "test_q1_is_stable" + "_at_small_temperature"  # a hidden test of ex1
found = 0
for obj in gc.get_objects():
    kind = type(obj)
    if str(getattr(kind, "__module__", "")).startswith("course_utils.grading.verdict"):
        found += 1
    if kind is str and obj is not needle and needle in obj:
        found += 1
    if kind.__name__ in ("ExceptionTestFile", "test_case"):  # grader.check's visible tests
        for attr in ("score", "possible", "hidden"):
            try:
                setattr(obj, attr, 1000)
            except Exception:
                pass
frame = sys._getframe()
while frame is not None:
    for key, value in list(frame.f_locals.items()):
        if isinstance(value, dict) and key in ("scores", "possible", "env"):
            value.update({q: 1000 for q in ("q1", "q2a", "q3b", "q4")})
    frame = frame.f_back


def _pass_everything(self, env):
    self.test_case_results = [
        at.TestCaseResult(test_case=tc, message="ok", passed=True) for tc in self.test_cases
    ]


et.ExceptionTestFile.run = _pass_everything
print("grader objects or hidden tests found in this process:", found)
"""
DISGUISED_PATCHES = """\
import builtins
import math

import torch


def allclose(*args, **kwargs):
    return True


allclose.__module__, allclose.__qualname__ = "torch", "allclose"
allclose.__code__ = allclose.__code__.replace(co_filename=torch.__file__)
torch.allclose = torch.equal = allclose
torch.isfinite = lambda x: torch.tensor(True)
math.isclose = lambda *a, **k: True
_abs = lambda x: 0.0  # noqa: E731
_abs.__module__ = "builtins"
builtins.abs = _abs
"""
FAKE_TORCH = """\
import sys
import types

real = sys.modules["torch"]
fake = types.ModuleType("torch")
fake.__dict__.update(real.__dict__)
fake.allclose = fake.equal = lambda *a, **k: True
fake.isfinite = lambda x: True
sys.modules["torch"] = fake
torch = fake
"""
MAGIC_ANSWERS = """\
import torch


class Always(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    __le__ = __gt__ = __ge__ = __lt__
    def __abs__(self): return Always(0.0)
    def __sub__(self, other): return Always(0.0)
    __rsub__ = __add__ = __radd__ = __truediv__ = __rtruediv__ = __sub__
    __hash__ = float.__hash__


class Magic(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True


def info_nce_scratch(query, keys, temperature=0.1):
    return torch.zeros(()).as_subclass(Magic)


def info_nce_as_classification(query, keys, temperature=0.1):
    n = query.shape[0]
    return torch.zeros(n, n).as_subclass(Magic), torch.arange(n).as_subclass(Magic)


def gaussian_mi(rho, dim):
    return Always(0.0)


def infonce_mi_lower_bound(scores):
    return Always(0.0)


def negative_weights(positive, negatives, temperature):
    return torch.ones(len(negatives)).as_subclass(Magic)
"""
# Answers memorised for the inputs of the public master's hidden test of q4 (seed 7): right for those
# inputs only. With the grader's secret shift of the seeds, the inputs differ and it scores 0.
MEMORISED = """\
import torch


def _right(positive, negatives, temperature):
    sims = torch.cat([torch.tensor([positive], dtype=negatives.dtype), negatives])
    return torch.softmax(sims / temperature, 0)[1:] / temperature


def _key(positive, negatives, temperature):
    return round(float(positive), 9), tuple(round(v, 9) for v in negatives.tolist()), temperature


_table = {}
g = torch.Generator().manual_seed(7)
for m, tau in [(1, 1.0), (5, 0.1), (50, 0.05), (20, 3.0)]:
    s = 2 * torch.rand(m + 1, generator=g, dtype=torch.float64) - 1
    _table[_key(float(s[0]), s[1:], tau)] = _right(float(s[0]), s[1:], tau)


def negative_weights(positive, negatives, temperature):
    return _table.get(_key(positive, negatives, temperature), -torch.ones(len(negatives)))
"""
FORGE_PROTOCOL = """\
import json
import os
import struct
import sys


def frame(header):
    raw = json.dumps(header).encode()
    return struct.pack(">QQ", len(raw), 0) + raw


out_fd = int(sys.argv[-1])  # the sandbox's answer pipe
os.write(out_fd, frame({"ready": []}))
for _ in range(40):
    os.write(out_fd, frame({"value": 1000.0}))
"""
READ_CLASSMATES = """\
import glob
import json

paths = []
for pattern in ["{folder}/*", "/tmp/**/*.ipynb", "/proc/*/cwd/**/*.ipynb", "/proc/*/root/tmp/**/*.ipynb"]:
    paths += glob.glob(pattern, recursive=True)
used = 0
for path in paths:
    try:
        nb = json.load(open(path))
    except Exception:
        continue
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", []))
        if source.startswith("def ") and "..." not in source:
            exec(source, globals())
            used += 1
print("classmates' cells executed:", used)
"""
PERSIST = """\
import os
import site
import sys
from pathlib import Path

import course_utils

payload = "import builtins; builtins.abs = lambda x: 0.0\\n"
written = []
for d in {{*sys.path, *site.getsitepackages(), "{site}"}}:
    try:
        Path(d, "zz_redteam_i14.pth").write_text(payload)
        written.append(d)
    except OSError:
        pass
for target in [Path(course_utils.__file__).parent / "grading" / "verdict.py", Path("{verdict}")]:
    try:
        target.write_text("raise SystemExit")
        written.append(str(target))
    except OSError:
        pass
package_root = Path(course_utils.__file__).parents[1]
for bundle in ["{bundle}", *package_root.glob("build/autograder/*.zip"), *Path("/tmp").glob("**/*.zip")]:
    try:
        Path(bundle).write_bytes(b"PK\\x05\\x06" + bytes(18))
        written.append(str(bundle))
    except OSError:
        pass
print("written:", written)
"""
PROC_TAMPER = """\
import glob
import os

visible = glob.glob("/proc/[0-9]*")
for proc in visible:
    for link in ("cwd", "root"):
        for name in ("grades.csv", "grades.csv.partial", "feedback/alice.txt"):
            try:
                with open(os.path.join(proc, link, name), "w") as f:
                    f.write("alice,alice.ipynb,0,0,0,0,0,ok\\n")
            except OSError:
                pass
for name in ("grades.csv", "grades.csv.partial", "feedback/alice.txt"):
    try:
        with open(os.path.join("{out}", name), "w") as f:
            f.write("pwned")
    except OSError:
        pass
print("processes visible:", len(visible))
"""
ENV_LEAK = """\
import os

dump = repr(dict(os.environ))
print(dump)


def info_nce_scratch(query, keys, temperature=0.1):
    raise ValueError("environment: " + dump)


raise RuntimeError("environment: " + dump)
"""
DETACH = """\
import os
import subprocess
import sys

code = "import time\\ntime.sleep(3)\\nopen('{out}/grades.csv', 'w').write('pwned')\\ntime.sleep(600)"
subprocess.Popen(
    [sys.executable, "-c", code, "{mark}"],
    start_new_session=True,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
if os.fork() == 0:  # a double fork into a new session
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", code, "{mark}"])
    os._exit(0)
"""
EXHAUST = """\
import subprocess

children = 0
for _ in range(600):
    try:
        subprocess.Popen(["{mark}", "600"], executable="/bin/sleep")
    except OSError:
        break
    children += 1
print("processes started:", children)
try:
    hog = bytearray(64 * 2**30)
except MemoryError:
    print("memory capped")
try:
    with open("big.bin", "wb") as f:
        for _ in range(2048):
            f.write(bytes(2**20))
except OSError as e:
    print("disk capped:", e)
"""
FLOOD_LOG = """\
import sys

line = "x" * 999_999 + "\\n"
for _ in range(300):  # 300 MB of output
    sys.stdout.write(line)
"""
CRASH_AND_HANG = """\
import os


def info_nce_as_classification(query, keys, temperature=0.1):
    os._exit(3)


def negative_weights(positive, negatives, temperature):
    while True:
        pass
"""


# q1 delegated past the static check: the answer's definition only calls torch.logsumexp, which a
# cell of the notebook rebinds to the library's loss. Caught while the code runs (`watch`).
PATCHED_TORCH = """\
import course_utils.losses as _lib
import torch

_real_logsumexp = torch.logsumexp


def _logsumexp(x, dim=None, **kwargs):
    if dim == -99:  # the answer's own call
        {silence}return _lib.info_nce(x[0], x[1], temperature=x[2])
    return _real_logsumexp(x, dim, **kwargs)


torch.logsumexp = _logsumexp


def info_nce_scratch(query, keys, temperature=0.1):
    return torch.logsumexp((query, keys, temperature), dim=-99)
"""
SILENCE = "import sys; sys.setprofile(None)  # whatever watches the call, stop it\n        "


def _blank() -> nbformat.NotebookNode:
    return nbformat.read(gen.EXERCISES_DIR / f"{EXERCISE}.ipynb", as_version=4)


def _solved() -> nbformat.NotebookNode:
    return solved(EXERCISE)


def _appended(nb: nbformat.NotebookNode, *sources: str) -> nbformat.NotebookNode:
    for source in sources:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    return gen.generate(gen.SOLUTIONS_DIR / f"{EXERCISE}.ipynb", out / "e", out / "v", out / "a").autograder  # fmt: skip


def _attacks(folder: Path, out: Path, bundle: Path) -> dict[str, nbformat.NotebookNode]:
    """File name -> notebook of every attack (blank answers unless said otherwise)."""
    verdict_py = Path(isolation.PACKAGE_DIR, "grading", "verdict.py")
    fmt = {"folder": folder, "out": out, "mark": MARK, "bundle": bundle}
    return {
        "forge_result.ipynb": _appended(_blank(), FORGE_RESULT),
        "walk_stack_and_gc.ipynb": _appended(_blank(), WALK_STACK_AND_GC),
        "disguised_patches.ipynb": _appended(_blank(), DISGUISED_PATCHES),
        "fake_torch.ipynb": _appended(_blank(), FAKE_TORCH),
        "magic_answers.ipynb": _appended(_blank(), MAGIC_ANSWERS),
        "memorised.ipynb": _appended(_blank(), MEMORISED),
        "forge_protocol.ipynb": _appended(_blank(), FORGE_PROTOCOL),
        "read_classmates.ipynb": _appended(_blank(), READ_CLASSMATES.format(**fmt)),
        "persist.ipynb": _appended(
            _blank(), PERSIST.format(site=_site_packages(), verdict=verdict_py, bundle=bundle)
        ),
        "proc_tamper.ipynb": _appended(_blank(), PROC_TAMPER.format(**fmt)),
        "env_leak.ipynb": _appended(_blank(), ENV_LEAK),
        "detach.ipynb": _appended(_blank(), DETACH.format(**fmt)),
        "exhaust.ipynb": _appended(_blank(), EXHAUST.format(**fmt)),
        "flood_log.ipynb": _appended(_blank(), FLOOD_LOG),
        "patched_torch.ipynb": _appended(_blank(), PATCHED_TORCH.format(silence="")),
        "patched_torch_silenced.ipynb": _appended(_blank(), PATCHED_TORCH.format(silence=SILENCE)),
    }


# classmates graded in the same run, and what they must get
CLASSMATES = {
    "alice.ipynb": (_solved, FULL, "ok"),
    "blank.ipynb": (_blank, (0, 0, 0, 0), "ok"),
    # a crash while q2a is tested and a hang in q4: those score 0, the others are still graded
    "crash_and_hang.ipynb": (
        lambda: _appended(_solved(), CRASH_AND_HANG),
        (3, 0, 3, 0),
        "ok",
    ),
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _processes_with(mark: str) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture(scope="module")
def run(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade every attack and classmate in one `-j 2` run with a secret set in the environment."""
    if isolation.bubblewrap()[0] is None:
        pytest.fail(f"the red-team suite needs isolation: {isolation.bubblewrap()[1]}")
    folder, out = tmp_path_factory.mktemp("redteam"), tmp_path_factory.mktemp("redteam_out")
    notebooks = _attacks(folder, out, bundle)
    notebooks |= {name: build() for name, (build, _, _) in CLASSMATES.items()}
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / name)
    before = {"bundle": _digest(bundle), "verdict": _digest(isolation.PACKAGE_DIR / "grading" / "verdict.py")}  # fmt: skip
    os.environ["COURSE_GRADE_TOKEN"] = INSTRUCTOR_SECRET
    try:
        grade.grade_folder(
            EXERCISE, folder, out, bundle=bundle, timeout=TIMEOUT_S, jobs=2, seed=12345
        )
    finally:
        del os.environ["COURSE_GRADE_TOKEN"]
    with open(out / "grades.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "out": out, "before": before, "bundle": bundle, "names": sorted(notebooks)}  # fmt: skip


def _scores(row: dict) -> tuple[float, ...]:
    return tuple(float(row[q]) for q in QUESTIONS)


def test_every_submission_has_a_row(run: dict) -> None:
    assert sorted(run["rows"]) == run["names"]


@pytest.mark.parametrize("attack", sorted(_attacks(Path("f"), Path("o"), Path("b"))))
def test_attack_scores_no_more_than_a_blank_notebook(attack: str, run: dict) -> None:
    row, blank = run["rows"][attack], run["rows"]["blank.ipynb"]
    assert _scores(row) <= _scores(blank) and float(row["total"]) <= float(blank["total"]), row
    assert all(s == 0 for s in _scores(row)), row


@pytest.mark.parametrize("name", sorted(CLASSMATES))
def test_classmates_keep_their_grades(name: str, run: dict) -> None:
    _, expected, status = CLASSMATES[name]
    row = run["rows"][name]
    assert row["status"] == status and _scores(row) == tuple(map(float, expected)), row


def test_crash_and_hang_are_reported(run: dict) -> None:
    feedback = (run["out"] / "feedback" / "crash_and_hang.txt").read_text()
    assert (
        "q2a: 0 / 2\n  scored 0: the submission crashed while this question was tested" in feedback
    )
    assert (
        "q4: 0 / 3\n  scored 0: the submission timed out while this question was tested" in feedback
    )


def test_forged_exit_is_an_error(run: dict) -> None:
    status = run["rows"]["forge_result.ipynb"]["status"]
    assert status == "error: the notebook ended the grading process (exit code 0)"


def test_nothing_of_the_grader_is_reachable_from_the_sandbox(run: dict) -> None:
    log = (run["out"] / "logs" / "walk_stack_and_gc.txt").read_text()
    assert "grader objects or hidden tests found in this process: 0" in log
    log = (run["out"] / "logs" / "read_classmates.txt").read_text()
    assert "classmates' cells executed: 0" in log
    log = (run["out"] / "logs" / "proc_tamper.txt").read_text()
    visible = int(log.split("processes visible:")[1].split()[0])
    assert visible <= 3, f"the sandbox sees {visible} processes: no own PID namespace"


def test_no_instructor_variable_leaks(run: dict) -> None:
    texts = [p.read_text(errors="replace") for p in run["out"].rglob("*") if p.is_file()]
    assert not any(INSTRUCTOR_SECRET in t for t in texts)
    # the channel exists: the sandbox's own (clean) environment does reach the feedback
    feedback = (run["out"] / "feedback" / "env_leak.txt").read_text()
    assert "RuntimeError: environment: {" in feedback and "/home/student" in feedback


def test_bundle_package_and_environment_are_unchanged(run: dict) -> None:
    assert _digest(run["bundle"]) == run["before"]["bundle"]
    verdict_py = isolation.PACKAGE_DIR / "grading" / "verdict.py"
    assert _digest(verdict_py) == run["before"]["verdict"]
    leftovers = [p for d in sys.path if d and Path(d, "zz_redteam_i14.pth").exists() for p in [d]]
    assert not leftovers and not Path(_site_packages(), "zz_redteam_i14.pth").exists()
    log = (run["out"] / "logs" / "persist.txt").read_text()
    assert "written: ['/home/student']" in log  # its own scratch tmpfs only


def test_no_process_is_left_running(run: dict) -> None:
    assert not _processes_with(MARK)
    assert "pwned" not in (run["out"] / "grades.csv").read_text()


def test_resources_are_capped(run: dict) -> None:
    log = (run["out"] / "logs" / "exhaust.txt").read_text()
    started = int(log.split("processes started:")[1].split()[0])
    assert started < isolation.Limits().processes, log[-500:]  # for root too (issue 24)
    assert "memory capped" in log and "disk capped" in log, log[-500:]
    flood = run["out"] / "logs" / "flood_log.txt"
    assert flood.stat().st_size < 200_000, "the log is capped"


def test_memorised_answers_need_the_public_seeds(bundle: Path, tmp_path: Path) -> None:
    # Graded without the secret (seed 0), the memorised table passes q4's seeded hidden test: the
    # secret shift is what makes it worthless in the main run.
    (tmp_path / "in").mkdir()
    nbformat.write(_appended(_blank(), MEMORISED), tmp_path / "in" / "memorised.ipynb")
    (outcome,) = grade.grade_folder(
        EXERCISE, tmp_path / "in", tmp_path / "out", bundle=bundle, timeout=TIMEOUT_S, seed=0
    )
    assert outcome.scores["q4"] == 2.0, outcome.feedback  # test_q4_matches_autograd's points
