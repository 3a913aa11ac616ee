"""Data-parallel SimCLR on this machine's CPU: 1 vs 2 gloo processes, and what communication costs.

    python benchmarks/bench_distributed.py

Each configuration runs `train_simclr` (2 epochs on digits, ResNet-18 width 8, batch 128 per
process, fp32, one torch thread per process) in fresh processes joined by a gloo process group, and
reads the second epoch's images/s (the first warms up). Then, on 2 processes, it times the two
collectives of a step: the all-gather of the (2B, D) projections that NT-Xent needs for global
negatives (forward all-gather + backward all-reduce), and an all-reduce of as many float32 values
as the model has parameters (what DDP does with the gradients). Printed as ratios: the absolute
figures of a GPU cluster (NCCL over NVLink or InfiniBand) are out of reach here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_utils.data import load_images  # noqa: E402
from course_utils.distributed import all_gather_with_grad  # noqa: E402
from course_utils.train import SimCLRConfig, train_simclr  # noqa: E402

BATCH, WIDTH, PROJ_DIM = 128, 8, 128  # per-process batch; ResNet width; projection dimension
REPEATS = 20  # timed repetitions of each collective (the median is kept)
START_METHOD = "fork" if sys.platform == "linux" else "spawn"


def _median_seconds(fn, repeats: int = REPEATS) -> float:
    """Median wall time of `fn()` over `repeats` calls, every rank starting together."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def worker(rank: int, world: int, folder: str) -> None:
    """One rank: train 2 epochs, then time the collectives; rank 0 writes the figures as JSON."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world
    )
    try:
        images, _ = load_images("digits", "train")
        config = SimCLRConfig(
            epochs=2, batch_size=BATCH, width=WIDTH, proj_dim=PROJ_DIM, precision="fp32",
            progress=False,
        )  # fmt: skip
        run = train_simclr(config, images)
        last = run.history[-1]
        steps = len(images) // world // BATCH
        out = {"images_per_s": last["images_per_s"], "step_s": last["seconds"] / steps}
        if world > 1:
            z = torch.randn(2 * BATCH, PROJ_DIM, requires_grad=True)
            out["gather_s"] = _median_seconds(lambda: all_gather_with_grad(z).sum().backward())
            n_params = sum(p.numel() for p in run.model.parameters())
            grads = torch.zeros(n_params)
            out["allreduce_s"] = _median_seconds(lambda: dist.all_reduce(grads))
            out["n_params"] = n_params
        if rank == 0:
            Path(folder, "result.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def measure(world: int) -> dict[str, float]:
    """The figures of one run on `world` processes."""
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(worker, args=(world, folder), nprocs=world, start_method=START_METHOD)
        return json.loads(Path(folder, "result.json").read_text())


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"CPU, {os.cpu_count()} cores, torch {torch.__version__}, gloo{load}")
    one, two = measure(1), measure(2)
    print(f"\n### SimCLR on digits, batch {BATCH} per process, ResNet-18 width {WIDTH}\n")
    print("| processes | global batch | images/s | throughput vs 1 process |")
    print("|---|---|---|---|")
    print(f"| 1 | {BATCH} | {one['images_per_s']:.0f} | 1.00x |")
    print(f"| 2 | {2 * BATCH} | {two['images_per_s']:.0f} | "
          f"{two['images_per_s'] / one['images_per_s']:.2f}x |")  # fmt: skip
    step = two["step_s"]
    z_kib = 2 * BATCH * PROJ_DIM * 4 / 2**10
    print(f"\n### Communication in one 2-process step ({step * 1e3:.0f} ms)\n")
    print("| collective | tensor per rank | time | share of the step |")
    print("|---|---|---|---|")
    print(f"| NT-Xent: all-gather of z (forward) + all-reduce of its gradient (backward) | "
          f"{2 * BATCH} x {PROJ_DIM} float32 = {z_kib:.0f} KiB | {two['gather_s'] * 1e3:.2f} ms | "
          f"{two['gather_s'] / step:.1%} |")  # fmt: skip
    print(f"| DDP: all-reduce of the gradients | {two['n_params']:,} float32 = "
          f"{two['n_params'] * 4 / 2**20:.2f} MiB | {two['allreduce_s'] * 1e3:.2f} ms | "
          f"{two['allreduce_s'] / step:.1%} |")  # fmt: skip
    print("\nBoth processes share this machine's cores (and other users' load): the 2-process "
          "speed-up is bounded by free cores, not by communication.")  # fmt: skip


if __name__ == "__main__":
    main()
