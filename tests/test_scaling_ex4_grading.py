"""Exercise 4's hidden tests separate right from wrong: plausible wrong answers lose marks on their
question, and other correct methods keep full marks.

Submissions are built from the master (every answer cell solved), then one answer cell is replaced;
all of them are graded in one call of the `course-grade` command line.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import nbformat
import pytest

pytest.importorskip("otter", reason="grading needs the instructor extra (otter-grader)")

from submissions import answered, solved  # noqa: E402

from course_utils.grading import generate as gen  # noqa: E402
from course_utils.grading import grade  # noqa: E402

NAME = "ex4_pythia_scaling"

Q1_LINEAR_SPACE = """\
def fit_power_law_scratch(x, y):
    from scipy.optimize import curve_fit

    (c, k), _ = curve_fit(lambda x, c, k: c * x**k, x, y, p0=(1.0, -0.1), maxfev=20000)
    return float(c), float(k)


q1_exponents = {
    step: fit_power_law_scratch(
        EVALS["non_embedding_params"][standard_at(step)] / 1e9,
        np.log(EVALS["lambada_ppl"][standard_at(step)]),
    )[1]
    for step in Q1_STEPS
}
"""
Q1_TOTAL_PARAMS = """\
def fit_power_law_scratch(x, y):
    k, log_c = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_c)), float(k)


q1_exponents = {
    step: fit_power_law_scratch(
        EVALS["params"][standard_at(step)], np.log(EVALS["lambada_ppl"][standard_at(step)])
    )[1]
    for step in Q1_STEPS
}
"""
Q1_LINREGRESS = """\
def fit_power_law_scratch(x, y):
    from scipy.stats import linregress

    result = linregress(np.log(x), np.log(y))
    return float(np.exp(result.intercept)), float(result.slope)


q1_exponents = {}
for step in Q1_STEPS:
    rows = (EVALS["step"] == step) & ~EVALS["deduped"]
    q1_exponents[step] = fit_power_law_scratch(
        EVALS["non_embedding_params"][rows], np.log(EVALS["lambada_ppl"][rows])
    )[1]
"""
Q2_SQUARED_LOSS = """\
def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    a, b, e, alpha, beta = theta
    prediction = np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e)
    return float((0.5 * (log_L - prediction) ** 2).sum())


def fit_parametric(N, D, L):
    args = (np.log(N), np.log(D), np.log(L))
    best = None
    for a0 in (5.0, 10.0):
        for b0 in (5.0, 10.0):
            for ab0 in (0.2, 0.5):
                result = minimize(parametric_objective, [a0, b0, 0.5, ab0, ab0], args=args, method="L-BFGS-B")
                if best is None or result.fun < best.fun:
                    best = result
    a, b, e, alpha, beta = best.x
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta


q2_fit = fit_parametric(N_SYN, D_SYN, L_SYN)
"""
_OBJECTIVE = """\
def parametric_objective(theta, log_N, log_D, log_L, delta=1e-3):
    a, b, e, alpha, beta = theta
    prediction = np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e)
    r = np.abs(log_L - prediction)
    return float(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)).sum())


def grid_starts(args, count=8):
    grid = itertools.product(range(0, 30, 5), range(0, 30, 5), (-1, -0.5, 0, 0.5, 1), (0, 0.5, 1, 1.5, 2), (0, 0.5, 1, 1.5, 2))
    return sorted(grid, key=lambda theta: parametric_objective(theta, *args))[:count]
"""
# Other correct approach-3 fits (q2 and q3a keep full marks under any SciPy): Nelder-Mead from
# the grid, and a least-squares curve_fit of log L from the grid (82B instead of 73B at 5.76e23).
Q2_NELDER_MEAD = (
    _OBJECTIVE
    + """

def fit_parametric(N, D, L):
    args = (np.log(N), np.log(D), np.log(L))
    results = [
        minimize(parametric_objective, theta, args=args, method="Nelder-Mead", options={"maxiter": 20000})
        for theta in grid_starts(args)
    ]
    a, b, e, alpha, beta = min(results, key=lambda r: r.fun).x
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta


q2_fit = fit_parametric(N_SYN, D_SYN, L_SYN)
"""
)
Q2_CURVE_FIT_LOG = (
    _OBJECTIVE
    + """

