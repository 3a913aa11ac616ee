"""course_utils.losses against a naive per-anchor loop, lightly, pytorch-metric-learning and itself."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from course_utils.losses import info_nce, nt_xent


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / math.sqrt(float((v * v).sum()))


def _naive_anchor_loss(anchor, positive, negatives, tau):
    """-log exp(a.p/tau) / (exp(a.p/tau) + sum_j exp(a.n_j/tau)), one anchor, in float64."""
    a = _unit(anchor.double())
    num = math.exp(float(a @ _unit(positive.double())) / tau)
    den = num + sum(math.exp(float(a @ _unit(n.double())) / tau) for n in negatives)
    return -math.log(num / den)


def naive_info_nce(query, positive_key, negative_keys, tau):
    """Per-query InfoNCE losses, looping over queries (the lecture-notes formula)."""
    losses = []
    for i in range(len(query)):
        if negative_keys is None:
            negatives = [positive_key[j] for j in range(len(query)) if j != i]
        elif negative_keys.dim() == 2:
            negatives = list(negative_keys)
        else:
            negatives = list(negative_keys[i])
        losses.append(_naive_anchor_loss(query[i], positive_key[i], negatives, tau))
    return torch.tensor(losses, dtype=torch.float64)


def naive_nt_xent(z1, z2, tau):
    """Mean over the 2N anchors of the SimCLR loss, positive = pair, negatives = other 2N-2."""
    z = torch.cat([z1, z2])
    n2 = len(z)
    losses = []
    for k in range(n2):
        pair = (k + n2 // 2) % n2
        negatives = [z[j] for j in range(n2) if j not in (k, pair)]
        losses.append(_naive_anchor_loss(z[k], z[pair], negatives, tau))
    return sum(losses) / n2


def _randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


# ---- values against the naive loop (float32 vs float64 reference: 1e-5 relative) -------------


@pytest.mark.parametrize("tau", [0.07, 0.1, 1.0])
@pytest.mark.parametrize("negatives", ["in-batch", "shared", "per-query"])
def test_info_nce_matches_naive_loop(tau, negatives):
    n, m, d = 6, 5, 8
    q, p = _randn(n, d, seed=1), _randn(n, d, seed=2)
    neg = {"in-batch": None, "shared": _randn(m, d, seed=3), "per-query": _randn(n, m, d, seed=4)}[
        negatives
    ]
    ref = naive_info_nce(q, p, neg, tau)
    kw = {"temperature": tau}
    torch.testing.assert_close(
        info_nce(q, p, neg, **kw, reduction="none").double(), ref, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(info_nce(q, p, neg, **kw).double(), ref.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        info_nce(q, p, neg, **kw, reduction="sum").double(), ref.sum(), rtol=1e-5, atol=1e-6
    )


def test_info_nce_default_temperature_is_0_1():
    q, p = _randn(5, 4, seed=5), _randn(5, 4, seed=6)
    assert info_nce(q, p).item() == pytest.approx(
        naive_info_nce(q, p, None, 0.1).mean().item(), rel=1e-5
    )


def test_info_nce_is_invariant_to_embedding_scale():
    q, p = _randn(7, 3, seed=7), _randn(7, 3, seed=8)
    torch.testing.assert_close(info_nce(q, p), info_nce(123.0 * q, 0.01 * p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_nt_xent_matches_naive_loop(tau, chunk_size):
    z1, z2 = _randn(5, 6, seed=9), _randn(5, 6, seed=10)
    got = nt_xent(z1, z2, temperature=tau, chunk_size=chunk_size)
    assert got.item() == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_default_temperature_is_0_5():
    z1, z2 = _randn(4, 3, seed=11), _randn(4, 3, seed=12)
    assert nt_xent(z1, z2).item() == pytest.approx(naive_nt_xent(z1, z2, 0.5), rel=1e-5)


# ---- against the libraries (skipped cleanly when they are not installed) ----------------------
# Both are float32 too; tolerance 1e-6 absolute + 1e-6 relative (float32 spacing near 8 is 9.5e-7).


@pytest.mark.parametrize("tau", [0.07, 0.5])
@pytest.mark.parametrize("n", [2, 33])
def test_nt_xent_equals_lightly(tau, n):
    lightly_loss = pytest.importorskip("lightly.loss")
    z1, z2 = _randn(n, 16, seed=13), _randn(n, 16, seed=14)
    ref = lightly_loss.NTXentLoss(temperature=tau)(z1, z2)
    torch.testing.assert_close(nt_xent(z1, z2, temperature=tau), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        nt_xent(z1, z2, temperature=tau, chunk_size=8), ref, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_equals_pytorch_metric_learning(tau):
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z1, z2 = _randn(33, 16, seed=15), _randn(33, 16, seed=16)
    ref = pml.SelfSupervisedLoss(pml.NTXentLoss(temperature=tau))(z1, z2)
    torch.testing.assert_close(nt_xent(z1, z2, temperature=tau), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_info_nce_with_shared_negatives_equals_lightly_memory_bank(tau):
    """lightly's NTXentLoss with a full memory bank is InfoNCE with (M, D) shared negatives."""
    lightly_loss = pytest.importorskip("lightly.loss")
    n, m, d = 6, 10, 8
    q, p, bank = _randn(n, d, seed=17), _randn(n, d, seed=18), _randn(m, d, seed=19)
    loss_fn = lightly_loss.NTXentLoss(temperature=tau, memory_bank_size=(m, d))
    loss_fn.memory_bank.bank = torch.nn.functional.normalize(bank, dim=1)  # (M, D) rows
    ref = loss_fn(q, p)  # no grad: the bank is used as is, then updated
    torch.testing.assert_close(info_nce(q, p, bank, temperature=tau), ref, rtol=1e-6, atol=1e-6)


