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


@pytest.mark.parametrize(("value", "smoke"), [("1", True), ("0", False), ("", False)])
def test_smoke_flag_from_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, smoke: bool
) -> None:
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    monkeypatch.setenv("COURSE_SMOKE", value)
    p = runtime.profile()
    assert (p.name, p.smoke) == ("gpu", smoke)
    assert ("smoke run" in str(p)) == smoke


def test_smoke_flag_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SMOKE", "yes please")
    with pytest.raises(ValueError, match="COURSE_SMOKE must be 0 or 1"):
        runtime.profile()


def test_smoke_run_keeps_choices_and_shrinks_sizes() -> None:
    smoke = runtime.Profile("gpu", smoke=True)
    assert smoke.pick(ci="digits", cpu="digits", gpu="cifar10") == "cifar10"  # the gpu code path
    assert smoke.size(ci=300, cpu=600, gpu=2000, smoke=5) == 5
    assert smoke.size(ci=300, cpu=600, gpu=2000) == 300  # default: the ci size
    assert smoke.size(ci=(1, 2), cpu=(3, 4), gpu=(5, 6), smoke=None) == (1, 2)
    real = runtime.Profile("gpu")
    assert real.size(ci=300, cpu=600, gpu=2000, smoke=5) == 2000
    assert runtime.Profile("cpu").size(ci=300, cpu=600, gpu=2000, smoke=5) == 600


def test_claims_fail_a_real_run_and_are_reported_in_a_smoke_run(capsys) -> None:
    with pytest.raises(AssertionError, match="probe beats chance"):
        with runtime.Profile("ci").claims():
            assert 0.1 > 0.5, "probe beats chance"
    with runtime.Profile("ci", smoke=True).claims():
        assert 0.1 > 0.5, "probe beats chance"
    assert "claim not checked at this size (probe beats chance)" in capsys.readouterr().out
    with pytest.raises(ValueError):  # only failed asserts are forgiven, never errors
        with runtime.Profile("ci", smoke=True).claims():
            raise ValueError("a crash")


def test_standin_only_under_the_test_variable(monkeypatch, tmp_path) -> None:
    (tmp_path / "hub" / "org" / "model" / "main").mkdir(parents=True)
    monkeypatch.delenv("COURSE_STANDINS", raising=False)
    assert runtime.standin("hub", "org", "model", "main") is None
    monkeypatch.setenv("COURSE_STANDINS", str(tmp_path))
    assert runtime.standin("hub", "org", "model", "main") == tmp_path / "hub/org/model/main"
    assert runtime.standin("hub", "org", "other", "main") is None


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
