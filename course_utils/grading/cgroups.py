"""Control groups capping a sandbox's memory, CPU and process count, for root too (v2 or v1).

Rlimits are per process (memory) or per user and lifted for root (processes). A cgroup caps the
whole process tree: every sandbox gets its own group below the grader's, entered by the sandbox's
first process before it execs, and removed (its processes killed) when the sandbox ends. The
unified hierarchy (v2) is used where its memory, pids and cpu controllers can be enabled below
the grader's own group; else the v1 `memory`, `pids` and `cpu` hierarchies where they are writable;
else none, and `course-grade` says at start-up which caps hold without them.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
V2_CONTROLLERS = ("memory", "pids", "cpu")
_serial = itertools.count()


@dataclass(frozen=True)
class Group:
    """One sandbox's cgroup: a directory per hierarchy (one for v2, three for v1)."""

    dirs: tuple[Path, ...]

    def enter(self) -> None:
        """Move the calling process into the group (in the child, before exec)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Kill what is left in the group and remove it."""
        for d in self.dirs:
            for _ in range(50 if d.exists() else 0):
                pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)
            try:
                d.rmdir()
            except OSError:
                pass  # a process still exiting: the group stays empty until the next boot


@dataclass(frozen=True)
class Hierarchy:
    """Where sandbox groups are made: the parent directory for each controller."""

    version: int
    parents: dict[str, Path]  # controller -> parent directory (all the same directory on v2)

    def create(self, memory_bytes: int, processes: int, cpus: float) -> Group:
        """A new group with these caps."""
        name = f"sandbox-{os.getpid()}-{next(_serial)}"
        dirs = {c: p / name for c, p in self.parents.items()}
        for d in set(dirs.values()):
            d.mkdir()
        quota = max(1000, int(cpus * PERIOD_US))
        if self.version == 2:
            d = dirs["memory"]
            (d / "memory.max").write_text(str(memory_bytes))
            if (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(processes))
            (d / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(memory_bytes))
            (dirs["pids"] / "pids.max").write_text(str(processes))
            (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        return Group(tuple(sorted(set(dirs.values()))))


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _v2(root: Path, own: str) -> tuple[Hierarchy | None, str]:
    parent = root / own.lstrip("/")
    available = (parent / "cgroup.controllers").read_text().split()
    missing = [c for c in V2_CONTROLLERS if c not in available]
    if missing:
        return None, f"cgroup v2 without {', '.join(missing)} in {parent}"
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    if not all(c in enabled for c in V2_CONTROLLERS):
        try:
            _enable(parent)
        except OSError as e:
            return None, f"cannot enable cgroup v2 controllers in {parent} ({e.strerror})"
    return Hierarchy(2, dict.fromkeys(V2_CONTROLLERS, parent)), f"cgroup v2 ({parent})"


def _enable(parent: Path) -> None:
    """Enable the controllers for the children of `parent`, moving this process to a leaf if needed.

    A v2 group with processes cannot hand controllers to its children; when the grader is the only
    process in its group, it moves itself into the child `course-grade` first.
    """
    text = " ".join(f"+{c}" for c in V2_CONTROLLERS)
    try:
        (parent / "cgroup.subtree_control").write_text(text)
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        if (parent / "cgroup.procs").read_text().split() != [str(os.getpid())]:
            raise OSError(errno.EBUSY, "other processes share the grader's cgroup") from None
    leaf = parent / "course-grade"
    leaf.mkdir(exist_ok=True)
    (leaf / "cgroup.procs").write_text(str(os.getpid()))
    (parent / "cgroup.subtree_control").write_text(text)


def detect(root: Path = ROOT) -> tuple[Hierarchy | None, str]:
    """The hierarchy sandbox groups can be made in, or None; and a description or why not."""
    try:
        own = _own_paths()
        if (root / "cgroup.controllers").exists() and "" in own:
            return _v2(root, own[""])
        parents = {c: root / c / own.get(c, "/").lstrip("/") for c in V2_CONTROLLERS}
        if not all((p / "cgroup.procs").exists() for p in parents.values()):
            return None, "no writable cgroup v2 or v1 memory, pids and cpu hierarchies"
        if not all(os.access(p, os.W_OK) for p in parents.values()):
            return None, "cgroup v1 hierarchies are not writable by this user"
        return Hierarchy(1, parents), "cgroup v1 (memory, pids, cpu)"
    except OSError as e:
        return None, f"cgroups unreadable ({e.strerror})"
