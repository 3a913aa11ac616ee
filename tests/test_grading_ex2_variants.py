"""Exercise 2's grades track correctness: wrong answers lose at least half, other correct styles keep
everything, stubs and delegation score 0, and the references do not come from the notebook's own
model or helpers. Scored through the grader's verdict code (`Questions`) against the bundle's tests.
"""

from __future__ import annotations

import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from grading_variants import Questions  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402

NAME = "ex2_pseudo_likelihood"
POINTS = {"q1": 3.0, "q2a": 3.0, "q4a": 3.0, "q4b": 2.0}

# The notebook's names the answers use (the master's cells, with a random table for C_MLM).
NOTEBOOK = """\
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

V, T = 3, 4
SEQS = torch.tensor(list(itertools.product(range(V), repeat=T)))


def sticky_joint(stay=0.8):
    trans = torch.full((V, V), (1 - stay) / (V - 1), dtype=torch.float64).fill_diagonal_(stay)
    logp = torch.full((len(SEQS),), -math.log(V), dtype=torch.float64)
    for t in range(T - 1):
        logp = logp + trans.log()[SEQS[:, t], SEQS[:, t + 1]]
    return logp.exp().reshape((V,) * T)


JOINT = sticky_joint()


def exact_conditionals(joint):
    out = torch.empty(T, len(SEQS), V, dtype=torch.float64)
    for t in range(T):
        cond = joint / joint.sum(dim=t, keepdim=True)
        for v in range(V):
            x = SEQS.clone()
            x[:, t] = v
            out[t, :, v] = cond[tuple(x.T)]
    return out


def index_of(x):
    return (x * V ** torch.arange(T - 1, -1, -1)).sum(-1)


C_EXACT = exact_conditionals(JOINT)
C_MLM = (C_EXACT.log() + 0.3 * torch.randn(C_EXACT.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).softmax(-1)
"""

MASTER_Q2A = """
def exact_log_likelihood(joint):
    return joint.log().reshape(-1)


def exact_pll(joint):
    total = torch.zeros(joint.shape, dtype=torch.float64)
    for t in range(joint.dim()):
        total = total + (joint / joint.sum(dim=t, keepdim=True)).log()
    return total.reshape(-1)


total_pseudo_probability = exact_pll(JOINT).exp().sum().item()
"""
MASTER_GIBBS = """
def gibbs_transition(C):
    K = torch.zeros(len(SEQS), len(SEQS), dtype=torch.float64)
    rows = torch.arange(len(SEQS))
    for t in range(T):
        for v in range(V):
            x = SEQS.clone()
            x[:, t] = v
            K[rows, index_of(x)] += C[t, :, v] / T
    return K
"""
MASTER_STATIONARY = """
def stationary(K):
    values, vectors = torch.linalg.eig(K.T)
    pi = vectors[:, (values - 1).abs().argmin()].real
    return pi / pi.sum()
"""
TV = """
pi_mlm = stationary(gibbs_transition(C_MLM))
tv_mlm = 0.5 * (pi_mlm - JOINT.reshape(-1)).abs().sum().item()
"""

