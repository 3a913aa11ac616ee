"""SimCLR pretraining in one readable loop: config, model, schedule, AMP, kNN monitor, checkpoints.

The same loop runs on one process or data-parallel on N (`torchrun --nproc_per_node=N -m
course_utils.train ...`): each rank trains on its own shard with its own augmentations, NT-Xent
contrasts every view with the views of all ranks, and DDP averages the gradients.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_utils import distributed
from course_utils.augment import SimCLRAugment
from course_utils.data import IMAGE_SETS, batches, cache_dir, load_images
from course_utils.losses import nt_xent
from course_utils.models import ProjectionHead, resnet18_cifar
from course_utils.probe import extract_features, knn_accuracy
from course_utils.runtime import autocast_dtype, device, memory_format, seed_everything

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# Fields that say where a run is saved, how it is watched and which precision the hardware runs,
# not what it learns: a checkpoint resumes under other values of these (a copy on Google Drive,
# another GPU's precision, another progress or kNN-monitor setting). Every other field must match.
RESUMABLE_ACROSS = frozenset({"checkpoint", "progress", "precision", "knn_k", "knn_temperature"})
DRIVE = Path("/content/drive/MyDrive")  # where Colab's drive.mount("/content/drive") puts Drive


@dataclass
class SimCLRConfig:
    """Every knob of a SimCLR run; the defaults are the CIFAR-10 ResNet-18 GPU recipe."""

    epochs: int = 100
    batch_size: int = 512  # per process: the global batch is batch_size x number of processes
    lr: float = 0.24  # peak SGD lr for batch_size (0.06 per 128 images); x N on N processes
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0  # linear warm-up, then cosine decay to 0, updated every step
    temperature: float = 0.5
    width: int = 64  # channels of the first ResNet stage (64 = the standard ResNet-18)
    proj_hidden: int = 512
    proj_dim: int = 128
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    mean: tuple[float, ...] | None = None  # per-channel normalisation; None = from the images
    std: tuple[float, ...] | None = None
    knn_k: int = 200
    knn_temperature: float = 0.1
    precision: str = "auto"  # bf16 on GPUs that support it, fp16 (+ loss scaling) else, fp32 on CPU
    seed: int = 0
    checkpoint: str | None = None  # a file: saved after every epoch, resumed from when it exists
    progress: bool = True  # tqdm bar per epoch (rank 0)
    sync_bn: bool = False  # on N > 1 CUDA processes: BatchNorm statistics over the global batch

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "width", "proj_hidden", "proj_dim", "knn_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("lr", "temperature", "knn_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("momentum", "flip_p", "jitter_p", "gray_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        # Tuples, so that a config read back from a checkpoint compares equal to the original.
        for name in ("crop_scale", "jitter", "mean", "std"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(float(v) for v in getattr(self, name)))


class SimCLR(nn.Module):
    """Encoder f and projection head g; `normalize` turns uint8 images into the encoder's input."""

    def __init__(
        self, encoder: nn.Module, head: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) images -> normalised float input (the un-augmented view)."""
        x = images.to(self.mean.device).float() / 255
        return ((x - self.mean) / self.std).contiguous(memory_format=memory_format(x.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Representation h = f(x) (kept for downstream tasks) and projection z = g(h) (for the loss)."""
        h = self.encoder(x)
        return h, self.head(h)


@dataclass
class SimCLRRun:
    """What `train_simclr` returns: the model, its augmentation and one history row per epoch."""

    model: SimCLR
    augment: SimCLRAugment
    history: list[dict[str, float]]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale."""
    x = images.float().div(255).transpose(0, 1).flatten(1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


def build(
    config: SimCLRConfig, images: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[SimCLR, SimCLRAugment]:
    """The SimCLR model and augmentation (drawing from CPU `generator`) for images like `images`."""
    mean, std = config.mean, config.std
    if mean is None or std is None:
        mean, std = channel_stats(images)
    encoder = resnet18_cifar(in_channels=images.shape[1], width=config.width)
    head = ProjectionHead(encoder.feature_dim, config.proj_hidden, config.proj_dim)
    augment = SimCLRAugment(
        images.shape[-1],
        scale=config.crop_scale,
        flip_p=config.flip_p,
        jitter=config.jitter,
        jitter_p=config.jitter_p,
        gray_p=config.gray_p,
        blur_p=config.blur_p,
        mean=mean,
        std=std,
        generator=generator,
    )
    return SimCLR(encoder, head, mean, std), augment


def _precision(config: SimCLRConfig, dev: torch.device) -> torch.dtype:
    """The autocast dtype of a run on `dev`: the configured one, or the device's best for "auto"."""
    if config.precision == "auto":
        return autocast_dtype(dev)
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.precision]


