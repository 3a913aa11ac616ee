"""Where code runs and how big it runs: device, profile, seeding, timing."""

from __future__ import annotations

import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")
T = TypeVar("T")


def device() -> torch.device:
    """The best available device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The mixed-precision dtype for `device`: bf16, fp16 (use a GradScaler) or fp32 (no autocast)."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return torch.float32
    # bf16 only where the tensor cores run it natively (Ampere, compute capability 8.0, and later).
    # torch.cuda.is_bf16_supported() also counts emulation: on a T4 (7.5) or V100 (7.0) bf16 runs,
    # but cuDNN has no bf16 convolutions there and falls back to slow kernels; fp16 is native.
    major, _ = torch.cuda.get_device_capability(dev)
    return torch.bfloat16 if major >= 8 else torch.float16


def grad_scaler(device: torch.device | str, dtype: torch.dtype) -> torch.amp.GradScaler:
    """The GradScaler for training on `device` under autocast `dtype`: enabled for fp16 on CUDA only.

    fp16 has 5 exponent bits: small gradients underflow to 0 unless the loss is scaled up first;
    bf16 has fp32's exponent range and fp32 needs nothing, so their scaler is a pass-through.
    """
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"dtype must be torch.float16, bfloat16 or float32, got {dtype}")
    dev = torch.device(device)
    enabled = dtype == torch.float16 and dev.type == "cuda" and torch.cuda.is_available()
    return torch.amp.GradScaler("cuda" if dev.type == "cuda" else "cpu", enabled=enabled)


def memory_format(device: torch.device | str) -> torch.memory_format:
    """The layout image batches and conv nets use on `device`: channels_last on CUDA, else NCHW.

    channels_last (NHWC) lets cuDNN pick tensor-core convolutions without transposes. On the CPU it
    buys nothing, and torch 2.14.1 corrupts the heap on some CPUs in the backward of a stride-2 1x1
    convolution with 4 input channels in channels_last (tests/test_memory_format.py).
    """
    return torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put `model` in eval mode for a block, then restore the training mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file save/load progress bars for a block."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


@dataclass(frozen=True)
class Profile:
    """A run size: `ci` (seconds on 2 CPU cores), `cpu` (a laptop) or `gpu` (a real GPU).

    `smoke` (tests only, `COURSE_SMOKE=1`): run this profile's code paths (its data sets, models,
    precision and branches) at the tiny sizes of `size(smoke=...)`, on stand-in assets.
    """

    name: str
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(f"profile name must be one of {PROFILES}, got {self.name!r}")

    def __str__(self) -> str:
        return f"{self.name} profile" + (
            " (smoke run: tiny sizes, stand-in data)" if self.smoke else ""
        )

    def pick(self, *, ci: T, cpu: T, gpu: T) -> T:
        """The value given for this profile: a choice (data set, model, code path)."""
        return {"ci": ci, "cpu": cpu, "gpu": gpu}[self.name]

    def size(self, *, ci: T, cpu: T, gpu: T, smoke: T | None = None) -> T:
        """The value given for this profile: a size (steps, widths, counts); in a smoke run,
        `smoke` (default: the `ci` size)."""
        if self.smoke:
            return ci if smoke is None else smoke
        return self.pick(ci=ci, cpu=cpu, gpu=gpu)

    @contextmanager
    def claims(self) -> Iterator[None]:
        """A block of asserts about learned effects: a smoke run (too short to learn) prints a
        failed one instead of raising; every other run raises it."""
        try:
            yield
        except AssertionError as exc:
            if not self.smoke:
                raise
            what = str(exc).splitlines()[0] if str(exc) else "assert"
            print(f"smoke run: claim not checked at this size ({what})")


def profile() -> Profile:
    """The run profile from `COURSE_PROFILE`, else `gpu` when CUDA is present, else `cpu`; a smoke
    run when `COURSE_SMOKE` is 1 (tests only)."""
    name = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(
            f"COURSE_PROFILE must be one of {', '.join(PROFILES)} (or unset for auto), got {name!r}"
        )
    smoke = os.environ.get("COURSE_SMOKE", "").strip().lower()
    if smoke not in ("", "0", "1"):
        raise ValueError(f"COURSE_SMOKE must be 0 or 1 (or unset), got {smoke!r}")
    return Profile(name, smoke=smoke == "1")


def standin(*parts: str) -> Path | None:
    """The test stand-in for a downloaded asset (a data file, a Hub model folder) at
    `$COURSE_STANDINS/<parts...>`, if that variable is set and the path exists (tests only)."""
    root = os.environ.get("COURSE_STANDINS", "").strip()
    if not root:
        return None
    path = Path(root).expanduser().joinpath(*parts)
    return path if path.exists() else None


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch generator seeded the same."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Measurement:
    """Wall time and peak memory of a measured block (filled in when the block ends)."""

    label: str
    seconds: float = 0.0
    peak_bytes: int = 0
    memory_kind: str = field(default="")

    def __str__(self) -> str:
        return (
            f"{self.label}: {self.seconds:.2f} s, peak {self.memory_kind} "
            f"{self.peak_bytes / 2**20:.1f} MiB"
        )


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


@contextmanager
def measure(label: str = "block", *, report: bool = True) -> Iterator[Measurement]:
    """Measure a block's wall time and peak memory (CUDA allocations on a GPU, else process RSS)."""
    m = Measurement(label)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield m
    finally:
        if cuda:
            torch.cuda.synchronize()
            m.peak_bytes, m.memory_kind = torch.cuda.max_memory_allocated(), "CUDA"
        else:
            m.peak_bytes, m.memory_kind = _max_rss_bytes(), "process RSS"
        m.seconds = time.perf_counter() - start
        if report:
            print(m)
