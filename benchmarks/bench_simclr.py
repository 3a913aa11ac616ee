"""Seconds per epoch and images/s of SimCLR training, and the share of a step spent augmenting.

CUDA: CIFAR-10 train split, ResNet-18 (width 64), batch 512, the default recipe (bf16 where
supported). CPU: the offline digits set with a width-8 ResNet-18, batch 256, fp32.
Reference measured in the same run: the same training steps on views augmented once in advance,
so the difference is what per-step augmentation costs (issue target on a GPU: <= 5% of a step).

    python benchmarks/bench_simclr.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_utils.data import load_images
from course_utils.losses import nt_xent
from course_utils.runtime import autocast_dtype, device, memory_format
from course_utils.train import SimCLRConfig, build, configure_optimizer, train_simclr


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def steps_without_augmentation(config: SimCLRConfig, images: torch.Tensor, steps: int) -> float:
    """Seconds per training step when both views are precomputed (no augmentation in the step)."""
    dev = device()
    model, augment = build(config, images)
    model = model.to(dev, memory_format=memory_format(dev))
    optimizer = configure_optimizer(model, config)
    x = images[: config.batch_size].to(dev)
    views = torch.cat([augment.to(dev)(x), augment(x)]).contiguous(memory_format=memory_format(dev))
    amp = autocast_dtype(dev)  # bf16 from Ampere on, fp16 below, fp32 on the CPU
    times = []
    for i in range(steps + 2):  # two warm-up steps
        _sync(dev)
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp, enabled=amp != torch.float32):
            _, z = model(views)
        loss = nt_xent(*z.float().chunk(2), temperature=config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(dev)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    args = parser.parse_args()
    dev = device()
    if dev.type == "cuda":
        images, _ = load_images("cifar10", "train")
        config = SimCLRConfig(epochs=args.epochs + 1, progress=False)
        machine = torch.cuda.get_device_name()
    else:
        images, _ = load_images("digits", "train")
        config = SimCLRConfig(
            epochs=args.epochs + 1,
            batch_size=256,
            width=8,
            proj_hidden=128,
            crop_scale=(0.5, 1.0),
            flip_p=0.0,
            progress=False,
        )
        machine = f"CPU, {torch.get_num_threads()} threads"
    run = train_simclr(config, images)
    timed = run.history[1:]  # the first epoch pays for kernel selection and allocator warm-up
    epoch_s = statistics.median(r["seconds"] for r in timed)
    steps = len(images) // config.batch_size
    step_s = epoch_s / steps
    plain_s = steps_without_augmentation(config, images, min(steps, 20))
    print(
        f"machine: {machine}; {len(images)} images {tuple(images.shape[1:])}, "
        f"batch {config.batch_size}, ResNet-18 width {config.width}"
    )
    print(f"seconds/epoch        {epoch_s:9.3f}   (median of {len(timed)} epochs)")
    print(f"images/s             {steps * config.batch_size / epoch_s:9.1f}")
    print(f"step with augment    {1000 * step_s:9.2f} ms")
    print(f"step, views given    {1000 * plain_s:9.2f} ms   (reference, same run)")
    print(f"augmentation share   {100 * max(0.0, 1 - plain_s / step_s):8.1f} %  (GPU target <= 5%)")


if __name__ == "__main__":
    main()