# ---- the tiled path: same values and gradients as dense, never the full matrix ----------------


@pytest.mark.parametrize("chunk_size", [1, 5, 31, 32, 1000])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_tiled_value_and_gradients_equal_dense(chunk_size, tau):
    z1 = _randn(16, 12, seed=20).requires_grad_()
    z2 = _randn(16, 12, seed=21).requires_grad_()
    dense = nt_xent(z1, z2, temperature=tau)
    tiled = nt_xent(z1, z2, temperature=tau, chunk_size=chunk_size)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-5)
    g_dense = torch.autograd.grad(dense, (z1, z2))
    g_tiled = torch.autograd.grad(tiled, (z1, z2))
    for gt, gd in zip(g_tiled, g_dense, strict=True):
        torch.testing.assert_close(gt, gd, rtol=1e-5, atol=1e-5)


def test_tiled_backward_passes_gradcheck():
    """The custom backward against finite differences, in float64 (a reference independent of dense)."""
    z1 = _randn(4, 3, seed=22, dtype=torch.float64).requires_grad_()
    z2 = _randn(4, 3, seed=23, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: nt_xent(a, b, temperature=0.3, chunk_size=3), (z1, z2)
    )


def test_tiled_handles_large_logits_without_overflow():
    """tau = 0.01 gives logits up to 100: exp would overflow without the running max."""
    z1 = _randn(8, 4, seed=24).requires_grad_()
    z2 = (z1.detach() + 0.1 * _randn(8, 4, seed=25)).requires_grad_()
    dense = nt_xent(z1, z2, temperature=0.01)
    tiled = nt_xent(z1, z2, temperature=0.01, chunk_size=3)
    assert torch.isfinite(tiled)
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-5)
    tiled.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


