"""Exercise 4's grades track correctness, the same under any secret: wrong answers lose at least
half, other correct styles keep everything, stubs and delegation score 0. Scored through the
grader's verdict code (`Questions`) against the bundle's tests; the end-to-end `course-grade` runs
are in test_scaling_ex4_grading.py.

A variant is one answer cell (the function and the names computed from it); it runs after the
master's given cells (the data tables and constants the tests' names are computed from), read from
the master itself, and a q3a variant after the master's q2 answer (its `fit_parametric`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from grading_variants import Questions, master_cell  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import verdict  # noqa: E402

NAME = "ex4_pythia_scaling"
POINTS = {"q1": 2.0, "q2": 3.0, "q3a": 3.0, "q4": 3.0, "q5": 2.0, "q6": 2.0}
SECRETS = (2026, 1, 77)
UNSEEDED = {"q3a", "q5", "q6"}  # their tests draw no inputs: one secret scores them as any other
# The master's given cells (by their first line) and its answer cells (by the function they define)
GIVEN = (
    "import itertools",
    "P = profile()",
    "EVALS = load_pythia_evals()",
    "Q1_STEPS",
    "TRUE = {",
    "BUDGET = 1e24",
)
ANSWER = {
    "q1": "fit_power_law_scratch",
    "q2": "parametric_objective",
    "q3a": "optimal_allocation",
    "q4": "predict_loss",
    "q5": "first_step_above",
    "q6": "dedup_z",
}


NOTEBOOK = "".join(master_cell(NAME, line) for line in GIVEN)
MASTER = {q: master_cell(NAME, f"def {func}(") for q, func in ANSWER.items()}

Q1_TAIL = """

q1_exponents = {
    step: fit_power_law_scratch(
        EVALS["non_embedding_params"][standard_at(step)], np.log(EVALS["lambada_ppl"][standard_at(step)])
    )[1]
    for step in Q1_STEPS
}
"""
Q2_TAIL = "\n\nq2_fit = fit_parametric(N_SYN, D_SYN, L_SYN)\n"
_Q3A_TAIL = """
n_hoffmann, d_hoffmann = optimal_allocation(BUDGET, *HOFFMANN)
n_besiroglu, d_besiroglu = optimal_allocation(BUDGET, *BESIROGLU)
q3_fit = fit_parametric(RUNS["N"][KEEP], RUNS["D"][KEEP], RUNS["loss"][KEEP])
n_chinchilla, d_chinchilla = optimal_allocation(CHINCHILLA_BUDGET, *q3_fit)
"""
Q3A_TAIL = '\n\nKEEP = ~RUNS["outlier"]\n' + _Q3A_TAIL
Q4_TAIL = "\n\nq4_prediction = predict_loss(N_PYTHIA[:-1], L_PYTHIA[:-1], N_PYTHIA[-1])\n"
Q5_TAIL = """

q5_first = {}
for size in SIZES:
    rows = (EVALS["size"] == size) & ~EVALS["deduped"]
    q5_first[size] = first_step_above(
        EVALS["step"][rows], EVALS["winogrande_acc"][rows], EVALS["winogrande_acc_stderr"][rows], 0.5
    )
"""
Q6_TAIL = """

q6_z = {}
for size in SIZES:
    end = (EVALS["size"] == size) & (EVALS["step"] == 143_000)
    std, ded = end & ~EVALS["deduped"], end & EVALS["deduped"]
    q6_z[size] = dedup_z(
        EVALS["lambada_ppl"][std][0],
        EVALS["lambada_ppl_stderr"][std][0],
        EVALS["lambada_ppl"][ded][0],
        EVALS["lambada_ppl_stderr"][ded][0],
    )
q6_significant = sorted(size for size, z in q6_z.items() if z > 2)
"""

# q2: the master's grid of starts, ranked by an objective (two variants' fits start from it)
_GRID = """\
def grid_starts(objective, args, count=8):
    grid = itertools.product(
        range(0, 30, 5), range(0, 30, 5), (-1, -0.5, 0, 0.5, 1), (0, 0.5, 1, 1.5, 2), (0, 0.5, 1, 1.5, 2)
    )
    return sorted(grid, key=lambda theta: objective(theta, *args))[:count]
