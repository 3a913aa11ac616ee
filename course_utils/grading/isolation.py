"""How a submission's sandbox process is started: bubblewrap namespaces, a clean environment, caps.

On Linux with bubblewrap (`bwrap`, Debian/Ubuntu package `bubblewrap`), each sandbox gets its own
mount, PID (a fresh `/proc`), network (no interface), IPC, UTS and cgroup namespaces; a read-only
view of only what Python needs (`/usr`, the Python installation, the environment's packages, this
course package, a few files of `/etc`); size-capped private tmpfs for its home (the working
directory), `/tmp` and `/dev/shm`; a read-only `/dev`; no other submission, no autograder bundle and
no output folder in its view; an environment holding only the variables listed in `sandbox_env`;
a seccomp filter (`seccomp`); resource limits (address space, processes, file size, CPU time, open
files, no core dumps) and, where cgroups can be made (`cgroups`), a cap on the memory, CPU and
processes of the whole tree; it dies with its parent, and killing it kills its whole PID namespace.

Its user is never root: run by a user, bubblewrap maps the sandbox's uid 65534 to that user in a
user namespace of its own, where nested user namespaces are disabled (`--disable-userns`); run by
root, bubblewrap makes the namespaces with root's rights and the sandbox drops, before it reads the
notebook, to an unprivileged uid of its own (`SANDBOX_UID_BASE` + a slot), so no cap is lifted for
root. Every file it reads must then be readable by others (mode o+r, directories o+x), as a
standard Python installation is; the folders above them need not be. Elsewhere `course-grade`
refuses to grade unless given `--unsafe-no-isolation` (`UNSAFE_RISKS`).
"""

from __future__ import annotations

import itertools
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import course_utils
from course_utils.grading import cgroups, seccomp

PACKAGE_DIR = Path(course_utils.__file__).resolve().parent
SANDBOX_PACKAGE_ROOT = "/opt/course"  # the course package is mounted at /opt/course/course_utils
SANDBOX_HOME = "/home/student"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime",
    "fonts", "alternatives",
)  # fmt: skip
NOBODY = 65534
SANDBOX_UID_BASE = 2_100_000_000  # root drops each sandbox to a uid of its own from here
SANDBOX_UID_SLOTS = 4096
_slots = itertools.count()
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

    address_space_bytes: int = 8 * 2**30  # per process (rlimit)
    memory_bytes: int = 8 * 2**30  # all processes together (cgroup)
    cpus: float = 1.0  # CPU time per second of the whole tree (cgroup)
    processes: int = 256
    tmpfs_bytes: int = 512 * 2**20  # each of home, /tmp and /dev/shm
    file_bytes: int = 64 * 2**20
    cpu_seconds: int = 3600
    open_files: int = 1024

    def apply(self) -> None:
        """Set these limits, but the process limit, on the current process (in the child, before exec).

        The process limit is set by the sandbox itself, once it runs as its own user, where it
        counts only the sandbox's processes (`limit_processes`).
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
    """How to start one sandbox: the command, extra Popen arguments, and what to undo after it."""

    command: list[str]
    popen: dict
    group: cgroups.Group | None = None
    fds: list[int] = field(default_factory=list)  # to close once the sandbox has started

    def cleanup(self) -> None:
        """Remove the sandbox's cgroup (killing what is left in it), once."""
        if self.group is not None:
            self.group.remove()
            self.group = None


