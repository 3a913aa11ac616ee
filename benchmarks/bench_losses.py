"""NT-Xent speed and memory: course_utils dense and tiled vs lightly and pytorch-metric-learning.

    python benchmarks/bench_losses.py        (needs the `bench` extra: pip install -e ".[bench]")

Prints markdown tables:
1. forward+backward time for N in 256, 1024, 4096 (D=128) as ratios to lightly's NTXentLoss and
   pytorch-metric-learning's SelfSupervisedLoss(NTXentLoss()), all measured in this run, interleaved
   (best of ROUNDS: on a shared machine other processes only ever add time). On CPU the clock is
   the process CPU time, which other processes do not inflate (run with OMP_NUM_THREADS=1 on a
   shared machine: idle OpenMP threads spin and count); on CUDA, wall time between synchronisations;
2. peak memory of dense vs tiled at N = 4096, 8192, 16384, each in a fresh process: peak RSS on CPU,
   torch.cuda.max_memory_allocated on CUDA; "loss" columns subtract what the process held before
   the loss ran (interpreter, torch, inputs).
Targets: dense time <= 1.0x lightly; tiled time <= 1.5x dense; tiled peak >= 10x below dense at
N=16384. Cases whose estimated memory exceeds what the machine has free are skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils.losses import nt_xent  # noqa: E402
from course_utils.runtime import device  # noqa: E402

D = 128
TAU = 0.5
CHUNK = 1024  # tile width K of the tiled path: (2N, K) similarities at a time
TIME_SIZES = (256, 1024, 4096)
MEMORY_SIZES = (4096, 8192, 16384)
ROUNDS = 5  # tibest rounds; every method runs once per round so load changes hit all alike


def available_bytes(dev: torch.device) -> int:
    """Free memory on the device: CUDA free memory, else the OS's MemAvailable."""
    if dev.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30  # no /proc (macOS): assume a laptop's worth


def dense_bytes(n: int) -> int:
    """Rough peak of the dense loss: three (2N, 2N) float32 matrices in the backward."""
    return 3 * (2 * n) ** 2 * 4


def pml_bytes(n: int) -> int:
    """Rough peak of pml's NTXentLoss: it compares every positive with every negative pair index,
    a (2N, 2N*(2N-2)) mask held as bool and float (about 16 bytes an element measured)."""
    return 16 * (2 * n) * (2 * n) * (2 * n - 2)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def loss_functions(n: int, dev: torch.device) -> dict[str, Callable[[], torch.Tensor]]:
    """Name -> a closure computing one loss (forward) on fresh-grad inputs of size n."""
    g = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, D, generator=g).to(dev).requires_grad_()
    z2 = torch.randn(n, D, generator=g).to(dev).requires_grad_()
    fns = {
        "dense": lambda: nt_xent(z1, z2, temperature=TAU),
        f"tiled K={CHUNK}": lambda: nt_xent(z1, z2, temperature=TAU, chunk_size=CHUNK),
    }
    try:
        from lightly.loss import NTXentLoss

        lightly_loss = NTXentLoss(temperature=TAU)
        fns["lightly"] = lambda: lightly_loss(z1, z2)
    except ImportError:
        print("lightly not installed: pip install -e '.[bench]'")
    try:
        from pytorch_metric_learning import losses as pml

        if pml_bytes(n) < available_bytes(dev) // 2:
            pml_loss = pml.SelfSupervisedLoss(pml.NTXentLoss(temperature=TAU))
            fns["pml"] = lambda: pml_loss(z1, z2)
        else:
            print(
                f"N={n}: pml skipped, it would need ~{pml_bytes(n) / 2**30:.0f} GiB "
                "(O(N^3) pair mask)"
            )
    except ImportError:
        print("pytorch-metric-learning not installed: pip install -e '.[bench]'")
    return fns


