"""Exercise 3's q1, q2 and q3 grades track correctness, the same under any secret: wrong answers
lose at least half, other correct styles keep everything, delegation scores 0. Scored through the
grader's verdict code (`Questions`); q4 (which trains for minutes) is graded end to end in
test_ex3_wrong_answers.py, with the master and some of these wrong answers.

A q3 variant (`train_step`) runs between the master's given cells and answers it builds on (the
imports, the images, q1's loss, q2's views) and the given cell of q3 (`Q3_CONFIG`, `q3_run`,
`losses`), all read from the master itself.
"""

from __future__ import annotations

import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from grading_variants import Questions, master_cell  # noqa: E402
from test_ex3_wrong_answers import WRONG as END_TO_END_WRONG  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402

NAME = "ex3_simclr"
POINTS = {"q1": 3.0, "q2": 2.0, "q3": 2.0}
HEAD = "import torch\nimport torch.nn.functional as F\n\n"
SEEDED = """

def two_views_seeded(x, seed):
    return two_views(x, torch.Generator().manual_seed(seed))
"""


# q3's train_step runs after these cells of the master and before its q3 cell (q3_run, losses)
Q3_BEFORE = "".join(
    master_cell(NAME, line)
    for line in (
        "import time",
        "P = profile()",
        "def nt_xent_scratch(",
        "def two_views(",
        "def two_views_seeded(",
    )
)
Q3_AFTER = master_cell(NAME, "Q3_CONFIG")