"""
_ALLOCATION = """\
def optimal_allocation(C, E, A, B, alpha, beta):
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    N = G * (C / 6) ** (beta / (alpha + beta))
    return N, C / (6 * N)
"""
_Z = """\
def dedup_z(ppl_standard, se_standard, ppl_deduped, se_deduped):
    return float((ppl_standard - ppl_deduped) / {denominator})
"""

CORRECT = {
    "q1": {
        "master": MASTER["q1"],
        "lstsq_design_matrix": """\
def fit_power_law_scratch(x, y):
    X = np.column_stack([np.ones(len(x)), np.log(x)])
    (log_c, k), *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    return math.exp(log_c), float(k)
"""
        + Q1_TAIL,
        "linregress_and_masks": """\
from scipy.stats import linregress


def fit_power_law_scratch(x, y):
    result = linregress(np.log(x), np.log(y))
    return float(np.exp(result.intercept)), float(result.slope)


q1_exponents = {}
for step in Q1_STEPS:
    rows = (EVALS["step"] == step) & ~EVALS["deduped"]
    law = fit_power_law_scratch(EVALS["non_embedding_params"][rows], np.log(EVALS["lambada_ppl"][rows]))
    q1_exponents[step] = law[1]
""",
        "torch_covariance_per_size": """\
import torch


def fit_power_law_scratch(x, y):
    lx = torch.log(torch.as_tensor(x, dtype=torch.float64))
    ly = torch.log(torch.as_tensor(y, dtype=torch.float64))
    k = ((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()
    return float(torch.exp(ly.mean() - k * lx.mean())), float(k)


def _final_row(size, step):
    (i,) = np.flatnonzero((EVALS["size"] == size) & (EVALS["step"] == step) & ~EVALS["deduped"])
    return i


q1_exponents = {}
for step in Q1_STEPS:
    rows = [_final_row(size, step) for size in SIZES]
    n = [float(EVALS["non_embedding_params"][i]) for i in rows]
    loss = [math.log(EVALS["lambada_ppl"][i]) for i in rows]
    q1_exponents[step] = fit_power_law_scratch(n, loss)[1]
""",
    },
    "q2": {
        "master": MASTER["q2"],
        "scipy_special_bfgs": """\
from scipy.special import huber, logsumexp


def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    a, b, e, alpha, beta = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)[..., None]
    terms = np.stack(np.broadcast_arrays(a - alpha * log_N, b - beta * log_D, e))
    return huber(delta, log_L - logsumexp(terms, axis=0)).sum(axis=-1)


def fit_parametric(N, D, L):
    args = (np.log(N), np.log(D), np.log(L))
    axes = (np.arange(0, 30, 5), np.arange(0, 30, 5), np.linspace(-1, 1, 5), np.linspace(0, 2, 5), np.linspace(0, 2, 5))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 5)
    starts = grid[np.argsort(parametric_objective(grid, *args))[:8]]  # the whole grid at once
    results = [
        minimize(lambda t: float(parametric_objective(t, *args)), theta, method="BFGS", options={"gtol": 1e-10})
        for theta in starts
    ]
    a, b, e, alpha, beta = min(results, key=lambda r: r.fun).x
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta
"""
        + Q2_TAIL,
        "torch_autograd_gradient": """\
import torch
import torch.nn.functional as F


def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    t = torch.as_tensor(np.asarray(theta, dtype=float))
    n, d, y = (torch.as_tensor(np.asarray(v, dtype=float)) for v in (log_N, log_D, log_L))
    terms = torch.stack([t[0] - t[3] * n, t[1] - t[4] * d, t[2].expand_as(n)])
    prediction = torch.logsumexp(terms, dim=0)
    return float(F.huber_loss(prediction, y, reduction="sum", delta=delta))


def _value_and_gradient(theta, *args):
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    n, d, y = (torch.as_tensor(v) for v in args)
    terms = torch.stack([t[0] - t[3] * n, t[1] - t[4] * d, t[2].expand_as(n)])
    value = F.huber_loss(torch.logsumexp(terms, dim=0), y, reduction="sum", delta=1e-3)
    value.backward()
    return value.item(), t.grad.numpy()


"""
        + _GRID
        + """