CORRECT = {
    "q1": {
        "batched_copies": """
def pll_scratch(model, tokenizer, texts):
    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        special = set(tokenizer.all_special_ids)
        pos = [t for t, i in enumerate(ids) if i not in special]
        copies = torch.tensor([ids] * len(pos))
        copies[torch.arange(len(pos)), pos] = tokenizer.mask_token_id
        with torch.no_grad():
            logp = model(input_ids=copies).logits.log_softmax(-1)
        out.append(sum(float(logp[r, t, ids[t]]) for r, t in enumerate(pos)))
    return torch.tensor(out, dtype=torch.float64)
""",
        "return_tensors_float32": """
def pll_scratch(model, tokenizer, texts):
    scores = []
    for text in texts:
        enc = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
        ids, special = enc["input_ids"][0], enc["special_tokens_mask"][0]
        total = torch.zeros((), dtype=torch.float32)
        for t in torch.nonzero(special == 0).flatten().tolist():
            masked = ids.clone()
            masked[t] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=masked[None], attention_mask=torch.ones(1, len(ids))).logits
            total = total + torch.log_softmax(logits[0, t], dim=-1)[ids[t]]
        scores.append(total)
    return torch.stack(scores).double()
""",
        "local_names_and_a_helper": """
def _masked_log_prob(model, ids, t, mask_id):
    pseudo_log_likelihood = list(ids)  # a local name, not the library's
    pseudo_log_likelihood[t] = mask_id
    logits = model(input_ids=torch.tensor([pseudo_log_likelihood])).logits[0, t]
    return float(logits.double().log_softmax(-1)[ids[t]])


@torch.no_grad()
def pll_scratch(model, tokenizer, texts):
    skip = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    return torch.tensor(
        [
            sum(
                _masked_log_prob(model, ids, t, tokenizer.mask_token_id)
                for t, i in enumerate(ids)
                if i not in skip
            )
            for ids in (tokenizer.encode(text) for text in texts)
        ],
        dtype=torch.float64,
    )
""",
    },
    "q2a": {
        "master": MASTER_Q2A,
        "loops_in_float64": """
import itertools as it


def exact_log_likelihood(joint):
    return torch.tensor([math.log(joint[x]) for x in it.product(range(3), repeat=4)], dtype=torch.float64)


def exact_pll(joint):
    out = []
    for x in it.product(range(3), repeat=4):
        s = 0.0
        for t in range(4):
            denom = sum(float(joint[x[:t] + (v,) + x[t + 1 :]]) for v in range(3))
            s += math.log(float(joint[x]) / denom)
        out.append(s)
    return torch.tensor(out, dtype=torch.float64)


total_pseudo_probability = float(exact_pll(JOINT).exp().sum())
""",
        "logsumexp_numpy_total": """
def exact_log_likelihood(joint):
    return torch.log(joint).flatten()


def exact_pll(joint):
    logj = joint.log()
    return sum(logj - torch.logsumexp(logj, dim=t, keepdim=True) for t in range(4)).flatten()


total_pseudo_probability = float(np.exp(exact_pll(JOINT).numpy()).sum())
""",
    },
    "q4a": {
        "master": MASTER_GIBBS + MASTER_STATIONARY + TV,
        "power_iteration": MASTER_GIBBS
        + """
def stationary(K):
    pi = torch.full((K.shape[0],), 1.0 / K.shape[0], dtype=K.dtype)
    for _ in range(5000):
        pi = pi @ K
    return pi / pi.sum()
"""
        + TV,
        "loops_and_solve": """
def gibbs_transition(C):
    K = torch.zeros(81, 81, dtype=torch.float64)
    for i, x in enumerate(SEQS.tolist()):
        for t in range(4):
            for v in range(3):
                y = list(x)
                y[t] = v
                K[i, int(index_of(torch.tensor(y)))] += float(C[t, i, v]) / 4
    return K


def stationary(K):
    n = K.shape[0]
    A = torch.cat([(K.T - torch.eye(n, dtype=K.dtype)), torch.ones(1, n, dtype=K.dtype)])
    b = torch.zeros(n + 1, dtype=K.dtype)
    b[-1] = 1
    return torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
"""
        + TV,
    },
    "q4b": {
        "master": """
def path_gap(C):
    logC = C.log()
    rows = torch.arange(len(SEQS))

    def step(x, t, v):
        i = index_of(x)
        y = x.clone()
        y[:, t] = v
        return logC[t, i, v] - logC[t, i, x[:, t]], y

    gap = torch.zeros((), dtype=torch.float64)
    for s, t in itertools.permutations(range(T), 2):
        for a, b in itertools.product(range(V), repeat=2):
            r1, y = step(SEQS, s, a)
            r2, z = step(y, t, b)
            r3, w = step(SEQS, t, b)
            r4, _ = step(w, s, a)
            gap = torch.maximum(gap, ((r1 + r2) - (r3 + r4)).abs()[rows].max())
    return gap.item()
""",
        "python_loops": """
def path_gap(C):
    logC = C.log().tolist()

    def idx(x):
        return x[0] * 27 + x[1] * 9 + x[2] * 3 + x[3]

    def ratio(x, t, v):
        y = list(x)
        y[t] = v
        return logC[t][idx(x)][v] - logC[t][idx(x)][x[t]], y

    best = 0.0
    for x in itertools.product(range(3), repeat=4):
        for s in range(4):
            for t in range(4):
                if s == t:
                    continue
                for a in range(3):
                    for b in range(3):
                        r1, y = ratio(x, s, a)
                        r2, _ = ratio(y, t, b)
                        r3, w = ratio(x, t, b)
                        r4, _ = ratio(w, s, a)
                        best = max(best, abs(r1 + r2 - r3 - r4))
    return best
""",
        "numpy_pairs_once": """
def path_gap(C):
    L = np.log(C.numpy())
    x = SEQS.numpy()
    p = 3 ** np.arange(3, -1, -1)
    gaps = [0.0]
    for s, t in itertools.combinations(range(4), 2):  # (s, t) and (t, s) give the same gap
        for a in range(3):
            for b in range(3):
                i = x @ p
                y, w = x.copy(), x.copy()
                y[:, s], w[:, t] = a, b
                iy, iw = y @ p, w @ p
                one = L[s, i, a] - L[s, i, x[:, s]] + L[t, iy, b] - L[t, iy, x[:, t]]
                two = L[t, i, b] - L[t, i, x[:, t]] + L[s, iw, a] - L[s, iw, x[:, s]]
                gaps.append(np.abs(one - two).max())
    return float(max(gaps))
""",
    },
}

