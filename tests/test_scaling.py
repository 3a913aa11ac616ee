"""Tests of course_utils.scaling: fits on synthetic data, allocation, input checks, Pythia table,
loader, suite. The shipped real data and the Epoch replication: test_scaling_data.py."""

import csv
import math
import warnings

import numpy as np
import pytest
import torch

from course_utils import scaling
from course_utils.scaling import (
    CHINCHILLA,
    CHINCHILLA_REPLICATION,
    KAPLAN,
    MINI_PYTHIA,
    PF_DAY,
    PYTHIA,
    PYTHIA_STEPS,
    PYTHIA_TOKENS_PER_STEP,
    BoundaryFitWarning,
    ChinchillaFit,
    PowerLaw,
    compute_optimal,
    count_non_embedding,
    encode_bytes,
    evaluate_suite,
    fit_chinchilla,
    fit_power_law,
    fitting,
    load_pythia,
    mini_suite,
    non_embedding_params,
    pythia,
)

# ------------------------------------------------------------------ power laws


def test_power_law_fit_recovers_exact_law():
    x = np.logspace(6, 10, 12)
    fit = fit_power_law(x, 7.5 * x**-0.076)
    assert fit.exponent == pytest.approx(-0.076, rel=1e-9)  # exact data: float round-off only
    assert fit.coef == pytest.approx(7.5, rel=1e-9)
    assert fit.offset == 0.0
    assert fit(1e8) == pytest.approx(7.5 * 1e8**-0.076, rel=1e-9)


def test_power_law_fit_with_noise_matches_log_space_regression():
    rng = np.random.default_rng(0)
    x = np.logspace(1, 5, 40)
    y = 2.0 * x**0.5 * np.exp(0.05 * rng.standard_normal(40))
    fit = fit_power_law(x, y)
    slope, intercept = np.linalg.lstsq(
        np.stack([np.log(x), np.ones(40)], 1), np.log(y), rcond=None
    )[0]  # reference: normal-equation least squares in log space
    assert fit.exponent == pytest.approx(slope, rel=1e-9)
    assert fit.coef == pytest.approx(math.exp(intercept), rel=1e-9)
    assert fit.exponent == pytest.approx(0.5, abs=0.03)  # 5% noise over 4 decades


def test_power_law_fit_with_offset_recovers_irreducible_loss():
    x = np.logspace(7, 11, 15)
    y = 1.7 + 400.0 * x**-0.34
    fit = fit_power_law(x, y, offset=True)
    assert fit.offset == pytest.approx(1.7, rel=1e-4)  # noise-free: optimiser tolerance only
    assert fit.exponent == pytest.approx(-0.34, rel=1e-4)
    assert fit.coef == pytest.approx(400.0, rel=1e-3)
    assert isinstance(fit(np.array([1e8, 1e9])), np.ndarray)


@pytest.mark.parametrize(
    ("x", "y", "offset", "match"),
    [
        ([1, 2, 0], [1, 2, 3], False, "x must hold finite positive"),
        ([1, 2, 3], [1, -2, 3], False, "y must hold finite positive"),
        ([1, 2, 3], [1, np.nan, 3], False, "y must hold finite positive"),
        ([1], [1], False, "at least 2 points"),
        ([1, 2], [3, 1], True, "at least 3 points"),
        ([1, 2, 3], [1, 2], False, "same length"),
        ([[1, 2], [3, 4]], [1, 2], False, "1-D"),
        ([2, 2, 2], [1, 2, 3], False, "distinct"),
    ],
)
def test_power_law_fit_rejects_bad_input(x, y, offset, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y, offset=offset)