def fit_parametric(N, D, L):
    from scipy.optimize import curve_fit

    args = (np.log(N), np.log(D), np.log(L))

    def log_law(x, a, b, e, alpha, beta):
        return np.logaddexp(np.logaddexp(a - alpha * x[0], b - beta * x[1]), e)

    fits = []
    for theta in grid_starts(args):
        try:
            params, _ = curve_fit(log_law, args[:2], args[2], p0=theta, maxfev=20000)
        except RuntimeError:
            continue
        fits.append((((log_law(args[:2], *params) - args[2]) ** 2).sum(), tuple(params)))
    a, b, e, alpha, beta = min(fits)[1]
    return math.exp(e), math.exp(a), math.exp(b), alpha, beta


q2_fit = fit_parametric(N_SYN, D_SYN, L_SYN)
"""
)
_Q3_TAIL = """
n_hoffmann, d_hoffmann = optimal_allocation(BUDGET, *HOFFMANN)
n_besiroglu, d_besiroglu = optimal_allocation(BUDGET, *BESIROGLU)
q3_fit = fit_parametric(RUNS["N"][KEEP], RUNS["D"][KEEP], RUNS["loss"][KEEP])
n_chinchilla, d_chinchilla = optimal_allocation(CHINCHILLA_BUDGET, *q3_fit)
"""
_ALLOCATION = """\
def optimal_allocation(C, E, A, B, alpha, beta):
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    N = G * (C / 6) ** (beta / (alpha + beta))
    return N, C / (6 * N)
"""
Q3_OUTLIERS_KEPT = (
    _ALLOCATION + "\n\nKEEP = slice(None)  # every run, outliers included\n" + _Q3_TAIL
)
Q3_G_INVERTED = (
    _ALLOCATION.replace("(alpha * A / (beta * B))", "(beta * B / (alpha * A))")
    + '\n\nKEEP = ~RUNS["outlier"]\n'
    + _Q3_TAIL
)
Q3_LIBRARY_FIT = (
    _ALLOCATION
    + """

from course_utils.scaling import fit_chinchilla

kept = ~RUNS["outlier"]
fit = fit_chinchilla(RUNS["N"][kept], RUNS["D"][kept], RUNS["loss"][kept])
q3_fit = (fit.E, fit.A, fit.B, fit.alpha, fit.beta)
n_hoffmann, d_hoffmann = optimal_allocation(BUDGET, *HOFFMANN)
n_besiroglu, d_besiroglu = optimal_allocation(BUDGET, *BESIROGLU)
n_chinchilla, d_chinchilla = optimal_allocation(CHINCHILLA_BUDGET, *q3_fit)
"""
)
_Q4_TAIL = "\n\nq4_prediction = predict_loss(N_PYTHIA[:-1], L_PYTHIA[:-1], N_PYTHIA[-1])\n"
Q4_PURE_POWER_LAW = (
    """\
def predict_loss(N_small, L_small, N_target):
    k, log_c = np.polyfit(np.log(N_small), np.log(L_small), 1)
    return float(np.exp(log_c) * N_target**k)
"""
    + _Q4_TAIL
)
Q4_THREE_LARGEST = (
    """\
def predict_loss(N_small, L_small, N_target):
    k, log_c = np.polyfit(np.log(N_small[-3:]), np.log(L_small[-3:]), 1)
    return float(np.exp(log_c) * N_target**k)
"""
    + _Q4_TAIL
)
Q4_CURVE_FIT_OFFSET = (
    """\
def predict_loss(N_small, L_small, N_target):
    from scipy.optimize import curve_fit

    def law(n, E, c, k):
        return E + c * (n / 1e9) ** k

    params, _ = curve_fit(law, N_small, L_small, p0=(1.0, 1.0, -0.3), maxfev=20000)
    return float(law(N_target, *params))
"""
    + _Q4_TAIL
)
Q5_NO_MARGIN = """\
def first_step_above(steps, acc, stderr, chance):
    for step, a in zip(steps, acc, strict=True):
        if a > chance:
            return int(step)
    return None


q5_first = {}
for size in SIZES:
    rows = (EVALS["size"] == size) & ~EVALS["deduped"]
    q5_first[size] = first_step_above(
        EVALS["step"][rows], EVALS["winogrande_acc"][rows], EVALS["winogrande_acc_stderr"][rows], 0.5
    )
"""

_Q6_TAIL = """