def time_table(dev: torch.device) -> None:
    """Median forward+backward seconds per method and the ratios the targets are about."""
    clock = time.perf_counter if dev.type == "cuda" else time.process_time
    kind = "wall time" if dev.type == "cuda" else "process CPU time"
    print(f"\n### NT-Xent forward+backward {kind}, D={D}, best of {ROUNDS} interleaved rounds\n")
    print("| N | dense s | tiled s | lightly s | pml s | dense/lightly | dense/pml | tiled/dense |")
    print("|---|---|---|---|---|---|---|---|")
    for n in TIME_SIZES:
        fns = loss_functions(n, dev)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for round_ in range(ROUNDS + 1):  # round 0 warms up (allocator, kernels)
            for name, fn in fns.items():
                sync(dev)
                start = clock()
                fn().backward()
                sync(dev)
                if round_:
                    times[name].append(clock() - start)
        best = {name: min(ts) for name, ts in times.items()}
        dense, tiled = best["dense"], best[f"tiled K={CHUNK}"]

        def cell(name: str, m: dict[str, float] = best) -> str:
            return f"{m[name]:.4f}" if name in m else "n/a"

        def ratio(a: float, name: str, m: dict[str, float] = best) -> str:
            return f"{a / m[name]:.3g}x" if name in m else "n/a"

        print(
            f"| {n} | {dense:.4f} | {tiled:.4f} | {cell('lightly')} | {cell('pml')} | "
            f"{ratio(dense, 'lightly')} | {ratio(dense, 'pml')} | {tiled / dense:.2f}x |",
            flush=True,
        )


def _proc_status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_peak_bytes() -> int:
    """This process's peak RSS. VmHWM belongs to the process's own address space; ru_maxrss can
    include the parent's RSS at fork/exec time on Linux, so it is only the fallback (macOS: bytes)."""
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def memory_child(mode: str, n: int) -> None:
    """Run one forward+backward in this (fresh) process and print its peak memory as JSON."""
    dev = device()
    z1 = torch.randn(n, D, device=dev, requires_grad=True)
    z2 = torch.randn(n, D, device=dev, requires_grad=True)
    chunk = None if mode == "dense" else CHUNK
    nt_xent(z1[:8], z2[:8], chunk_size=chunk).backward()  # load kernels before the baseline
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _proc_status_bytes("VmRSS") or _cpu_peak_bytes()
    nt_xent(z1, z2, chunk_size=chunk).backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _cpu_peak_bytes()
    print(json.dumps({"peak": peak, "before": before}))


def measure_in_fresh_process(mode: str, n: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", mode, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(dev: torch.device) -> None:
    """Peak memory dense vs tiled, each case in its own process."""
    kind = "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "process peak RSS"
    print(f"\n### NT-Xent forward+backward peak memory ({kind}), D={D}, tiled K={CHUNK}\n")
    print(
        "| N | dense MiB | tiled MiB | dense/tiled | dense loss MiB | tiled loss MiB | loss ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    mib = 2**20
    for n in MEMORY_SIZES:
        tiled = measure_in_fresh_process("tiled", n)
        if dense_bytes(n) > 0.7 * available_bytes(dev):
            need, free = dense_bytes(n) / 2**30, available_bytes(dev) / 2**30
            print(f"| {n} | skipped: needs ~{need:.1f} GiB, {free:.1f} GiB free | | | | | |")
            continue
        dense = measure_in_fresh_process("dense", n)
        d_loss, t_loss = dense["peak"] - dense["before"], tiled["peak"] - tiled["before"]
        print(
            f"| {n} | {dense['peak'] / mib:.0f} | {tiled['peak'] / mib:.0f} | "
            f"{dense['peak'] / tiled['peak']:.1f}x | {d_loss / mib:.0f} | {t_loss / mib:.0f} | "
            f"{d_loss / max(t_loss, 1):.1f}x |",
            flush=True,
        )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    dev = device()
    name = torch.cuda.get_device_name() if dev.type == "cuda" else cpu_name()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{dev.type}: {name}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads{load}"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], int(sys.argv[3]))
        return
    dev = device()
    print(f"Machine: {machine()}")
    time_table(dev)
    memory_table(dev)
    print(f"\nFinished; {machine()}")


if __name__ == "__main__":
    main()
