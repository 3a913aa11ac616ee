"""Accuracy and speed of fit_chinchilla on synthetic runs drawn from known constants.

200 points (N in 1e7..3e10, D in 1e8..3e11, log-uniform) from each published constant set, 1%
multiplicative noise, several seeds. Prints the recovered constants' relative errors (target: < 5% on
alpha and beta) and the fit time, next to a reference measured in the same run: plain nonlinear
least squares on L (scipy curve_fit, no Huber loss, no log space) from one starting point.
A third case adds 5% outlier runs (loss 30% too high): there the Huber loss earns its keep, while
on clean Gaussian noise plain least squares is as accurate and far faster. Last, the real runs:
Chinchilla's 240 kept training runs (Epoch AI's extraction), where the reference is Besiroglu et
al. 2024's published fit and the compute-optimal size at 5.76e23 FLOPs.

Run: PYTHONPATH=. python benchmarks/bench_scaling.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import curve_fit

from course_utils.scaling import (
    CHINCHILLA,
    CHINCHILLA_REPLICATION,
    ChinchillaFit,
    compute_optimal,
    fit_chinchilla,
    load_chinchilla_points,
)

NAMES = ("E", "A", "B", "alpha", "beta")


def synthetic(truth: ChinchillaFit, n: int, noise: float, outliers: float, seed: int):
    """n runs (N, D, L) from `truth`, log-normal noise, a fraction of runs 30% too high."""
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10.5, n)
    D = 10 ** rng.uniform(8, 11.5, n)
    L = truth(N, D) * np.exp(noise * rng.standard_normal(n))
    L[rng.random(n) < outliers] *= 1.3  # e.g. diverged or mis-logged runs
    return N, D, L


def curve_fit_reference(N, D, L) -> ChinchillaFit:
    """Least squares on L itself from one generic start (the naive way)."""

    def law(x, E, A, B, alpha, beta):
        return E + A / x[0] ** alpha + B / x[1] ** beta

    params, _ = curve_fit(law, np.stack([N, D]), L, p0=[1.0, 100.0, 100.0, 0.3, 0.3], maxfev=20000)
    return ChinchillaFit(*params)


def relative_errors(fit: ChinchillaFit, truth: ChinchillaFit) -> np.ndarray:
    return np.array([abs(getattr(fit, k) / getattr(truth, k) - 1) for k in NAMES])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.01)
    args = parser.parse_args()
    cases = [
        ("approach 3", CHINCHILLA, 0.0),
        ("replication", CHINCHILLA_REPLICATION, 0.0),
        ("replication, 5% outlier runs", CHINCHILLA_REPLICATION, 0.05),
    ]
    for label, truth, outliers in cases:
        ours, ref, t_ours, t_ref = [], [], 0.0, 0.0
        for seed in range(args.seeds):
            N, D, L = synthetic(truth, args.points, args.noise, outliers, seed)
            start = time.perf_counter()
            ours.append(relative_errors(fit_chinchilla(N, D, L), truth))
            t_ours += time.perf_counter() - start
            start = time.perf_counter()
            try:
                ref.append(relative_errors(curve_fit_reference(N, D, L), truth))
            except RuntimeError:  # curve_fit did not converge
                ref.append(np.full(5, np.nan))
            t_ref += time.perf_counter() - start
        ours, ref = np.array(ours), np.array(ref)
        print(f"\n{label}: {args.points} points, {args.noise:.0%} noise, {args.seeds} seeds")
        print(f"{'':<28}" + "".join(f"{k:>9}" for k in NAMES))
        print(f"{'fit_chinchilla max rel err':<28}" + "".join(f"{e:>9.2%}" for e in ours.max(0)))
        print(
            f"{'curve_fit    max rel err':<28}" + "".join(f"{e:>9.2%}" for e in np.nanmax(ref, 0))
        )
        worst = ours[:, 3:].max()
        print(
            f"alpha/beta worst error {worst:.2%} (target < 5%: {'met' if worst < 0.05 else 'MISSED'})"
        )
        print(
            f"time per fit: fit_chinchilla {t_ours / args.seeds:.2f} s, curve_fit "
            f"{t_ref / args.seeds:.3f} s, ratio {t_ours / max(t_ref, 1e-9):.1f}x"
        )
    real_runs()


def real_runs() -> None:
    """fit_chinchilla and curve_fit on the 240 real runs, against the published replication."""
    points = load_chinchilla_points()
    kept = ~points["outlier"]
    N, D, L = points["N"][kept], points["D"][kept], points["loss"][kept]
    print(
        f"\nreal runs: {kept.sum()} Chinchilla runs (Epoch AI extraction), reference Besiroglu 2024"
    )
    print(f"{'':<28}" + "".join(f"{k:>9}" for k in NAMES) + f"{'N_opt':>9}{'time':>8}")
    for label, fitter in [("fit_chinchilla", fit_chinchilla), ("curve_fit", curve_fit_reference)]:
        start = time.perf_counter()
        try:
            fit = fitter(N, D, L)
        except RuntimeError:  # curve_fit did not converge
            print(f"{label:<28}did not converge")
            continue
        seconds = time.perf_counter() - start
        errors = relative_errors(fit, CHINCHILLA_REPLICATION)
        n_opt = compute_optimal(5.76e23, fit)[0]
        print(
            f"{label + ' rel err':<28}"
            + "".join(f"{e:>9.2%}" for e in errors)
            + f"{n_opt / 1e9:>8.1f}B{seconds:>7.2f}s"
        )


if __name__ == "__main__":
    main()
