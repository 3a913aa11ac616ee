"""course_utils.roofline: FLOPs and bytes of a step against hand counts; scripts/estimate_gpu_time.py
estimates the sizes the lessons run."""

import re
import sys

import pytest
import torch

from course_utils import roofline
from course_utils.colab import ROOT


def test_a_matmul_costs_2mnk_flops_and_its_operands_bytes() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    cost = roofline.step_cost(lambda: a @ b)
    assert cost.flops == 2 * 8 * 16 * 4
    assert cost.bytes == (8 * 16 + 16 * 4 + 8 * 4) * 4  # read a and b, write the product


def test_views_move_no_bytes_and_elementwise_ops_read_and_write() -> None:
    x = torch.randn(32, 32)
    assert roofline.step_cost(lambda: x.view(64, 16).t().unsqueeze(0)).bytes == 0
    assert roofline.step_cost(lambda: x.t().reshape(-1)).bytes == 2 * x.numel() * 4  # a copy
    assert roofline.step_cost(lambda: x + 1).bytes == 2 * x.numel() * 4
    half = x.to(torch.float16)
    assert roofline.step_cost(lambda: half * 2).bytes == 2 * x.numel() * 2


def test_seconds_are_flops_at_the_efficient_peak_and_bytes_at_the_bandwidth() -> None:
    t4 = roofline.GPUS["T4"]
    cost = roofline.Cost(flops=65e12 * 0.15 * 2, bytes=320e9 * roofline.BANDWIDTH_EFFICIENCY * 3)
    compute, memory = roofline.seconds(cost, t4, steps=100)
    assert compute == pytest.approx(2 + 100 * t4.step_overhead_s)
    assert memory == pytest.approx(3 + 100 * t4.step_overhead_s)
    fp32, _ = roofline.seconds(cost, t4, mixed=False)
    assert fp32 == pytest.approx(2 * 65 / 8.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        roofline.seconds(roofline.Cost(-1.0, 0.0), t4)


def _gpu_size(notebook: str, name: str) -> int:
    text = (ROOT / "notebooks" / notebook).read_text()
    match = re.search(rf"{name} = P\.size\([^)]*gpu=([\d_]+)", text)
    assert match, f"{notebook}: no gpu size of {name}"
    return int(match.group(1).replace("_", ""))


def test_the_estimate_uses_the_lessons_gpu_sizes() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import estimate_gpu_time as estimate
    finally:
        sys.path.pop(0)
    lesson_04 = "04_autoregressive_perplexity.ipynb"
    lesson_05 = "05_simclr.ipynb"
    assert estimate.STEPS_04 == _gpu_size(lesson_04, "STEPS")
    assert estimate.STEPS_04 == _gpu_size(lesson_04, "MLM_STEPS")  # counted as long as the AR model
    assert estimate.BATCH_04 == _gpu_size(lesson_04, "BATCH")
    assert estimate.IGPT_STEPS_04 == _gpu_size(lesson_04, "IGPT_STEPS")
    assert estimate.EPOCHS_05 == _gpu_size(lesson_05, "EPOCHS")
    assert estimate.GRID_EPOCHS_05 == _gpu_size(lesson_05, "GRID_EPOCHS")
    assert estimate.GRID_IMAGES_05 == _gpu_size(lesson_05, "GRID_IMAGES")
