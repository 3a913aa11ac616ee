"""How a submission's sandbox process is started: bubblewrap namespaces, a clean environment, rlimits.

On Linux with bubblewrap (`bwrap`, Debian/Ubuntu package `bubblewrap`) and user namespaces, each
sandbox gets its own user (uid 65534 in a new user namespace), mount, PID (a fresh `/proc`), network
(no interface), IPC, UTS and cgroup namespaces; a read-only view of only what Python needs (`/usr`,
the Python installation, the environment's packages, this course package, a few files of `/etc`);
size-capped private tmpfs for its home (the working directory) and `/tmp`; no other submission, no
autograder bundle and no output folder in its view; an environment holding only the variables listed
in `sandbox_env`; resource limits (address space, processes, file size, CPU time, open files, no
core dumps); it dies with its parent, and killing it kills every process in its PID namespace.
Elsewhere `course-grade` refuses to grade unless given `--unsafe-no-isolation` (`UNSAFE_RISKS`).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import course_utils

PACKAGE_DIR = Path(course_utils.__file__).resolve().parent
SANDBOX_PACKAGE_ROOT = "/opt/course"  # the course package is mounted at /opt/course/course_utils
SANDBOX_HOME = "/home/student"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime",
    "fonts", "alternatives",
)  # fmt: skip
TMPFS_BYTES = 512 * 2**20
NOBODY = 65534
UNSAFE_RISKS = """\
WARNING: grading WITHOUT isolation (--unsafe-no-isolation). Each submission still runs in its own
process with a clean environment, resource limits and a timeout, and verdicts are still computed
outside it, but its code runs with your user's rights: it can read and write your files (other
submissions, the autograder bundle, this run's output folder and grades.csv, your home directory),
use the network, and leave processes running after grading. Use this only for submissions you trust,
or inside a throwaway VM or container."""


ROOT_NOTE = """\
NOTE: grading as root with a Python that other users cannot read: the sandboxes' user is mapped to
root outside its namespace, which the kernel exempts from the process limit (a fork bomb then runs
until the time limit, inside its own PID namespace). Run course-grade as an unprivileged user."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox process tree."""

    address_space_bytes: int = 8 * 2**30
    processes: int = 256
    file_bytes: int = 64 * 2**20
    cpu_seconds: int = 3600
    open_files: int = 1024

    def apply(self) -> None:
        """Set these limits, but the process limit, on the current process (in the child, before exec).

        The process limit is set by the sandbox itself, inside its user namespace, where it counts
        only the sandbox's processes (`limit_processes`).
        """
        for kind, value in (
            (resource.RLIMIT_AS, self.address_space_bytes),
            (resource.RLIMIT_FSIZE, self.file_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))


def limit_processes(count: int) -> None:
    """Allow this process tree at most `count` processes (0: no limit)."""
    if count > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (count, count))


def sandbox_env(profile: str) -> dict[str, str]:
    """The whole environment of a sandbox: nothing of the instructor's is passed through."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "PYTHONPATH": SANDBOX_PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",  # the log keeps what was printed before a kill
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "COURSE_PROFILE": profile,
        "LANG": "C.UTF-8",
    }


def _python_dirs() -> list[str]:
    """Directories the sandbox's Python needs, outside the system directories."""
    found = []
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        resolved = str(Path(p).resolve())
        if not resolved.startswith(SYSTEM_DIRS) and resolved not in found:
            found.append(resolved)
    executable = Path(sys.executable).resolve().parent.parent
    if not str(executable).startswith(SYSTEM_DIRS) and str(executable) not in found:
        found.append(str(executable))
    return sorted(found)


@dataclass
class Launch:
    """How to start one sandbox: the command and extra Popen arguments."""

    command: list[str]
    popen: dict


def _others_can_read(path: str) -> bool:
    """Whether a user with no special rights can reach `path` (x on every parent, r on it)."""
    p = Path(path).resolve()
    if not os.stat(p).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in p.parents)


def _bind_sources() -> list[tuple[str, str]]:
    """(source, destination) of every read-only mount of a sandbox."""
    binds = [(d, d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    binds += [(f"/etc/{n}", f"/etc/{n}") for n in ETC_FILES if os.path.exists(f"/etc/{n}")]
    binds += [(d, d) for d in _python_dirs()]
    return [*binds, (str(PACKAGE_DIR), f"{SANDBOX_PACKAGE_ROOT}/course_utils")]


@lru_cache(maxsize=1)
def run_as_nobody() -> bool:
    """Whether bubblewrap should run as uid 65534: when we are root and nobody can read the mounts.

    The sandbox's user is mapped to the user running bubblewrap. Mapped to root, it would own root's
    files and the kernel would exempt it from the process limit; so, run as root, `course-grade`
    starts bubblewrap as `nobody` whenever everything the sandbox mounts is readable by others.
    """
    return os.geteuid() == 0 and all(_others_can_read(s) for s, _ in _bind_sources())


def bwrap_launch(bwrap: str) -> Launch:
    """The bubblewrap command line (up to the program) for one sandbox."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    cmd += ["--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox"]
    cmd += [a for d in SYSTEM_DIRS if os.path.islink(d) for a in ("--symlink", os.readlink(d), d)]
    # The private tmpfs first: a Python or checkout that lives under /tmp is then mounted on top.
    for d in ("/tmp", SANDBOX_HOME):
        cmd += ["--size", str(TMPFS_BYTES), "--tmpfs", d]
    for source, dest in _bind_sources():
        cmd += ["--ro-bind", source, dest]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--remount-ro", "/", "--chdir", SANDBOX_HOME]
    popen = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if run_as_nobody() else {}
    return Launch(cmd, popen)


@lru_cache(maxsize=1)
def bubblewrap() -> tuple[str | None, str]:
    """The bwrap executable if it can start a sandbox here, else None; and why."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"  # fmt: skip
    launch = bwrap_launch(bwrap)
    probe = [*launch.command, sys.executable, "-c", "import course_utils.grading.wire"]
    try:
        run = subprocess.run(
            probe, capture_output=True, timeout=60, env=sandbox_env("ci"), **launch.popen
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"bwrap failed to start: {e}"
    if run.returncode != 0:
        reason = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return None, f"bwrap cannot create a sandbox here ({reason[0][:200]})"
    return bwrap, "bubblewrap: own user, mount, PID, network, IPC namespaces; read-only system"


def sandbox_launch(isolated: bool, in_fd: int, out_fd: int) -> Launch:
    """How to start a sandbox serving on the pipe file descriptors `in_fd`, `out_fd`."""
    program = [sys.executable, "-m", "course_utils.grading.sandbox", str(in_fd), str(out_fd)]
    if not isolated:  # no user namespace: a process limit would count all of your processes
        return Launch([*program, "0"], {"pass_fds": (in_fd, out_fd)})
    bwrap, why = bubblewrap()
    if bwrap is None:
        raise RuntimeError(why)
    launch = bwrap_launch(bwrap)
    launch.command += [*program, str(Limits().processes)]
    launch.popen["pass_fds"] = (in_fd, out_fd)
    return launch
