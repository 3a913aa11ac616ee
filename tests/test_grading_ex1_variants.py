"""Exercise 1's grades track correctness: wrong answers lose at least half, other correct styles keep
everything, library delegation scores 0. Scored through the grader's verdict code (`Questions`)
against the bundle's tests; the end-to-end `course-grade` runs are in test_grading.py.
"""

from __future__ import annotations

import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from grading_variants import Questions  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import source as source_check  # noqa: E402

NAME = "ex1_infonce"
POINTS = {"q1": 3.0, "q2a": 2.0, "q3b": 3.0, "q4": 3.0}
HEAD = "import math\n\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\n\n"

CORRECT = {
    "q1": {
        "normalize_einsum": """
def info_nce_scratch(query, keys, temperature=0.1):
    q, k = F.normalize(query, dim=-1), F.normalize(keys, dim=-1)
    logits = torch.einsum("id,jd->ij", q, k) / temperature
    return torch.mean(torch.logsumexp(logits, dim=-1) - torch.diagonal(logits))
""",
        "log_softmax_with_local_names": """
def info_nce_scratch(query, keys, temperature=0.1):
    info_nce = query / query.norm(dim=1, keepdim=True)  # a local name, not the library's
    loss = info_nce @ (keys / keys.norm(dim=1, keepdim=True)).T / temperature
    return -torch.log_softmax(loss, dim=1).diagonal().mean()


loss = F.cross_entropy(torch.zeros(2, 2), torch.arange(2))  # elsewhere, allowed
""",
        "row_loop_float32_inputs": """
def _row_loss(logits, i):
    return torch.logsumexp(logits[i], 0) - logits[i, i]


def info_nce_scratch(query, keys, temperature=0.1):
    q = query / torch.linalg.vector_norm(query, dim=1, keepdim=True)
    k = keys / torch.linalg.vector_norm(keys, dim=1, keepdim=True)
    logits = (q @ k.T) / temperature
    return torch.stack([_row_loss(logits, i) for i in range(len(q))]).mean()
""",
    },
    "q2a": {
        "normalize": """
def info_nce_as_classification(query, keys, temperature=0.1):
    q, k = F.normalize(query, dim=1), F.normalize(keys, dim=1)
    return q @ k.T / temperature, torch.arange(len(q))
""",
        "einsum_long_labels": """
def info_nce_as_classification(query, keys, temperature=0.1):
    q = query / query.norm(dim=-1, keepdim=True)
    k = keys / keys.norm(dim=-1, keepdim=True)
    return torch.einsum("nd,md->nm", q, k) / temperature, torch.arange(q.shape[0]).long()
""",
        "scaled_before_product": """
def info_nce_as_classification(query, keys, temperature=0.1):
    q = F.normalize(query, dim=1) / temperature
    labels = torch.tensor(list(range(query.shape[0])), dtype=torch.int64)
    return torch.matmul(q, F.normalize(keys, dim=1).T), labels
""",
    },
    "q3b": {
        "cross_entropy": """
def gaussian_mi(rho, dim):
    return -0.5 * dim * math.log(1 - rho**2)


def infonce_mi_lower_bound(scores):
    n = scores.shape[0]
    return math.log(n) - F.cross_entropy(scores, torch.arange(n)).item()
""",
        "numpy_log1p": """
def gaussian_mi(rho, dim):
    return float(-dim / 2 * np.log1p(-rho * rho))


def infonce_mi_lower_bound(scores):
    logp = torch.log_softmax(scores, dim=1)
    return float(np.log(len(scores)) + logp.diagonal().mean())
""",
        "float32_log_n": """
def gaussian_mi(rho, dim):
    return float(dim * torch.log(torch.tensor(1 / (1 - rho**2))) / 2)


def infonce_mi_lower_bound(scores):
    n = torch.tensor(float(scores.shape[0]))  # float32 log N
    loss = (torch.logsumexp(scores, 1) - scores.diagonal()).mean()
    return float(torch.log(n) - loss)
""",
    },
    "q4": {
        "softmax": """
def negative_weights(pos_sim, neg_sims, temperature):
    logits = torch.cat([torch.tensor([pos_sim], dtype=neg_sims.dtype), neg_sims]) / temperature
    return torch.softmax(logits, 0)[1:] / temperature
""",
        "autograd": """
def negative_weights(pos_sim, neg_sims, temperature):
    s = torch.cat([torch.tensor([pos_sim], dtype=neg_sims.dtype), neg_sims]).requires_grad_(True)
    loss = torch.logsumexp(s / temperature, 0) - s[0] / temperature
    (grad,) = torch.autograd.grad(loss, s)
    return grad[1:]
""",
        "float32_pos_sim_shifted_exp": """
def negative_weights(pos_sim, neg_sims, temperature):
    pos = torch.tensor(pos_sim)  # float32, whatever neg_sims is
    top = torch.maximum(pos, neg_sims.max())
    e_pos, e_neg = torch.exp((pos - top) / temperature), torch.exp((neg_sims - top) / temperature)
    return e_neg / (e_pos + e_neg.sum()) / temperature
""",
    },
}