def fit_parametric(N, D, L):
    args = (np.log(N), np.log(D), np.log(L))
    best = None
    for theta in grid_starts(parametric_objective, args):
        result = minimize(
            _value_and_gradient,
            np.asarray(theta, dtype=float),
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
        )
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta
"""
        + Q2_TAIL,
        "loop_objective_least_squares_huber": """\
from scipy.optimize import least_squares


def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    a, b, e, alpha, beta = theta
    total = 0.0
    for n, d, y in zip(log_N, log_D, log_L):
        terms = (a - alpha * n, b - beta * d, e)
        top = max(terms)
        r = abs(y - top - math.log(sum(math.exp(t - top) for t in terms)))
        total += 0.5 * r * r if r <= delta else delta * (r - delta / 2)
    return total


def _residuals(theta, log_N, log_D, log_L):
    a, b, e, alpha, beta = theta
    return log_L - np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e)


def _huber_cost(theta, *args):
    r = np.abs(_residuals(theta, *args))
    return np.where(r <= 1e-3, 0.5 * r**2, 1e-3 * (r - 5e-4)).sum()


"""
        + _GRID
        + """

def fit_parametric(N, D, L):
    # least_squares' "huber" loss with f_scale = delta is this objective: 0.5 f_scale^2 rho(r^2 / f_scale^2)
    args = (np.log(N), np.log(D), np.log(L))
    fits = [
        least_squares(_residuals, theta, args=args, loss="huber", f_scale=1e-3, xtol=1e-14, ftol=1e-14, gtol=1e-14)
        for theta in grid_starts(_huber_cost, args)
    ]
    a, b, e, alpha, beta = min(fits, key=lambda fit: fit.cost).x
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta
"""
        + Q2_TAIL,
    },
    "q3a": {
        "master": MASTER["q3a"],
        "log_space": """\
def optimal_allocation(C, E, A, B, alpha, beta):
    s = alpha + beta
    log_n = (math.log(alpha * A) - math.log(beta * B)) / s + beta / s * math.log(C / 6)
    return math.exp(log_n), C / 6 / math.exp(log_n)
"""
        + Q3A_TAIL,
        "numerical_minimum": """\
from scipy.optimize import minimize_scalar


def optimal_allocation(C, E, A, B, alpha, beta):
    def loss(log_n):
        n = math.exp(log_n)
        return E + A / n**alpha + B / (C / (6 * n)) ** beta

    best = minimize_scalar(loss, bounds=(math.log(1e5), math.log(1e16)), method="bounded", options={"xatol": 1e-9})
    n = math.exp(best.x)
    return n, C / (6 * n)


KEEP = RUNS["outlier"] == False  # noqa: E712
"""
        + _Q3A_TAIL,
        "symmetric_formula_library_fit": """\
from course_utils.scaling import fit_chinchilla  # allowed in q3a


def optimal_allocation(C, E, A, B, alpha, beta):
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    return G * (C / 6) ** (beta / (alpha + beta)), (C / 6) ** (alpha / (alpha + beta)) / G


n_hoffmann, d_hoffmann = optimal_allocation(BUDGET, *HOFFMANN)
n_besiroglu, d_besiroglu = optimal_allocation(BUDGET, *BESIROGLU)
kept = ~RUNS["outlier"]
fit = fit_chinchilla(RUNS["N"][kept], RUNS["D"][kept], RUNS["loss"][kept])
q3_fit = (fit.E, fit.A, fit.B, fit.alpha, fit.beta)
n_chinchilla, d_chinchilla = optimal_allocation(CHINCHILLA_BUDGET, *q3_fit)
""",
    },
    "q4": {
        "master": MASTER["q4"],
        "curve_fit_in_linear_space": """\
from scipy.optimize import curve_fit


def predict_loss(N_small, L_small, N_target):
    def law(n, E, c, k):
        return E + c * (n / 1e9) ** k

    params, _ = curve_fit(law, N_small, L_small, p0=(1.0, 1.0, -0.3), maxfev=20000)
    return float(law(N_target, *params))
"""
        + Q4_TAIL,
        "floor_profiled_out": """\
from scipy.optimize import minimize_scalar


