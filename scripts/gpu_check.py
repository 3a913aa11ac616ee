"""The one script to run on any GPU: it measures what the students run and settles the README's
GPU estimates.

With the library's own settings (no cuDNN benchmark mode or other switch the lessons do not set) it
times: a SimCLR epoch on CIFAR-10-shaped data (ResNet-18, batch 512, kNN monitor and checkpoint, as
lesson 05 runs it) in the automatic precision and in the other 16-bit type (bf16 vs fp16), with peak
memory, the GradScaler's skipped steps and whether the fp16/bf16 features stay finite; lesson 04's
training step; NT-Xent dense vs tiled; then it runs the `gpu`-profile lessons end to end and
records their wall times. Each figure is compared with the README's estimate for this GPU
(`course_utils.roofline`, the T4 and A100 columns of the run-time table): a measurement at most
25% above the estimate confirms it, a slower one refutes it. One JSON report and a printed table.
Needs no internet except for the lessons' own downloads.

    python scripts/gpu_check.py                      # on the GPU machine (about 2 h on a T4)
    python scripts/gpu_check.py --lessons 04 05      # only these lessons end to end
    python scripts/gpu_check.py --dry                # micro scale on the CPU, in about a minute (CI)

It has not been run on a GPU yet: no GPU was available to the project so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from course_utils import roofline
from course_utils.losses import nt_xent
from course_utils.models import TinyTransformer
from course_utils.runtime import autocast_dtype, grad_scaler, measure
from course_utils.train import SimCLRConfig, train_simclr

ROOT = Path(__file__).resolve().parent.parent
CONFIRM_RATIO = 1.25  # measured / estimated at most this: the README's figure holds
# Per-step costs measured by scripts/estimate_gpu_time.py (16-bit autocast, README method).
SIMCLR_IMAGE = roofline.Cost(6.66e9, 45.4e6)  # one image of a SimCLR step: 2 views, fwd + bwd
ENCODER_IMAGE = roofline.Cost(1.11e9, 8.9e6)  # one image through the encoder (kNN monitor)
LESSON_04_STEP = roofline.Cost(0.931e12, 16.7e9)  # AR step, batch 128 x 256 characters
# The README's `gpu` minutes per lesson (T4, A100); lesson 07 launches 2 processes on 2 GPUs.
LESSON_MINUTES = {
    "01": {
        "T4": 13.2,
        "A100": 5.1,
    },  # an upper bound (counted for its former SimCLR run), with 2 min of scikit-learn
    "02": {"T4": 1.1, "A100": 0.6},
    "03": {"T4": 7.2, "A100": 2.7},
    "04": {"T4": 17.3, "A100": 3.8},  # with pythia-160m's evaluation
    "05": {"T4": 19.4, "A100": 3.8},  # with t-SNE and CIFAR-10 decoding
    "06": {"T4": 1.2, "A100": 0.6},
    "07": {"T4": 4.5},  # 2 x T4 (Kaggle); one GPU skips the launch
}
NOTEBOOKS = {path.name[:2]: path for path in sorted((ROOT / "notebooks").glob("0*.ipynb"))}


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: full (on a GPU) or dry (micro, on the CPU)."""

    images: int
    test_images: int
    batch: int
    width: int
    knn_k: int
    lm_batch: int
    lm_block: int
    lm_width: int
    lm_layers: int
    lm_steps: int
    ntxent_sizes: tuple[int, ...]
    chunk: int


FULL = Scale(50_000, 10_000, 512, 64, 200, 128, 256, 256, 6, 30, (1024, 8192), 1024)
DRY = Scale(64, 32, 16, 8, 5, 2, 16, 32, 1, 2, (32, 64), 16)


@dataclass
class Figure:
    """One measured figure, the README's estimate for this GPU and the verdict."""

    name: str
    measured: float
    unit: str
    estimate: float | None = None
    detail: str = ""
    verdict: str = ""


def verdict(measured: float, estimate: float | None, dry: bool) -> str:
    """'confirms' or 'refutes' the README's estimate; why not judged otherwise."""
    if dry:
        return "not judged (dry run)"
    if estimate is None:
        return "no README estimate for this GPU"
    ratio = measured / estimate
    return f"{'confirms' if ratio <= CONFIRM_RATIO else 'refutes'} ({ratio:.2f}x the estimate)"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _estimate(cost: roofline.Cost, gpu: roofline.GPU | None, steps: int) -> float | None:
    """Seconds of `cost` on `gpu` by the slower of the FLOP and byte estimates."""
    return None if gpu is None else max(roofline.seconds(cost, gpu, steps=steps))