@pytest.mark.parametrize("chunk_size", [7, 1000])
@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_tiled_keeps_relative_precision_when_the_loss_is_small(chunk_size, noise):
    """tau = 0.05, pairs close together: loss 6e-5 to 1e-4, a difference of two numbers ~1/tau.

    Reference: the naive loop (value) and the dense loss's autograd (gradients), both in float64.
    Combining lse and positive per row keeps the float32 tiled loss to ~4e-7 relative (it was
    8e-3 when the two means were subtracted) and its gradients to ~1e-6 of their largest entry
    (was 4.5e-4); the dense float32 loss is at 2.4e-4 and 4.5e-5 on these inputs.
    """
    tau = 0.05
    z1 = _randn(48, 32, seed=40, dtype=torch.float64)
    z2 = z1 + noise * _randn(48, 32, seed=41, dtype=torch.float64)
    ref = naive_nt_xent(z1, z2, tau)
    assert ref < 2e-4  # the regime this test is about
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ref_grads = torch.autograd.grad(nt_xent(a, b, temperature=tau), (a, b))
    a, b = z1.float().requires_grad_(), z2.float().requires_grad_()
    loss = nt_xent(a, b, temperature=tau, chunk_size=chunk_size)
    assert abs(loss.item() - ref) <= 1e-5 * ref
    scale = max(g.abs().max().item() for g in ref_grads)
    for got, want in zip(torch.autograd.grad(loss, (a, b)), ref_grads, strict=True):
        assert (got.double() - want).abs().max().item() <= 1e-5 * scale


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_only_the_dense_path_materialises_the_2n_by_2n_matrix():
    n, d, k = 64, 4, 8  # 2N x 2N = 16384 elements; a (2N, K) tile is 1024
    z1 = _randn(n, d, seed=26).requires_grad_()
    z2 = _randn(n, d, seed=27).requires_grad_()
    with _LargestTensor() as dense:
        nt_xent(z1, z2).backward()
    with _LargestTensor() as tiled:
        nt_xent(z1, z2, chunk_size=k).backward()
    assert dense.largest >= (2 * n) ** 2  # the probe sees the full matrix when it exists
    assert tiled.largest <= max(2 * n * k, 2 * n * d)  # forward and backward: one tile at most


# ---- half precision ------------------------------------------------------------------------------


LOSSES = (
    lambda a, b: info_nce(a, b),
    lambda a, b: info_nce(a, b, b.flip(0)),
    lambda a, b: info_nce(a, b, torch.stack([b.roll(1, 0), b.roll(2, 0)], dim=1)),
    lambda a, b: nt_xent(a, b),
    lambda a, b: nt_xent(a, b, chunk_size=5),
)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 3e3])
def test_half_precision_is_finite_and_equals_float32(dtype, scale):
    """Tiny (squares underflow in fp16) and huge (squares overflow fp16) embeddings stay finite.

    The half inputs upcast to float32 are the reference: the loss is computed in float32, so the
    two agree to float32 rounding (1e-5).
    """
    z1 = _randn(8, 16, seed=28, dtype=dtype, scale=scale)
    z2 = _randn(8, 16, seed=29, dtype=dtype, scale=scale)
    for loss_fn in LOSSES:
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        loss = loss_fn(a, b)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, loss_fn(z1.float(), z2.float()), rtol=1e-5, atol=1e-5)
        loss.backward()
        assert a.grad.dtype == dtype
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_an_all_zero_half_embedding_gives_a_finite_loss(dtype):
    """A dead (all-zero) row: F.normalize's eps=1e-12 is 0 in fp16, so 0/0 = NaN there.

    Its own gradient is scaled by 1/eps (x / max(|x|, eps) is x / eps near 0), as with F.normalize,
    and may overflow fp16 (GradScaler then skips the step); every other row's gradient is finite.
    """
    z1 = _randn(8, 16, seed=30, dtype=dtype)
    z2 = _randn(8, 16, seed=31, dtype=dtype)
    z1[0] = 0
    for loss_fn in LOSSES:
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        loss = loss_fn(a, b)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, loss_fn(z1.float(), z2.float()), rtol=1e-5, atol=1e-5)
        loss.backward()
        assert torch.isfinite(a.grad[1:]).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("scale", [1e20, 1e-30])
