"""scripts/gpu_check.py: every check runs end to end at micro scale on the CPU (`--dry`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env
    )


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1).replace(",", ""))


def test_dry_run_measures_every_figure() -> None:
    result = _run("--dry")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "automatic precision: torch.float32" in out
    assert _number(r"SimCLR epoch: ([\d.]+) s for 64 images", out) > 0
    assert 0 < _number(r"augmentation share of a step: ([\d.]+)%", out) < 100
    for n in (32, 64):  # the script itself checks that dense and tiled give the same loss
        assert re.search(rf"NT-Xent N={n}: dense [\d.]+ ms.*tiled\(16\) [\d.]+ ms.*same loss", out)
    assert _number(r"pseudo-log-likelihood: ([\d,]+) scored tokens/s", out) > 0
    assert len(re.findall(r"perplexity: [\d,]+ tokens/s", out)) == 2
    assert out.count("(dry run: not judged)") == 2  # micro-scale times are not held to targets


def test_without_a_gpu_it_says_to_use_dry() -> None:
    result = _run()
    assert result.returncode == 2 and "--dry" in result.stderr
