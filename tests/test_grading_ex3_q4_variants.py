"""Exercise 3's q4 grade follows the model that was trained, however it is handed over.

The grader rebuilds the student's SimCLR model from `q4_settings` and the plain tensors of
`q4_weights` and measures its kNN accuracy on fresh shapes. One model is trained here with the
master's recipe; correct ways of exposing it (the state dict, float64 copies with `vars`, a round
trip through a file with the config read back from JSON) keep all 3 points, and answers whose
weights are not a trained model of the stated config lose at least half. Scored through the
grader's verdict code (`Questions`), under two secrets; test_ex3_wrong_answers.py grades q4 end to
end.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from grading_variants import Questions, master_cell  # noqa: E402

from course_utils.data import load_images  # noqa: E402
from course_utils.grading import generate as gen  # noqa: E402
from course_utils.runtime import profile  # noqa: E402
from course_utils.train import SimCLRConfig, build, train_simclr  # noqa: E402

NAME = "ex3_simclr"
POINTS = 3.0


def _master_recipe() -> SimCLRConfig:
    """The master's q4 config, read from its answer cell (the part before the training call)."""
    cell = master_cell(NAME, "# q4_config = SimCLRConfig(").split("start = time.perf_counter()")[0]
    scope = {"SimCLRConfig": SimCLRConfig, "P": profile()}
    exec(cell, scope)
    return scope["q4_config"]


RECIPE = _master_recipe()


@pytest.fixture(scope="module")
def trained() -> Any:
    """The master's q4 run on the notebook's training images."""
    train_x, _ = load_images("shapes", "train", size=16, count=2000)
    torch.manual_seed(0)
    return train_simclr(RECIPE, train_x)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("ex3_q4")
    return gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", out, out, out).autograder, out


def _state_dict(run: Any) -> dict[str, Any]:
    return {"q4_settings": dataclasses.asdict(RECIPE), "q4_weights": run.model.state_dict()}


def _float64_with_vars(run: Any) -> dict[str, Any]:
    weights = {k: v.detach().double().clone() for k, v in run.model.state_dict().items()}
    return {"q4_settings": dict(vars(RECIPE)), "q4_weights": weights}


def _through_files(run: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(run.model.state_dict(), buffer)
    buffer.seek(0)
    settings = json.loads(json.dumps(dataclasses.asdict(RECIPE)))  # tuples come back as lists
    return {"q4_settings": settings, "q4_weights": torch.load(buffer)}


def _untrained(run: Any) -> dict[str, Any]:
    model, _ = build(RECIPE, load_images("shapes", "train", size=16, count=2000)[0])
    return {"q4_settings": dataclasses.asdict(RECIPE), "q4_weights": model.state_dict()}


def _settings_of_another_width(run: Any) -> dict[str, Any]:
    settings = dataclasses.asdict(dataclasses.replace(RECIPE, width=16))
    return {"q4_settings": settings, "q4_weights": run.model.state_dict()}


def _encoder_only(run: Any) -> dict[str, Any]:
    weights = {f"encoder.{k}": v for k, v in run.model.encoder.state_dict().items()}
    return {"q4_settings": dataclasses.asdict(RECIPE), "q4_weights": weights}


def _over_the_budget(run: Any) -> dict[str, Any]:
    settings = dataclasses.asdict(dataclasses.replace(RECIPE, epochs=40))
    return {"q4_settings": settings, "q4_weights": run.model.state_dict()}


CORRECT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "state_dict": _state_dict,
    "float64_with_vars": _float64_with_vars,
    "through_files": _through_files,
}
WRONG: dict[str, Callable[[Any], dict[str, Any]]] = {
    "untrained": _untrained,
    "settings_of_another_width": _settings_of_another_width,
    "encoder_only": _encoder_only,
    "over_the_budget": _over_the_budget,
}


def _score(bundle: tuple, secret: int, exposed: dict[str, Any], run: Any) -> tuple[float, str]:
    questions = Questions(*bundle, secret=secret)
    history = [dict(row) for row in run.history]
    env = {"q4_history": history, "embed": None, "q4_knn": 0.0} | exposed
    epochs = exposed["q4_settings"]["epochs"]
    if epochs != len(history):  # a history as long as the settings claim
        env["q4_history"] = (history * 3)[:epochs]
    return questions.score("q4", "", env), questions.feedback


@pytest.mark.parametrize("secret", [2026, 77])
@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_correct_exposure_keeps_every_point(variant: str, secret: int, bundle, trained) -> None:
    score, feedback = _score(bundle, secret, CORRECT[variant](trained), trained)
    assert score == POINTS, feedback


@pytest.mark.parametrize("secret", [2026, 77])
@pytest.mark.parametrize("variant", sorted(WRONG))
def test_wrong_answer_loses_at_least_half(variant: str, secret: int, bundle, trained) -> None:
    score, feedback = _score(bundle, secret, WRONG[variant](trained), trained)
    assert score <= POINTS / 2, feedback