def _schedule(config: SimCLRConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def configure_optimizer(model: nn.Module, config: SimCLRConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; weight decay on weight matrices and kernels only."""
    # No weight decay on BatchNorm weights and biases (1-D tensors): decaying them only fights the
    # normalisation and costs accuracy.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


def checkpoint_dir(drive: Path = DRIVE) -> Path:
    """Where long runs keep checkpoints: `learning-at-scale/` on Google Drive when it is mounted
    (a recycled Colab runtime resumes from there), else the course data cache."""
    if not drive.is_dir():
        return cache_dir()
    folder = drive / "learning-at-scale"
    folder.mkdir(exist_ok=True)
    return folder


def _save_atomic(state: dict, path: Path) -> None:
    part = path.with_name(path.name + ".part")
    torch.save(state, part)
    os.replace(part, path)  # a disconnect mid-save leaves the previous checkpoint intact


def _check_images(name: str, images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        got = (
            f"{images.dtype} tensor of shape {tuple(images.shape)}"
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        raise ValueError(f"{name} must be a uint8 (N, C, H, W) tensor, got {got}")


def knn_monitor(
    model: SimCLR,
    monitor: tuple[torch.Tensor, ...],
    k: int,
    temperature: float,
    dtype: torch.dtype = torch.float32,
) -> float:
    """kNN accuracy of the encoder's features: train images as the memory bank, test as queries.

    `dtype`: the autocast dtype of the encoder's forward passes (the training run's precision).
    """
    train_x, train_y, test_x, test_y = monitor
    # Under the training precision: on a T4 an fp32 pass over CIFAR-10's 60,000 images takes about
    # 30 s, longer than the training epoch it checks (about 21 s in fp16); fp16 takes about 4 s.
    bank = extract_features(model.encoder, train_x, preprocess=model.normalize, dtype=dtype)
    query = extract_features(model.encoder, test_x, preprocess=model.normalize, dtype=dtype)
    return knn_accuracy(bank, train_y, query, test_y, k=k, temperature=temperature)


def _epoch_batches(
    data: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """This rank's full batches of one epoch: one permutation shared by all ranks (same generator
    state), cut into disjoint equal shards, one per rank."""
    world, rank = distributed.world_size(), distributed.rank()
    order = torch.randperm(len(data), generator=generator)
    per_rank = len(data) // world
    shard = order[rank * per_rank : (rank + 1) * per_rank].to(data.device)
    for (index,) in batches(shard, batch_size=batch_size, shuffle=False, drop_last=True):
        yield data[index]


def train_simclr(
    config: SimCLRConfig,
    images: torch.Tensor,
    *,
    monitor: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    on_epoch: Callable[[list[dict[str, float]]], None] | None = None,
) -> SimCLRRun:
    """Pretrain SimCLR on uint8 `images`; `monitor` = (train_x, train_y, test_x, test_y) for kNN.

    Under an initialised process group (see `distributed.setup`) every rank passes the same images
    and trains data-parallel; the kNN monitor and the checkpoint run on rank 0, whose history
    alone has the "knn" column. One process gives exactly the results it gave before DDP existed.
    """
    _check_images("images", images)
    world, rank = distributed.world_size(), distributed.rank()
    if config.batch_size > len(images) // world:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be <= the number of images per process "
            f"({len(images)} images / {world} processes = {len(images) // world})"
        )
    if monitor is not None:
        if len(monitor) != 4:
            raise ValueError("monitor must be (train_x, train_y, test_x, test_y)")
        _check_images("monitor train_x", monitor[0])
        _check_images("monitor test_x", monitor[2])
    dev = device()
    if config.sync_bn and world > 1 and dev.type != "cuda":
        raise ValueError(
            "sync_bn=True needs one CUDA GPU per process: torch's SyncBatchNorm does not run on "
            f"{dev.type}; use sync_bn=False (per-process BatchNorm statistics)"
        )
    amp_dtype = _precision(config, dev)

    seed_everything(config.seed)  # the model's initial weights: the same on every rank
    # Augmentations draw on the CPU, from a stream of their own on each rank.
    augment_rng = torch.Generator().manual_seed(config.seed + 1 + rank)
    model, augment = build(config, images, augment_rng)
    if config.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # global BN (SimCLR's choice)
    model = model.to(dev, memory_format=memory_format(dev))  # channels_last on CUDA only
    augment = augment.to(dev)
    shuffle_rng = torch.Generator().manual_seed(config.seed)  # the same on every rank
    data = images.to(dev)  # the whole set lives on the device: batches are index slices, no workers
    if monitor is not None:
        monitor = tuple(t.to(dev) for t in monitor)

    steps_per_epoch = len(data) // world // config.batch_size  # drop_last: full batches only
    optimizer = configure_optimizer(model, config)
    for group in optimizer.param_groups:  # linear scaling rule: lr follows the global batch
        group["lr"] = config.lr * world
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps_per_epoch))
    # fp16 needs loss scaling to keep small gradients representable; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    history: list[dict[str, float]] = []
    start_epoch = 0

    path = Path(config.checkpoint) if config.checkpoint else None
    if path is not None and path.exists():
        state = torch.load(path, map_location=dev, weights_only=False)
        saved = SimCLRConfig(**state["config"])
        differ = [
            f.name
            for f in fields(SimCLRConfig)
            if f.name not in RESUMABLE_ACROSS and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if differ:
            raise ValueError(
                f"checkpoint {path} was written with a different config ({', '.join(differ)}): "
                "use the same config to resume, or another checkpoint path to start afresh"
            )
        if len(state["augment_rng"]) != world:
            raise ValueError(
                f"checkpoint {path} was written by {len(state['augment_rng'])} processes, this run "
                f"has {world}: resume with the same number of processes"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # Saved without loss scaling (bf16 or fp32): an fp16 run starts from a fresh scale. Saved
        # under fp16 and resumed without it: the disabled scaler ignores the state.
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        shuffle_rng.set_state(state["shuffle_rng"].cpu())
        augment_rng.set_state(state["augment_rng"][rank].cpu())  # every rank its own stream
        history, start_epoch = state["history"], state["epoch"]

    # DDP after loading: it broadcasts rank 0's weights, then all-reduces (averages) gradients.
    step_model = model
    if world > 1:
        ids = [torch.cuda.current_device()] if dev.type == "cuda" else None  # set by setup()
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = []
        bar = tqdm(
            _epoch_batches(data, config.batch_size, shuffle_rng),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and distributed.is_main()),
            leave=False,
        )
        for step, x in enumerate(bar):
            # Two independent views of every image, augmented on the device in whole-batch ops.
            views = torch.cat([augment(x), augment(x)]).contiguous(memory_format=memory_format(dev))
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                _, z = step_model(views)  # one forward over 2B views: BatchNorm sees both
            if not torch.isfinite(z).all():  # one device sync per step; nt_xent checks too
                raise FloatingPointError(
                    f"SimCLR projections became non-finite at epoch {epoch + 1}, step {step + 1}, "
                    f"under {str(amp_dtype).removeprefix('torch.')} precision (lr "
                    f"{scheduler.get_last_lr()[0]:.3g}). Lower lr, raise temperature or set "
                    "precision='fp32', and start again: the checkpoint holds the last good epoch."
                )
            z1, z2 = z.float().chunk(2)  # the loss in fp32: logsumexp over 2B-1 terms
            # gather: negatives from every rank's views (identity on one process)
            loss = nt_xent(z1, z2, temperature=config.temperature, gather=True)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.detach())
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "loss": distributed.mean_over_ranks(torch.stack(losses).mean()).item(),
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "images_per_s": steps_per_epoch * config.batch_size * world / seconds,
        }
        if monitor is not None and distributed.is_main():
            row["knn"] = knn_monitor(
                model, monitor, config.knn_k, config.knn_temperature, dtype=amp_dtype
            )
        history.append(row)
        augment_states = distributed.all_gather_object(
            augment_rng.get_state()
        )  # every rank takes part
        if path is not None and distributed.is_main():
            _save_atomic(
                {
                    "epoch": epoch + 1,
                    "config": asdict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "shuffle_rng": shuffle_rng.get_state(),
                    "augment_rng": augment_states,  # one per rank
                    "history": history,
                },
                path,
            )
        distributed.barrier()  # no rank moves on (or reads the file) before it is written
        if on_epoch is not None:
            on_epoch(history)
    return SimCLRRun(model, augment, history)


# ---- the supervised baseline ---------------------------------------------------------------------


@dataclass
class SupervisedRun:
    """What `train_supervised` returns: the classifier at its best validation accuracy, and history.

    `model` is a `SimCLR` container whose head is a linear classifier: `model(x)` gives
    (features, logits) and `model.normalize` prepares uint8 images, as for a SimCLR model.
    """

    model: SimCLR
    history: list[dict[str, float]]
    dtype: torch.dtype = torch.float32  # the autocast dtype it was trained (and is evaluated) in

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Accuracy of the classifier on uint8 `images`."""
        head = nn.Sequential(self.model.encoder, self.model.head)
        logits = extract_features(head, images, preprocess=self.model.normalize, dtype=self.dtype)
        return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


