"""Scaling laws: power-law and Chinchilla fits, compute-optimal allocation, the Pythia suite.

Sources of the published constants:
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla),
  https://arxiv.org/abs/2203.15556
- Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", https://arxiv.org/abs/2404.10102
- Biderman et al. 2023, "Pythia: A Suite for Analyzing Large Language Models Across Training and
  Scaling", https://arxiv.org/abs/2304.01373, and https://github.com/EleutherAI/pythia
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_utils.runtime import quiet_transformers

PF_DAY = 1e15 * 24 * 3600
"""FLOPs in one petaflop/s-day, Kaplan's compute unit."""

HUBER_DELTA = 1e-3
"""Huber threshold of the Chinchilla approach-3 fit (Hoffmann et al. 2022, section 3.3)."""


def _positive_array(name: str, values: object) -> np.ndarray:
    """`values` as a 1-D float array of finite positive numbers, else ValueError naming `name`."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must hold finite positive numbers (fits work in log space)")
    return array


def _positive(name: str, value: object) -> np.ndarray:
    """`value` (scalar or array) as a float array of finite positive numbers."""
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return array


def _scalar_or_array(array: np.ndarray) -> float | np.ndarray:
    return float(array) if array.ndim == 0 else array


# --------------------------------------------------------------------------------------------
# Power laws


@dataclass(frozen=True)
class PowerLaw:
    """`y = offset + coef * x**exponent` (a decreasing law has a negative exponent)."""

    coef: float
    exponent: float
    offset: float = 0.0

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        """The law evaluated at `x`."""
        x = np.asarray(x, dtype=float)
        return _scalar_or_array(self.offset + self.coef * x**self.exponent)


def fit_power_law(x: Sequence[float], y: Sequence[float], *, offset: bool = False) -> PowerLaw:
    """Fit `y = coef * x**exponent` (+ `offset` >= 0 if asked) by least squares on log y."""
    x, y = _positive_array("x", x), _positive_array("y", y)
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
    best = None
    for fraction in (0.0, 0.3, 0.6, 0.9):
        e0 = fraction * y.min()
        k0, c0 = np.polyfit(log_x, np.log(y - e0), 1)
        fit = least_squares(
            residuals,
            x0=[c0, k0, e0],
            bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, y.min() * (1 - 1e-9)]),
        )
        if best is None or fit.cost < best.cost:
            best = fit
    log_c, k, e = best.x
    return PowerLaw(float(np.exp(log_c)), float(k), float(e))


# --------------------------------------------------------------------------------------------
# Kaplan et al. 2020


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
        return _scalar_or_array((self.N_c / _positive("N", N)) ** self.alpha_N)

    def loss_D(self, D: float | np.ndarray) -> float | np.ndarray:
        """Loss of a large model trained on D tokens with early stopping (eq. 1.2)."""
        return _scalar_or_array((self.D_c / _positive("D", D)) ** self.alpha_D)

    def loss_C(self, C: float | np.ndarray) -> float | np.ndarray:
        """Loss at compute C FLOPs, spent compute-efficiently (eq. 1.3, C_min)."""
        return _scalar_or_array((self.C_c / (_positive("C", C) / PF_DAY)) ** self.alpha_C)

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


# --------------------------------------------------------------------------------------------
# Chinchilla: L(N, D) = E + A / N**alpha + B / D**beta


@dataclass(frozen=True)
class ChinchillaFit:
    """The parametric loss `L(N, D) = E + A / N**alpha + B / D**beta` (nats per token)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        """Predicted loss of N parameters trained on D tokens."""
        N, D = _positive("N", N), _positive("D", D)
        return _scalar_or_array(self.E + self.A / N**self.alpha + self.B / D**self.beta)

    @property
    def allocation_exponents(self) -> tuple[float, float]:
        """(a, b) with N_opt ∝ C**a, D_opt ∝ C**b: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
        total = self.alpha + self.beta
        return self.beta / total, self.alpha / total


CHINCHILLA = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
"""Hoffmann et al. 2022, approach 3 (parametric fit, section 3.3 / eq. 10)."""

CHINCHILLA_REPLICATION = ChinchillaFit(E=1.817, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
"""Besiroglu et al. 2024, approach 3 refitted on data extracted from Hoffmann et al.'s Figure 4."""


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

    N, D, loss = _positive_array("N", N), _positive_array("D", D), _positive_array("loss", loss)
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
    C = _positive("C", C)
    if isinstance(fit, ChinchillaFit):
        a, b = fit.allocation_exponents
        G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1 / (fit.alpha + fit.beta))
        N_opt, D_opt = G * (C / 6) ** a, (C / 6) ** b / G
    elif isinstance(fit, KaplanLaws):
        N_opt = fit.n_opt_coef * (C / PF_DAY) ** fit.n_opt_exponent
        D_opt = C / (6 * N_opt)
    else:
        raise TypeError(f"fit must be a ChinchillaFit or KaplanLaws, got {type(fit).__name__}")
    return _scalar_or_array(N_opt), _scalar_or_array(D_opt)