def test_power_law_offset_pinned_at_its_bound_warns_and_says_so():
    # issue 15 item 7, the audit's case: Pythia's final LAMBADA perplexities show no floor below
    # min(y); before the fix the offset sat at min(y) = 3.92 silently, with exponent -1.005
    sizes = list(scaling.PYTHIA_LAMBADA_PERPLEXITY)
    x = [PYTHIA[s].non_embedding_params for s in sizes]
    y = list(scaling.PYTHIA_LAMBADA_PERPLEXITY.values())
    with pytest.warns(BoundaryFitWarning, match="offset pinned at its bound"):
        law = fit_power_law(x, y, offset=True)
    assert law.offset_at_bound
    assert law.offset == pytest.approx(min(y), rel=1e-6)  # the bound it hit


def test_power_law_offset_inside_its_range_does_not_warn():
    x = np.logspace(7, 11, 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BoundaryFitWarning)
        law = fit_power_law(x, 1.7 + 400.0 * x**-0.34, offset=True)  # a real floor at 1.7
        pure = fit_power_law(x, 400.0 * x**-0.34, offset=True)  # no floor: offset 0 is valid
    assert not law.offset_at_bound and not pure.offset_at_bound
    assert pure.offset == pytest.approx(0.0, abs=1e-6)
    assert pure.exponent == pytest.approx(-0.34, rel=1e-6)


# ------------------------------------------------------------------ Chinchilla


def _synthetic(truth: ChinchillaFit, n: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10.5, n)
    D = 10 ** rng.uniform(8, 11.5, n)
    return N, D, truth(N, D) * np.exp(noise * rng.standard_normal(n))


def test_chinchilla_fit_recovers_known_constants():
    N, D, L = _synthetic(CHINCHILLA, 60, 0.0, seed=1)
    fit = fit_chinchilla(N, D, L)
    for name in ("E", "A", "B", "alpha", "beta"):  # noise-free data: within 1%
        assert getattr(fit, name) == pytest.approx(getattr(CHINCHILLA, name), rel=0.01), name
    assert fit(N, D) == pytest.approx(L, rel=1e-4)


def test_chinchilla_objective_gradient_matches_finite_differences():
    N, D, L = _synthetic(CHINCHILLA_REPLICATION, 30, 0.02, seed=2)
    args = (np.log(N), np.log(D), np.log(L))
    theta = np.array([6.0, 7.5, 0.6, 0.35, 0.37])
    _, grad = fitting._chinchilla_objective(theta, *args)
    h = 1e-7
    numeric = [
        (
            fitting._chinchilla_objective(theta + h * e, *args)[0]
            - fitting._chinchilla_objective(theta - h * e, *args)[0]
        )
        / (2 * h)
        for e in np.eye(5)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-9)  # central differences


def test_chinchilla_call_is_the_parametric_law():
    assert CHINCHILLA(70e9, 1.4e12) == pytest.approx(
        1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28, rel=1e-12
    )


@pytest.mark.parametrize(
    ("N", "D", "L", "match"),
    [
        ([1e8] * 5, [1e9] * 5, [2.0] * 4, "same length"),
        ([1e8] * 4, [1e9] * 4, [2.0] * 4, "at least 5"),
        ([1e8, 1e9, -1, 1e7, 1e8], [1e9] * 5, [2.0] * 5, "N must"),
        ([1e8] * 5, [1e9] * 5, [2.0, 0.0, 2, 2, 2], "loss must"),
    ],
)
def test_chinchilla_fit_rejects_bad_input(N, D, L, match):
    with pytest.raises(ValueError, match=match):
        fit_chinchilla(N, D, L)


# ------------------------------------------------------------------ compute-optimal allocation