def train_supervised(
    config: SimCLRConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    lr: float = 1e-3,
    eval_every: int = 25,
    patience: int = 6,
    max_steps: int = 3000,
) -> SupervisedRun:
    """Train config's ResNet from scratch with cross-entropy on its augmentations, under config's
    precision (as `train_simclr`); early stopping.

    Every `eval_every` steps the validation accuracy is measured; training stops after `patience`
    evaluations without improvement and the weights of the best evaluation are returned.
    """
    _check_images("images", images)
    _check_images("val_images", val_images)
    for name, value in (
        ("eval_every", eval_every),
        ("patience", patience),
        ("max_steps", max_steps),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    dev = device()
    seed_everything(config.seed)
    model, augment = build(config, images, torch.Generator().manual_seed(config.seed + 1))
    num_classes = int(max(labels.max(), val_labels.max())) + 1
    model.head = nn.Linear(model.encoder.feature_dim, num_classes)
    model, augment = model.to(dev), augment.to(dev)
    x, y = images.to(dev), labels.to(dev)
    amp_dtype = _precision(config, dev)  # the same mixed precision as SimCLR pretraining
    run = SupervisedRun(model, [], amp_dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    shuffle_rng = torch.Generator().manual_seed(config.seed)
    best, best_state, waited, step = -1.0, None, 0, 0
    while step < max_steps and waited < patience:
        model.train()
        for xb, yb in batches(
            x, y, batch_size=min(config.batch_size, len(x)), generator=shuffle_rng
        ):
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                logits = model.head(model.encoder(augment(xb)))
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if step % eval_every == 0 or step == max_steps:
                val = run.accuracy(val_images, val_labels)
                run.history.append({"step": step, "loss": loss.item(), "val_accuracy": val})
                if val > best:
                    best, waited = val, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    waited += 1
                model.train()
                if waited >= patience or step == max_steps:
                    break
    model.load_state_dict(best_state)
    return run


def _config_parser() -> argparse.ArgumentParser:
    """Command-line flags: every SimCLRConfig field (--batch-size for batch_size) plus the data."""
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.train",
        description=(
            "SimCLR pretraining. One process: python -m course_utils.train --dataset digits ...; "
            "data-parallel: torchrun --nproc_per_node=N -m course_utils.train ... "
            "(--batch-size is per process; lr is scaled by N)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=IMAGE_SETS, default="cifar10", help="image set")
    parser.add_argument(
        "--history", default=None, help="write the per-epoch history here as JSON (rank 0)"
    )
    parser.add_argument(
        "--knn", action=argparse.BooleanOptionalAction, default=True, help="kNN monitor each epoch"
    )
    defaults = SimCLRConfig()
    for f in fields(SimCLRConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        help_text = f"SimCLRConfig.{f.name}"
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif "tuple" in str(
            f.type
        ):  # crop_scale, jitter: a fixed count; mean, std: one per channel
            count = "+" if "..." in str(f.type) else str(f.type).count("float")
            parser.add_argument(flag, type=float, nargs=count, default=default, help=help_text)
        else:
            kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
            choices = PRECISIONS if f.name == "precision" else None
            parser.add_argument(flag, type=kind, default=default, choices=choices, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train SimCLR from the command line, on one process or under torchrun."""
    args = vars(_config_parser().parse_args(argv))
    dataset, history_path, knn = args.pop("dataset"), args.pop("history"), args.pop("knn")
    config = SimCLRConfig(**args)
    distributed.setup()
    try:
        with distributed.main_first():  # rank 0 downloads into the cache, the others read it
            train_x, train_y = load_images(dataset, "train")
            test_x, test_y = load_images(dataset, "test") if knn else (None, None)
        if distributed.is_main():
            print(
                f"SimCLR on {dataset}: {len(train_x)} images, {distributed.world_size()} "
                f"process(es) x batch {config.batch_size}, device {device()}",
                flush=True,
            )

        def report(history: list[dict[str, float]]) -> None:
            if distributed.is_main():
                print(json.dumps(history[-1]), flush=True)

        monitor = (train_x, train_y, test_x, test_y) if knn else None
        run = train_simclr(config, train_x, monitor=monitor, on_epoch=report)
        if history_path is not None and distributed.is_main():
            Path(history_path).write_text(json.dumps(run.history, indent=1))
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
