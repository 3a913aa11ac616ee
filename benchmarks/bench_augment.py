"""Views/s of the batched SimCLRAugment vs torchvision's per-image v2 pipeline, same run, same ops.

The reference is what a DataLoader worker does: a v2 Compose applied to one uint8 image at a time
(RandomResizedCrop, RandomHorizontalFlip, RandomApply(ColorJitter incl. hue), RandomGrayscale,
ToDtype, Normalize). Target on a 2-core CPU: >= 10x. With CUDA, also the augmentation's share of a
SimCLR training step (CIFAR ResNet-18 forward + backward on 2 x 512 views; target <= 5%).
CPU figures use one thread by default (as one DataLoader worker) and report CPU time next to wall
time: on a shared machine wall time counts the waits for other jobs.

Run: PYTHONPATH=. python benchmarks/bench_augment.py [--batch 512] [--size 32] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from course_utils.augment import SimCLRAugment

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10


def torchvision_pipeline(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The usual SimCLR per-image pipeline with torchvision.transforms.v2."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def best_time(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None]
) -> tuple[float, float]:
    """Fastest wall and CPU (process) seconds of `repeats` calls, after one warm-up call.

    CPU time counts only the time this process ran (user + system, page faults included), so it
    stays meaningful on a machine shared with other jobs; wall time is what a user waits for.
    """
    fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def main() -> None:
    """Measure both pipelines on the CPU (and the GPU share when CUDA is present) and print ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 = one DataLoader worker)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, s = args.batch, args.size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=gen)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {b} at {s}x{s}")

    tv = torchvision_pipeline(s)
    aug = SimCLRAugment(s, mean=MEAN, std=STD)
    nosync = lambda: None  # noqa: E731
    tv_wall, tv_cpu = best_time(
        lambda: torch.stack([tv(img) for img in images]), args.repeats, nosync
    )
    aug_wall, aug_cpu = best_time(lambda: aug(images), args.repeats, nosync)
    for name, wall, cpu in (
        ("torchvision v2 per image", tv_wall, tv_cpu),
        ("SimCLRAugment batched", aug_wall, aug_cpu),
    ):
        print(
            f"{name:25s}: {b / cpu:8.0f} views/s of CPU time ({cpu * 1e3:6.1f} ms/batch), "
            f"{b / wall:8.0f} views/s wall ({wall * 1e3:6.1f} ms/batch)"
        )
    print(f"speed-up, CPU time: {tv_cpu / aug_cpu:5.1f}x  (target >= 10x)")
    print(f"speed-up, wall    : {tv_wall / aug_wall:5.1f}x  (inflated by other jobs when shared)")

    if torch.cuda.is_available():
        gpu_step_share(aug, images, args.repeats)


def gpu_step_share(aug: SimCLRAugment, images: torch.Tensor, repeats: int) -> None:
    """Print the cost of augmenting 2 views as a fraction of one SimCLR step on the GPU.

    The step: both views, a CIFAR ResNet-18 (3x3 stem, no max-pool) with a 128-d output, NT-Xent,
    backward and SGD, in autocast (bf16 from Ampere on, fp16 below) and channels_last.
    """
    from torchvision.models import resnet18

    from course_utils.runtime import autocast_dtype

    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    images, aug = images.to(dev), aug.to(dev)
    model = resnet18(num_classes=128)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem
    model.maxpool = torch.nn.Identity()
    model = model.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def views() -> torch.Tensor:
        return torch.cat((aug(images), aug(images)))

    def step() -> None:
        x = views().contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=autocast_dtype(dev)):
            z = torch.nn.functional.normalize(model(x), dim=1)
            n = len(z) // 2
            sim = z @ z.T / 0.5
            sim.fill_diagonal_(float("-inf"))
            target = torch.cat((torch.arange(n, 2 * n), torch.arange(n))).to(dev)
            loss = torch.nn.functional.cross_entropy(sim.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_views = best_time(views, repeats, sync)[0]
    t_step = best_time(step, repeats, sync)[0]
    name = torch.cuda.get_device_name()
    print(
        f"{name}: 2 x {len(images)} views {t_views * 1e3:.2f} ms, SimCLR step {t_step * 1e3:.2f} ms"
    )
    print(f"augmentation share of a step: {t_views / t_step:.1%}  (target <= 5%)")


if __name__ == "__main__":
    main()