@pytest.mark.parametrize("fit", [CHINCHILLA, CHINCHILLA_REPLICATION])
def test_compute_optimal_minimises_loss_on_the_budget(fit):
    from scipy.optimize import minimize_scalar

    C = 5.76e23  # Chinchilla/Gopher budget
    N_opt, D_opt = compute_optimal(C, fit)
    assert 6 * N_opt * D_opt == pytest.approx(C, rel=1e-12)
    # reference: minimise L(N, C / 6N) over log N numerically
    best = minimize_scalar(
        lambda logn: fit(math.exp(logn), C / (6 * math.exp(logn))),
        bounds=(math.log(1e8), math.log(1e14)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert N_opt == pytest.approx(math.exp(best.x), rel=1e-4)


def test_compute_optimal_hand_computed_values():
    # approach 3: G = (0.34*406.4 / (0.28*410.7))**(1/0.62), a = 0.28/0.62, b = 0.34/0.62
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    C = 6e22
    N_opt, D_opt = compute_optimal(C, CHINCHILLA)
    assert N_opt == pytest.approx(G * 1e22 ** (0.28 / 0.62), rel=1e-12)
    assert D_opt == pytest.approx(1e22 ** (0.34 / 0.62) / G, rel=1e-12)
    assert CHINCHILLA.allocation_exponents == pytest.approx((0.28 / 0.62, 0.34 / 0.62))
    # Kaplan: one PF-day buys N = 1.3e9 (Fig. 14), D = C / 6N
    N_k, D_k = compute_optimal(PF_DAY, KAPLAN)
    assert N_k == pytest.approx(1.3e9, rel=1e-12)
    assert D_k == pytest.approx(8.64e19 / (6 * 1.3e9), rel=1e-12)
    assert KAPLAN.allocation_exponents == pytest.approx((0.73, 0.27))


def test_gopher_budget_is_tens_of_billions_under_approach_3():
    N_opt, _ = compute_optimal(6 * 280e9 * 300e9, CHINCHILLA)
    assert 1e10 < N_opt < 1e11


def test_compute_optimal_vectorises_and_rejects_bad_input():
    N_opt, D_opt = compute_optimal(np.array([1e20, 1e22]), CHINCHILLA)
    assert N_opt.shape == D_opt.shape == (2,)
    assert N_opt[1] / N_opt[0] == pytest.approx(100 ** (0.28 / 0.62))
    with pytest.raises(ValueError, match="C must be"):
        compute_optimal(0.0, CHINCHILLA)
    with pytest.raises(TypeError, match="fit must be"):
        compute_optimal(1e20, PowerLaw(1.0, -0.1))


@pytest.mark.parametrize("C", ["1e23", True, np.array([True, False]), [1e22, "1e23"]])
def test_compute_optimal_rejects_strings_and_bools(C):
    # issue 15 item 6: before the fix "1e23" gave (1.46e10, 1.14e12) and True gave (0.60, 0.28)
    with pytest.raises(TypeError, match="C must be a number"):
        compute_optimal(C, CHINCHILLA)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("A", -1.0, ValueError),  # before: AttributeError about complex numbers in compute_optimal
        ("B", 0.0, ValueError),
        ("alpha", 0.0, ValueError),  # before: compute_optimal returned (0, inf)
        ("beta", -0.28, ValueError),
        ("E", -0.1, ValueError),
        ("E", math.nan, ValueError),
        ("A", math.inf, ValueError),
        ("alpha", "0.34", TypeError),
        ("beta", True, TypeError),
    ],
)
def test_chinchilla_fit_rejects_invalid_constants(field, value, error):
    constants = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28) | {field: value}
    with pytest.raises(error, match=f"ChinchillaFit.{field} must be"):
        ChinchillaFit(**constants)


def test_chinchilla_fit_accepts_numpy_scalars_and_a_zero_floor():
    fit = ChinchillaFit(E=0, A=np.float32(406.4), B=np.int64(410), alpha=0.34, beta=0.28)
    assert fit(1e9, 1e10) == pytest.approx(406.4 / 1e9**0.34 + 410 / 1e10**0.28, rel=1e-6)


def test_kaplan_laws_are_the_published_power_laws():
    assert KAPLAN.loss_N(8.8e13) == pytest.approx(1.0)
    assert KAPLAN.loss_N(1e9) == pytest.approx((8.8e13 / 1e9) ** 0.076)
    assert KAPLAN.loss_D(5.4e11) == pytest.approx(100**0.095)
    assert KAPLAN.loss_C(3.1e8 * PF_DAY) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="N must be"):
        KAPLAN.loss_N(-1.0)


