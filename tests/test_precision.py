"""Mixed precision: bf16 only where a GPU runs it natively, fp16 below, fp32 on the CPU."""

import pytest
import torch

from course_utils import runtime, train

# (name, compute capability, the dtype it runs natively in its tensor cores)
GPUS = [
    ("T4", (7, 5), torch.float16),
    ("V100", (7, 0), torch.float16),
    ("A100", (8, 0), torch.bfloat16),
    ("H100", (9, 0), torch.bfloat16),
]


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend a CUDA GPU with a given capability is present; bf16 'supported' by emulation."""

    def install(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # what torch.cuda.is_bf16_supported() answers on a T4 or V100: emulation counts as support
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)

    return install


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS, ids=[g[0] for g in GPUS])
def test_autocast_dtype_follows_native_support(fake_gpu, name, capability, expected) -> None:
    fake_gpu(capability)
    assert runtime.autocast_dtype("cuda") == expected
    assert runtime.autocast_dtype(torch.device("cuda", 0)) == expected


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS, ids=[g[0] for g in GPUS])
def test_simclr_auto_precision_uses_fp16_below_ampere(fake_gpu, name, capability, expected):
    fake_gpu(capability)
    config = train.SimCLRConfig(precision="auto")
    assert train._precision(config, torch.device("cuda")) == expected


def test_cpu_and_mps_run_in_fp32(fake_gpu) -> None:
    fake_gpu((9, 0))  # even with a GPU present, a CPU tensor does not autocast
    assert runtime.autocast_dtype("cpu") == torch.float32
    assert runtime.autocast_dtype("mps") == torch.float32
    assert train._precision(train.SimCLRConfig(), torch.device("cpu")) == torch.float32


def test_no_cuda_means_fp32_even_for_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.autocast_dtype("cuda") == torch.float32


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)],
)
def test_an_explicit_precision_is_kept(fake_gpu, precision: str, expected) -> None:
    fake_gpu((7, 5))
    config = train.SimCLRConfig(precision=precision)
    assert train._precision(config, torch.device("cuda")) == expected


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS, ids=[g[0] for g in GPUS])
def test_lesson_amp_scales_the_loss_for_fp16_only(fake_gpu, name, capability, expected) -> None:
    """Lesson 04's loop: autocast_dtype picks the precision, grad_scaler the loss scaling."""
    fake_gpu(capability)
    dtype = runtime.autocast_dtype("cuda")
    scaler = runtime.grad_scaler("cuda", dtype)
    assert dtype == expected
    assert scaler.is_enabled() == (expected == torch.float16)  # T4/V100: fp16 + GradScaler


def test_grad_scaler_is_a_pass_through_on_the_cpu() -> None:
    scaler = runtime.grad_scaler("cpu", runtime.autocast_dtype("cpu"))
    assert not scaler.is_enabled()
    loss = torch.tensor(2.5)
    assert scaler.scale(loss) is loss  # disabled: the loss is not multiplied
    assert not runtime.grad_scaler("cpu", torch.float16).is_enabled()  # no CUDA, no scaling


def test_grad_scaler_rejects_a_non_float_dtype() -> None:
    with pytest.raises(ValueError, match="float16, bfloat16 or float32"):
        runtime.grad_scaler("cpu", torch.int8)
