"""Conv nets use channels_last on CUDA only: on the CPU it buys nothing and hits a torch bug.

The torch bug (torch 2.14.1, seen on one CPU model of the CI machines, not on every one): the
backward of a stride-2 1x1 convolution with 4 input channels in channels_last corrupts the heap
and kills the process (`double free or corruption (!prev)`, exit 134 or 139). Minimal repro:

    import torch
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(256, 4, 16, 16, requires_grad=True).contiguous(memory_format=torch.channels_last)
    conv(x).square().sum().backward()

It hit the smoke runs of lessons 01 and 05 (ResNet width 4: the shortcut of the first downsampling
block). The tests below run the library's own path in a fresh process, so a crash fails the test
instead of the whole run; on a CPU where the bug fires they fail with the old channels_last code.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from course_utils.runtime import memory_format

CONV_BACKWARD = """
import torch
from course_utils.runtime import memory_format

dev = torch.device("cpu")
conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=memory_format(dev))
for _ in range(20):
    x = torch.randn(256, 4, 16, 16, requires_grad=True).contiguous(memory_format=memory_format(dev))
    conv(x).square().sum().backward()
print("ok", x.is_contiguous())
"""

SIMCLR_WIDTH_4 = """
import torch
from course_utils.train import SimCLRConfig, train_simclr

images = torch.randint(0, 256, (256, 3, 16, 16), dtype=torch.uint8)
run = train_simclr(SimCLRConfig(width=4, batch_size=64, epochs=1, progress=False), images)
print("ok", len(run.history))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COURSE_PROFILE": "ci"},
    )


@pytest.mark.parametrize("code", [CONV_BACKWARD, SIMCLR_WIDTH_4], ids=["conv1x1_s2", "simclr_w4"])
def test_cpu_path_survives_the_channels_last_bug(code: str) -> None:
    done = _run(code)
    assert done.returncode == 0 and done.stdout.startswith("ok"), (
        f"exit {done.returncode}: {done.stderr[-2000:]}"
    )


def test_channels_last_on_cuda_only() -> None:
    assert memory_format("cpu") == torch.contiguous_format
    assert memory_format(torch.device("cuda", 0)) == torch.channels_last
    assert memory_format("mps") == torch.contiguous_format


def test_cpu_training_keeps_nchw() -> None:
    from course_utils.train import SimCLRConfig, build

    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    model, _ = build(SimCLRConfig(width=4, batch_size=8), images)
    x = model.normalize(images)
    assert x.is_contiguous(), "normalised CPU batches must stay NCHW"
    assert all(p.is_contiguous() for p in model.parameters())
