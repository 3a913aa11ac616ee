"""Contrastive losses: InfoNCE and SimCLR's NT-Xent, dense and memory-efficient tiled.

Both losses L2-normalise the embeddings and compute similarities and the log-sum-exp in float32
for fp16/bf16 inputs (as autocast does for softmax losses; float64 stays float64), so half-precision
embeddings give a finite loss; gradients flow back to the inputs in their own dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")
# Smallest norm we divide by. Normalisation runs in float32, where 1e-12 is representable; in fp16
# it would round to 0 (the classic F.normalize(x.half()) failure), so we never normalise in half.
_NORM_EPS = 1e-12


def _check_embeddings(name: str, x: object, ndim: int) -> None:
    """Raise TypeError/ValueError unless `x` is a finite floating tensor with `ndim` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError(
            f"{name} must have an embedding dimension D >= 1, got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def _check_same(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Raise unless `x` has the dtype and device of `ref`."""
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {x.dtype}")
    if x.device != ref.device:
        raise ValueError(
            f"{name} must be on the device of {ref_name} ({ref.device}), got {x.device}"
        )


def _check_temperature(temperature: object) -> float:
    """The temperature as a float; raise unless it is a finite real number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a float, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return float(temperature)


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of `x` scaled to unit L2 norm, in float32 for half inputs (zero rows stay zero)."""
    if torch.finfo(x.dtype).bits < 32:
        x = x.float()
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_NORM_EPS)


