"""The README's `gpu` run-time estimates, from FLOPs and from bytes moved.

Each training loop's step is run here on the CPU under `course_utils.roofline.step_cost` (16-bit
autocast as on a GPU) at two small batch sizes; the cost is linear in the batch, so the two points
give the cost of the lesson's batch. Loops times steps give each lesson's FLOPs and bytes, and
`roofline.seconds` turns them into T4 and A100 minutes; the slower of the two is the estimate.
Evaluation passes count as forward-only steps. CPU-only parts (t-SNE, L-BFGS probes, CIFAR decoding,
scikit-learn) are not included and are listed with the table. Lessons 01, 02, 03 and 06 are
re-derived from their FLOPs as counted before (FlopCounterMode over their loops, README history),
with the FLOPs per byte measured here on a step of the same model family. About two minutes on
one core.

    python scripts/estimate_gpu_time.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_utils import roofline
from course_utils.models import TinyTransformer
from course_utils.probe import extract_features
from course_utils.train import SimCLRConfig, build, train_simclr

AMP = torch.bfloat16  # the CPU's 16-bit autocast: the same operand widths as fp16 on a T4


def linear_in_batch(cost_at: Callable[[int], roofline.Cost]) -> tuple[roofline.Cost, roofline.Cost]:
    """(fixed part, part per sample) of a cost linear in the batch, from batches of 2 and 4."""
    two, four = cost_at(2), cost_at(4)
    per = roofline.Cost(four.flops - two.flops, four.bytes - two.bytes) * 0.5
    return roofline.Cost(two.flops - 2 * per.flops, two.bytes - 2 * per.bytes), per


def at_batch(cost_at: Callable[[int], roofline.Cost], batch: int) -> roofline.Cost:
    """The cost of one step at `batch`."""
    fixed, per = linear_in_batch(cost_at)
    return fixed + per * batch


def transformer_step(
    vocab: int, d: int, layers: int, heads: int, length: int, attention: str, mixed: bool = True
):
    """Lesson 04's training step (AdamW, autocast unless not `mixed`) of a TinyTransformer, as a
    cost per batch."""

    def cost_at(batch: int) -> roofline.Cost:
        torch.manual_seed(0)
        model = TinyTransformer(vocab, d, layers, heads, attention=attention, max_len=length + 1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randint(0, vocab, (batch, length + 1))

        def step() -> None:
            with torch.autocast("cpu", dtype=AMP, enabled=mixed):
                logits = model(x[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # AdamW's state exists from the second step on
        return roofline.step_cost(step)

    return cost_at


def simclr_step(width: int, size: int):
    """One `train_simclr` step (augmentation, two views, NT-Xent, SGD) on size x size images."""

    def cost_at(batch: int) -> roofline.Cost:
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        config = SimCLRConfig(
            epochs=1, batch_size=batch, width=width, precision="bf16", progress=False
        )
        return roofline.step_cost(lambda: train_simclr(config, images))

    return cost_at


def encoder_forward(width: int, size: int):
    """The encoder's forward pass of the kNN monitor and the probes, per batch of images."""

    def cost_at(batch: int) -> roofline.Cost:
        config = SimCLRConfig(width=width, precision="bf16")
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        model, _ = build(config, images)
        return roofline.step_cost(
            lambda: extract_features(model.encoder, images, preprocess=model.normalize, dtype=AMP)
        )

    return cost_at


def lesson_04(steps: int, batch: int, igpt_steps: int) -> roofline.Cost:
    """AR and MLM (d 256, 6 layers, 8 heads, 256 characters) and iGPT (64 pixels), AdamW."""
    ar = at_batch(transformer_step(66, 256, 6, 8, 256, "causal"), batch)
    mlm = at_batch(transformer_step(66, 256, 6, 8, 256, "full"), batch)
    igpt = at_batch(transformer_step(5, 256, 6, 8, 64, "causal"), batch)
    return ar * steps + mlm * steps + igpt * igpt_steps


