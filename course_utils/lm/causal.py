"""Causal LMs: each token scored once, with the context its sliding window gives it."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_utils.lm._checks import _max_positions
from course_utils.runtime import eval_mode


def _no_cache(model: torch.nn.Module) -> dict[str, bool]:
    """`use_cache=False` for a model whose forward takes it (causal LMs), else nothing.

    One forward per window needs no key/value cache. Masked LMs have no such argument: transformers
    4.x raises a TypeError when given one, 5.x swallows it.
    """
    return (
        {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}
    )


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits (B, L, V) of a Hugging Face causal LM or of a module that returns logits."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return model(input_ids=ids, **_no_cache(model)).logits
    out = model(ids)
    return out if isinstance(out, torch.Tensor) else out.logits


def _as_ids(input_ids: torch.Tensor | list[int]) -> torch.Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.ndim != 1:
        raise ValueError(f"input_ids must be a 1-D token sequence, got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError("input_ids is empty: there is nothing to score")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    return ids.long()


def _check_windows(n: int, context_length: int, stride: int, bos: bool, batch_size: int) -> None:
    if context_length < (1 if bos else 2):
        raise ValueError(
            f"context_length must be >= {1 if bos else 2} "
            f"({'with' if bos else 'without'} bos_token_id), got {context_length}"
        )
    if not 1 <= stride <= context_length:
        raise ValueError(
            f"stride must be in [1, context_length={context_length}] so that every token is "
            f"scored once, got {stride}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < 2 and not bos:
        raise ValueError(
            "input_ids has 1 token and no bos_token_id: the first token has no context, so "
            "nothing can be scored (pass bos_token_id or a longer sequence)"
        )


def _check_fits_model(
    model: torch.nn.Module, ids: torch.Tensor, context_length: int, bos_token_id: int | None
) -> None:
    """Raise ValueError if a window needs more positions, or an id more rows, than the model has."""
    positions = _max_positions(model)
    bos = int(bos_token_id is not None)
    if positions is not None and context_length + bos > positions:
        with_bos = " + 1 for bos_token_id" if bos else ""
        raise ValueError(
            f"context_length ({context_length}{with_bos}) needs more positions than the model's "
            f"{positions}: use context_length <= {positions - bos}"
        )
    get_embeddings = getattr(model, "get_input_embeddings", None)
    table = get_embeddings() if callable(get_embeddings) else None
    vocab = table.num_embeddings if isinstance(table, torch.nn.Embedding) else None
    ranges = [("input_ids", int(ids.min()), int(ids.max()))]
    if bos_token_id is not None:
        ranges.append(("bos_token_id", bos_token_id, bos_token_id))
    for name, low, high in ranges:
        if low < 0 or (vocab is not None and high >= vocab):
            allowed = f"[0, {vocab})" if vocab is not None else ">= 0"
            raise ValueError(
                f"{name} holds the id {low if low < 0 else high}, outside the model's "
                f"vocabulary {allowed}"
            )


def _check_causal(model: torch.nn.Module, probe: torch.Tensor) -> None:
    """Raise if changing the last token of `probe` changes the model's output at earlier tokens."""
    a = _logits(model, probe[None])[0]
    changed = probe.clone()
    changed[-1] = (changed[-1] + 1) % a.shape[-1]
    b = _logits(model, changed[None])[0]
    # A causal model computes the earlier rows identically; allow rounding at the logits' precision.
    tol = 10 * torch.finfo(a.dtype).eps * a.abs().max().item()
    if (a[:-1] - b[:-1]).abs().max().item() > tol:
        raise ValueError(
            f"model must be causal (autoregressive), but {type(model).__name__}'s output at "
            "earlier positions changed when a later token changed: it sees the future, like a "
            "masked LM. Perplexity needs p(x_t | x_<t); use pseudo_perplexity for masked LMs."
        )


@dataclass(frozen=True)
class Window:
    """One forward pass: text tokens [start, end) as input, tokens [score_from, end) scored."""

    start: int
    end: int
    score_from: int


