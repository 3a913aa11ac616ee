"""Mixed precision: bf16 only where a GPU runs it natively, fp16 below, fp32 on the CPU."""

from dataclasses import replace

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


def _tiny_run_inputs() -> tuple[train.SimCLRConfig, torch.Tensor, tuple[torch.Tensor, ...]]:
    """A tiny SimCLR config, 64 training images and a kNN monitor set (digits, offline)."""
    from course_utils.data import load_images

    images, labels = load_images("digits", "train")
    config = train.SimCLRConfig(
        epochs=1, batch_size=32, width=4, proj_hidden=8, proj_dim=4, knn_k=5, progress=False
    )
    return config, images[:64], (images[:64], labels[:64], images[64:96], labels[64:96])


def _encoder_output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Record the dtype of every output of the encoder's first convolution from now on."""
    seen: list[torch.dtype] = []
    first_conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_knn_monitor_runs_the_encoder_in_the_given_precision(dtype) -> None:
    config, images, monitor = _tiny_run_inputs()
    model, _ = train.build(config, images)
    seen = _encoder_output_dtypes(model)
    accuracy = train.knn_monitor(model, monitor, k=5, temperature=0.1, dtype=dtype)
    assert 0 <= accuracy <= 1
    assert seen and set(seen) == {dtype}  # bf16 convolutions under autocast; fp32 without it


@pytest.mark.parametrize(
    ("precision", "expected"), [("auto", torch.float32), ("bf16", torch.bfloat16)]
)
def test_train_simclr_monitors_in_its_training_precision(monkeypatch, precision, expected) -> None:
    # On the CPU "auto" is fp32 (no autocast); an explicit bf16 run monitors in bf16 too, as a run
    # on a T4 ("auto" = fp16, see above) monitors in fp16.
    config, images, monitor = _tiny_run_inputs()
    calls: list[torch.dtype] = []
    original = train.knn_monitor

    def spy(model, monitor, k, temperature, dtype=torch.float32):
        calls.append(dtype)
        return original(model, monitor, k, temperature, dtype=dtype)

    monkeypatch.setattr(train, "knn_monitor", spy)
    run = train.train_simclr(replace(config, precision=precision), images, monitor=monitor)
    assert calls == [expected]
    assert 0 <= run.history[0]["knn"] <= 1


def test_extract_features_refuses_an_unknown_dtype() -> None:
    from course_utils.probe import extract_features

    with pytest.raises(ValueError, match="dtype"):
        extract_features(torch.nn.Flatten(), torch.zeros(2, 1, 4, 4), dtype=torch.int8)


def test_train_supervised_trains_and_evaluates_in_the_configured_precision(monkeypatch) -> None:
    config, images, (_, labels, val_x, val_y) = _tiny_run_inputs()
    seen: list[tuple[bool, torch.dtype]] = []  # (training mode, dtype) of each forward
    original = train.build

    def build_and_watch(*args, **kwargs):
        model, augment = original(*args, **kwargs)
        first_conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_hook(
            lambda module, args, out: seen.append((module.training, out.dtype))
        )
        return model, augment

    monkeypatch.setattr(train, "build", build_and_watch)
    run = train.train_supervised(
        replace(config, precision="bf16"), images, labels, val_x, val_y, eval_every=1, max_steps=2
    )
    run.accuracy(val_x, val_y)
    # training steps and validation passes both ran, all under bf16 autocast
    assert {mode for mode, _ in seen} == {True, False}
    assert {dtype for _, dtype in seen} == {torch.bfloat16}
    assert run.dtype == torch.bfloat16


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


def _overflowing_model():
    """A digits SimCLR model whose eval-mode features reach about 7e4: finite in fp32, past fp16's
    65504 (the state the issue measured after one fp16 epoch, where features reached 1.6e5)."""
    config, images, monitor = _tiny_run_inputs()
    model, _ = train.build(config, images)
    last_bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():
        last_bn.weight.mul_(1e8)
    return model, monitor


def test_fp16_overflowing_features_are_recomputed_in_fp32() -> None:
    from course_utils.probe import extract_features

    model, (train_x, *_) = _overflowing_model()
    with runtime.eval_mode(model.encoder), torch.autocast("cpu", dtype=torch.float16):
        raw = model.encoder(model.normalize(train_x))
    assert not torch.isfinite(raw).all()  # fp16 autocast overflows on these weights
    fp32 = extract_features(model.encoder, train_x, preprocess=model.normalize)
    assert torch.isfinite(fp32).all() and fp32.abs().max() > 65504
    fp16 = extract_features(model.encoder, train_x, preprocess=model.normalize, dtype=torch.float16)
    torch.testing.assert_close(fp16, fp32)


def test_knn_monitor_in_fp16_reads_what_fp32_reads_despite_an_overflow() -> None:
    model, monitor = _overflowing_model()
    fp32 = train.knn_monitor(model, monitor, k=5, temperature=0.1)
    assert train.knn_monitor(model, monitor, k=5, temperature=0.1, dtype=torch.float16) == fp32


def test_diverged_weights_raise_instead_of_an_accuracy() -> None:
    from course_utils.probe import extract_features

    model, (train_x, *_) = _overflowing_model()
    with torch.no_grad():
        next(model.encoder.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="inf or NaN"):
        extract_features(model.encoder, train_x, preprocess=model.normalize, dtype=torch.float16)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_evaluation_refuses_non_finite_features(bad: float) -> None:
    from course_utils.probe import knn_accuracy, linear_probe

    f, y = torch.randn(8, 4), torch.arange(8) % 2
    broken = f.clone()
    broken[3, 1] = bad
    for evaluate in (knn_accuracy, linear_probe):
        with pytest.raises(ValueError, match="train_f must be finite"):
            evaluate(broken, y, f, y)
        with pytest.raises(ValueError, match="test_f must be finite"):
            evaluate(f, y, broken, y)