def info_nce(
    query: torch.Tensor,
    positive_key: torch.Tensor,
    negative_keys: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE: cross-entropy of each query's positive key against its negatives, on cosine / tau.

    For query c_i with positive x_i and negatives x_j this is (lecture notes, van den Oord et al. 2018)
    ``-log exp(x_i.c_i/tau) / (exp(x_i.c_i/tau) + sum_j exp(x_j.c_i/tau))`` after L2 normalisation.

    Args:
        query: (N, D) embeddings c_i.
        positive_key: (N, D) embeddings x_i, the positive of query i.
        negative_keys: None: in-batch, the other N-1 positive keys are query i's negatives (N >= 2);
            (M, D): M negatives shared by all queries; (N, M, D): M negatives per query.
        temperature: tau > 0.
        reduction: "mean" or "sum" over the N queries, or "none" for the (N,) per-query losses.
    """
    _check_embeddings("query", query, 2)
    _check_embeddings("positive_key", positive_key, 2)
    _check_same("positive_key", positive_key, "query", query)
    if positive_key.shape != query.shape:
        raise ValueError(
            f"positive_key must have the shape of query {tuple(query.shape)}, "
            f"got {tuple(positive_key.shape)}"
        )
    tau = _check_temperature(temperature)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    n, d = query.shape
    q, p = _l2_normalize(query), _l2_normalize(positive_key)
    if negative_keys is None:
        if n < 2:
            raise ValueError(f"query needs N >= 2 rows for in-batch negatives, got N={n}")
        logits = q @ p.T  # row i: positive on the diagonal, the other keys are negatives
        labels = torch.arange(n, device=query.device)
    else:
        if not isinstance(negative_keys, torch.Tensor):
            raise TypeError(
                f"negative_keys must be None or a torch.Tensor, got {type(negative_keys).__name__}"
            )
        if negative_keys.dim() not in (2, 3):
            raise ValueError(
                f"negative_keys must be (M, D) or (N, M, D), got shape {tuple(negative_keys.shape)}"
            )
        _check_embeddings("negative_keys", negative_keys, negative_keys.dim())
        _check_same("negative_keys", negative_keys, "query", query)
        if negative_keys.shape[-1] != d:
            raise ValueError(
                f"negative_keys must have embedding dimension D={d} like query, "
                f"got shape {tuple(negative_keys.shape)}"
            )
        if negative_keys.dim() == 3 and negative_keys.shape[0] != n:
            raise ValueError(
                f"negative_keys of shape (N, M, D) must have N={n} like query, "
                f"got shape {tuple(negative_keys.shape)}"
            )
        if negative_keys.shape[-2] == 0:
            raise ValueError("negative_keys must hold at least one negative (M >= 1)")
        k = _l2_normalize(negative_keys)
        positive = (q * p).sum(-1, keepdim=True)
        negative = q @ k.T if k.dim() == 2 else torch.bmm(k, q.unsqueeze(-1)).squeeze(-1)
        logits = torch.cat([positive, negative], dim=1)  # the positive is class 0
        labels = torch.zeros(n, dtype=torch.long, device=query.device)
    return F.cross_entropy(logits / tau, labels, reduction=reduction)


class _MaskedGramLogSumExp(torch.autograd.Function):
    """Row log-sum-exp of (z z^T / tau) without its diagonal, in column tiles of `chunk` columns.

    Forward keeps a running max and sum per row (online log-sum-exp), so only a (2N, chunk) tile of
    the similarity matrix exists at a time. Backward recomputes each tile from z and the saved lse
    instead of storing the full softmax: memory O(N*D + N*chunk) for one extra matmul per tile.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, tau: float, chunk: int) -> torch.Tensor:
        rows = z.shape[0]
        zs = z / tau  # scale the (rows, D) side once, not every (rows, chunk) tile
        # Rows are unit (or zero) vectors, so every similarity is >= -1/tau: starting the running max
        # there keeps it finite even for a tile holding only the diagonal (no inf - inf = NaN).
        running_max = torch.full((rows,), -1.0 / tau, dtype=z.dtype, device=z.device)
        running_sum = torch.zeros(rows, dtype=z.dtype, device=z.device)
        for start in range(0, rows, chunk):
            tile = zs @ z[start : start + chunk].T
            tile[start : start + chunk].fill_diagonal_(-math.inf)  # a view drops self-similarity
            new_max = torch.maximum(running_max, tile.amax(dim=1))
            running_sum.mul_(torch.exp(running_max - new_max))  # rescale the old sum to new_max
            running_sum.add_(tile.sub_(new_max[:, None]).exp_().sum(dim=1))  # in place: no copies
            running_max = new_max
        lse = running_max + torch.log(running_sum)
        ctx.save_for_backward(z, lse)
        ctx.tau, ctx.chunk = tau, chunk
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        # d lse_i / d z = sum_j P_ij (z_j e_i + z_i e_j) / tau with P = softmax of row i (no diagonal)
        z, lse = ctx.saved_tensors
        zs = z / ctx.tau
        grad = torch.zeros_like(z)
        for start in range(0, z.shape[0], ctx.chunk):
            cols = z[start : start + ctx.chunk]
            tile = zs @ cols.T
            tile[start : start + ctx.chunk].fill_diagonal_(-math.inf)
            weights = torch.exp(tile.sub_(lse[:, None])).mul_(grad_lse[:, None])  # g_i P_ij
            grad.addmm_(weights, cols)  # rows i: sum_j g_i P_ij z_j
            grad[start : start + ctx.chunk].addmm_(weights.T, z)  # columns j: sum_i g_i P_ij z_i
        return grad.div_(ctx.tau), None, None


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two views, averaged over all 2N anchors.

    The 2N views z = [z1; z2] are L2-normalised; anchor k's positive is its pair (k + N mod 2N) and
    its negatives are the other 2N - 2 views. The loss is the mean over the 2N anchors of
    ``-log exp(z_k.z_pos/tau) / sum_{j != k} exp(z_k.z_j/tau)``, the convention of lightly's
    ``NTXentLoss`` and pytorch-metric-learning's ``SelfSupervisedLoss(NTXentLoss())``; references
    that sum the two directions (z1->z2 plus z2->z1, each a mean over N) get exactly twice this.

    Args:
        z1, z2: (N, D) embeddings of two views of the same N samples, N >= 2.
        temperature: tau > 0.
        chunk_size: None for the dense (2N, 2N) similarity matrix; an int K for the tiled path that
            only ever holds (2N, K) similarities (forward and backward), same value and gradient.
    """
    _check_embeddings("z1", z1, 2)
    _check_embeddings("z2", z2, 2)
    _check_same("z2", z2, "z1", z1)
    if z2.shape != z1.shape:
        raise ValueError(f"z2 must have the shape of z1 {tuple(z1.shape)}, got {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"z1 needs N >= 2 rows (each anchor needs a negative), got N={n}")
    tau = _check_temperature(temperature)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise TypeError(f"chunk_size must be None or an int, got {type(chunk_size).__name__}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    z = _l2_normalize(torch.cat([z1, z2]))
    if chunk_size is None:
        logits = (z / tau) @ z.T
        logits.fill_diagonal_(-math.inf)  # a view is not its own negative
        positives = torch.arange(2 * n, device=z.device).roll(n)  # k -> k + N mod 2N
        return F.cross_entropy(logits, positives)
    lse = _MaskedGramLogSumExp.apply(z, tau, chunk_size)
    positive = (z[:n] * z[n:]).sum(dim=1) / tau  # the same for anchor k and its pair
    return lse.mean() - positive.mean()