def lesson_05(epochs: int, grid_epochs: int, grid_images: int) -> roofline.Cost:
    """CIFAR-10 ResNet-18: the run and its crop-only ablation, the kNN monitor of the run, the
    batch grid (batch 128; batch 512 at equal epochs and at equal steps, i.e. 4x the epochs; batch
    128 at T = 0.1), 10 evaluations of the 60,000 images, 3 supervised baselines (400 steps of 512)."""
    fixed, per_image = linear_in_batch(simclr_step(64, 32))
    _, forward = linear_in_batch(encoder_forward(64, 32))
    run = (fixed + per_image * 512) * (epochs * (50_000 // 512))
    grid = per_image * (grid_epochs * grid_images * (3 + 512 // 128))
    supervised = per_image * (0.5 * 3 * 400 * 512)  # one view instead of two
    return run * 2 + grid + supervised + forward * (60_000 * (epochs + 10))


def steps_05(epochs: int, grid_epochs: int, grid_images: int) -> int:
    """Optimizer steps of lesson 05's gpu profile."""
    grid = grid_epochs * (3 * (grid_images // 128) + grid_images // 512)
    return 2 * epochs * (50_000 // 512) + grid + 3 * 400


def intensity(cost_at: Callable[[int], roofline.Cost], batch: int) -> float:
    """FLOPs per byte moved of a step at `batch`."""
    cost = at_batch(cost_at, batch)
    return cost.flops / cost.bytes


def other_lessons() -> dict[str, tuple[roofline.Cost, int, bool]]:
    """Lessons 01, 02, 03, 06: (FLOPs counted before, bytes at their family's FLOPs per byte),
    optimizer steps, mixed precision."""
    resnet = intensity(simclr_step(32, 32), 128)  # 01: SimCLR on 32x32 shapes, width 32
    bert = intensity(transformer_step(4000, 256, 4, 4, 128, "full", mixed=False), 64)  # 03, fp32
    small = intensity(transformer_step(256, 64, 2, 2, 64, "causal"), 32)  # 02, 06: tiny models
    counted = {  # PFLOP, steps, mixed, FLOPs per byte
        "01": (4.8, 36_000, True, resnet),  # upper bound: its former 5 GPU minutes at 16 TFLOP/s
        "02": (0.006, 12_700, True, small),
        "03": (0.4, 20_000, False, bert),
        "06": (0.052, 10_240, True, small),
    }
    return {
        name: (roofline.Cost(pflop * 1e15, pflop * 1e15 / per_byte), steps, mixed)
        for name, (pflop, steps, mixed, per_byte) in counted.items()
    }


def main() -> int:
    torch.set_num_threads(1)
    rows = {
        "04": (lesson_04(STEPS_04, BATCH_04, IGPT_STEPS_04), 2 * STEPS_04 + IGPT_STEPS_04, True),
        "05": (
            lesson_05(EPOCHS_05, GRID_EPOCHS_05, GRID_IMAGES_05),
            steps_05(EPOCHS_05, GRID_EPOCHS_05, GRID_IMAGES_05),
            True,
        ),
    } | other_lessons()
    print(f"{'lesson':8}{'PFLOP':>8}{'TB moved':>10}", end="")
    for gpu in roofline.GPUS:
        print(f"{gpu + ' FLOPs':>12}{gpu + ' bytes':>12}", end="")
    print("   (minutes, with the per-step overhead)")
    for name, (cost, steps, mixed) in sorted(rows.items()):
        print(f"{name:8}{cost.flops / 1e15:8.3f}{cost.bytes / 1e12:10.2f}", end="")
        for gpu in roofline.GPUS.values():
            compute, memory = roofline.seconds(cost, gpu, steps=steps, mixed=mixed)
            print(f"{compute / 60:12.1f}{memory / 60:12.1f}", end="")
        print()
    return 0


# The gpu= sizes of the lessons' parameters cells.
STEPS_04, BATCH_04, IGPT_STEPS_04 = 4000, 128, 3000
EPOCHS_05, GRID_EPOCHS_05, GRID_IMAGES_05 = 10, 3, 4096

if __name__ == "__main__":
    sys.exit(main())
