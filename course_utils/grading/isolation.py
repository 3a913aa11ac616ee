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
UNSAFE_RISKS = """\
WARNING: grading WITHOUT isolation (--unsafe-no-isolation). Each submission still runs in its own
process with a clean environment, resource limits and a timeout, and verdicts are still computed
outside it, but its code runs with your user's rights: it can read and write your files (other
submissions, the autograder bundle, this run's output folder and grades.csv, your home directory),
use the network, and leave processes running after grading. Use this only for submissions you trust,
or inside a throwaway VM or container."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox process tree."""

    address_space_bytes: int = 8 * 2**30
    processes: int = 256
    file_bytes: int = 64 * 2**20
    cpu_seconds: int = 3600
    open_files: int = 1024

    def apply(self) -> None:
        """Set these limits on the current process (run in the child before exec)."""
        for kind, value in (
            (resource.RLIMIT_AS, self.address_space_bytes),
            (resource.RLIMIT_NPROC, self.processes),
            (resource.RLIMIT_FSIZE, self.file_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))


def sandbox_env(profile: str) -> dict[str, str]:
    """The whole environment of a sandbox: nothing of the instructor's is passed through."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "PYTHONPATH": SANDBOX_PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
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


def bwrap_command(bwrap: str) -> list[str]:
    """The bubblewrap command line (up to the program) for one sandbox."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    cmd += ["--uid", "65534", "--gid", "65534", "--hostname", "sandbox"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for d in _python_dirs():
        cmd += ["--ro-bind", d, d]
    cmd += ["--ro-bind", str(PACKAGE_DIR), f"{SANDBOX_PACKAGE_ROOT}/course_utils"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for d in ("/tmp", SANDBOX_HOME):
        cmd += ["--size", str(TMPFS_BYTES), "--tmpfs", d]
    cmd += ["--chdir", SANDBOX_HOME]
    return cmd


@lru_cache(maxsize=1)
def bubblewrap() -> tuple[str | None, str]:
    """The bwrap executable if it can start a sandbox here, else None; and why."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"  # fmt: skip
    probe = [*bwrap_command(bwrap), sys.executable, "-c", "import course_utils.grading.wire"]
    try:
        run = subprocess.run(probe, capture_output=True, timeout=60, env=sandbox_env("ci"))
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"bwrap failed to start: {e}"
    if run.returncode != 0:
        reason = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return None, f"bwrap cannot create a sandbox here ({reason[0][:200]})"
    return bwrap, "bubblewrap: own user, mount, PID, network, IPC namespaces; read-only system"


def sandbox_command(isolated: bool, in_fd: int, out_fd: int) -> list[str]:
    """The command that starts a sandbox serving on the pipe file descriptors `in_fd`, `out_fd`."""
    program = [sys.executable, "-m", "course_utils.grading.sandbox", str(in_fd), str(out_fd)]
    if not isolated:
        return program
    bwrap, why = bubblewrap()
    if bwrap is None:
        raise RuntimeError(why)
    return [*bwrap_command(bwrap), *program]
