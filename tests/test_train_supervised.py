"""course_utils.train.train_supervised: the from-scratch baseline with early stopping."""

import pytest
import torch

from course_utils.data import load_images
from course_utils.train import SimCLRConfig, train_supervised

CONFIG = SimCLRConfig(
    width=4, batch_size=64, crop_scale=(0.8, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0
)


def test_learns_digits_and_returns_the_best_weights() -> None:
    x, y = load_images("digits", "train")
    val_x, val_y = load_images("digits", "test")
    run = train_supervised(
        CONFIG, x[:300], y[:300], val_x[:150], val_y[:150], eval_every=10, patience=3, max_steps=150
    )
    steps = [row["step"] for row in run.history]
    assert steps == list(range(10, steps[-1] + 1, 10)), steps
    accuracies = [row["val_accuracy"] for row in run.history]
    best = max(accuracies)
    assert best > 0.5, accuracies  # chance is 0.1
    # The weights of the best evaluation come back, not the last ones.
    assert run.accuracy(val_x[:150], val_y[:150]) == pytest.approx(best)
    # It stops `patience` evaluations after the best one, unless max_steps comes first.
    after_best = len(accuracies) - 1 - accuracies.index(best)
    assert after_best == 3 or steps[-1] == 150, (accuracies, steps)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(eval_every=0), "eval_every"), (dict(patience=-1), "patience")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    x, y = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match=match):
        train_supervised(CONFIG, x, y, x, y, **kwargs)
    with pytest.raises(ValueError, match="val_images must be a uint8"):
        train_supervised(CONFIG, x, y, x.float(), y)