@pytest.mark.parametrize(
    "loss_fn", [LOSSES[0], LOSSES[3], LOSSES[4]], ids=["info_nce", "dense", "tiled"]
)
def test_float32_embeddings_of_extreme_scale_give_the_unit_scale_loss(loss_fn, scale):
    """Squares of entries above ~1e19 overflow float32 (below ~1e-23 they underflow): the loss was
    log(2N - 1) with zero gradient (1e20), or computed on unnormalised rows (1e-30).

    Reference: the same embeddings at scale 1; the loss ignores the scale and the gradient
    scales by 1/scale (float32 rounding of the rescaling: 1e-5).
    """
    z1, z2 = _randn(8, 16, seed=32), _randn(8, 16, seed=33)
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ref = loss_fn(a, b)
    ref_grads = torch.autograd.grad(ref, (a, b))
    a, b = (scale * z1).requires_grad_(), (scale * z2).requires_grad_()
    loss = loss_fn(a, b)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(torch.autograd.grad(loss, (a, b)), ref_grads, strict=True):
        torch.testing.assert_close(got * scale, want, rtol=1e-5, atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------------

X = _randn(4, 3, seed=30)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"query": X.tolist()}, TypeError, "query"),
        ({"query": X.long()}, TypeError, "query"),
        ({"positive_key": X.int()}, TypeError, "positive_key"),
        ({"positive_key": X.double()}, TypeError, "positive_key"),
        ({"query": X[0]}, ValueError, "query"),
        ({"positive_key": X[:3]}, ValueError, "positive_key"),
        ({"positive_key": _randn(4, 5)}, ValueError, "positive_key"),
        ({"negative_keys": _randn(6, 5)}, ValueError, "negative_keys"),
        ({"negative_keys": _randn(4, 6, 5)}, ValueError, "negative_keys"),
        ({"negative_keys": _randn(3, 6, 3)}, ValueError, "negative_keys"),
        ({"negative_keys": _randn(4, 0, 3)}, ValueError, "negative_keys"),
        ({"negative_keys": _randn(3)}, ValueError, "negative_keys"),
        ({"negative_keys": X.long()}, TypeError, "negative_keys"),
        ({"negative_keys": X.tolist()}, TypeError, "negative_keys"),
        ({"query": X[:1], "positive_key": X[:1]}, ValueError, "N >= 2"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -0.1}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"temperature": "0.1"}, TypeError, "temperature"),
        ({"reduction": "avg"}, ValueError, "reduction"),
    ],
)
def test_info_nce_rejects_bad_input(kwargs, error, argument):
    args = {"query": X, "positive_key": X + 1} | kwargs
    with pytest.raises(error, match=argument):
        info_nce(
            args.pop("query"), args.pop("positive_key"), args.pop("negative_keys", None), **args
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"z1": X.numpy()}, TypeError, "z1"),
        ({"z1": X.long()}, TypeError, "z1"),
        ({"z2": X.bool()}, TypeError, "z2"),
        ({"z2": X.half()}, TypeError, "z2"),
        ({"z1": X[None]}, ValueError, "z1"),
        ({"z2": X[:3]}, ValueError, "z2"),
        ({"z2": _randn(4, 5)}, ValueError, "z2"),
        ({"z1": X[:1], "z2": X[:1]}, ValueError, "N >= 2"),
        ({"temperature": 0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": None}, TypeError, "temperature"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": -4}, ValueError, "chunk_size"),
        ({"chunk_size": 2.0}, TypeError, "chunk_size"),
        ({"chunk_size": True}, TypeError, "chunk_size"),
    ],
)
def test_nt_xent_rejects_bad_input(kwargs, error, argument):
    args = {"z1": X, "z2": X + 1} | kwargs
    with pytest.raises(error, match=argument):
        nt_xent(args.pop("z1"), args.pop("z2"), **args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["query", "positive_key", "negative_keys", "z1", "z2"])
def test_non_finite_embeddings_raise_instead_of_returning_nan(bad, where):
    tensors = {name: X.clone() + i for i, name in enumerate(["a", "b", "c"])}
    name = {"query": "a", "positive_key": "b", "negative_keys": "c", "z1": "a", "z2": "b"}[where]
    tensors[name][1, 2] = bad
    with pytest.raises(ValueError, match=f"{where} contains NaN or inf"):
        if where.startswith("z"):
            nt_xent(tensors["a"], tensors["b"], chunk_size=2)
        else:
            info_nce(tensors["a"], tensors["b"], tensors["c"])
