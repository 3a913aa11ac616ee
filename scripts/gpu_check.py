"""One prepared run for the day a GPU is available: the course's GPU speed targets, measured.

Prints the GPU's name, then: the SimCLR epoch time on CIFAR-10-shaped synthetic data (50,000 uint8
3x32x32 images on the device, ResNet-18, batch 512, automatic precision) against the <= 6 s target;
the augmentation's share of a training step (target <= 5%); NT-Xent dense against tiled (time, peak
memory, same loss); pseudo-log-likelihood and perplexity throughput on tiny local models (a
Pythia-70m-shaped GPT-NeoX for perplexity). Needs no internet. A few minutes on a T4.

    python scripts/gpu_check.py          # on the GPU machine
    python scripts/gpu_check.py --dry    # everything at micro scale on the CPU, in seconds (CI)
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.augment import SimCLRAugment
from course_utils.data import load_text
from course_utils.lm import perplexity, pseudo_log_likelihood, tiny_causal_lm, tiny_mlm
from course_utils.losses import nt_xent
from course_utils.models import ProjectionHead, resnet18_cifar
from course_utils.runtime import autocast_dtype, measure
from course_utils.train import SimCLRConfig, train_simclr

EPOCH_TARGET_S = 6.0
AUGMENT_SHARE_TARGET = 0.05


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: full (on a GPU) or dry (micro, on the CPU)."""

    images: int
    batch: int
    width: int
    steps: int  # timed steps for the augmentation share
    ntxent_sizes: tuple[int, ...]
    chunk: int
    texts: int
    mlm_hidden: int
    lm_vocab: int
    lm_hidden: int
    lm_layers: int
    lm_heads: int
    lm_tokens: int
    context: int


FULL = Scale(50_000, 512, 64, 20, (1024, 8192), 1024, 512, 256, 50_304, 512, 6, 8, 200_000, 1024)
DRY = Scale(64, 16, 8, 2, (32, 64), 16, 8, 32, 64, 16, 1, 2, 600, 32)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn: Callable[[], object], dev: torch.device, repeats: int) -> float:
    """Mean wall time of `fn()` over `repeats` calls after one warm-up call."""
    fn()
    _sync(dev)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(dev)
    return (time.perf_counter() - start) / repeats


def _verdict(value: float, target: float, dry: bool) -> str:
    if dry:
        return "(dry run: not judged)"
    return "OK" if value <= target else "MISSED"


def simclr_epoch(scale: Scale, dev: torch.device, dry: bool) -> None:
    """Seconds per SimCLR epoch (the second: the first pays for cuDNN's kernel search)."""
    images = torch.randint(0, 256, (scale.images, 3, 32, 32), dtype=torch.uint8, device=dev)
    config = SimCLRConfig(epochs=2, batch_size=scale.batch, width=scale.width, progress=False)
    history = train_simclr(config, images).history
    seconds = history[-1]["seconds"]
    print(
        f"SimCLR epoch: {seconds:.2f} s for {scale.images} images, batch {scale.batch} "
        f"({history[-1]['images_per_s']:.0f} images/s, first epoch {history[0]['seconds']:.2f} s); "
        f"target <= {EPOCH_TARGET_S:.0f} s: {_verdict(seconds, EPOCH_TARGET_S, dry)}"
    )


def augmentation_share(scale: Scale, dev: torch.device, dry: bool) -> None:
    """Time of the two augmentations over the time of a whole training step."""
    x = torch.randint(0, 256, (scale.batch, 3, 32, 32), dtype=torch.uint8, device=dev)
    augment = SimCLRAugment(32).to(dev)
    backbone = resnet18_cifar(width=scale.width).to(dev, memory_format=torch.channels_last)
    head = ProjectionHead(8 * scale.width, 512, 128).to(dev)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    dtype = autocast_dtype(dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)

    def views() -> torch.Tensor:
        return torch.cat([augment(x), augment(x)]).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        v = views()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            z = head(backbone(v))
        z1, z2 = z.float().chunk(2)
        loss = nt_xent(z1, z2, temperature=0.5)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    t_step = _seconds(step, dev, scale.steps)
    t_aug = _seconds(views, dev, scale.steps)
    share = t_aug / t_step
    print(
        f"augmentation share of a step: {share:.1%} ({1e3 * t_aug:.1f} of {1e3 * t_step:.1f} ms, "
        f"batch {scale.batch}, {str(dtype).removeprefix('torch.')}); "
        f"target <= {AUGMENT_SHARE_TARGET:.0%}: {_verdict(share, AUGMENT_SHARE_TARGET, dry)}"
    )


