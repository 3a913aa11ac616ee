"""Masked LMs: BERT's masking rule and the batched pseudo-log-likelihood (Salazar et al. 2020;
word_l2r: Kauf & Ivanova 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from course_utils.lm._checks import _check_texts, _max_positions
from course_utils.runtime import eval_mode

PLL_VARIANTS = ("original", "word_l2r")


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_tokens_mask: torch.Tensor | None = None,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick each non-special token with `mlm_probability`; 80% [MASK], 10% random, 10% kept.

    Returns `(inputs, labels)`: `labels` holds the original id at picked positions and -100 elsewhere.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long:
        raise TypeError("input_ids must be a torch.long tensor")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(
            f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id}"
        )
    if special_tokens_mask is not None and special_tokens_mask.shape != input_ids.shape:
        raise ValueError(
            f"special_tokens_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(special_tokens_mask.shape)}"
        )
    # Draw on the generator's device (a CPU generator by default), then move: reproducible anywhere.
    where = generator.device if generator is not None else input_ids.device

    def uniform() -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=where).to(input_ids.device)

    picked = uniform() < mlm_probability
    if special_tokens_mask is not None:
        picked &= ~special_tokens_mask.bool()
    labels = torch.where(picked, input_ids, -100)
    action = uniform()  # one draw decides [MASK] (< 0.8), random (< 0.9) or kept (>= 0.9)
    random_ids = torch.randint(
        vocab_size, input_ids.shape, generator=generator, device=where, dtype=torch.long
    ).to(input_ids.device)
    inputs = torch.where(picked & (action < 0.8), mask_token_id, input_ids)
    inputs = torch.where(picked & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def _check_masked_lm(model: torch.nn.Module, tokenizer) -> None:
    """Raise ValueError unless `model` is a bidirectional masked LM and `tokenizer` has [MASK]."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = getattr(model, "config", None)
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if getattr(config, "is_decoder", False) or type(model).__name__ in causal_names:
        raise ValueError(
            f"model must be a masked (bidirectional) LM, got the causal model {type(model).__name__}; "
            "score it with its perplexity instead"
        )
    if getattr(tokenizer, "mask_token_id", None) is None:
        raise ValueError(
            "tokenizer has no mask token: pseudo-log-likelihood needs a masked LM's tokenizer"
        )


def _structural_ids(tokenizer) -> list[int]:
    """Ids of the tokens that frame a text rather than belong to it: [CLS], [SEP], padding, BOS, EOS."""
    names = ("cls_token_id", "sep_token_id", "pad_token_id", "bos_token_id", "eos_token_id")
    return sorted({i for name in names if (i := getattr(tokenizer, name, None)) is not None})


def _masked_copies(
    tokenizer, texts: list[str], variant: str, max_length: int | None
) -> tuple[torch.Tensor, ...]:
    """Padded token tables and one row per masked copy: (ids, attention, types, word, text, position)."""
    enc = tokenizer(texts, return_special_tokens_mask=True, return_token_type_ids=True)
    n = len(texts)
    lengths = [len(ids) for ids in enc["input_ids"]]
    width = max(lengths)
    if max_length is not None and width > max_length:
        i = lengths.index(width)
        raise ValueError(
            f"texts[{i}] has {width} tokens, more than the model's {max_length} positions"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, width), pad, dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    scored = torch.zeros((n, width), dtype=torch.bool)
    word = torch.full((n, width), -1, dtype=torch.long)  # -1: special token or padding
    # Structural tokens are not scored wherever they occur, a "[SEP]" typed in a text included.
    structural = torch.tensor(_structural_ids(tokenizer), dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, :length] = torch.tensor(enc["input_ids"][i])
        types[i, :length] = torch.tensor(enc["token_type_ids"][i])
        attention[i, :length] = 1
        added = torch.tensor(enc["special_tokens_mask"][i]) == 1
        scored[i, :length] = ~added & ~torch.isin(ids[i, :length], structural)
        if variant == "word_l2r":
            word[i, :length] = torch.tensor([-1 if w is None else w for w in enc.word_ids(i)])
    empty = (~scored.any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"texts[{int(empty[0])}] has no token to score (only special tokens)")
    # One copy per scored token; copies of texts of similar length share batches (less padding).
    order = torch.tensor(lengths).argsort(stable=True)
    text, position = scored[order].nonzero(as_tuple=True)
    text = order[text]
    return ids, attention, types, word, text, position


