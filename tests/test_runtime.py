"""course_utils.runtime: device, profile, seeding, measurement."""

import random

import numpy as np
import pytest
import torch

from course_utils import runtime


def test_device_is_cpu_without_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.device() == torch.device("cpu")


def test_device_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device() == torch.device("cuda")


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu", " GPU "])
def test_profile_from_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("COURSE_PROFILE", name)
    assert runtime.profile().name == name.strip().lower()


@pytest.mark.parametrize(("cuda", "expected"), [(True, "gpu"), (False, "cpu")])
def test_profile_auto(monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str) -> None:
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert runtime.profile().name == expected


def test_unknown_profile_lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_PROFILE", "tpu")
    with pytest.raises(ValueError, match="ci, cpu, gpu.*'tpu'"):
        runtime.profile()


def test_profile_is_frozen_and_picks() -> None:
    p = runtime.Profile("ci")
    assert p.pick(ci=1, cpu=2, gpu=3) == 1
    assert runtime.Profile("gpu").pick(ci=1, cpu=2, gpu=3) == 3
    with pytest.raises(AttributeError):
        p.name = "gpu"  # type: ignore[misc]
    with pytest.raises(ValueError, match="profile name"):
        runtime.Profile("laptop")


def test_seed_everything_repeats_every_generator() -> None:
    def draw() -> tuple:
        g = runtime.seed_everything(7)
        return (
            random.random(),
            np.random.rand(),
            torch.rand(1).item(),
            torch.rand(1, generator=g).item(),
        )

    first, second = draw(), draw()
    assert first == second
    runtime.seed_everything(8)
    assert random.random() != first[0]


def test_seed_must_be_int() -> None:
    with pytest.raises(TypeError, match="seed"):
        runtime.seed_everything(1.5)  # type: ignore[arg-type]


def test_measure_reports_time_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    with runtime.measure("alloc") as m:
        x = torch.ones(64, 2**20 // 8)  # 64 MiB touched
        del x
    assert m.seconds > 0
    assert m.peak_bytes > 64 * 2**20
    assert "alloc:" in capsys.readouterr().out


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_training_mode(training: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(training)
    with runtime.eval_mode(model) as m:
        assert m is model and not model.training and not model[0].training
    assert model.training == training and model[0].training == training
    with pytest.raises(RuntimeError), runtime.eval_mode(model):
        raise RuntimeError("boom")
    assert model.training == training


def test_quiet_transformers_restores_progress_bars() -> None:
    from transformers.utils import logging

    logging.enable_progress_bar()
    with runtime.quiet_transformers():
        assert not logging.is_progress_bar_enabled()
    assert logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    with runtime.quiet_transformers():
        pass
    assert not logging.is_progress_bar_enabled()
    logging.enable_progress_bar()