def simclr_epoch(
    scale: Scale, dev: torch.device, precision: str, gpu: roofline.GPU | None
) -> list[Figure]:
    """Lesson 05's epoch: train_simclr with its kNN monitor and a checkpoint, two epochs (the first
    pays for warm-up); wall time of the second, peak memory, skipped fp16 steps, finite features."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (scale.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    test = torch.randint(0, 256, (scale.test_images, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (scale.images,), generator=g)
    test_labels = torch.randint(0, 10, (scale.test_images,), generator=g)
    monitor = tuple(t.to(dev) for t in (images, labels, test, test_labels))
    ends: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = SimCLRConfig(
            epochs=2,
            batch_size=scale.batch,
            width=scale.width,
            knn_k=scale.knn_k,
            precision=precision,
            checkpoint=f"{tmp}/simclr.pt",
            progress=False,
        )
        _sync(dev)
        start = time.perf_counter()
        with measure("simclr", report=False) as m:
            run = train_simclr(
                config,
                images.to(dev),
                monitor=monitor,
                on_epoch=lambda history: (_sync(dev), ends.append(time.perf_counter())),
            )
        scaler = torch.load(f"{tmp}/simclr.pt", weights_only=False)["scaler"]
    seconds = ends[1] - ends[0]
    skipped = int(round(math.log2(65536.0 / scaler["scale"]))) if scaler else 0
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, autocast_dtype(dev))
    name = str(dtype).removeprefix("torch.")
    steps = scale.images // scale.batch
    estimate = _estimate(
        SIMCLR_IMAGE * scale.images + ENCODER_IMAGE * (scale.images + scale.test_images), gpu, steps
    )
    with torch.no_grad(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        run.model.encoder.eval()
        raw = run.model.encoder(run.model.normalize(monitor[0][: 4 * scale.batch].float()))
    finite = bool(torch.isfinite(raw).all())
    return [
        Figure(
            f"SimCLR epoch ({precision}: {name})",
            seconds,
            "s",
            estimate,
            f"{scale.images} images, batch {scale.batch}, kNN monitor, checkpoint; first epoch "
            f"{ends[0] - start:.2f} s; peak {m.memory_kind} {m.peak_bytes / 2**30:.2f} GiB; "
            f"GradScaler skipped {skipped} of {2 * steps} steps",
        ),
        Figure(
            f"features finite in {name} ({precision})",
            float(finite),
            "bool",
            None,
            f"largest |feature| {raw.float().abs().max().item():.3g} (fp16 overflows past 65504)",
        ),
    ]


def lesson_04_step(scale: Scale, dev: torch.device, gpu: roofline.GPU | None) -> Figure:
    """Lesson 04's training step (AdamW, automatic precision, GradScaler) at its gpu sizes."""
    torch.manual_seed(0)
    model = TinyTransformer(
        66, scale.lm_width, scale.lm_layers, 8, attention="causal", max_len=scale.lm_block + 1
    ).to(dev)
    amp = autocast_dtype(dev)
    scaler = grad_scaler(dev, amp)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.randint(0, 66, (200_000,))
    g = torch.Generator().manual_seed(1)

    def step() -> None:
        starts = torch.randint(0, len(data) - scale.lm_block - 1, (scale.lm_batch,), generator=g)
        x = data[starts[:, None] + torch.arange(scale.lm_block + 1)].to(dev)
        with torch.autocast(dev.type, dtype=amp, enabled=amp != torch.float32):
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):
        step()
    with measure("lesson 04", report=False) as m:
        for _ in range(scale.lm_steps):
            step()
    ms = 1e3 * m.seconds / scale.lm_steps
    estimate = _estimate(LESSON_04_STEP, gpu, 1)
    return Figure(
        "lesson 04 step",
        ms,
        "ms",
        None if estimate is None else 1e3 * estimate,
        f"batch {scale.lm_batch} x {scale.lm_block}, {str(amp).removeprefix('torch.')}; "
        f"peak {m.memory_kind} {m.peak_bytes / 2**30:.2f} GiB",
    )


