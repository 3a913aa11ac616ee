"""Fitting scaling laws: power laws (with an optional floor), Chinchilla's approach 3, and the
compute-optimal allocation a fitted law implies."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from course_utils.scaling._checks import positive, positive_array, scalar_or_array
from course_utils.scaling.constants import PF_DAY, ChinchillaFit, KaplanLaws

HUBER_DELTA = 1e-3
"""Huber threshold of the Chinchilla approach-3 fit (Hoffmann et al. 2022, section 3.3)."""

OFFSET_BOUND_RTOL = 1e-6
"""An offset within this relative distance of min(y) counts as pinned at its upper bound."""


class BoundaryFitWarning(RuntimeWarning):
    """A fitted parameter sits on the bound of its allowed range: the fit is not an interior optimum."""


# --------------------------------------------------------------------------------------------
# Power laws


@dataclass(frozen=True)
class PowerLaw:
    """`y = offset + coef * x**exponent` (a decreasing law has a negative exponent).

    `offset_at_bound` is True when a fitted offset pinned at min(y), its upper bound: the law then
    passes through the lowest point and its exponent is not a measurement of anything.
    """

    coef: float
    exponent: float
    offset: float = 0.0
    offset_at_bound: bool = False

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        """The law evaluated at `x`."""
        x = np.asarray(x, dtype=float)
        return scalar_or_array(self.offset + self.coef * x**self.exponent)


def fit_power_law(x: Sequence[float], y: Sequence[float], *, offset: bool = False) -> PowerLaw:
    """Fit `y = coef * x**exponent` (+ `offset` in [0, min y) if asked) by least squares on log y.

    With `offset=True`, warns (`BoundaryFitWarning`) and sets `offset_at_bound` when the best
    offset is min(y) itself; an offset of 0 is the pure power law and is a valid answer.
    """
    x, y = positive_array("x", x), positive_array("y", y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n_params = 3 if offset else 2
    if len(x) < n_params:
        raise ValueError(
            f"need at least {n_params} points to fit {n_params} parameters, got {len(x)}"
        )
    if np.ptp(x) == 0:
        raise ValueError("x must hold at least two distinct values")
    log_x, log_y = np.log(x), np.log(y)
    exponent, log_coef = np.polyfit(log_x, log_y, 1)
    if not offset:
        return PowerLaw(float(np.exp(log_coef)), float(exponent))

    from scipy.optimize import least_squares

    def residuals(theta: np.ndarray) -> np.ndarray:
        log_c, k, e = theta
        return log_y - np.log(e + np.exp(log_c + k * log_x))

    # The offset lies in [0, min y); start from several fractions of min y, keep the best fit.
    upper = y.min() * (1 - 1e-9)
    best = None
    for fraction in (0.0, 0.3, 0.6, 0.9):
        e0 = fraction * y.min()
        k0, c0 = np.polyfit(log_x, np.log(y - e0), 1)
        fit = least_squares(
            residuals, x0=[c0, k0, e0], bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, upper])
        )
        if best is None or fit.cost < best.cost:
            best = fit
    log_c, k, e = best.x
    at_bound = bool(e >= y.min() * (1 - OFFSET_BOUND_RTOL))
    if at_bound:
        warnings.warn(
            f"fit_power_law: the offset pinned at its bound min(y) = {y.min():.6g}; the law runs "
            f"through the lowest point and its exponent ({k:.3g}) is meaningless. The data show "
            "no floor below min(y): fit without an offset, or with more points.",
            BoundaryFitWarning,
            stacklevel=2,
        )
    return PowerLaw(float(np.exp(log_c)), float(k), float(e), at_bound)


# --------------------------------------------------------------------------------------------
# Chinchilla: L(N, D) = E + A / N**alpha + B / D**beta


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals and its derivative."""
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return value, grad