def sliding_windows(n: int, *, context_length: int, stride: int, bos: bool) -> list[Window]:
    """The windows that score each of `n` tokens once (the first one only when `bos`)."""
    windows, scored_until = [], 0
    for start in range(0, n, stride):
        end = min(start + context_length, n)
        # A token needs context: BOS, or an earlier token inside this window.
        score_from = max(scored_until, start if bos else start + 1)
        if score_from < end:
            windows.append(Window(start, end, score_from))
        scored_until = end
        if end == n:
            break
    return windows


@torch.inference_mode()
def token_log_probs(
    model: torch.nn.Module,
    input_ids: torch.Tensor | list[int],
    *,
    context_length: int,
    stride: int,
    batch_size: int = 8,
    bos_token_id: int | None = None,
) -> torch.Tensor:
    """Per-token log p(x_t | window context), aligned with `input_ids`; NaN where unscored.

    Windows of `context_length` text tokens start every `stride` tokens; a window scores only the
    tokens no earlier window scored, and uses its overlap with the previous window as context.
    With `bos_token_id` it is prepended to every window (the model sees `context_length + 1`
    positions) and every token is scored, the first one included. Without it a token needs an
    earlier token in its window, so the first token is NaN, and with `stride == context_length`
    (plain chunking) so is the first token of every chunk.
    """
    ids = _as_ids(input_ids)
    bos = bos_token_id is not None
    _check_windows(len(ids), context_length, stride, bos, batch_size)
    _check_fits_model(model, ids, context_length, bos_token_id)
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    prefix = torch.tensor([bos_token_id] if bos else [], dtype=torch.long)
    offset = len(prefix)  # model position of text token `start` in its window
    with eval_mode(model):
        _check_causal(model, torch.cat([prefix, ids[: min(8, context_length)]]).to(dev))
        out = torch.full((len(ids),), math.nan, dtype=torch.float64)
        windows = sliding_windows(len(ids), context_length=context_length, stride=stride, bos=bos)
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            width = offset + max(w.end - w.start for w in group)
            # Right padding is invisible to a causal model at the real positions.
            batch = torch.zeros(len(group), width, dtype=torch.long)
            rows, cols, targets = [], [], []
            for i, w in enumerate(group):
                batch[i, : offset + w.end - w.start] = torch.cat([prefix, ids[w.start : w.end]])
                # Token t sits at model position offset + t - start; it is predicted one before.
                pos = torch.arange(w.score_from, w.end)
                rows.append(torch.full_like(pos, i))
                cols.append(offset + pos - w.start - 1)
                targets.append(pos)
            rows, cols, targets = torch.cat(rows), torch.cat(cols), torch.cat(targets)
            logits = _logits(model, batch.to(dev))[rows.to(dev), cols.to(dev)]
            logits = logits if logits.dtype == torch.float64 else logits.float()
            logp = F.log_softmax(logits, dim=-1)
            picked = logp.gather(1, ids[targets].to(dev)[:, None])[:, 0]
            out[targets] = picked.double().cpu()
    return out


def perplexity(
    model: torch.nn.Module,
    input_ids: torch.Tensor | list[int],
    *,
    context_length: int,
    stride: int,
    batch_size: int = 8,
    bos_token_id: int | None = None,
) -> float:
    """Sliding-window perplexity exp(-mean log p(x_t | context)) over the scored tokens.

    Scored tokens are those of `token_log_probs`: all of them with `bos_token_id`, else all but the
    first (and, with `stride == context_length`, all but each chunk's first). Each forward pass
    holds `batch_size` windows, so memory grows with batch_size * context_length * vocabulary.
    """
    logp = token_log_probs(
        model,
        input_ids,
        context_length=context_length,
        stride=stride,
        batch_size=batch_size,
        bos_token_id=bos_token_id,
    )
    return math.exp(-logp[~logp.isnan()].mean().item())
