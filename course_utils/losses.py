"""Contrastive losses: InfoNCE and SimCLR's NT-Xent, dense and memory-efficient tiled.

Both losses L2-normalise the embeddings and compute similarities and the log-sum-exp in float32
for fp16/bf16 inputs (as autocast does for softmax losses; float64 stays float64), so half-precision
embeddings give a finite loss; gradients flow back to the inputs in their own dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.distributed import all_gather_with_grad, rank

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
    # Scale each row near 1 first: squares of float32 entries above ~1e19 overflow (the norm would
    # be inf and the row 0), below ~1e-23 they underflow. A power of two near the row's largest
    # |entry| makes the division exact, so rows that did not overflow give bitwise the same
    # result; x / |x| ignores a row's scale, so detaching it keeps the gradient exact too.
    peak = x.detach().abs().amax(dim=-1, keepdim=True)
    x = x / torch.where(peak > 0, torch.exp2(torch.floor(torch.log2(peak))), 1.0)
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


def _mask_band(
    tile: torch.Tensor, first_row: int, last_row: int, first_col: int, start: int
) -> None:
    """In place: -inf at (i, first_col + i - first_row) for rows i in [first_row, last_row), where
    that column falls in `tile`, which holds columns [start, start + tile width) of the full matrix."""
    lo = max(first_row, first_row + start - first_col)
    hi = min(last_row, first_row + start + tile.shape[1] - first_col)
    if lo < hi:
        col = first_col + lo - first_row - start
        tile[lo:hi, col : col + hi - lo].fill_diagonal_(-math.inf)


def _mask_self_and_positive(tile: torch.Tensor, offset: int, start: int) -> None:
    """-inf where a tile of anchors (2n rows) x views holds an anchor's own view or its positive.

    Anchor i (of z = [z1; z2]) is view offset + i of the whole batch; its positive is view
    offset + i + n for i < n and offset + i - n for i >= n.
    """
    rows = tile.shape[0]
    n = rows // 2
    _mask_band(tile, 0, rows, offset, start)
    _mask_band(tile, 0, n, offset + n, start)
    _mask_band(tile, n, rows, offset, start)


class _TiledNTXent(torch.autograd.Function):
    """Per-anchor NT-Xent losses of anchors `q` (2n, D) against views `keys` (M, D), in column tiles.

    Anchor i is view `offset + i` of `keys` (so `keys` is `q` itself on one process) and its
    positive is its pair in `q`. With s = q keys^T / tau, the loss of anchor k is
    ``log(1 + sum_neg exp(s_kj - s_kpos)) = softplus(lse_neg_k - s_kpos)``: a small loss is then
    computed to float32's relative precision, where ``lse_all - s_kpos`` (two numbers of size 1/tau)
    would lose it. The negatives' log-sum-exp runs online (a running max and sum per row), so only
    a (2n, chunk) tile of s exists at a time. Backward recomputes each tile from q, keys and the
    saved losses instead of storing the softmax: memory O((2n + M) D + 2n chunk), one extra matmul
    per tile.
    """

    @staticmethod
    def forward(
        ctx, q: torch.Tensor, keys: torch.Tensor, offset: int, tau: float, chunk: int
    ) -> torch.Tensor:
        rows = q.shape[0]
        qs = q / tau  # scale the (2n, D) side once, not every (2n, chunk) tile
        positive = (qs * q.roll(rows // 2, 0)).sum(dim=1)  # s_k,pos
        # Views are unit (or zero) vectors, so every similarity is >= -1/tau: starting the running
        # max there keeps it finite even for a tile whose columns are all masked (no inf - inf).
        running_max = torch.full((rows,), -1.0 / tau, dtype=q.dtype, device=q.device)
        running_sum = torch.zeros(rows, dtype=q.dtype, device=q.device)
        for start in range(0, keys.shape[0], chunk):
            tile = qs @ keys[start : start + chunk].T
            _mask_self_and_positive(tile, offset, start)
            new_max = torch.maximum(running_max, tile.amax(dim=1))
            running_sum.mul_(torch.exp(running_max - new_max))  # rescale the old sum to new_max
            running_sum.add_(tile.sub_(new_max[:, None]).exp_().sum(dim=1))  # in place: no copies
            running_max = new_max
        loss = F.softplus(running_max + torch.log(running_sum) - positive)
        ctx.save_for_backward(q, keys, positive + loss, loss)  # lse over all views, and the loss
        ctx.offset, ctx.tau, ctx.chunk = offset, tau, chunk
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # d loss_k / d s_kj = P_kj (softmax of row k over all views but k) for negatives j, and
        # P_kpos - 1 = expm1(-loss_k) for the positive: exact for a small loss, where 1 - P_kpos
        # computed as a difference would cancel. ds_kj = (q_k . dkey_j + dq_k . key_j) / tau.
        q, keys, lse, loss = ctx.saved_tensors
        qs = q / ctx.tau
        grad_q, grad_keys = torch.zeros_like(q), torch.zeros_like(keys)
        for start in range(0, keys.shape[0], ctx.chunk):
            cols = keys[start : start + ctx.chunk]
            tile = qs @ cols.T
            _mask_self_and_positive(tile, ctx.offset, start)
            weights = torch.exp(tile.sub_(lse[:, None])).mul_(grad_loss[:, None])  # g_k P_kj
            grad_q.addmm_(weights, cols)  # anchors k: sum_j g_k P_kj key_j
            grad_keys[start : start + ctx.chunk].addmm_(weights.T, q)  # views j: sum_k g_k P_kj q_k
        n = q.shape[0] // 2
        pull = (grad_loss * torch.expm1(-loss))[:, None]  # g_k (P_kpos - 1)
        grad_q.add_(pull * q.roll(n, 0)).add_((pull * q).roll(n, 0))  # anchor k and its pair
        return grad_q.div_(ctx.tau), grad_keys.div_(ctx.tau), None, None, None


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    chunk_size: int | None = None,
    gather: bool = False,
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
            only ever holds (2N, K) similarities (forward and backward), same value and gradient,
            and full float32 relative precision when the loss is small.
        gather: under an initialised process group (data-parallel training), contrast this rank's
            2N anchors with the views of ALL ranks (an all-gather that keeps gradients), so the
            negatives are the global batch. Every rank must pass the same N. The mean of the ranks'
            losses is the single-process loss on the concatenated batch, and the gradients, once
            DDP averages them over ranks, are its gradients. The identity without a group.
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
    if not isinstance(gather, bool):
        raise TypeError(f"gather must be a bool, got {type(gather).__name__}")
    z = _l2_normalize(torch.cat([z1, z2]))
    # The views anchors are contrasted with: this process's, or every rank's in rank order, where
    # this rank's 2N views start at `offset`.
    views, offset = (all_gather_with_grad(z), rank() * 2 * n) if gather else (z, 0)
    if chunk_size is None:
        logits = (z / tau) @ views.T
        logits[:, offset : offset + 2 * n].fill_diagonal_(-math.inf)  # not its own negative
        positives = offset + torch.arange(2 * n, device=z.device).roll(n)  # k -> k + N mod 2N
        return F.cross_entropy(logits, positives)
    return _TiledNTXent.apply(z, views, offset, tau, chunk_size).mean()