def _chinchilla_objective(
    theta: np.ndarray, log_N: np.ndarray, log_D: np.ndarray, log_L: np.ndarray
) -> tuple[float, np.ndarray]:
    """Summed Huber loss of log L - LSE(a - alpha log N, b - beta log D, e), with its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    prediction = top + np.log(total)
    weights /= total  # softmax: d prediction / d term
    value, psi = _huber(log_L - prediction, HUBER_DELTA)
    grad = -np.array(
        [
            np.sum(psi * weights[0]),
            np.sum(psi * weights[1]),
            np.sum(psi * weights[2]),
            np.sum(psi * weights[0] * -log_N),
            np.sum(psi * weights[1] * -log_D),
        ]
    )
    return float(value.sum()), grad


def fit_chinchilla(
    N: Sequence[float], D: Sequence[float], loss: Sequence[float], *, starts: int = 8
) -> ChinchillaFit:
    """Fit `L = E + A/N**alpha + B/D**beta` as Hoffmann et al. 2022's approach 3.

    Minimises the Huber loss (delta 1e-3) of `log L - LSE(a - alpha log N, b - beta log D, e)`
    (A = e**a, B = e**b, E = e**e) with L-BFGS, started from the `starts` best points of the
    paper's initialisation grid; the best optimum is kept.
    """
    from scipy.optimize import minimize

    N, D, loss = positive_array("N", N), positive_array("D", D), positive_array("loss", loss)
    if not len(N) == len(D) == len(loss):
        raise ValueError(
            f"N, D and loss must have the same length, got {len(N)}, {len(D)}, {len(loss)}"
        )
    if len(N) < 5:
        raise ValueError(f"need at least 5 points to fit 5 parameters, got {len(N)}")
    if starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    log_N, log_D, log_L = np.log(N), np.log(D), np.log(loss)
    # Hoffmann et al.'s grid: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
    # a, b in {0, 5, ..., 25}. Rank it by the objective, run L-BFGS from the best points.
    grid = np.array(
        list(
            itertools.product(
                np.arange(0, 30, 5.0),
                np.arange(0, 30, 5.0),
                np.arange(-1, 1.5, 0.5),
                np.arange(0, 2.5, 0.5),
                np.arange(0, 2.5, 0.5),
            )
        )
    )
    a, b, e, alpha, beta = (grid[:, i, None] for i in range(5))  # score the whole grid at once
    prediction = np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e)
    scores = _huber(log_L - prediction, HUBER_DELTA)[0].sum(axis=1)
    best = None
    for index in np.argsort(scores)[:starts]:
        result = minimize(
            _chinchilla_objective,
            grid[index],
            args=(log_N, log_D, log_L),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    return ChinchillaFit(
        E=float(np.exp(e)),
        A=float(np.exp(a)),
        B=float(np.exp(b)),
        alpha=float(alpha),
        beta=float(beta),
    )


def compute_optimal(
    C: float | np.ndarray, fit: ChinchillaFit | KaplanLaws
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(N_opt, D_opt) that minimise the loss at compute C FLOPs under C = 6 N D.

    For a `ChinchillaFit`: N_opt = G (C/6)**a, D_opt = (C/6)**b / G with
    G = (alpha A / (beta B))**(1/(alpha+beta)) and (a, b) = `fit.allocation_exponents`.
    For `KaplanLaws`: N_opt from the compute-efficient frontier, D_opt = C / (6 N_opt).
    """
    C = positive("C", C)
    if isinstance(fit, ChinchillaFit):
        a, b = fit.allocation_exponents
        G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1 / (fit.alpha + fit.beta))
        N_opt, D_opt = G * (C / 6) ** a, (C / 6) ** b / G
    elif isinstance(fit, KaplanLaws):
        N_opt = fit.n_opt_coef * (C / PF_DAY) ** fit.n_opt_exponent
        D_opt = C / (6 * N_opt)
    else:
        raise TypeError(f"fit must be a ChinchillaFit or KaplanLaws, got {type(fit).__name__}")
    return scalar_or_array(N_opt), scalar_or_array(D_opt)