WRONG = {
    "q1": {
        "scores_special_tokens": """
@torch.no_grad()
def pll_scratch(model, tokenizer, texts):
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        total = 0.0
        for t in range(len(ids)):
            masked = list(ids)
            masked[t] = tokenizer.mask_token_id
            total += float(model(input_ids=torch.tensor([masked])).logits[0, t].log_softmax(-1)[ids[t]])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)
""",
        "no_masking": """
@torch.no_grad()
def pll_scratch(model, tokenizer, texts):
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        out.append(sum(float(logp[t, ids[t]]) for t in range(1, len(ids) - 1)))
    return torch.tensor(out, dtype=torch.float64)
""",
        "next_position": """
@torch.no_grad()
def pll_scratch(model, tokenizer, texts):
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        total = 0.0
        for t in range(1, len(ids) - 1):
            masked = list(ids)
            masked[t] = tokenizer.mask_token_id
            total += float(model(input_ids=torch.tensor([masked])).logits[0, t + 1].log_softmax(-1)[ids[t]])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)
""",
        "negative_stub": """
def pll_scratch(model, tokenizer, texts):
    return -torch.ones(len(texts), dtype=torch.float64)
""",
        # The notebook's model swapped for a uniform one that a stub matches: the graded case
        # scores a model of the grader's, so text_model takes no part.
        "swapped_uniform_model": """
import math


class _Uniform(torch.nn.Module):
    def forward(self, input_ids, **kwargs):
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 300)})()


text_model = _Uniform()


def pll_scratch(model, tokenizer, texts):
    n = [len(tokenizer.encode(t)) - 2 for t in texts]
    return torch.tensor([-k * math.log(300) for k in n], dtype=torch.float64)
""",
        "delegates_via_vars": """
def pll_scratch(model, tokenizer, texts):
    lm = vars(__import__("course_utils.lm").lm)
    return lm["pseudo_log_likelihood"](model, tokenizer, texts)
""",
    },
    "q2a": {
        "pll_normalised_over_everything": MASTER_Q2A.replace(
            "(joint / joint.sum(dim=t, keepdim=True)).log()", "(joint / joint.sum()).log()"
        ),
        "log_likelihood_from_marginals": """
def exact_log_likelihood(joint):
    out = torch.zeros(joint.shape, dtype=torch.float64)
    for t in range(4):
        dims = [d for d in range(4) if d != t]
        shape = [1] * 4
        shape[t] = 3
        out = out + joint.sum(dim=dims).log().reshape(shape)
    return out.reshape(-1)


def exact_pll(joint):
    return exact_log_likelihood(joint)


total_pseudo_probability = 1.0
""",
        "stubs": """
def exact_log_likelihood(joint):
    return torch.full((81,), -math.log(81), dtype=torch.float64)


def exact_pll(joint):
    return torch.full((81,), -math.log(81), dtype=torch.float64)


total_pseudo_probability = 1.0
""",
    },
    "q4a": {
        "transposed_kernel": MASTER_GIBBS.replace("K[rows, index_of(x)]", "K[index_of(x), rows]")
        + MASTER_STATIONARY
        + TV,
        "right_eigenvector": MASTER_GIBBS
        + MASTER_STATIONARY.replace("torch.linalg.eig(K.T)", "torch.linalg.eig(K)")
        + TV,
        "uniform_stubs": """
def gibbs_transition(C):
    return torch.full((81, 81), 1 / 81, dtype=torch.float64)


def stationary(K):
    return torch.full((81,), 1 / 81, dtype=torch.float64)


tv_mlm = 0.5
""",
    },
    "q4b": {
        "returns_zero": "\ndef path_gap(C):\n    return 0.0\n",
        "one_path_only": """
def path_gap(C):
    logC = C.log()
    return float((logC - logC.mean(-1, keepdim=True)).abs().max())
""",
        "mean_not_max": CORRECT["q4b"]["master"]
        .replace("gap = torch.zeros((), dtype=torch.float64)", "gaps = []")
        .replace(
            "gap = torch.maximum(gap, ((r1 + r2) - (r3 + r4)).abs()[rows].max())",
            "gaps.append(((r1 + r2) - (r3 + r4)).abs()[rows].mean())",
        )
        .replace("return gap.item()", "return float(torch.stack(gaps).mean())"),
    },
}


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> Questions:
    out = tmp_path_factory.mktemp("ex2")
    paths = gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", out, out, out)
    return Questions(paths.autograder, out)


