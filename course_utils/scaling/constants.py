"""Published scaling constants and tables: Kaplan's laws, Chinchilla's fits, the Pythia suite.

Sources:
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla),
  https://arxiv.org/abs/2203.15556
- Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", https://arxiv.org/abs/2404.10102
- Biderman et al. 2023, "Pythia: A Suite for Analyzing Large Language Models Across Training and
  Scaling", https://arxiv.org/abs/2304.01373, and https://github.com/EleutherAI/pythia
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from course_utils.scaling._checks import positive, scalar_or_array

PF_DAY = 1e15 * 24 * 3600
"""FLOPs in one petaflop/s-day, Kaplan's compute unit."""


@dataclass(frozen=True)
class KaplanLaws:
    """Kaplan et al. 2020's single-variable laws `L(X) = (X_c / X)**alpha_X` (nats per token).

    N counts non-embedding parameters, D tokens, C compute in PF-days (`PF_DAY` FLOPs). The
    compute-efficient frontier is `N_opt = n_opt_coef * C**n_opt_exponent` (C in PF-days).
    """

    alpha_N: float
    N_c: float
    alpha_D: float
    D_c: float
    alpha_C: float
    C_c: float
    n_opt_coef: float
    n_opt_exponent: float

    def loss_N(self, N: float | np.ndarray) -> float | np.ndarray:
        """Loss of a model with N non-embedding parameters trained to convergence (eq. 1.1)."""
        return scalar_or_array((self.N_c / positive("N", N)) ** self.alpha_N)

    def loss_D(self, D: float | np.ndarray) -> float | np.ndarray:
        """Loss of a large model trained on D tokens with early stopping (eq. 1.2)."""
        return scalar_or_array((self.D_c / positive("D", D)) ** self.alpha_D)

    def loss_C(self, C: float | np.ndarray) -> float | np.ndarray:
        """Loss at compute C FLOPs, spent compute-efficiently (eq. 1.3, C_min)."""
        return scalar_or_array((self.C_c / (positive("C", C) / PF_DAY)) ** self.alpha_C)

    @property
    def allocation_exponents(self) -> tuple[float, float]:
        """(a, b) with N_opt ∝ C**a and D_opt ∝ C**b."""
        return self.n_opt_exponent, 1.0 - self.n_opt_exponent


KAPLAN = KaplanLaws(
    alpha_N=0.076,
    N_c=8.8e13,
    alpha_D=0.095,
    D_c=5.4e13,
    alpha_C=0.050,
    C_c=3.1e8,
    n_opt_coef=1.3e9,
    n_opt_exponent=0.73,
)
"""Kaplan et al. 2020: eqs. 1.1-1.3 (alpha_N 0.076, N_c 8.8e13 non-embedding parameters; alpha_D
0.095, D_c 5.4e13 tokens; alpha_C^min 0.050, C_c^min 3.1e8 PF-days) and the compute-efficient model
size N_opt = 1.3e9 * C_min**0.73 (C in PF-days, Fig. 14)."""


@dataclass(frozen=True)
class ChinchillaFit:
    """The parametric loss `L(N, D) = E + A / N**alpha + B / D**beta` (nats per token).

    E >= 0 and A, B, alpha, beta > 0, all finite real numbers (checked on construction).
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        """Reject constants that do not make a decreasing law with a floor."""
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"ChinchillaFit.{name} must be a real number, got {value!r}")
            if not math.isfinite(value) or value < 0 or (value == 0 and name != "E"):
                bound = ">= 0" if name == "E" else "> 0"
                raise ValueError(f"ChinchillaFit.{name} must be finite and {bound}, got {value!r}")

    def __call__(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        """Predicted loss of N parameters trained on D tokens."""
        N, D = positive("N", N), positive("D", D)
        return scalar_or_array(self.E + self.A / N**self.alpha + self.B / D**self.beta)

    @property
    def allocation_exponents(self) -> tuple[float, float]:
        """(a, b) with N_opt ∝ C**a, D_opt ∝ C**b: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
        total = self.alpha + self.beta
        return self.beta / total, self.alpha / total


CHINCHILLA = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
"""Hoffmann et al. 2022, approach 3 (parametric fit, section 3.3 / eq. 10)."""

CHINCHILLA_REPLICATION = ChinchillaFit(E=1.817, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
"""Besiroglu et al. 2024, approach 3 refitted on data extracted from Hoffmann et al.'s Figure 4
(their Table 1 / eq. 4; the 240 runs left after dropping the 5 highest losses)."""


@dataclass(frozen=True)
class PythiaModel:
    """One model's shape: layers, width, heads, and parameter counts (total and non-embedding)."""

    layers: int
    d_model: int
    heads: int
    params: int
    non_embedding_params: int


def non_embedding_params(layers: int, d_model: int) -> int:
    """GPT-NeoX parameters outside the embeddings: per layer 12 d^2 + 13 d, plus the final norm."""
    return layers * (12 * d_model**2 + 13 * d_model) + 2 * d_model


PYTHIA = {
    "14m": PythiaModel(6, 128, 4, 14_067_712, 1_189_888),
    "31m": PythiaModel(6, 256, 8, 30_494_720, 4_739_072),
    "70m": PythiaModel(6, 512, 8, 70_426_624, 18_915_328),
    "160m": PythiaModel(12, 768, 12, 162_322_944, 85_056_000),
    "410m": PythiaModel(24, 1024, 16, 405_334_016, 302_311_424),
    "1b": PythiaModel(16, 2048, 8, 1_011_781_632, 805_736_448),
    "1.4b": PythiaModel(24, 2048, 16, 1_414_647_808, 1_208_602_624),
    "2.8b": PythiaModel(32, 2560, 32, 2_775_208_960, 2_517_652_480),
    "6.9b": PythiaModel(32, 4096, 32, 6_857_302_016, 6_444_163_072),
    "12b": PythiaModel(36, 5120, 40, 11_846_072_320, 11_327_027_200),
}
"""The Pythia suite (Biderman et al. 2023, Table 1 and the EleutherAI/pythia model cards). All are
GPT-NeoX models with untied input/output embeddings, rotary embeddings on 25% of each head, parallel
attention and MLP, trained on the Pile for 143,000 steps of `PYTHIA_TOKENS_PER_STEP` tokens."""

PYTHIA_STEPS = (0, *(2**k for k in range(10)), *range(1000, 143_001, 1000))
"""The 154 public checkpoints of every Pythia model: step0, step1, 2, 4, ..., 512, 1000, ..., 143000
(Hugging Face revisions `step{N}`)."""

PYTHIA_TOKENS_PER_STEP = 2_097_152
"""Tokens per Pythia optimiser step: 1024 sequences of 2048 tokens (Biderman et al. 2023)."""

PYTHIA_LAMBADA_PERPLEXITY = {
    "70m": 142.4,
    "160m": 38.1,
    "410m": 10.8,
    "1b": 7.92,
    "1.4b": 6.09,
    "2.8b": 5.04,
    "6.9b": 4.45,
    "12b": 3.92,
}
"""Published LAMBADA (OpenAI) perplexity of the standard (non-deduplicated) Pythia models at the
final step, step143000, from EleutherAI's pythia evaluation results
(https://github.com/EleutherAI/pythia, `evals/`; the full table ships as `load_pythia_evals()`).
This is a zero-shot task metric on the last word of each passage, not the Pile loss."""