q6_significant = []
for size in SIZES:
    end = (EVALS["size"] == size) & (EVALS["step"] == 143_000)
    std, ded = end & ~EVALS["deduped"], end & EVALS["deduped"]
    z = dedup_z(
        EVALS["lambada_ppl"][std][0],
        EVALS["lambada_ppl_stderr"][std][0],
        EVALS["lambada_ppl"][ded][0],
        EVALS["lambada_ppl_stderr"][ded][0],
    )
    if z > 2:
        q6_significant.append(size)
"""
Q6_ONE_STDERR = (
    """\
def dedup_z(ppl_standard, se_standard, ppl_deduped, se_deduped):
    return float((ppl_standard - ppl_deduped) / se_standard)
"""
    + _Q6_TAIL
)
Q6_SUMMED_STDERRS = (
    """\
def dedup_z(ppl_standard, se_standard, ppl_deduped, se_deduped):
    return float((ppl_standard - ppl_deduped) / (se_standard + se_deduped))
"""
    + _Q6_TAIL
)

# file -> (answer cell replaced: its function, new source, question that must lose marks or None
# for a correct alternative that must keep full marks)
CASES = {
    "solved": (None, None, None),
    "q1_linear_space": ("fit_power_law_scratch", Q1_LINEAR_SPACE, "q1"),
    "q1_total_params": ("fit_power_law_scratch", Q1_TOTAL_PARAMS, "q1"),
    "q1_linregress": ("fit_power_law_scratch", Q1_LINREGRESS, None),
    "q2_squared_loss": ("parametric_objective", Q2_SQUARED_LOSS, "q2"),
    "q3a_outliers_kept": ("optimal_allocation", Q3_OUTLIERS_KEPT, "q3a"),
    "q3a_G_inverted": ("optimal_allocation", Q3_G_INVERTED, "q3a"),
    "q3a_library_fit": ("optimal_allocation", Q3_LIBRARY_FIT, None),
    "q3a_nelder_mead_grid": ("parametric_objective", Q2_NELDER_MEAD, None),
    "q3a_curve_fit_log": ("parametric_objective", Q2_CURVE_FIT_LOG, None),
    "q4_pure_power_law": ("predict_loss", Q4_PURE_POWER_LAW, "q4"),
    "q4_three_largest": ("predict_loss", Q4_THREE_LARGEST, "q4"),
    "q4_curve_fit_offset": ("predict_loss", Q4_CURVE_FIT_OFFSET, None),
    "q5_no_margin": ("first_step_above", Q5_NO_MARGIN, "q5"),
    "q6_one_stderr": ("dedup_z", Q6_ONE_STDERR, "q6"),
    "q6_summed_stderrs": ("dedup_z", Q6_SUMMED_STDERRS, "q6"),
}


def _submission(func: str | None, source: str | None) -> nbformat.NotebookNode:
    """The solved notebook with the answer cell that defines `func` replaced by `source`."""
    nb = solved(NAME)
    return nb if func is None else answered(nb, func, source)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict[str, float]]:
    """CSV rows (by student) of grading every case in one `course-grade` call, and the points."""
    root = tmp_path_factory.mktemp("ex4")
    bundle = gen.generate(
        gen.SOLUTIONS_DIR / f"{NAME}.ipynb",
        root / "exercises",
        root / "visible",
        root / "autograder",
    ).autograder
    folder = root / "submissions"
    folder.mkdir()
    for name, (func, source, _) in CASES.items():
        nbformat.write(_submission(func, source), folder / f"{name}.ipynb")
    command = [sys.executable, "-m", "course_utils.grading.grade", NAME, str(folder)]
    command += ["-o", str(root / "out"), "--autograder", str(bundle), "-j", "2", "--timeout", "300"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(root / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, grade.questions(bundle)


@pytest.mark.parametrize("case", sorted(CASES))
def test_case_scores(case: str, graded: tuple[dict[str, dict], dict[str, float]]) -> None:
    rows, points = graded
    row = rows[case]
    assert row["status"] == "ok", row
    _, _, loses = CASES[case]
    if loses is None:  # the master and other correct methods: full marks everywhere
        assert {q: float(row[q]) for q in points} == points, row
    else:  # the wrong answer loses marks on its own question
        assert float(row[loses]) < points[loses], row


def test_ex4_questions_and_points(graded: tuple[dict[str, dict], dict[str, float]]) -> None:
    _, points = graded
    assert points == {"q1": 2.0, "q2": 3.0, "q3a": 3.0, "q4": 3.0, "q5": 2.0, "q6": 2.0}
