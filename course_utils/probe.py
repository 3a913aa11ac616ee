"""Evaluate frozen representations: feature extraction, weighted kNN and a linear probe."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.runtime import device, eval_mode

AUTOCAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_features(name: str, f: torch.Tensor, labels_name: str, y: torch.Tensor) -> None:
    if not isinstance(f, torch.Tensor) or f.ndim != 2 or not f.is_floating_point():
        raise ValueError(f"{name} must be a 2-D float tensor (N, D), got {_describe(f)}")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype != torch.int64:
        raise ValueError(f"{labels_name} must be a 1-D int64 tensor (N,), got {_describe(y)}")
    if len(f) != len(y):
        raise ValueError(f"{name} and {labels_name} lengths differ: {len(f)} vs {len(y)}")
    if len(f) == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} must be finite, got inf or NaN features")
    if y.min() < 0:
        raise ValueError(f"{labels_name} must be class indices >= 0, got {int(y.min())}")


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def _check_pair(
    train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor
) -> None:
    _check_features("train_f", train_f, "train_y", train_y)
    _check_features("test_f", test_f, "test_y", test_y)
    if train_f.shape[1] != test_f.shape[1]:
        raise ValueError(
            f"train_f and test_f feature sizes differ: {train_f.shape[1]} vs {test_f.shape[1]}"
        )


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1024,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Features of `images` from `encoder` in eval mode, in batches, as float32 on the encoder's device.

    `dtype` is the autocast dtype of the forward passes (bf16 or fp16 run them in mixed precision,
    as in training: several times faster on a GPU's tensor cores); float32 runs them without autocast.
    A batch whose mixed-precision features are not finite is run again in float32: fp16 overflows
    past 65504, which eval-mode BatchNorm can reach after a short fp16 run. Features still not
    finite in float32 raise FloatingPointError: no accuracy is computed from them.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if dtype not in AUTOCAST_DTYPES:
        raise ValueError(f"dtype must be one of {AUTOCAST_DTYPES}, got {dtype!r}")
    param = next(encoder.parameters(), None)
    dev = param.device if param is not None else images.device

    def forward(x: torch.Tensor, precision: torch.dtype) -> torch.Tensor:
        mixed = precision != torch.float32
        with torch.autocast(dev.type, dtype=precision, enabled=mixed):
            return encoder(preprocess(x) if preprocess is not None else x.float()).float()

    # Eval mode: BatchNorm uses its running statistics, so features do not depend on the batch.
    with eval_mode(encoder):
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(dev, non_blocking=True)
            f = forward(x, dtype)
            if dtype != torch.float32 and not torch.isfinite(f).all():
                f = forward(x, torch.float32)
            if not torch.isfinite(f).all():
                raise FloatingPointError(
                    f"the encoder's float32 features of images {start}..{start + len(x) - 1} are "
                    "inf or NaN: the weights have diverged"
                )
            out.append(f)
        return torch.cat(out)


@torch.no_grad()
def knn_accuracy(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    *,
    chunk_size: int = 1024,
) -> float:
    """Test accuracy of weighted cosine kNN (votes of the k nearest weigh exp(sim / T)), on device()."""
    _check_pair(train_f, train_y, test_f, test_y)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = device()
    bank = F.normalize(train_f.to(dev).float(), dim=1)
    labels = train_y.to(dev)
    num_classes = int(max(labels.max(), test_y.max())) + 1
    k = min(k, len(bank))
    correct = 0
    # Chunks of test points bound memory to chunk_size x N_train similarities at a time.
    for start in range(0, len(test_f), chunk_size):
        query = F.normalize(test_f[start : start + chunk_size].to(dev).float(), dim=1)
        sim, index = (query @ bank.T).topk(k, dim=1)
        # exp((sim - max) / T): the same vote ratios as exp(sim / T), which overflows float32 once
        # sim / T > 88.7 (T ~ 0.01); topk sorts, so column 0 holds each row's maximum.
        weights = ((sim - sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(query), num_classes, device=dev)
        votes.scatter_add_(1, labels[index], weights)
        correct += (votes.argmax(1) == test_y[start : start + chunk_size].to(dev)).sum().item()
    return correct / len(test_f)


def linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Test accuracy of softmax regression (L-BFGS, L2 penalty) on frozen features, on device()."""
    _check_pair(train_f, train_y, test_f, test_y)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    dev = device()
    x, y = train_f.to(dev).float(), train_y.to(dev)
    # Standardise with training statistics: one regularisation strength suits any feature scale.
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    num_classes = int(max(y.max(), test_y.max())) + 1
    linear = nn.Linear(x.shape[1], num_classes).to(dev)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)  # a convex problem: start at zero, deterministic
    # Full-batch L-BFGS: no learning rate to tune and a few dozen passes over N x D features.
    optimizer = torch.optim.LBFGS(
        linear.parameters(), max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + 0.5 * weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        pred = linear((test_f.to(dev).float() - mean) / std).argmax(1)
    return (pred == test_y.to(dev)).float().mean().item()
