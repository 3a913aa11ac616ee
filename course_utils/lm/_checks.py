"""Argument checks shared by the masked and causal scorers and the tiny models."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _max_positions(model: torch.nn.Module) -> int | None:
    """Tokens a Hugging Face model's position embeddings allow in one sequence (None if unknown).

    RoBERTa-style embeddings (a position table with a padding index p) number positions from
    p + 1, so they allow p + 1 fewer tokens than the table has rows (roberta-base: 514 rows, 512).
    """
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if isinstance(table, torch.nn.Embedding):
        offset = table.padding_idx + 1 if table.padding_idx is not None else 0
        return table.num_embeddings - offset
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def _check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, or ValueError/TypeError for an empty list or an empty text."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts must hold at least one text, got an empty list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty: every text needs at least one token to score")
    return list(texts)


def _as_device(device: torch.device | str) -> torch.device:
    """`device` as a torch.device; a clear error for anything that does not name one."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device must name a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps', got {device!r}"
        ) from err
