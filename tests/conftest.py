"""Fixtures shared by the test modules."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def staged_bytes(path: Path, root: Path = ROOT) -> bytes:
    """A file as git's index holds it (what a commit takes); the file itself where git has none."""
    if shutil.which("git") is not None:
        staged = subprocess.run(
            ["git", "-C", str(root), "show", f":{path.relative_to(root).as_posix()}"],
            capture_output=True,
        )
        if staged.returncode == 0:
            return staged.stdout
    return path.read_bytes()


@pytest.fixture(scope="session")
def staged() -> Callable[..., bytes]:
    """Read committed files as git stages them: lab runs in the working copy do not count."""
    return staged_bytes