def predict_loss(N_small, L_small, N_target):
    log_n, log_l = np.log(N_small), np.log(L_small)

    def line(e):
        return np.polyfit(log_n, np.log(L_small - e), 1)

    def misfit(e):
        k, log_c = line(e)
        return np.sum((log_l - np.log(e + np.exp(log_c + k * log_n))) ** 2)

    floor = minimize_scalar(misfit, bounds=(0, 0.999 * min(L_small)), method="bounded", options={"xatol": 1e-12}).x
    k, log_c = line(floor)
    return float(floor + np.exp(log_c) * N_target**k)
"""
        + Q4_TAIL,
        "library_law_with_offset": """\
import warnings

from course_utils.scaling import fit_power_law  # allowed in q4


def predict_loss(N_small, L_small, N_target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = fit_power_law(N_small, L_small, offset=True)
    return float(law(N_target))
"""
        + Q4_TAIL,
    },
    "q5": {
        "master": MASTER["q5"],
        "vectorised": """\
def first_step_above(steps, acc, stderr, chance):
    above = np.flatnonzero(np.asarray(acc) - chance > 2 * np.asarray(stderr))
    return int(np.asarray(steps)[above[0]]) if above.size else None
"""
        + Q5_TAIL,
        "next_over_indices": """\
def first_step_above(steps, acc, stderr, chance):
    return next((int(steps[i]) for i in range(len(steps)) if acc[i] - chance > 2 * stderr[i]), None)


q5_first = {
    size: first_step_above(
        *(EVALS[col][(EVALS["size"] == size) & ~EVALS["deduped"]] for col in ("step", "winogrande_acc", "winogrande_acc_stderr")),
        0.5,
    )
    for size in SIZES
}
""",
        "torch_and_pandas": """\
import pandas as pd
import torch


def first_step_above(steps, acc, stderr, chance):
    margin = torch.tensor(acc, dtype=torch.float64) - chance - 2 * torch.tensor(stderr, dtype=torch.float64)
    if not (margin > 0).any():
        return None
    return int(steps[int(torch.argmax((margin > 0).int()))])


frame = pd.DataFrame({col: EVALS[col] for col in ("size", "deduped", "step", "winogrande_acc", "winogrande_acc_stderr")})
q5_first = {}
for size, rows in frame[~frame["deduped"]].groupby("size", sort=False):
    rows = rows.sort_values("step")
    q5_first[size] = first_step_above(
        rows["step"].tolist(), rows["winogrande_acc"].tolist(), rows["winogrande_acc_stderr"].tolist(), 0.5
    )
""",
    },
    "q6": {
        "master": MASTER["q6"],
        "numpy_sqrt": _Z.format(denominator="np.sqrt(se_standard**2 + se_deduped**2)") + Q6_TAIL,
        "power_one_half_and_lookup": _Z.format(
            denominator="(se_standard**2 + se_deduped**2) ** 0.5"
        )
        + """

def final(size, deduped, column):
    (i,) = np.flatnonzero((EVALS["size"] == size) & (EVALS["step"] == 143000) & (EVALS["deduped"] == deduped))
    return float(EVALS[column][i])


q6_z = {
    size: dedup_z(*(final(size, flag, col) for flag in (False, True) for col in ("lambada_ppl", "lambada_ppl_stderr")))
    for size in SIZES
}
q6_significant = sorted(size for size, z in q6_z.items() if z > 2)
""",
        "torch": """\
import torch


def dedup_z(ppl_standard, se_standard, ppl_deduped, se_deduped):
    p = torch.tensor([ppl_standard, ppl_deduped], dtype=torch.float64)
    se = torch.tensor([se_standard, se_deduped], dtype=torch.float64)
    return float((p[0] - p[1]) / torch.linalg.vector_norm(se))
"""
        + Q6_TAIL,
    },
}

WRONG = {
    "q1": {
        "linear_space": """\
from scipy.optimize import curve_fit


def fit_power_law_scratch(x, y):
    (c, k), _ = curve_fit(lambda x, c, k: c * x**k, x / 1e9, y, p0=(1.0, -0.1), maxfev=20000)
    return float(c) * 1e9 ** -float(k), float(k)
"""
        + Q1_TAIL,
        "total_params": MASTER["q1"].replace('"non_embedding_params"', '"params"'),
        "perplexity_not_its_log": MASTER["q1"].replace(
            'np.log(EVALS["lambada_ppl"][rows])', 'EVALS["lambada_ppl"][rows]'
        ),
        "log_of_the_coefficient": MASTER["q1"].replace("float(np.exp(log_c))", "float(log_c)"),
        "stub": """\
def fit_power_law_scratch(x, y):
    return 1.0, -0.1


q1_exponents = {step: -0.1 for step in Q1_STEPS}
""",
        "delegates": """\
from course_utils.scaling import fit_power_law


def fit_power_law_scratch(x, y):
    law = fit_power_law(x, y)
    return law.coef, law.exponent
"""
        + Q1_TAIL,
    },
    "q2": {
        "squared_loss": MASTER["q2"].replace(
            "np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))", "(0.5 * r**2)"
        ),
        "no_absolute_value": MASTER["q2"].replace(
            "r = np.abs(log_L - prediction)", "r = log_L - prediction"
        ),
        "mean_not_sum": MASTER["q2"].replace(".sum())", ".mean())"),
        "no_half_within_delta": MASTER["q2"].replace("0.5 * r**2", "r**2"),
        "no_floor_term": MASTER["q2"].replace(
            "np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e)",
            "np.logaddexp(a - alpha * log_N, b - beta * log_D)",
        ),
        "returns_the_logs": MASTER["q2"].replace(
            "return math.exp(e), math.exp(a), math.exp(b), alpha, beta",
            "return e, a, b, alpha, beta",
        ),
        "stub": """\
def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    return 0.0


def fit_parametric(N, D, L):
    return 1.0, 1.0, 1.0, 0.5, 0.5
"""
        + Q2_TAIL,
        "delegates": MASTER["q2"].split("def fit_parametric")[0]
        + """\
from course_utils.scaling import fit_chinchilla


def fit_parametric(N, D, L):
    fit = fit_chinchilla(N, D, L)
    return fit.E, fit.A, fit.B, fit.alpha, fit.beta
"""
        + Q2_TAIL,
    },
    "q3a": {
        "outliers_kept": _ALLOCATION + "\n\nKEEP = slice(None)\n" + _Q3A_TAIL,
        "G_inverted": _ALLOCATION.replace("(alpha * A / (beta * B))", "(beta * B / (alpha * A))")
        + Q3A_TAIL,
        "exponents_swapped": _ALLOCATION.replace(
            "(beta / (alpha + beta))", "(alpha / (alpha + beta))"
        )
        + Q3A_TAIL,
        "budget_not_divided_by_six": _ALLOCATION.replace("(C / 6) **", "C **") + Q3A_TAIL,
        "published_constants_at_chinchilla": _ALLOCATION
        + Q3A_TAIL.replace(
            "optimal_allocation(CHINCHILLA_BUDGET, *q3_fit)",
            "optimal_allocation(CHINCHILLA_BUDGET, *HOFFMANN)",
        ),
        "stub": """\
def optimal_allocation(C, E, A, B, alpha, beta):
    return 1e10, 1e13
"""
        + Q3A_TAIL,
    },
    "q4": {
        "pure_power_law": """\
def predict_loss(N_small, L_small, N_target):
    k, log_c = np.polyfit(np.log(N_small), np.log(L_small), 1)
    return float(np.exp(log_c) * N_target**k)
"""
        + Q4_TAIL,
        "three_largest": """\
def predict_loss(N_small, L_small, N_target):
    k, log_c = np.polyfit(np.log(N_small[-3:]), np.log(L_small[-3:]), 1)
    return float(np.exp(log_c) * N_target**k)
"""
        + Q4_TAIL,
        "linear_in_log_n": """\
def predict_loss(N_small, L_small, N_target):
    slope, intercept = np.polyfit(np.log(N_small), L_small, 1)
    return float(intercept + slope * np.log(N_target))
"""
        + Q4_TAIL,
        "fits_the_held_out_model": MASTER["q4"]
        .replace("np.log(N_small), np.log(L_small)", "np.log(N_PYTHIA), np.log(L_PYTHIA)")
        .replace("min(L_small)", "min(L_PYTHIA)"),
        "prediction_includes_the_12b": MASTER["q4"].replace(
            "predict_loss(N_PYTHIA[:-1], L_PYTHIA[:-1], N_PYTHIA[-1])",
            "predict_loss(N_PYTHIA, L_PYTHIA, N_PYTHIA[-1])",
        ),
        "stub": "def predict_loss(N_small, L_small, N_target):\n    return 1.0\n" + Q4_TAIL,
    },
    "q5": {
        "no_margin": """\
def first_step_above(steps, acc, stderr, chance):
    for step, a in zip(steps, acc, strict=True):
        if a > chance:
            return int(step)
    return None
"""
        + Q5_TAIL,
        "one_standard_error": MASTER["q5"].replace("a - chance > 2 * se", "a - chance > se"),
        "two_sided": MASTER["q5"].replace("a - chance > 2 * se", "abs(a - chance) > 2 * se"),
        "returns_the_index": """\
def first_step_above(steps, acc, stderr, chance):
    for i in range(len(steps)):
        if acc[i] - chance > 2 * stderr[i]:
            return i
    return None
"""
        + Q5_TAIL,
        "deduplicated_models": MASTER["q5"].replace(
            '(EVALS["size"] == size) & ~EVALS["deduped"]',
            '(EVALS["size"] == size) & EVALS["deduped"]',
        ),
        "stub": "def first_step_above(steps, acc, stderr, chance):\n    return None\n" + Q5_TAIL,
    },
    "q6": {
        "one_stderr": _Z.format(denominator="se_standard") + Q6_TAIL,
        "summed_stderrs": _Z.format(denominator="(se_standard + se_deduped)") + Q6_TAIL,
        "variance_not_its_root": _Z.format(denominator="(se_standard**2 + se_deduped**2)")
        + Q6_TAIL,
        "reversed_sign": MASTER["q6"].replace(
            "(ppl_standard - ppl_deduped)", "(ppl_deduped - ppl_standard)"
        ),
        "stub": "def dedup_z(ppl_standard, se_standard, ppl_deduped, se_deduped):\n    return 0.0\n"
        + Q6_TAIL,
    },
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The autograder bundle generated from the master, and a folder for the variants' modules."""
    out = tmp_path_factory.mktemp("ex4")
    return gen.generate(gen.SOLUTIONS_DIR / f"{NAME}.ipynb", out, out, out).autograder, out


def _source(question: str, answer: str) -> str:
    """The variant's module: the master's given cells (and q2 answer for q3a), then the answer."""
    return NOTEBOOK + (MASTER["q2"] if question == "q3a" else "") + answer


def _cases(variants: dict[str, dict[str, str]]) -> list[tuple[str, str, int]]:
    """(question, variant, secret) for every variant: under each secret, or one if unseeded."""
    return [
        (q, v, secret)
        for q, vs in variants.items()
        for v in vs
        for secret in (SECRETS[:1] if q in UNSEEDED else SECRETS)
    ]


def test_points_are_the_masters(bundle: tuple[Path, Path]) -> None:
    questions = Questions(*bundle)
    assert questions.names == sorted(POINTS)


def test_unseeded_questions_draw_nothing_from_the_secret(bundle: tuple[Path, Path]) -> None:
    sources = {n: s for n, s in Questions(*bundle).sources.items() if Path(n).stem in UNSEEDED}
    assert len(sources) == len(UNSEEDED)
    assert all(verdict.seeded(s, SECRETS[0]) == s for s in sources.values())


@pytest.mark.parametrize("question, variant, secret", _cases(CORRECT))
def test_correct_variant_keeps_every_point(
    question: str, variant: str, secret: int, bundle: tuple[Path, Path]
) -> None:
    questions = Questions(*bundle, secret=secret)
    score = questions.score(question, _source(question, CORRECT[question][variant]))
    assert score == POINTS[question], questions.feedback


@pytest.mark.parametrize("question, variant, secret", _cases(WRONG))
def test_wrong_answer_loses_at_least_half(
    question: str, variant: str, secret: int, bundle: tuple[Path, Path]
) -> None:
    questions = Questions(*bundle, secret=secret)
    score = questions.score(question, _source(question, WRONG[question][variant]))
    assert score <= POINTS[question] / 2, questions.feedback
    if variant in ("stub", "delegates"):
        assert score == 0, questions.feedback


def test_every_question_has_three_of_each() -> None:
    for question in POINTS:
        others = [v for v in CORRECT[question] if v != "master"]
        assert len(others) >= 3 and len(WRONG[question]) >= 3, question
