"""Exercise 3's tests reject plausible wrong answers: graded through `course-grade`, end to end.

Each submission is the master with some answer cells replaced by a wrong implementation (at most one
per question; q3 builds on q1 and q2, so a wrong q3 comes with right q1 and q2, and a wrong q1 or q2
comes with a q4 that does not depend on them). The whole folder is graded in one call of the
`course-grade` command line; every wrong question must score below its points, the master full marks.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from course_utils.grading import generate as gen  # noqa: E402

MASTER = gen.SOLUTIONS_DIR / "ex3_simclr.ipynb"
ANSWER_CELL = {"q1": "2a5f3daf", "q2": "6e58e75b", "q3": "e384bc30", "q4": "3fb1ab8a"}
POINTS = {"q1": 3.0, "q2": 2.0, "q3": 2.0, "q4": 3.0}

WRONG = {
    "q1": {
        "no_diagonal_mask": """\
def nt_xent_scratch(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature  # each view counts itself as a negative
    n = len(z1)
    return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
""",
        "one_direction": """\
def nt_xent_scratch(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = len(z1)
    return F.cross_entropy(sim[:n], torch.arange(n, 2 * n))  # z1 -> z2 only
""",
        "temperature_multiplies": """\
def nt_xent_scratch(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T * temperature).fill_diagonal_(float("-inf"))
    n = len(z1)
    return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
""",
    },
    "q2": {
        "brightness_only": """\
def two_views(x, generator):
    def one_view():
        b = 0.6 + 0.8 * torch.rand(len(x), 1, 1, 1, generator=generator)
        return (x * b).clamp(0, 1)

    return one_view(), one_view()
""",
        "no_flip": """\
def two_views(x, generator):
    def one_view():
        b = len(x)
        side = 0.5 + 0.5 * torch.rand(b, generator=generator)
        shift = (1 - side)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side, side, shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        brightness = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)
        return (F.grid_sample(x, grid, align_corners=False) * brightness).clamp(0, 1)

    return one_view(), one_view()
""",
        "views_share_the_crop": """\
def two_views(x, generator):
    b = len(x)
    side = 0.5 + 0.5 * torch.rand(b, generator=generator)
    shift = (1 - side)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
    crop = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False))

    def bright():
        return (crop * (0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator))).clamp(0, 1)

    return bright(), bright()
""",
    },
    "q3": {
        "own_positive": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    _, z = model((torch.cat([v1, v2]) - model.mean) / model.std)
    z1, z2 = z.chunk(2)
    loss = nt_xent_scratch(z1, z1, temperature)  # each view its own positive
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
        "no_normalisation": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    _, z = model(torch.cat([v1, v2]))
    loss = nt_xent_scratch(*z.chunk(2), temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
        "no_zero_grad": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    _, z = model((torch.cat([v1, v2]) - model.mean) / model.std)
    loss = nt_xent_scratch(*z.chunk(2), temperature)
    loss.backward()  # gradients pile up across steps
    optimizer.step()
    return loss.item()
""",
        "two_forward_passes": """\
def train_step(model, optimizer, images, generator, temperature=0.5):
    v1, v2 = two_views(images.float() / 255, generator)
    _, z1 = model((v1 - model.mean) / model.std)  # BatchNorm sees one view at a time
    _, z2 = model((v2 - model.mean) / model.std)
    loss = nt_xent_scratch(z1, z2, temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
""",
    },
    "q4": {
        "untrained": """\
q4_config = SimCLRConfig(epochs=1, lr=1e-9, width=8, batch_size=256, progress=False)
q4_run = train_simclr(q4_config, train_x)
""",
        "over_the_width_budget": """\
q4_config = SimCLRConfig(epochs=1, width=20, batch_size=256, progress=False)
q4_run = train_simclr(q4_config, train_x)
""",
        "config_is_not_what_was_trained": """\
q4_config = SimCLRConfig(epochs=15, width=8, batch_size=256, progress=False)
q4_run = train_simclr(SimCLRConfig(epochs=2, width=8, batch_size=256, progress=False), train_x)
""",
        "crop_only": """\
q4_config = SimCLRConfig(
    epochs=15, batch_size=128, lr=0.5, temperature=0.2, width=8, proj_hidden=128,
    crop_scale=(0.5, 1.0), jitter_p=0.0, gray_p=0.0, warmup_epochs=1.0, progress=False,
)
q4_run = train_simclr(q4_config, train_x)
""",
    },
}

# submission -> {question: wrong answer}; the cheap untrained q4 keeps wrong-q3 notebooks fast.
SUBMISSIONS = {
    "wrong_1": {"q1": "no_diagonal_mask", "q2": "no_flip", "q4": "untrained"},
    "wrong_2": {"q1": "one_direction", "q2": "brightness_only", "q4": "over_the_width_budget"},
    "wrong_3": {
        "q1": "temperature_multiplies",
        "q2": "views_share_the_crop",
        "q4": "config_is_not_what_was_trained",
    },
    "wrong_4": {"q3": "own_positive", "q4": "crop_only"},
    "wrong_5": {"q3": "no_normalisation", "q4": "untrained"},
    "wrong_6": {"q3": "no_zero_grad", "q4": "untrained"},
    "wrong_7": {"q3": "two_forward_passes", "q4": "untrained"},
}


def test_every_wrong_answer_is_used_and_each_question_has_two() -> None:
    used = {(q, w) for wrongs in SUBMISSIONS.values() for q, w in wrongs.items()}
    assert used == {(q, w) for q, ws in WRONG.items() for w in ws}
    assert all(len(ws) >= 2 for ws in WRONG.values()) and set(WRONG) == set(POINTS)


def _submission(wrongs: dict[str, str]) -> nbformat.NotebookNode:
    """The master with the answer cells of `wrongs` replaced by those wrong answers."""
    nb = nbformat.read(MASTER, as_version=4)
    for question, wrong in wrongs.items():
        (cell,) = [c for c in nb.cells if c.get("id") == ANSWER_CELL[question]]
        cell.source = WRONG[question][wrong]
    return nb


@pytest.fixture(scope="module")
def grades(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """CSV rows by student of the master and every wrong submission, graded by `course-grade`."""
    root = tmp_path_factory.mktemp("ex3_wrong")
    bundle = gen.generate(MASTER, root / "exercises", root / "visible", root / "autograder")
    folder = root / "submissions"
    folder.mkdir()
    nbformat.write(nbformat.read(MASTER, as_version=4), folder / "master.ipynb")
    for name, wrongs in SUBMISSIONS.items():
        nbformat.write(_submission(wrongs), folder / f"{name}.ipynb")
    command = [sys.executable, "-m", "course_utils.grading.grade", "ex3_simclr", str(folder)]
    command += ["-o", str(root / "out"), "--autograder", str(bundle.autograder), "-j", "2"]
    subprocess.run(command + ["--timeout", "900"], check=True, capture_output=True)
    with open(root / "out" / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_the_master_scores_full_marks(grades: dict[str, dict[str, str]]) -> None:
    row = grades["master"]
    assert row["status"] == "ok", row
    assert {q: float(row[q]) for q in POINTS} == POINTS, row


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_each_wrong_answer_loses_marks(name: str, grades: dict[str, dict[str, str]]) -> None:
    row = grades[name]
    assert row["status"] == "ok", row
    for question, wrong in SUBMISSIONS[name].items():
        assert float(row[question]) < POINTS[question], f"{question} {wrong} scored full: {row}"