CORRECT = {
    "q1": {
        "masked_cross_entropy": """
def nt_xent_scratch(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    n = len(z1)
    return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
""",
        "logsumexp_by_hand": """
def nt_xent_scratch(z1, z2, temperature=0.5):
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n = len(z1)
    logits = z @ z.T / temperature - 1e9 * torch.eye(2 * n)
    partner = (torch.arange(2 * n) + n) % (2 * n)
    return (torch.logsumexp(logits, 1) - logits[torch.arange(2 * n), partner]).mean()
""",
        "two_directions_averaged": """
def _one_way(a, b, others, temperature):
    pos = (a * b).sum(1) / temperature
    logits = torch.cat([a @ b.T, (a @ others.T).fill_diagonal_(float("-inf"))], 1) / temperature
    return (torch.logsumexp(logits, 1) - pos).mean()


def nt_xent_scratch(z1, z2, temperature=0.5):
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return (_one_way(a, b, a, temperature) + _one_way(b, a, b, temperature)) / 2
""",
    },
    "q2": {
        "affine_grid": """
def two_views(x, generator):
    def one_view():
        b = len(x)
        side = 0.5 + 0.5 * torch.rand(b, generator=generator)
        shift = (1 - side)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
        flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        brightness = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)
        return (F.grid_sample(x, grid, align_corners=False) * brightness).clamp(0, 1)

    return one_view(), one_view()
""",
        "flip_the_pixels": """
def _view(x, generator):
    b = x.shape[0]
    s = torch.rand(b, generator=generator) * 0.5 + 0.5
    t = (2 * torch.rand(b, 2, generator=generator) - 1) * (1 - s)[:, None]
    theta = torch.stack(
        [torch.stack([s, 0 * s, t[:, 0]], 1), torch.stack([0 * s, s, t[:, 1]], 1)], 1
    )
    crop = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    flipped = torch.rand(b, generator=generator) < 0.5
    crop = torch.where(flipped[:, None, None, None], crop.flip(-1), crop)
    return (crop * (0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator))).clamp(0.0, 1.0)


def two_views(x, generator):
    return _view(x, generator), _view(x, generator)
""",
        "nearest_sampling": """
def two_views(x, generator):
    views = []
    for _ in range(2):
        n = x.shape[0]
        u = torch.rand(n, 6, generator=generator)
        side, flip = 0.5 + 0.5 * u[:, 0], torch.where(u[:, 1] < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = side * flip, side
        theta[:, 0, 2], theta[:, 1, 2] = (1 - side) * (2 * u[:, 2] - 1), (1 - side) * (2 * u[:, 3] - 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="nearest", align_corners=False)
        views.append((out * (0.6 + 0.8 * u[:, 4]).view(n, 1, 1, 1)).clamp(0, 1))
    return views[0], views[1]
""",
    },
    "q3": {
        "master": master_cell(NAME, "def train_step("),
        "zero_grad_first_views_one_by_one": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    optimizer.zero_grad(set_to_none=True)
    first, second = two_views(images.float().div(255), generator)
    first = (first - model.mean) / model.std
    second = (second - model.mean) / model.std
    _, z = model(torch.cat((first, second), dim=0))
    loss = nt_xent_scratch(z[: len(images)], z[len(images) :], temperature=temperature)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
""",
        "own_loss_inline": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images / 255.0, generator)
    _, z = model(torch.cat([v1, v2]).sub(model.mean).div(model.std))
    z = F.normalize(z, dim=1)
    n = len(images)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    partner = torch.arange(2 * n).roll(n)
    loss = -logits.log_softmax(dim=1)[torch.arange(2 * n), partner].mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
        "value_kept_before_backward": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    x = images.to(torch.float32) / 255
    _, z = model((torch.cat(two_views(x, generator)) - model.mean) / model.std)
    z1, z2 = torch.split(z, len(x))
    loss = nt_xent_scratch(z1, z2, temperature)
    value = loss.detach().item()
    for p in model.parameters():
        p.grad = None
    loss.backward()
    optimizer.step()
    return value
""",
    },
}
ONE_CROP_PER_BATCH = """
def two_views(x, generator):
    def one_view():
        b = len(x)
        side = (0.5 + 0.5 * torch.rand(1, generator=generator)).expand(b)
        shift = ((1 - side)[:, None] * (2 * torch.rand(1, 2, generator=generator) - 1)).expand(b, 2)
        flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        brightness = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)
        return (F.grid_sample(x, grid, align_corners=False) * brightness).clamp(0, 1)

    return one_view(), one_view()
"""
WRONG = {
    "q1": {
        **END_TO_END_WRONG["q1"],
        "delegates_via_import": """
from course_utils.losses import nt_xent as _loss


def nt_xent_scratch(z1, z2, temperature=0.5):
    return _loss(z1, z2, temperature=temperature)
""",
        "right_shaped_stub": """
def nt_xent_scratch(z1, z2, temperature=0.5):
    return (z1.sum() + z2.sum()) * 0.0 + 4.0
""",
    },
    "q2": {
        **END_TO_END_WRONG["q2"],
        "one_crop_per_batch": ONE_CROP_PER_BATCH,
        "identity_stub": """
def two_views(x, generator):
    return x.clone(), x.clone()
""",
    },
    "q3": {
        **END_TO_END_WRONG["q3"],
        "constant_stub": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    return 4.0
""",
        "loss_after_the_update": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    views = (torch.cat([v1, v2]) - model.mean) / model.std
    _, z = model(views)
    loss = nt_xent_scratch(*z.chunk(2), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return nt_xent_scratch(*model(views)[1].chunk(2), temperature).item()
""",
        "one_view_twice": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, _ = two_views(images.float() / 255, generator)
    _, z = model((torch.cat([v1, v1]) - model.mean) / model.std)
    loss = nt_xent_scratch(*z.chunk(2), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
        "pixels_not_scaled": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float(), generator)
    _, z = model((torch.cat([v1, v2]) - model.mean) / model.std)
    loss = nt_xent_scratch(*z.chunk(2), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
        # The loss at its default temperature whatever train_step is given (the hidden test runs
        # at 0.3, not at the default 0.5, to tell).
        "temperature_ignored": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    _, z = model((torch.cat([v1, v2]) - model.mean) / model.std)
    loss = nt_xent_scratch(*z.chunk(2))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
    },
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ex3")
    return gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", out, out, out).autograder, out


def _source(question: str, answer: str) -> str:
    if question == "q3":
        return Q3_BEFORE + answer + "\n\n" + Q3_AFTER
    return HEAD + answer + (SEEDED if question == "q2" else "")


@pytest.mark.parametrize("secret", [2026, 1, 77])
@pytest.mark.parametrize("question, variant", [(q, v) for q, vs in CORRECT.items() for v in vs])
def test_correct_variant_keeps_every_point(
    question: str, variant: str, secret: int, bundle
) -> None:
    questions = Questions(*bundle, secret=secret)
    score = questions.score(question, _source(question, CORRECT[question][variant]))
    assert score == POINTS[question], questions.feedback


@pytest.mark.parametrize("secret", [2026, 1, 77])
@pytest.mark.parametrize("question, variant", [(q, v) for q, vs in WRONG.items() for v in vs])
def test_wrong_answer_loses_at_least_half(question: str, variant: str, secret: int, bundle) -> None:
    questions = Questions(*bundle, secret=secret)
    score = questions.score(question, _source(question, WRONG[question][variant]))
    assert score <= POINTS[question] / 2, questions.feedback
    if "delegates" in variant or "stub" in variant:
        assert score == 0, questions.feedback


def test_every_question_has_three_of_each() -> None:
    for question in POINTS:
        others = [v for v in CORRECT[question] if v != "master"]
        assert len(others) >= 3 and len(WRONG[question]) >= 3, question
