"""Roofline estimates of GPU time: a step's FLOPs and the bytes its kernels move, at published peaks.

`step_cost` counts both while running a step anywhere (the CPU will do): FLOPs with torch's
FlopCounterMode, bytes as the sum of every aten op's tensor inputs and outputs, which is what an
unfused eager kernel reads from and writes to GPU memory. A GPU needs the compute time (FLOPs at
the fraction of peak its small eager kernels reach) and the memory time (bytes at a fraction of the
bandwidth); the slower of the two is the estimate. These fractions are assumptions until
scripts/gpu_check.py measures them on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

# Memory-bound kernels (elementwise, normalisation, optimizer) reach about 70% of the bandwidth.
BANDWIDTH_EFFICIENCY = 0.7


@dataclass(frozen=True)
class GPU:
    """Published peaks of one GPU (16-bit tensor-core and fp32 TFLOP/s, memory GB/s) and the
    assumed fraction of the compute peak the course's small models reach in eager PyTorch."""

    name: str
    tflops_16bit: float
    tflops_fp32: float
    bandwidth_gbs: float
    compute_efficiency: float
    step_overhead_s: float  # kernel launches and Python per optimizer step


GPUS = {
    # NVIDIA T4 datasheet: 65 TFLOP/s fp16 (tensor cores), 8.1 fp32, 320 GB/s GDDR6. Small
    # mixed-precision ResNets reach about 15% of its 70 W-capped fp16 peak.
    "T4": GPU("T4", 65.0, 8.1, 320.0, 0.15, 0.005),
    # NVIDIA A100 40 GB (SXM) datasheet: 312 TFLOP/s bf16, 19.5 fp32, 1,555 GB/s HBM2
    "A100": GPU("A100", 312.0, 19.5, 1555.0, 0.20, 0.003),
}


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes moved by one call of a step."""

    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def __mul__(self, times: float) -> Cost:
        return Cost(self.flops * times, self.bytes * times)


class _ByteCounter(TorchDispatchMode):
    """Sums the bytes of every aten op's tensor inputs and outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._overloadpacket not in _VIEWS:
            leaves = tree_flatten((args, kwargs or {}, out))[0]
            self.bytes += sum(
                t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor)
            )
        return out


# Ops that only relabel memory (no kernel, no traffic).
_VIEWS = {
    getattr(torch.ops.aten, name)
    for name in (
        "view",
        "_unsafe_view",
        "reshape",
        "t",
        "transpose",
        "permute",
        "expand",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "as_strided",
        "alias",
        "detach",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "_reshape_alias",
    )
    if hasattr(torch.ops.aten, name)
}


def step_cost(step: Callable[[], object]) -> Cost:
    """FLOPs and bytes moved of one call of `step` (run once, here)."""
    bytes_counter = _ByteCounter()
    with FlopCounterMode(display=False) as flops, bytes_counter:
        step()
    return Cost(float(flops.get_total_flops()), float(bytes_counter.bytes))


def seconds(cost: Cost, gpu: GPU, *, steps: int = 0, mixed: bool = True) -> tuple[float, float]:
    """(compute-bound, memory-bound) seconds of `cost` on `gpu`, each plus `steps` step overheads;
    `mixed`: matrix products in 16 bits (fp16 or bf16 autocast), else fp32."""
    if cost.flops < 0 or cost.bytes < 0 or steps < 0:
        raise ValueError(f"cost and steps must be >= 0, got {cost} and {steps}")
    peak = (gpu.tflops_16bit if mixed else gpu.tflops_fp32) * 1e12 * gpu.compute_efficiency
    bandwidth = gpu.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY
    overhead = steps * gpu.step_overhead_s
    return cost.flops / peak + overhead, cost.bytes / bandwidth + overhead