def _bind_sources() -> list[tuple[str, str]]:
    """(source, destination) of every read-only mount of a sandbox."""
    binds = [(d, d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    binds += [(f"/etc/{n}", f"/etc/{n}") for n in ETC_FILES if os.path.exists(f"/etc/{n}")]
    binds += [(d, d) for d in _python_dirs()]
    return [*binds, (str(PACKAGE_DIR), f"{SANDBOX_PACKAGE_ROOT}/course_utils")]


def _parents(binds: list[tuple[str, str]], made: set[str]) -> list[str]:
    """Folders above the mounts, outermost first, that bubblewrap must make readable by all."""
    parents: list[str] = []
    for _, dest in binds:
        for p in reversed(Path(dest).parents):
            if str(p) != "/" and str(p) not in made and not str(p).startswith(SYSTEM_DIRS):
                made.add(str(p))
                parents.append(str(p))
    return parents


@lru_cache(maxsize=4)
def disables_userns(bwrap: str) -> bool:
    """Whether this bubblewrap can disable nested user namespaces (0.8 on)."""
    usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    return "--disable-userns" in usage.stdout + usage.stderr


def bwrap_launch(bwrap: str, as_root: bool, tmpfs_bytes: int) -> Launch:
    """The bubblewrap command line (up to the program) for one sandbox."""
    if as_root:  # namespaces made with root's rights; the sandbox drops to its own uid itself
        cmd = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        cmd += ["--unshare-cgroup-try"]
    else:
        cmd = [bwrap, "--unshare-all", "--unshare-user"]
        cmd += ["--disable-userns"] if disables_userns(bwrap) else []
        cmd += ["--uid", str(NOBODY), "--gid", str(NOBODY)]
    cmd += ["--die-with-parent", "--new-session", "--hostname", "localhost"]
    cmd += [a for d in SYSTEM_DIRS if os.path.islink(d) for a in ("--symlink", os.readlink(d), d)]
    # The private tmpfs first: a Python or checkout that lives under /tmp is then mounted on top.
    cmd += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/tmp"]
    cmd += ["--perms", "0755", "--dir", str(Path(SANDBOX_HOME).parent)]
    cmd += ["--perms", "0700", "--size", str(tmpfs_bytes), "--tmpfs", SANDBOX_HOME]
    binds = _bind_sources()
    for d in _parents(binds, {"/tmp", "/home", SANDBOX_HOME}):
        cmd += ["--perms", "0755", "--dir", d]
    for source, dest in binds:
        cmd += ["--ro-bind", source, dest]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm"]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SANDBOX_HOME]
    return Launch(cmd, {})


def _with_seccomp(launch: Launch) -> None:
    """Add this machine's seccomp filter to a bubblewrap launch, passed in a memory file."""
    program = seccomp.program()
    if program is None:
        return
    fd = os.memfd_create("sandbox-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    launch.command[1:1] = ["--seccomp", str(fd)]
    launch.fds.append(fd)


@lru_cache(maxsize=1)
def bubblewrap() -> tuple[str | None, str]:
    """The bwrap executable if it can start a sandbox here, else None; and why."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"  # fmt: skip
    launch = bwrap_launch(bwrap, os.geteuid() == 0, Limits().tmpfs_bytes)
    _with_seccomp(launch)
    probe = [*launch.command, sys.executable, "-c", "import course_utils.grading.wire"]
    try:
        run = subprocess.run(
            probe, capture_output=True, timeout=60, env=sandbox_env("ci"), pass_fds=launch.fds
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"bwrap failed to start: {e}"
    finally:
        for fd in launch.fds:
            os.close(fd)
    if run.returncode != 0:
        reason = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        return None, f"bwrap cannot create a sandbox here ({reason[0][:200]})"
    return bwrap, "bubblewrap: own mount, PID, network, IPC namespaces; read-only system"


@lru_cache(maxsize=1)
def control_groups() -> tuple[cgroups.Hierarchy | None, str]:
    """Where sandbox cgroups are made here (None: nowhere), and a description or why not."""
    return cgroups.detect()


def caps_in_force(limits: Limits) -> list[str]:
    """One line per cap an isolated sandbox gets here, saying what enforces it."""
    hierarchy, why = control_groups()
    mib = 2**20
    tree = f"whole tree ({why})" if hierarchy else f"NOT capped: {why}"
    bwrap, _ = bubblewrap()
    if os.geteuid() == 0:
        user = f"uid {SANDBOX_UID_BASE}+ of its own, no user namespace"
    else:
        nested = "disabled" if bwrap and disables_userns(bwrap) else "NOT disabled (bwrap < 0.8)"
        user = f"uid {NOBODY} in a user namespace, nested ones {nested}"
    filtered = "on" if seccomp.program() else f"NOT available on {os.uname().machine}"
    return [
        f"user: {user}; never root; seccomp filter {filtered}",
        f"processes: {limits.processes}, "
        + (f"whole tree ({why})" if hierarchy else "per-user rlimit of the sandbox's own uid"),
        f"memory: {limits.memory_bytes // mib} MiB, {tree}; "
        f"{limits.address_space_bytes // mib} MiB address space per process (rlimit)",
        f"CPU: {limits.cpus:g} core(s), {tree}; {limits.cpu_seconds} s CPU time per process (rlimit)",  # fmt: skip
        f"disk: {limits.tmpfs_bytes // mib} MiB each for home, /tmp and /dev/shm (tmpfs); "
        f"files up to {limits.file_bytes // mib} MiB; /dev and the rest read-only",
    ]


def _dropping(limits: Limits, group: cgroups.Group | None) -> Callable[[], None]:
    """What the sandbox's first process does before it execs: enter its cgroup, set rlimits."""

    def prepare() -> None:
        if group is not None:
            group.enter()
        limits.apply()

    return prepare


def sandbox_launch(isolated: bool, in_fd: int, out_fd: int, limits: Limits) -> Launch:
    """How to start a sandbox serving on the pipe file descriptors `in_fd`, `out_fd`."""
    program = [sys.executable, "-m", "course_utils.grading.sandbox", str(in_fd), str(out_fd)]
    if not isolated:  # no own uid: a process limit would count all of your processes
        popen = {"pass_fds": (in_fd, out_fd), "preexec_fn": limits.apply}
        return Launch([*program, "0", "0"], popen)
    bwrap, why = bubblewrap()
    if bwrap is None:
        raise RuntimeError(why)
    as_root = os.geteuid() == 0
    launch = bwrap_launch(bwrap, as_root, limits.tmpfs_bytes)
    _with_seccomp(launch)
    uid = SANDBOX_UID_BASE + next(_slots) % SANDBOX_UID_SLOTS if as_root else 0
    launch.command += [*program, str(limits.processes), str(uid)]
    hierarchy, _ = control_groups()
    if hierarchy is not None:
        launch.group = hierarchy.create(limits.memory_bytes, limits.processes, limits.cpus)
    launch.popen = {
        "pass_fds": (in_fd, out_fd, *launch.fds),
        "preexec_fn": _dropping(limits, launch.group),
    }
    return launch