def ntxent_dense_vs_tiled(scale: Scale, dev: torch.device) -> list[Figure]:
    """NT-Xent forward and backward, dense and tiled: time, peak memory and the same loss."""
    g = torch.Generator().manual_seed(0)
    figures = []
    for n in scale.ntxent_sizes:
        z1 = torch.randn(n, 128, generator=g).to(dev).requires_grad_()
        z2 = torch.randn(n, 128, generator=g).to(dev).requires_grad_()
        losses = []
        for name, chunk in (("dense", None), (f"tiled({scale.chunk})", scale.chunk)):
            nt_xent(z1, z2, temperature=0.5, chunk_size=chunk).backward()  # warm-up
            with measure(name, report=False) as m:
                loss = nt_xent(z1, z2, temperature=0.5, chunk_size=chunk)
                loss.backward()
            losses.append(loss.item())
            figures.append(
                Figure(
                    f"NT-Xent N={n} {name}",
                    1e3 * m.seconds,
                    "ms",
                    None,
                    f"peak {m.memory_kind} {m.peak_bytes / 2**20:.0f} MiB",
                )
            )
        if abs(losses[0] - losses[1]) > 1e-4 * abs(losses[0]):
            raise AssertionError(f"dense and tiled NT-Xent differ at N={n}: {losses}")
    return figures


def lesson_run(number: str, dry: bool, gpu: roofline.GPU | None) -> Figure:
    """Wall time of one lesson notebook in the gpu profile (dry: its smoke run), end to end."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["COURSE_PROFILE"] = "gpu"
    if dry:
        os.environ["COURSE_SMOKE"] = "1"
    path = NOTEBOOKS[number]
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = ""
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, timeout=3600, resources={"metadata": {"path": tmp}})
        try:
            client.execute()
        except Exception as exc:  # a failed lesson is a finding of the report, not a crash
            error = f"; FAILED: {str(exc).strip().splitlines()[-1][:200]}"
    minutes = (time.perf_counter() - start) / 60
    estimate = None if gpu is None else LESSON_MINUTES[number].get(gpu.name)
    return Figure(f"lesson {path.stem}", minutes, "min", estimate, f"gpu profile{error}")


def _gpu() -> roofline.GPU | None:
    """The README's GPU this one is (by name), if any."""
    name = torch.cuda.get_device_name()
    return next((gpu for key, gpu in roofline.GPUS.items() if key in name), None)


def report_table(figures: list[Figure]) -> str:
    """The printed table: figure, measured, README estimate, verdict."""
    lines = [f"{'figure':44}{'measured':>14}{'README':>12}  verdict"]
    for f in figures:
        estimate = "-" if f.estimate is None else f"{f.estimate:.3g}"
        lines.append(f"{f.name:44}{f.measured:>10.3g} {f.unit:3}{estimate:>12}  {f.verdict}")
        if f.detail:
            lines.append(f"{'':6}{f.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every check, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dry", action="store_true", help="micro scale on the CPU (for CI)")
    parser.add_argument(
        "--lessons",
        nargs="*",
        default=None,
        help="lessons to run end to end (default: all; --dry: 02's smoke run)",
    )
    parser.add_argument("--report", default="gpu_check.json", help="the JSON report's path")
    args = parser.parse_args(argv)
    if args.dry:
        dev, scale, gpu = torch.device("cpu"), DRY, None
        lessons = ["02"] if args.lessons is None else args.lessons
        header = "dry run on the CPU at micro scale: the figures test the code paths, not the speed"
    elif not torch.cuda.is_available():
        print("no CUDA GPU found: run this on the GPU machine, or use --dry", file=sys.stderr)
        return 2
    else:
        dev, scale, gpu = torch.device("cuda"), FULL, _gpu()
        lessons = sorted(NOTEBOOKS) if args.lessons is None else args.lessons
        major, minor = torch.cuda.get_device_capability()
        header = (
            f"GPU: {torch.cuda.get_device_name()} x {torch.cuda.device_count()} (compute "
            f"capability {major}.{minor}); README estimates: {gpu.name if gpu else 'none'}"
        )
    unknown = sorted(set(lessons) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"--lessons: no lesson {', '.join(unknown)}; choose from {sorted(NOTEBOOKS)}")
    print(header)
    print(f"torch {torch.__version__}; automatic precision: {autocast_dtype(dev)}", flush=True)
    other = "fp16" if autocast_dtype(dev) == torch.bfloat16 else "bf16"
    figures = simclr_epoch(scale, dev, "auto", gpu) + simclr_epoch(scale, dev, other, None)
    figures.append(lesson_04_step(scale, dev, gpu))
    figures += ntxent_dense_vs_tiled(scale, dev)
    figures += [lesson_run(number, args.dry, gpu) for number in lessons]
    for f in figures:
        f.verdict = (
            verdict(f.measured, f.estimate, args.dry) if f.unit != "bool" else str(bool(f.measured))
        )
    print(report_table(figures))
    report = {
        "header": header,
        "torch": torch.__version__,
        "dry": args.dry,
        "figures": [vars(f) for f in figures],
    }
    Path(args.report).write_text(json.dumps(report, indent=1))
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
