"""Data parallelism on torch.distributed: torchrun's environment, who am I, and a gather with gradients.

The same recipe runs on one process or N: every helper here is the identity (or rank 0 of 1) when no
process group is initialised, so single-process code needs no branch.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from course_utils.runtime import device

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_initialized() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that logs, evaluates and writes checkpoints."""
    return rank() == 0


def setup() -> torch.device:
    """Join the process group torchrun describes in the environment; return this process's device.

    NCCL and one GPU per process (GPU `LOCAL_RANK`) when CUDA is present, gloo on the CPU otherwise.
    Without torchrun's variables (a plain `python` run) nothing is initialised: one process.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if len(missing) == len(TORCHRUN_VARIABLES):
        return device()
    if missing:
        raise ValueError(
            f"the environment has some of torchrun's variables but not {', '.join(missing)}: "
            "start the script with `torchrun --nproc_per_node=N -m ...`"
        )
    if torch.cuda.is_available():
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPUs: "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(local)  # device() ("cuda") now means this process's GPU
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        return torch.device("cuda", local)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def cleanup() -> None:
    """Leave the process group, if this process is in one."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for without a process group)."""
    if is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run a block on rank 0 before the other ranks (a download that fills a shared cache)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def all_gather_object(obj: object) -> list:
    """`obj` of every rank, in rank order (`[obj]` when there is one process)."""
    if world_size() == 1:
        return [obj]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` over all ranks (a copy; `value` itself when there is one process)."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / world_size()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: the ranks' tensors concatenated. Backward: each rank gets the gradient of the sum
    of all ranks' losses with respect to its own slice."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Rank r's loss depends on every rank's slice: sum the gradients of all ranks' losses, then
        # keep this rank's slice. DDP later averages parameter gradients over ranks, which turns
        # this sum into the gradient of the mean loss: the single-process gradient.
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total.chunk(world_size())[rank()]


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """`t` of every rank concatenated along dim 0 in rank order, with gradients flowing back to
    each rank's own slice; `t` itself without a process group or with one process.

    Every rank must pass a tensor of the same shape and dtype.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if world_size() == 1:
        return t
    return _AllGatherWithGrad.apply(t)


class NotEnoughGPUsError(ValueError):
    """A torchrun launch asks for more processes than this machine has GPUs."""


def torchrun_command(nproc: int, module: str, **flags: object) -> list[str]:
    """torchrun (with this Python) running `python -m module` on `nproc` processes of this machine;
    `flags` become `--flag-name value`, True `--flag-name`, False `--no-flag-name`."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc must be an int >= 1, got {nproc!r}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", module]
    for name, value in flags.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            command.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            command += [f"--{flag}", str(value)]
    return command


def check_gpus(nproc: int) -> None:
    """Raise NotEnoughGPUsError when CUDA is present with fewer GPUs than `nproc` (NCCL needs one
    per process); without CUDA, processes run on the CPU with gloo, any number of them."""
    if not torch.cuda.is_available() or torch.cuda.device_count() >= nproc:
        return
    raise NotEnoughGPUsError(
        f"this launch runs {nproc} processes, one GPU each, and this machine has "
        f"{torch.cuda.device_count()} GPU(s). On Kaggle choose Settings > Accelerator > "
        f"'GPU T4 x2'; with one GPU, train on one process: python -m course_utils.train ..."
    )


def launch(nproc: int, module: str, **flags: object) -> None:
    """Run `torchrun_command(nproc, module, **flags)` from a notebook cell, as `!torchrun ...`
    would: check the GPUs first, print the command and its output as it comes, raise
    RuntimeError with the output's end when it fails."""
    command = torchrun_command(nproc, module, **flags)
    check_gpus(nproc)
    print("$ torchrun " + shlex.join(command[4:]), flush=True)
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            tail.append(line)
    if process.returncode != 0:
        raise RuntimeError(
            f"torchrun exited with status {process.returncode}; its last lines:\n{''.join(tail)}"
        )
