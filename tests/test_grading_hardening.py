"""The grader under attack (issue 24): junk file names, one time budget, caps that hold, unforgeable output.

Each test bounds what it spends: a few hundred sleeping processes, a few hundred MiB for a moment,
seconds of CPU. The resource tests start one sandbox each with small caps (`Limits`) and read what
the sandbox could do from its log.
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from course_utils.grading import cgroups, grade, isolation, session  # noqa: E402
from course_utils.grading import generate as gen  # noqa: E402

EXERCISE = "ex1_infonce"
FUNCTIONS = (
    "info_nce_scratch", "info_nce_as_classification", "gaussian_mi", "infonce_mi_lower_bound",
    "negative_weights",
)  # fmt: skip


def _notebook(*sources: str) -> nbformat.NotebookNode:
    """A notebook of these code cells only (no answer: every test fails, and fast)."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if isolation.bubblewrap()[0] is None:
        pytest.fail(f"these tests need isolation: {isolation.bubblewrap()[1]}")
    out = tmp_path_factory.mktemp("generated")
    return gen.generate(gen.SOLUTIONS_DIR / f"{EXERCISE}.ipynb", out / "e", out / "v", out / "a").autograder  # fmt: skip


def _rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---- 1. one junk file must not cost a class its grades --------------------------------------