def _logits_at(model: torch.nn.Module, pos: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """Logits (B, V) of row b at position pos[b]; the LM head runs on those positions only when
    the model exposes it (BERT's `cls`, RoBERTa's `lm_head`), else on every position."""
    rows = torch.arange(len(pos), device=pos.device)
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None or not hasattr(model, "base_model"):
        return model(**inputs).logits[rows, pos]
    hidden = model.base_model(**inputs).last_hidden_state
    return head(hidden[rows, pos])


def _pll_log_probs(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    variant: str,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`log p(x_t | masked copy)` of every scored token, and the index of the text it belongs to."""
    if variant not in PLL_VARIANTS:
        raise ValueError(f"variant must be one of {PLL_VARIANTS}, got {variant!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if variant == "word_l2r" and not getattr(tokenizer, "is_fast", False):
        raise ValueError("variant='word_l2r' needs a fast tokenizer (it reads word ids)")
    _check_masked_lm(model, tokenizer)
    texts = _check_texts(texts)
    ids, attention, types, word, text, position = _masked_copies(
        tokenizer, texts, variant, _max_positions(model)
    )
    dev = next(model.parameters()).device
    ids, attention, types, word = (t.to(dev) for t in (ids, attention, types, word))
    text, position = text.to(dev), position.to(dev)
    lengths = attention.sum(1)
    use_types = "token_type_ids" in tokenizer.model_input_names
    out = torch.empty(len(text), dtype=torch.float64, device=dev)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(text), batch_size):
            rows = text[start : start + batch_size]
            pos = position[start : start + batch_size]
            width = int(lengths[rows].max())  # trim the padding this batch does not need
            batch_ids = ids[rows, :width]
            columns = torch.arange(width, device=dev)
            masked = columns == pos[:, None]
            if variant == "word_l2r":  # also hide the later pieces of the target's word
                words = word[rows, :width]
                same_word = words == words.gather(1, pos[:, None])
                masked |= (columns > pos[:, None]) & same_word
            inputs = batch_ids.masked_fill(masked, tokenizer.mask_token_id)
            extra = {"token_type_ids": types[rows, :width]} if use_types else {}
            target_logits = _logits_at(
                model, pos, input_ids=inputs, attention_mask=attention[rows, :width], **extra
            ).float()
            targets = batch_ids.gather(1, pos[:, None])
            logp = F.log_softmax(target_logits, dim=-1).gather(1, targets)[:, 0]
            out[start : start + len(rows)] = logp.double()
    return out.cpu(), text.cpu()


def pseudo_log_likelihood(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    variant: str = "original",
    batch_size: int = 64,
) -> torch.Tensor:
    """Per text, `sum_t log p(x_t | x_without_t)` over its non-special tokens, in nats (float64, CPU).

    All masked copies of all texts go through the model `batch_size` copies at a time.
    `variant="word_l2r"` also masks the later tokens of the target token's word. Not scored: the
    tokens the tokenizer adds and the structural ones ([CLS], [SEP], padding, BOS, EOS) wherever
    they occur, so a literal "[SEP]" typed in a text is skipped (as minicons does); [UNK] and a
    literal "[MASK]" are scored.
    """
    logp, text = _pll_log_probs(model, tokenizer, texts, variant, batch_size)
    return torch.zeros(len(texts), dtype=torch.float64).index_add_(0, text, logp)


def pseudo_perplexity(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    variant: str = "original",
    batch_size: int = 64,
) -> float:
    """`exp(-sum PLL / number of scored tokens)` over all texts."""
    logp, _ = _pll_log_probs(model, tokenizer, texts, variant, batch_size)
    return float(torch.exp(-logp.mean()))