@pytest.fixture(scope="module")
def text_model() -> dict:
    """The notebook's text model and tokenizer (its recipe), for q1."""
    from course_utils.data import load_text
    from course_utils.lm import tiny_mlm

    text = "\n".join(load_text("pydoc").splitlines()[:500])
    model, tok = tiny_mlm(text, vocab_size=300, hidden_size=32, steps=30)
    return {"text_model": model.eval(), "text_tok": tok}


def _score(questions: Questions, question: str, source: str, text_model: dict) -> float:
    env = text_model if question == "q1" else {}
    return questions.score(question, NOTEBOOK + source, env)


def test_points_are_the_masters(questions: Questions) -> None:
    assert questions.names == sorted(POINTS)


@pytest.mark.parametrize("question, variant", [(q, v) for q, vs in CORRECT.items() for v in vs])
def test_correct_variant_keeps_every_point(
    question: str, variant: str, questions: Questions, text_model: dict
) -> None:
    score = _score(questions, question, CORRECT[question][variant], text_model)
    assert score == POINTS[question], questions.feedback


@pytest.mark.parametrize("question, variant", [(q, v) for q, vs in WRONG.items() for v in vs])
def test_wrong_answer_loses_at_least_half(
    question: str, variant: str, questions: Questions, text_model: dict
) -> None:
    score = _score(questions, question, WRONG[question][variant], text_model)
    assert score <= POINTS[question] / 2, questions.feedback
    if "stub" in variant or "delegates" in variant or variant == "returns_zero":
        assert score == 0, questions.feedback


def test_every_question_has_three_of_each() -> None:
    for question in POINTS:
        assert len(CORRECT[question]) >= 3 and len(WRONG[question]) >= 3, question