# --------------------------------------------------------------------------------------------
# The Pythia suite


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
(https://github.com/EleutherAI/pythia, `evals/`). This is a zero-shot task metric on the last word
of each passage, not the Pile loss."""


def _pythia_path(size: str, step: int, deduped: bool, root: str | os.PathLike | None) -> str:
    """The `from_pretrained` location of a checkpoint: a local folder or a Hub repository."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    name = f"{size}-deduped" if deduped else size
    if root is not None:
        path = Path(root) / name / f"step{step}"
        if not path.is_dir():
            raise FileNotFoundError(f"no checkpoint folder {path} (expected <root>/<size>/step<N>)")
        return str(path)
    if size not in PYTHIA:
        raise ValueError(f"size must be one of {tuple(PYTHIA)}, got {size!r}")
    if step not in PYTHIA_STEPS:
        raise ValueError(f"step {step} is not a Pythia checkpoint; see PYTHIA_STEPS")
    return f"EleutherAI/pythia-{name}"


def _hub_cache() -> str:
    from course_utils.data import cache_dir

    return str(cache_dir() / "huggingface")


def load_pythia(
    size: str,
    step: int,
    *,
    deduped: bool = False,
    dtype: torch.dtype | None = None,
    root: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """A Pythia checkpoint in eval mode, as `dtype` (default float32): `EleutherAI/pythia-<size>`
    at revision `step<N>` from the Hugging Face Hub (cached in the course cache), or
    `<root>/<size>/step<N>` from a local folder such as the one `mini_suite` writes."""
    from transformers import GPTNeoXForCausalLM

    path = _pythia_path(size, step, deduped, root)
    hub = {} if root is not None else {"revision": f"step{step}", "cache_dir": _hub_cache()}
    with quiet_transformers():
        model = GPTNeoXForCausalLM.from_pretrained(path, **hub)
    # cast after loading: Hub checkpoints may be stored in float16, and the dtype keyword of
    # from_pretrained changed name across transformers versions
    return model.to(dtype or torch.float32).eval()


def pythia_tokenizer() -> Callable[[str], list[int]]:
    """The Pythia tokenizer's encode function (shared by every model of the suite; from the Hub)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("EleutherAI/pythia-70m", cache_dir=_hub_cache())
    return lambda text: tokenizer(text)["input_ids"]


def encode_bytes(text: str) -> list[int]:
    """The mini suite's tokenizer: the UTF-8 bytes of the text (vocabulary of 256)."""
    return list(text.encode("utf-8"))


def count_non_embedding(model: torch.nn.Module) -> int:
    """Parameters of a GPT-NeoX model outside its input and output embeddings."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


CSV_FIELDS = ("size", "step", "non_embedding_params", "tokens_evaluated", "loss", "perplexity")


def evaluate_suite(
    models: Iterable[str],
    steps: Iterable[int],
    text: str,
    *,
    csv_path: str | os.PathLike,
    context_length: int,
    stride: int,
    root: str | os.PathLike | None = None,
    deduped: bool = False,
    encode: Callable[[str], Sequence[int]] | None = None,
    batch_size: int = 8,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, float | int | str]]:
    """Loss (nats per token) and perplexity of every (size, step) checkpoint on `text`.

    Uses the sliding-window perplexity of lesson 04 (`course_utils.lm.perplexity`). Each result is
    appended to `csv_path` as soon as it is known; (size, step) pairs already in the file are not
    evaluated again, so an interrupted run resumes where it stopped. `encode` turns text into
    token ids (default: the Pythia tokenizer; `encode_bytes` for the mini suite). Returns the rows
    for the requested pairs, in order.
    """
    from tqdm.auto import tqdm

    from course_utils.lm import perplexity
    from course_utils.runtime import device as best_device

    models, steps = [str(m) for m in models], [int(s) for s in steps]
    if not models or not steps:
        raise ValueError("models and steps must not be empty")
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    for size in models:  # fail before any work on a bad name or step
        for step in steps:
            _pythia_path(size, step, deduped, root)
    csv_path = Path(csv_path)
    done: dict[tuple[str, int], dict[str, float | int | str]] = {}
    if csv_path.exists():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != CSV_FIELDS:
                raise ValueError(f"{csv_path} is not an evaluate_suite CSV (columns {CSV_FIELDS})")
            for row in reader:
                done[(row["size"], int(row["step"]))] = _parse_row(row)
    pending = [(m, s) for m in models for s in steps if (m, s) not in done]
    if pending:
        ids = torch.tensor(list((encode or pythia_tokenizer())(text)), dtype=torch.long)
        target = torch.device(device) if device is not None else best_device()
        new_file = not csv_path.exists()
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new_file:
                writer.writeheader()
            for size, step in tqdm(pending, desc="checkpoints"):
                model = load_pythia(size, step, deduped=deduped, dtype=dtype, root=root).to(target)
                with torch.no_grad():
                    ppl = perplexity(
                        model,
                        ids.to(target),
                        context_length=context_length,
                        stride=stride,
                        batch_size=batch_size,
                    )
                row = {
                    "size": size,
                    "step": step,
                    "non_embedding_params": count_non_embedding(model),
                    "tokens_evaluated": len(ids),
                    "loss": math.log(ppl),
                    "perplexity": ppl,
                }
                writer.writerow(row)
                f.flush()  # a later interruption keeps this row
                done[(size, step)] = row
                del model
    return [done[(m, s)] for m in models for s in steps]


def _parse_row(row: dict[str, str]) -> dict[str, float | int | str]:
    return {
        "size": row["size"],
        "step": int(row["step"]),
        "non_embedding_params": int(row["non_embedding_params"]),
        "tokens_evaluated": int(row["tokens_evaluated"]),
        "loss": float(row["loss"]),
        "perplexity": float(row["perplexity"]),
    }


# --------------------------------------------------------------------------------------------
# The offline twin: a mini Pythia suite trained on the course's offline text


def _mini(layers: int, d_model: int) -> PythiaModel:
    """A mini-suite shape: 16-wide heads, byte vocabulary (256) in and out."""
    body = non_embedding_params(layers, d_model)
    return PythiaModel(layers, d_model, d_model // 16, body + 2 * 256 * d_model, body)


MINI_PYTHIA = {
    "3k": _mini(1, 16),
    "25k": _mini(2, 32),
    "57k": _mini(2, 48),
    "150k": _mini(3, 64),
    "448k": _mini(4, 96),
}
"""Tiny GPT-NeoX shapes in Pythia's proportions (4x MLP, rotary on 25% of each head, parallel
attention and MLP, untied embeddings), with 16-wide heads and a byte vocabulary of 256; named by
their non-embedding size."""


def mini_suite(
    root: str | os.PathLike,
    text: str,
    *,
    sizes: Sequence[str] = tuple(MINI_PYTHIA),
    steps: int = 256,
    batch_size: int = 16,
    context_length: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[int, ...]:
    """Train mini Pythia models on `text` (bytes), saving `<root>/<size>/step<N>` checkpoints.

    Like Pythia, every size sees the same batches in the same order (`batch_size * context_length`
    tokens per step) with Adam, warm-up over the first 1% of steps and cosine decay to 10% of `lr`;
    checkpoints are saved at step 0, powers of two and every `steps // 8` steps. Returns the
    checkpoint steps.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from course_utils.runtime import device as best_device
    from course_utils.runtime import seed_everything

    unknown = [s for s in sizes if s not in MINI_PYTHIA]
    if unknown or not sizes:
        raise ValueError(f"sizes must be a non-empty subset of {tuple(MINI_PYTHIA)}, got {sizes!r}")
    if steps < 1 or batch_size < 1 or context_length < 2:
        raise ValueError(
            f"steps, batch_size >= 1 and context_length >= 2 needed, got {steps}, {batch_size}, "
            f"{context_length}"
        )
    data = torch.tensor(encode_bytes(text), dtype=torch.long)
    if len(data) <= context_length + 1:
        raise ValueError(
            f"text must be longer than context_length + 1 = {context_length + 1} bytes"
        )
    target = torch.device(device) if device is not None else best_device()
    checkpoints = sorted(
        {0, steps, *(2**k for k in range(steps.bit_length()) if 2**k <= steps)}
        | set(range(max(steps // 8, 1), steps + 1, max(steps // 8, 1)))
    )
    generator = seed_everything(seed)
    starts = torch.randint(
        0, len(data) - context_length - 1, (steps, batch_size), generator=generator
    )
    offsets = torch.arange(context_length + 1)
    warmup = max(steps // 100, 1)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    for size in sizes:
        shape = MINI_PYTHIA[size]
        config = GPTNeoXConfig(
            vocab_size=256,
            hidden_size=shape.d_model,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            intermediate_size=4 * shape.d_model,
            max_position_embeddings=context_length,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.25,
            },
            use_parallel_residual=True,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        torch.manual_seed(seed)  # same initialisation seed for every size, as in Pythia
        model = GPTNeoXForCausalLM(config).to(target)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        folder = Path(root) / size
        with quiet_transformers():
            model.save_pretrained(folder / "step0")
        for step in range(1, steps + 1):
            batch = data[starts[step - 1, :, None] + offsets].to(target)
            logits = model(batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step in checkpoints:
                with quiet_transformers():
                    model.save_pretrained(folder / f"step{step}")
    return tuple(checkpoints)