# ------------------------------------------------------------------ Pythia table


def test_pythia_table_matches_the_gpt_neox_parameter_count():
    padded_vocab = {"6.9b": 50432, "12b": 50688}  # the rest use 50304 (model cards' configs)
    for size, m in PYTHIA.items():
        assert non_embedding_params(m.layers, m.d_model) == m.non_embedding_params, size
        vocab = padded_vocab.get(size, 50304)
        assert m.params == m.non_embedding_params + 2 * vocab * m.d_model, size  # untied in/out
        assert m.d_model % m.heads == 0, size
    assert len(PYTHIA_STEPS) == 154 and PYTHIA_STEPS[:3] == (0, 1, 2)
    assert PYTHIA_STEPS[-1] == 143_000 and 512 in PYTHIA_STEPS and 768 not in PYTHIA_STEPS
    assert PYTHIA_TOKENS_PER_STEP == 1024 * 2048
    assert set(scaling.PYTHIA_LAMBADA_PERPLEXITY) <= set(PYTHIA)


@pytest.mark.parametrize(("size", "step"), [("13m", 1000), ("70m", 1500), ("70m", -1)])
def test_load_pythia_rejects_unknown_checkpoints_before_any_download(size, step):
    with pytest.raises(ValueError, match="size|step"):
        load_pythia(size, step)