WRONG = {
    "q1": {
        "no_normalisation": """
def info_nce_scratch(query, keys, temperature=0.1):
    logits = query @ keys.T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
""",
        "no_temperature": """
def info_nce_scratch(query, keys, temperature=0.1):
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()
""",
        "exp_overflows": """
def info_nce_scratch(query, keys, temperature=0.1):
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return (torch.log(torch.exp(logits).sum(1)) - logits.diagonal()).mean()
""",
        "right_shaped_stub": """
def info_nce_scratch(query, keys, temperature=0.1):
    return (query.sum() * 0 + 1.0).requires_grad_(True)
""",
        "delegates_via_importlib": """
import importlib


def info_nce_scratch(query, keys, temperature=0.1):
    module = importlib.import_module("course_utils." + "losses")
    return getattr(module, "info" + "_nce")(query, keys, temperature=temperature)
""",
        "delegates_via_decoy": """
def info_nce_scratch(query, keys, temperature=0.1):
    return torch.tensor(0.0)


if True:
    from course_utils import losses as _l

    def info_nce_scratch(query, keys, temperature=0.1):
        return _l.info_nce(query, keys, temperature=temperature)
""",
        "delegates_via_alias": """
ce = F.cross_entropy


def info_nce_scratch(query, keys, temperature=0.1):
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return ce(logits, torch.arange(len(query)))
""",
    },
    "q2a": {
        "zero_labels": """
def info_nce_as_classification(query, keys, temperature=0.1):
    q, k = F.normalize(query, dim=1), F.normalize(keys, dim=1)
    return q @ k.T / temperature, torch.zeros(len(q), dtype=torch.int64)
""",
        "no_temperature": """
def info_nce_as_classification(query, keys, temperature=0.1):
    q, k = F.normalize(query, dim=1), F.normalize(keys, dim=1)
    return q @ k.T, torch.arange(len(q))
""",
        "no_normalisation": """
def info_nce_as_classification(query, keys, temperature=0.1):
    return query @ keys.T / temperature, torch.arange(len(query))
""",
    },
    "q3b": {
        "minus_loss_only": """
def gaussian_mi(rho, dim):
    return -dim / 2 * math.log(1 - rho**2)


def infonce_mi_lower_bound(scores):
    return -float((torch.logsumexp(scores, 1) - scores.diagonal()).mean())
""",
        "sum_not_mean": """
def gaussian_mi(rho, dim):
    return -dim / 2 * math.log(1 - rho**2)


def infonce_mi_lower_bound(scores):
    n = scores.shape[0]
    return math.log(n) - float((torch.logsumexp(scores, 1) - scores.diagonal()).sum())
""",
        "mi_without_the_half": """
def gaussian_mi(rho, dim):
    return -dim * math.log(1 - rho**2)


def infonce_mi_lower_bound(scores):
    n = scores.shape[0]
    return math.log(n) - float((torch.logsumexp(scores, 1) - scores.diagonal()).mean())
""",
        "right_typed_stubs": """
def gaussian_mi(rho, dim):
    return 0.0


def infonce_mi_lower_bound(scores):
    return 0.0
""",
    },
    "q4": {
        "no_temperature_factor": """
def negative_weights(pos_sim, neg_sims, temperature):
    logits = torch.cat([torch.tensor([pos_sim], dtype=neg_sims.dtype), neg_sims]) / temperature
    return torch.softmax(logits, 0)[1:]
""",
        "monotone_heuristic": """
def negative_weights(pos_sim, neg_sims, temperature):
    w = torch.softmax(neg_sims / temperature, 0)
    return w * (1 - 1e-3) / temperature / 2
""",
        "positive_left_out": """
def negative_weights(pos_sim, neg_sims, temperature):
    return torch.softmax(neg_sims / temperature, 0) / temperature
""",
    },
}


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> Questions:
    out = tmp_path_factory.mktemp("ex1")
    paths = gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", out, out, out)
    return Questions(paths.autograder, out)


def test_points_are_the_masters(questions: Questions) -> None:
    assert questions.names == sorted(POINTS)


@pytest.mark.parametrize(
    "question, variant", [(q, v) for q, vs in CORRECT.items() for v in vs]
)  # fmt: skip
def test_correct_variant_keeps_every_point(
    question: str, variant: str, questions: Questions
) -> None:
    score = questions.score(question, HEAD + CORRECT[question][variant])
    assert score == POINTS[question], questions.feedback


@pytest.mark.parametrize("question, variant", [(q, v) for q, vs in WRONG.items() for v in vs])
def test_wrong_answer_loses_at_least_half(
    question: str, variant: str, questions: Questions
) -> None:
    score = questions.score(question, HEAD + WRONG[question][variant])
    assert score <= POINTS[question] / 2, questions.feedback
    if "stub" in variant or "delegates" in variant:
        assert score == 0, questions.feedback


