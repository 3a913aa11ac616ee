"""scripts/gpu_check.py: every check runs end to end at micro scale on the CPU (`--dry`), and its
verdicts compare a measurement with the README's estimate."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


def test_dry_run_prints_the_table_and_writes_the_report(tmp_path) -> None:
    report = tmp_path / "report.json"
    result = _run("--dry", "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "automatic precision: torch.float32" in out
    figures = {f["name"]: f for f in json.loads(report.read_text())["figures"]}
    epoch = figures["SimCLR epoch (auto: float32)"]
    assert epoch["measured"] > 0 and "kNN monitor, checkpoint" in epoch["detail"]
    assert "GradScaler skipped 0 of 8 steps" in epoch["detail"]
    assert figures["SimCLR epoch (bf16: bfloat16)"]["measured"] > 0  # the other 16-bit type
    assert figures["features finite in float32 (auto)"]["verdict"] == "True"
    assert figures["lesson 04 step"]["measured"] > 0
    for n in (32, 64):  # the script itself checks that dense and tiled give the same loss
        assert figures[f"NT-Xent N={n} dense"]["measured"] > 0
        assert figures[f"NT-Xent N={n} tiled(16)"]["measured"] > 0
    lesson = figures["lesson 02_contrastive_infonce"]
    assert lesson["measured"] > 0 and "FAILED" not in lesson["detail"]
    judged = [f["verdict"] for f in figures.values() if f["verdict"] not in ("True", "False")]
    assert set(judged) == {"not judged (dry run)"}  # micro-scale times are not held to targets
    for name in figures:
        assert re.search(rf"^{re.escape(name)}\s", out, re.MULTILINE), f"{name} not in the table"


def test_without_a_gpu_it_says_to_use_dry() -> None:
    result = _run()
    assert result.returncode == 2 and "--dry" in result.stderr


def test_verdict_confirms_within_a_quarter_above_the_estimate(gpu_check) -> None:
    assert gpu_check.verdict(12.0, 10.0, dry=False).startswith("confirms (1.20x")
    assert gpu_check.verdict(5.0, 10.0, dry=False).startswith("confirms (0.50x")
    assert gpu_check.verdict(13.0, 10.0, dry=False).startswith("refutes (1.30x")
    assert gpu_check.verdict(13.0, None, dry=False) == "no README estimate for this GPU"


def test_lesson_estimates_are_the_readmes(gpu_check) -> None:
    readme = (ROOT / "README.md").read_text()
    for number, minutes in gpu_check.LESSON_MINUTES.items():
        row = next(
            line
            for line in readme.splitlines()
            if line.startswith(f"| {number} ") and " ~" in line and " min" in line
        )
        for gpu, value in minutes.items():
            assert f"{gpu} ~{value:g} min" in row, f"README row {number} lacks {gpu} ~{value:g} min"


def test_per_step_costs_match_the_estimate_script(gpu_check) -> None:
    # the constants the script compares with are what estimate_gpu_time measures (a fresh count)
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import estimate_gpu_time as estimate
    finally:
        sys.path.pop(0)
    torch.set_num_threads(1)
    _, forward = estimate.linear_in_batch(estimate.encoder_forward(64, 32))
    assert forward.flops == pytest.approx(gpu_check.ENCODER_IMAGE.flops, rel=0.01)
    assert forward.bytes == pytest.approx(gpu_check.ENCODER_IMAGE.bytes, rel=0.01)