def test_load_pythia_asks_the_hub_for_the_revision(monkeypatch, tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cached copy only (see tests/test_hub.py)
    calls = []

    def fake_from_pretrained(path, **kwargs):  # no network: record the request instead
        calls.append((path, kwargs))
        config = GPTNeoXConfig(
            vocab_size=16,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=32,
        )
        return GPTNeoXForCausalLM(config).half()

    monkeypatch.setattr(GPTNeoXForCausalLM, "from_pretrained", fake_from_pretrained)
    model = load_pythia("160m", 2000, deduped=True)
    assert calls == [
        (
            "EleutherAI/pythia-160m-deduped",
            {
                "revision": "step2000",
                "local_files_only": True,
                "cache_dir": str(tmp_path / "huggingface"),
            },
        )
    ]
    assert next(model.parameters()).dtype == torch.float32 and not model.training


# ------------------------------------------------------------------ mini suite, loader, CSV

SIZES = ["3k", "25k"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    text = "def f(x):\n    return x * 2  # doubles\n" * 40
    steps = mini_suite(root, text, sizes=SIZES, steps=4, batch_size=4, context_length=16, seed=0)
    return root, steps


def test_mini_suite_writes_revision_folders(suite):
    root, steps = suite
    assert steps == (0, 1, 2, 3, 4)
    for size in SIZES:
        assert sorted(p.name for p in (root / size).iterdir()) == [f"step{s}" for s in steps]


def test_load_pythia_reads_local_revision_folders(suite):
    from transformers import GPTNeoXForCausalLM

    root, _ = suite
    model = load_pythia("25k", 4, root=root)
    assert isinstance(model, GPTNeoXForCausalLM) and not model.training
    assert count_non_embedding(model) == MINI_PYTHIA["25k"].non_embedding_params
    assert sum(p.numel() for p in model.parameters()) == MINI_PYTHIA["25k"].params
    start = load_pythia("25k", 0, root=root)
    changed = [
        not torch.equal(a, b) for a, b in zip(model.parameters(), start.parameters(), strict=True)
    ]
    assert any(changed)  # training moved the weights between step0 and step4
    assert load_pythia("25k", 4, root=root, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(FileNotFoundError, match="step5"):
        load_pythia("25k", 5, root=root)
    with pytest.raises(FileNotFoundError, match="25k-deduped"):
        load_pythia("25k", 4, root=root, deduped=True)


def test_mini_suite_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="sizes"):
        mini_suite(tmp_path, "abc" * 100, sizes=["70m"])
    with pytest.raises(ValueError, match="text must be longer"):
        mini_suite(tmp_path, "short", sizes=["3k"], context_length=16)


def test_evaluate_suite_matches_direct_perplexity_and_resumes(suite, tmp_path, monkeypatch):
    from course_utils.lm import perplexity

    root, _ = suite
    text = "def g(y):\n    return y + 1\n" * 6
    kwargs = dict(context_length=16, stride=8, root=root, encode=encode_bytes, device="cpu")
    path = tmp_path / "results.csv"
    loads = []
    real_load = pythia.load_pythia

    def counting_load(size, step, **kw):
        loads.append((size, step))
        if (size, step) == ("25k", 2):
            raise RuntimeError("interrupted")  # simulate an interrupted run
        return real_load(size, step, **kw)

    monkeypatch.setattr(pythia, "load_pythia", counting_load)
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate_suite(SIZES, [0, 2], text, csv_path=path, **kwargs)
    with open(path) as f:
        saved = list(csv.DictReader(f))
    assert [(r["size"], r["step"]) for r in saved] == [("3k", "0"), ("3k", "2"), ("25k", "0")]

    monkeypatch.setattr(
        pythia, "load_pythia", lambda *a, **kw: loads.append(a) or real_load(*a, **kw)
    )
    loads.clear()
    rows = evaluate_suite(SIZES, [0, 2, 4], text, csv_path=path, **kwargs)
    assert loads == [("3k", 4), ("25k", 2), ("25k", 4)]  # only what the CSV lacked
    assert [(r["size"], r["step"]) for r in rows] == [(s, t) for s in SIZES for t in (0, 2, 4)]
    ids = torch.tensor(encode_bytes(text))
    for row in rows:  # reference: lesson 04's perplexity on the loaded checkpoint
        model = real_load(row["size"], row["step"], root=root)
        ppl = perplexity(model, ids, context_length=16, stride=8)
        assert row["perplexity"] == pytest.approx(ppl, rel=1e-5)
        assert row["loss"] == pytest.approx(math.log(ppl), rel=1e-6)
        assert row["non_embedding_params"] == MINI_PYTHIA[row["size"]].non_embedding_params
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == 6  # each pair written exactly once

    loads.clear()
    assert evaluate_suite(SIZES, [4], text, csv_path=path, **kwargs) == rows[2::3]
    assert loads == []  # everything read back from the CSV


def test_evaluate_suite_offline_fails_fast_with_the_hub_error(tmp_path, monkeypatch):
    """Lesson 06 section 6 skips on HubUnavailableError: offline, the real suite raises it (naming
    the model and the offline alternative) before any CSV is written."""
    from course_utils.hub import HubUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("COURSE_STANDINS", raising=False)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))  # an empty Hugging Face cache
    path = tmp_path / "pythia.csv"
    with pytest.raises(HubUnavailableError, match=r"'EleutherAI/pythia-70m'.*Offline alternative"):
        evaluate_suite(["70m"], [53_000], "text " * 20, csv_path=path, context_length=16, stride=8)
    assert not path.exists()


def test_evaluate_suite_rejects_bad_input(suite, tmp_path):
    root, _ = suite
    kwargs = dict(context_length=16, stride=8, root=root, encode=encode_bytes)
    with pytest.raises(ValueError, match="models and steps"):
        evaluate_suite([], [0], "text", csv_path=tmp_path / "a.csv", **kwargs)
    with pytest.raises(ValueError, match="text must be"):
        evaluate_suite(["3k"], [0], "", csv_path=tmp_path / "a.csv", **kwargs)
    with pytest.raises(FileNotFoundError, match="step7"):
        evaluate_suite(["3k"], [7], "text", csv_path=tmp_path / "a.csv", **kwargs)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an evaluate_suite CSV"):
        evaluate_suite(["3k"], [0], "text " * 20, csv_path=other, **kwargs)