def test_every_question_has_three_of_each() -> None:
    for question in POINTS:
        assert len(CORRECT[question]) >= 3 and len(WRONG[question]) >= 3, question


def test_a_broken_rule_zeroes_the_question_and_says_why(questions: Questions) -> None:
    questions.score("q1", HEAD + WRONG["q1"]["delegates_via_alias"])
    assert "q1: 0 / 3" in questions.feedback
    assert "the question's rule is broken (q1 rule writes its own loss)" in questions.feedback
    assert "torch.nn.functional.cross_entropy" in questions.feedback


class _Cells:
    """Stands for a session: the submitted cells the grader parses."""

    def __init__(self, cells: list[str]) -> None:
        self.cells = cells


def _grader_side(cells: list[str], name: str = "info_nce_scratch") -> list[str]:
    """`library_uses` as the grader runs it: on a Remote, reading the submitted cells."""
    from course_utils.grading.session import Remote

    forbidden = ["course_utils.losses", "torch.nn.functional.cross_entropy"]
    return source_check.library_uses(Remote(_Cells(cells), {"name": name}, name, True), forbidden)


OWN = CORRECT["q1"]["normalize_einsum"]


@pytest.mark.parametrize(
    "cells, found",
    [
        # correct answers: nothing found
        (["import torch\nimport torch.nn.functional as F", OWN], []),
        (["import torch.nn.functional as F", "%%time\n" + OWN], []),
        (["import torch.nn.functional as F", OWN, "loss = F.cross_entropy(x, y)"], []),
        (["import torch.nn.functional as F", OWN.replace("logits", "info_nce")], []),
        # delegation, however spelled
        (
            [
                "from course_utils.losses import info_nce as f",
                "def info_nce_scratch(q, k, t):\n    return f(q, k, t)",
            ],
            ["course_utils.losses.info_nce"],
        ),  # fmt: skip
        (
            [
                "import course_utils.losses",
                "def info_nce_scratch(q, k, t):\n    return course_utils.losses.info_nce(q, k, t)",
            ],
            ["course_utils.losses.info_nce"],
        ),  # fmt: skip
        (
            [
                "import torch",
                "def info_nce_scratch(q, k, t):\n    return getattr(torch.nn.functional, 'cross_entropy')(q, k)",
            ],
            ["torch.nn.functional.cross_entropy"],
        ),  # fmt: skip
        (
            [
                "import course_utils as c",
                "h = c.losses",
                "def info_nce_scratch(q, k, t):\n    return h.info_nce(q, k, t)",
            ],
            ["course_utils.losses"],
        ),  # fmt: skip
        (
            [
                "import base64",
                "exec(base64.b64decode(b'ZGVmIGluZm9fbmNlX3NjcmF0Y2goKTogcGFzcw=='))",
            ],
            ["no definition of info_nce_scratch"],
        ),  # fmt: skip
        (
            [
                "import torch",
                "def info_nce_scratch(q, k, t):\n    return vars(__import__('course_utils.losses'))",
            ],
            ["__import__()", "vars()"],
        ),  # fmt: skip
        (
            [
                OWN,
                "if True:\n    from course_utils import losses\n\n    def info_nce_scratch(q, k, t):\n        return losses.info_nce(q, k, t)",
            ],
            ["course_utils.losses.info_nce"],
        ),  # fmt: skip
        (
            [
                "import course_utils.losses as L",
                "info_nce_scratch = lambda q, k, t: L.info_nce(q, k, t)",
            ],
            ["course_utils.losses.info_nce"],
        ),  # fmt: skip
    ],
)
def test_library_uses_in_the_grader(cells: list[str], found: list[str]) -> None:
    used = _grader_side(cells)
    for expected in found:
        assert any(u.startswith(expected) for u in used), used
    if not found:
        assert used == [], used


def test_library_uses_rejects_a_non_function() -> None:
    with pytest.raises(TypeError, match="func must be a function"):
        source_check.library_uses(3, ["x"])


def test_an_undefined_function_says_so(questions: Questions) -> None:
    assert questions.score("q1", HEAD + "x = 1\n") == 0
    assert "not defined in the notebook: info_nce_scratch" in questions.feedback
    assert "NoneType" not in questions.feedback


@pytest.mark.parametrize(
    "message",
    ["AssertionError", "AssertionError: (16, 8, 0.07, 1.0, 2.0)", "TypeError: <submission's x>"],
)
def test_a_failure_without_words_is_named_by_its_test(message: str) -> None:
    from course_utils.grading import verdict

    got = verdict._failure(message, "test_q1_matches_the_library", hidden=True)
    assert got == "failed: q1 matches the library"
    assert verdict._failure("AssertionError: the label of query i is i", "test_x", True).endswith(
        "is i"
    )