def test_every_entry_gets_a_row_whatever_its_name(bundle: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    names = [
        "a" * 252,  # sorts first; <stem>.txt would be 256 bytes
        "b" * 249 + ".ipynb",  # a real notebook with a name at the limit
        "c\nq1: 3 \x1b[2J.ipynb",
        "..ipynb",
        "zz.ipynb",
    ]
    for name in names:
        (folder / name).write_bytes(b"junk")
    nbformat.write(_notebook("x = 1"), folder / names[1])
    outcomes = grade.grade_folder(EXERCISE, folder, out, bundle=bundle, timeout=120, seed=1)
    rows = _rows(out)
    assert len(rows) == len(names) == len(outcomes)
    assert {r["file"] for r in rows} == {grade.escape.csv_cell(n) for n in names}
    assert [r["status"] for r in rows if r["file"] == names[1]] == ["ok"]
    for o in outcomes:
        assert "status:" in (out / "feedback" / o.feedback_name).read_text(), o.feedback_name
        assert len(o.feedback_name.encode()) <= 255 and "\n" not in o.feedback_name


# ---- 2. one wall-clock budget per submission; no lock held while a sandbox works ------------

BUDGET_S = 20.0
SLOW = """\
import time


def _slow(*args, **kwargs):
    time.sleep(8)  # each call well under the time limit, the calls of a question over it


for _name in {functions!r}:
    globals()[_name] = _slow
"""


def test_one_budget_and_classmates_do_not_wait(bundle: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    nbformat.write(_notebook(SLOW.format(functions=FUNCTIONS)), folder / "a_slow.ipynb")
    # the classmate's cells finish later, so the slow one enters the tests first
    nbformat.write(_notebook("import time\ntime.sleep(3)"), folder / "b_blank.ipynb")
    start = time.monotonic()
    slow, blank = grade.grade_folder(
        EXERCISE, folder, out, bundle=bundle, timeout=BUDGET_S, jobs=2, seed=1
    )
    wall = time.monotonic() - start
    assert slow.seconds <= BUDGET_S + 6, f"{slow.seconds:.1f} s for a {BUDGET_S:g} s budget"
    assert blank.status == "ok" and blank.seconds < slow.seconds - 3, (blank.seconds, slow.seconds)
    assert wall <= BUDGET_S + 10
    feedback = (out / "feedback" / "a_slow.txt").read_text()
    assert "not tested: the time limit was spent earlier" in feedback


def test_waiting_on_a_sandbox_keeps_the_rng_state_of_the_tests() -> None:
    import torch

    phase = session.TRUSTED_PHASE
    with phase:
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        with phase.released():
            torch.manual_seed(99)  # another submission's tests run meanwhile
            acquired = phase._lock.acquire(blocking=False)
            phase._lock.release() if acquired else None
        assert acquired, "the lock is free while this thread waits on its sandbox"
        assert torch.equal(torch.rand(3), expected)


# ---- 3. caps that hold, for root too ---------------------------------------------------------


def _sandbox(tmp_path: Path, cell: str, **caps: float) -> str:
    """The log of one isolated sandbox that ran `cell` under `Limits(**caps)`."""
    limits = isolation.Limits(**caps)
    s = session.Session([cell], isolated=True, profile="ci", limits=limits, scratch=str(tmp_path))
    try:
        errors = s.start(time.monotonic() + 120)
    finally:
        s.close()
    assert not errors, errors
    return s.log.text()


def _number(log: str, label: str) -> float:
    return float(re.search(rf"{label}: (\S+)", log).group(1))


def test_the_sandbox_user_is_never_root_outside(tmp_path: Path) -> None:
    cell = """\
import os
inside, outside, _ = open("/proc/self/uid_map").read().split()[:3]
print("outside uid:", os.getuid() - int(inside) + int(outside))
"""
    assert _number(_sandbox(tmp_path, cell), "outside uid") != 0


def test_processes_are_capped(tmp_path: Path) -> None:
    cell = """\
import subprocess
children = []
for _ in range(300):
    try:
        children.append(subprocess.Popen(["/bin/sleep", "30"]))
    except OSError:
        break
print("processes started:", len(children))
for c in children:
    c.kill()
"""
    assert _number(_sandbox(tmp_path, cell, processes=64), "processes started") < 64


needs_cgroups = pytest.mark.skipif(
    isolation.control_groups()[0] is None,
    reason=f"no cgroups here: {isolation.control_groups()[1]}",
)


@needs_cgroups
def test_memory_of_the_whole_tree_is_capped(tmp_path: Path) -> None:
    cell = """\
import subprocess
import sys
hog = "x = b'1' * (400 * 2**20); print('held')"
print("child exit:", subprocess.run([sys.executable, "-c", hog]).returncode)
"""
    log = _sandbox(tmp_path, cell, memory_bytes=256 * 2**20)
    assert _number(log, "child exit") != 0 and "held" not in log, log[-500:]


@needs_cgroups
def test_cpu_is_capped(tmp_path: Path) -> None:
    cell = """\
import time
start, cpu = time.monotonic(), time.process_time()
while time.monotonic() - start < 2:
    pass
print("cpu share:", (time.process_time() - cpu) / (time.monotonic() - start))
"""
    assert _number(_sandbox(tmp_path, cell, cpus=0.1), "cpu share") < 0.2


def test_dev_is_read_only_and_dev_shm_is_sized(tmp_path: Path) -> None:
    cell = """\
def fill(path):
    written = 0
    try:
        with open(path, "wb") as f:
            for _ in range(16):
                f.write(bytes(2**20))
                f.flush()
                written += 1
    except OSError:
        pass
    return written
print("dev MiB:", fill("/dev/junk"))
print("shm MiB:", fill("/dev/shm/junk"))
"""
    log = _sandbox(tmp_path, cell, tmpfs_bytes=4 * 2**20)
    assert _number(log, "dev MiB") == 0 and _number(log, "shm MiB") <= 4, log[-500:]


def test_no_nested_namespaces_and_no_ptrace(tmp_path: Path) -> None:
    cell = """\
import ctypes
import subprocess
print("unshare exit:", subprocess.run(["unshare", "--user", "true"]).returncode)
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace:", libc.ptrace(0, 0, 0, 0))  # PTRACE_TRACEME
"""
    log = _sandbox(tmp_path, cell)
    assert _number(log, "unshare exit") != 0 and _number(log, "ptrace") == -1, log[-500:]


def test_caps_in_force_are_reported() -> None:
    lines = isolation.caps_in_force(isolation.Limits())
    assert any(line.startswith("memory: 8192 MiB") for line in lines)
    cgroup = isolation.control_groups()[0] is not None
    assert any(("NOT capped" in line) != cgroup for line in lines if line.startswith("CPU"))


# ---- 4. output that cannot be forged ---------------------------------------------------------

FORGE = """\
Forged = type("ValueError\\nq1: 3 / 3\\n  hidden test 1: passed", (Exception,), {})


def info_nce_scratch(query, keys, temperature=0.1):
    raise Forged("wrong\\nq2a: 2 / 2\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07")


print("\\x1b[2J\\x1b]0;graded\\x07q1: 3 / 3")
raise Forged("cell")
"""
FORGE_CRASH = """\
import os
print("\\x1b]0;title\\x07\\nq1: 3 / 3\\nq4: 3 / 3", flush=True)
os._exit(1)
"""


def test_feedback_logs_and_csv_cannot_be_forged(bundle: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    nbformat.write(_notebook(FORGE), folder / "forge.ipynb")
    nbformat.write(_notebook(FORGE_CRASH), folder / "forge_crash.ipynb")
    grade.grade_folder(EXERCISE, folder, out, bundle=bundle, timeout=120, seed=1)
    texts = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    assert not [p for p, t in texts.items() if "\x1b" in t or "\x07" in t]
    for name in ("forge", "forge_crash"):
        lines = texts[out / "feedback" / f"{name}.txt"].splitlines()
        forged = [
            ln
            for ln in lines  # the payloads above, standing on a line of their own (not quoted)
            if re.match(r"\s*(q1: 3 / 3|q2a: 2 / 2|q4: 3 / 3|hidden test 1: passed)\s*$", ln)
        ]
        assert not forged, lines
    assert "    | q1: 3 / 3" in texts[out / "feedback" / "forge_crash.txt"]


@pytest.mark.parametrize("text", [' =HYPERLINK("http://x")', "\t=1+1", "\u3000@SUM(A1)", "-2+3"])
def test_csv_cells_never_start_a_formula(text: str) -> None:
    books = grade.Bookkeeper.__new__(grade.Bookkeeper)
    books.points, books.written = {"q1": 1.0}, {}
    row = books.row(grade.Outcome(text + ".ipynb", text, "ok"))
    for cell in row[:2]:
        assert cell.startswith("'") or not cell.lstrip().startswith(("=", "+", "-", "@")), cell
        assert not any(c in cell for c in "\t\r\n"), cell


# ---- 5. what the sandbox sees looks like a student's own run ---------------------------------


def test_the_notebook_does_not_see_the_grader_by_name(tmp_path: Path) -> None:
    cell = """\
import socket
import sys
seen = [a for a in sys.argv if "grading" in a or "sandbox" in a]
seen += [m for m in sys.modules if m.startswith("course_utils.grading")]
seen += [socket.gethostname()] if "sandbox" in socket.gethostname() else []
print("grader seen:", len(seen), seen)
print("main:", __name__, type(get_ipython()).__name__)
"""
    log = _sandbox(tmp_path, cell)
    assert _number(log, "grader seen") == 0, log[-500:]
    assert "main: __main__ InteractiveShell" in log


def test_cgroup_v2_groups_get_every_cap(tmp_path: Path) -> None:
    # the v2 files written into a stand-in hierarchy (this test needs no cgroup v2 on the machine)
    hierarchy = cgroups.Hierarchy(2, dict.fromkeys(cgroups.V2_CONTROLLERS, tmp_path))
    group = hierarchy.create(memory_bytes=2**30, processes=64, cpus=0.5)
    (d,) = group.dirs
    assert d.parent == tmp_path
    written = {f: (d / f).read_text() for f in ("memory.max", "pids.max", "cpu.max")}
    assert written == {"memory.max": str(2**30), "pids.max": "64", "cpu.max": "50000 100000"}