def _ntxent_backward(z1: torch.Tensor, z2: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """NT-Xent of two views and its backward pass; the loss."""
    loss = nt_xent(z1, z2, temperature=0.5, chunk_size=chunk)
    loss.backward()
    return loss.detach()


def ntxent_dense_vs_tiled(scale: Scale, dev: torch.device) -> None:
    """Forward and backward of NT-Xent, dense and tiled: time, peak memory and the same loss."""
    generator = torch.Generator().manual_seed(0)
    for n in scale.ntxent_sizes:
        z1 = torch.randn(n, 128, generator=generator).to(dev).requires_grad_()
        z2 = torch.randn(n, 128, generator=generator).to(dev).requires_grad_()
        row = []
        losses = []
        for name, chunk in (("dense", None), (f"tiled({scale.chunk})", scale.chunk)):
            run = functools.partial(_ntxent_backward, z1, z2, chunk)
            seconds = _seconds(run, dev, 3)
            with measure(name, report=False) as m:
                losses.append(float(run()))
            row.append(
                f"{name} {1e3 * seconds:.1f} ms, peak {m.memory_kind} {m.peak_bytes / 2**20:.0f} MiB"
            )
        if abs(losses[0] - losses[1]) > 1e-4 * abs(losses[0]):
            raise AssertionError(f"dense and tiled NT-Xent differ at N={n}: {losses}")
        print(f"NT-Xent N={n}: " + "; ".join(row) + f" (same loss {losses[0]:.4f})")


def pll_throughput(scale: Scale, dev: torch.device) -> None:
    """Tokens scored per second by pseudo-log-likelihood with a tiny local BERT."""
    lines = [line.strip() for line in load_text("pydoc").splitlines() if len(line.split()) >= 8]
    texts = [" ".join(line.split()[:16]) for line in lines[: scale.texts]]
    model, tokenizer = tiny_mlm(
        "\n".join(lines[:2000]), hidden_size=scale.mlm_hidden, num_layers=2, max_length=64
    )
    model = model.to(dev)
    tokens = sum(len(tokenizer(t)["input_ids"]) - 2 for t in texts)  # all but [CLS] and [SEP]
    seconds = _seconds(
        lambda: pseudo_log_likelihood(model, tokenizer, texts, batch_size=256), dev, 1
    )
    print(
        f"pseudo-log-likelihood: {tokens / seconds:,.0f} scored tokens/s ({len(texts)} texts, "
        f"BERT hidden {scale.mlm_hidden}, 2 layers)"
    )


def perplexity_throughput(scale: Scale, dev: torch.device) -> None:
    """Tokens per second of sliding-window perplexity with a GPT-NeoX of Pythia-70m's shape."""
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_causal_lm(
            tmp,
            vocab_size=scale.lm_vocab,
            hidden_size=scale.lm_hidden,
            num_layers=scale.lm_layers,
            num_heads=scale.lm_heads,
            max_positions=scale.context,
        ).to(dev)
    ids = torch.randint(
        0, scale.lm_vocab, (scale.lm_tokens,), generator=torch.Generator().manual_seed(0)
    )
    for stride in (scale.context, scale.context // 2):
        seconds = _seconds(
            lambda s=stride: perplexity(
                model, ids, context_length=scale.context, stride=s, batch_size=16
            ),
            dev,
            1,
        )
        print(
            f"perplexity: {scale.lm_tokens / seconds:,.0f} tokens/s (context {scale.context}, "
            f"stride {stride}; GPT-NeoX {scale.lm_layers} layers x {scale.lm_hidden}, "
            f"vocabulary {scale.lm_vocab})"
        )


def main() -> int:
    """Run every check at the chosen scale and print one line per figure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dry", action="store_true", help="micro scale on the CPU (for CI)")
    args = parser.parse_args()
    if args.dry:
        dev, scale = torch.device("cpu"), DRY
        print("dry run on the CPU at micro scale: the figures test the code paths, not the speed")
    elif not torch.cuda.is_available():
        print("no CUDA GPU found: run this on the GPU machine, or use --dry", file=sys.stderr)
        return 2
    else:
        dev, scale = torch.device("cuda"), FULL
        torch.backends.cudnn.benchmark = True
        major, minor = torch.cuda.get_device_capability(dev)
        print(f"GPU: {torch.cuda.get_device_name(dev)} (compute capability {major}.{minor})")
    print(f"torch {torch.__version__}; automatic precision: {autocast_dtype(dev)}")
    simclr_epoch(scale, dev, args.dry)
    augmentation_share(scale, dev, args.dry)
    ntxent_dense_vs_tiled(scale, dev)
    pll_throughput(scale, dev)
    perplexity_throughput(scale, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
