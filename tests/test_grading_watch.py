"""The sandbox's call monitor (`grading.watch`) and the forbidden paths the grader reads from rule cases.

The monitor must note a call into forbidden library code however the function was reached, stay
silent for an answer that only uses what is allowed, and note any attempt to switch it off. End to
end, tests/test_grading_redteam.py grades a q1 that delegates through a patched torch function.
"""

from __future__ import annotations

import base64
import importlib
import sys
import threading
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from course_utils.grading import verdict, watch
from course_utils.losses import info_nce

EX1_Q1 = [
    "course_utils.losses",
    "torch.nn.functional.cross_entropy",
    "torch.nn.CrossEntropyLoss",
]


def _own(query: torch.Tensor, keys: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def _computed_name(query, keys, temperature=0.1):
    module = importlib.import_module("course_utils." + "losses")
    return getattr(module, "info" + "_nce")(query, keys, temperature=temperature)


def _exec_encoded(query, keys, temperature=0.1):
    scope: dict = {}
    code = base64.b64encode(b"from course_utils.losses import info_nce as f").decode()
    exec(base64.b64decode(code), scope)
    return scope["f"](query, keys, temperature=temperature)


_copy = types.FunctionType(
    info_nce.__code__, info_nce.__globals__, "renamed", info_nce.__defaults__
)
_copy.__kwdefaults__ = info_nce.__kwdefaults__


def _copied_function(query, keys, temperature=0.1):
    return _copy(query, keys, temperature=temperature)


def _module_class(query, keys, temperature=0.1):
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return torch.nn.CrossEntropyLoss()(logits, torch.arange(len(query)))


def _in_a_thread(query, keys, temperature=0.1):
    out = []
    thread = threading.Thread(target=lambda: out.append(info_nce(query, keys, temperature=temperature)))  # fmt: skip
    thread.start()
    thread.join()
    return out[0]


def _silenced(query, keys, temperature=0.1):
    hook = sys.getprofile()
    sys.setprofile(None)
    try:
        return info_nce(query, keys, temperature=temperature)
    finally:
        sys.setprofile(hook)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)


def test_an_own_implementation_is_not_flagged() -> None:
    w = watch.Watch(EX1_Q1)
    q, k = _inputs()
    out = w.run(lambda: _own(q, k))
    assert w.hits == set()
    assert torch.allclose(out, info_nce(q, k, temperature=0.1), atol=1e-6)


@pytest.mark.parametrize(
    "answer",
    [_computed_name, _exec_encoded, _copied_function, _in_a_thread],
    ids=lambda f: f.__name__,
)
def test_the_library_is_caught_however_it_is_reached(answer) -> None:
    w = watch.Watch(EX1_Q1)
    q, k = _inputs()
    w.run(lambda: answer(q, k))
    assert "course_utils.losses" in w.hits


def test_a_forbidden_class_and_function_of_torch_are_caught() -> None:
    w = watch.Watch(EX1_Q1)
    w.run(lambda: _module_class(*_inputs()))
    assert w.hits == {"torch.nn.CrossEntropyLoss", "torch.nn.functional.cross_entropy"}


def test_switching_the_monitor_off_is_a_violation() -> None:
    w = watch.Watch(EX1_Q1)
    w.run(lambda: _silenced(*_inputs()))
    assert w.hits == {watch.TAMPERING}
    assert sys.getprofile() is None and threading._profile_hook is None  # removed after the call


def test_a_package_forbids_the_functions_of_its_submodules() -> None:
    from course_utils.lm import sliding_windows  # defined in course_utils/lm/causal.py

    w = watch.Watch(["course_utils.lm", "no.such.module", "pseudo_log_likelihood"])
    w.run(lambda: sliding_windows)  # reading a name is not a call
    w.run(lambda: F.normalize(torch.ones(2, 2)))
    assert w.hits == set()
    w.run(lambda: sliding_windows(10, context_length=4, stride=2, bos=False))
    assert w.hits == {"course_utils.lm"}


@pytest.mark.parametrize(
    "exercise, expected",
    [
        ("ex1_infonce", {"q1": [*EX1_Q1, "torch.nn.modules.loss.CrossEntropyLoss"]}),
        ("ex3_simclr", {"q1": ["course_utils.losses"], "q2": ["course_utils.augment"]}),
        ("ex4_pythia_scaling", {"q1": ["course_utils.scaling"], "q2": ["course_utils.scaling"]}),
    ],
)
def test_forbidden_paths_are_read_from_the_rule_cases(
    exercise: str, expected: dict, tmp_path: Path
) -> None:
    pytest.importorskip("otter", reason="building a bundle needs the instructor extra")
    from course_utils.grading import generate as gen

    master = gen.SOLUTIONS_DIR / f"{exercise}.ipynb"
    bundle = gen.generate(master, tmp_path / "e", tmp_path / "v", tmp_path / "a").autograder
    sources = verdict.read_test_sources(bundle)
    found = verdict.forbidden_paths(sources)
    assert {q: p for q, p in found.items() if p} == expected
