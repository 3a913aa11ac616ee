"""Language-model likelihoods: masking and batched pseudo-log-likelihood of masked LMs,
sliding-window perplexity of causal LMs, and tiny offline models of both kinds."""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from course_utils.runtime import eval_mode, quiet_transformers

PLL_VARIANTS = ("original", "word_l2r")
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


# ----------------------------------------------------------------------------------------------
# Masking (BERT's 80/10/10 rule)


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


# ----------------------------------------------------------------------------------------------
# Pseudo-log-likelihood (Salazar et al. 2020; word_l2r: Kauf & Ivanova 2023)


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


# ----------------------------------------------------------------------------------------------
# A tiny masked LM built offline


def _wordpiece_tokenizer(lines: list[str], vocab_size: int):
    """Train a lowercasing WordPiece tokenizer (BERT's pre-tokenizer and [CLS] x [SEP] template)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()))
    tok.train_from_iterator(lines, trainer=trainer)
    # The trainer numbers tokens in hash-map order, which changes from process to process: renumber
    # them (special tokens first, then alphabetically) so a corpus always gives the same ids.
    specials = list(SPECIAL_TOKENS.values())
    ordered = specials + sorted(set(tok.get_vocab()) - set(specials))
    tok.model = models.WordPiece(
        {t: i for i, t in enumerate(ordered)}, unk_token=SPECIAL_TOKENS["unk_token"]
    )
    cls, sep = SPECIAL_TOKENS["cls_token"], SPECIAL_TOKENS["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


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


def train_mlm(
    model: torch.nn.Module,
    tokenizer,
    lines: Sequence[str],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train a masked LM with BERT masking on random batches of `lines` (one sequence per line); losses."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    dev = next(model.parameters()).device
    lines = _check_texts(lines)
    enc = tokenizer(
        lines,
        padding=True,
        truncation=True,
        max_length=model.config.max_position_embeddings,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    special = enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)  # post-LayerNorm BERT needs a warmup to train at a high lr
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, (steps - s) / max(steps - warmup, 1))
    )
    model.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(lines), (batch_size,), generator=generator)
        width = int(enc["attention_mask"][rows].sum(1).max())
        inputs, labels = mask_tokens(
            enc["input_ids"][rows, :width],
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            special_tokens_mask=special[rows, :width],
            mlm_probability=mlm_probability,
            generator=generator,
        )
        if (labels == -100).all():  # nothing picked in this batch: no loss to learn from
            continue
        out = model(
            input_ids=inputs.to(dev),
            attention_mask=enc["attention_mask"][rows, :width].to(dev),
            labels=labels.to(dev),
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(out.loss.item())
    model.eval()
    return losses


def tiny_mlm(
    corpus: str,
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 64,
    steps: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    mlm_probability: float = 0.15,
    seed: int = 0,
    directory: str | Path | None = None,
    device: torch.device | str = "cpu",
):
    """A WordPiece tokenizer and a small `BertForMaskedLM` built from `corpus` (one sequence per line).

    Trains `steps` steps of masked modelling on `device`, saves both with `save_pretrained` into
    `directory` (a temporary one if None) and returns `(model, tokenizer)` reloaded with
    `from_pretrained`, the model on `device`. The same seed gives the same model on any device up
    to the device's rounding: masks and batches are drawn on the CPU.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

    if not isinstance(corpus, str):
        raise TypeError(f"corpus must be a str, got {type(corpus).__name__}")
    dev = _as_device(device)
    lines = [line for line in corpus.splitlines() if line.strip()]
    if not lines:
        raise ValueError("corpus must hold at least one non-empty line")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the model's initial weights
    tokenizer = _wordpiece_tokenizer(lines, vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertForMaskedLM(config).to(dev)
    train_mlm(
        model,
        tokenizer,
        lines,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        mlm_probability=mlm_probability,
        generator=generator,
    )
    with quiet_transformers(), tempfile.TemporaryDirectory() as tmp:
        path = Path(directory) if directory is not None else Path(tmp)
        tokenizer.save_pretrained(path)
        model.save_pretrained(path)
        loaded = AutoModelForMaskedLM.from_pretrained(path).to(dev).eval()
        return loaded, AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------
# Causal side: each token scored once, with the context its sliding window gives it.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Tiny offline causal LM: a character tokenizer and a GPT-NeoX (the Pythia architecture).
# ---------------------------------------------------------------------------------------------


class CharTokenizer:
    """Characters of a text as tokens; id 0 is BOS (`bos_token_id`)."""

    bos_token_id = 0

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("text must be non-empty to build a vocabulary")
        self.chars = sorted(set(text))
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids, BOS included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (1-D int64) of `text`; every character must be in the vocabulary."""
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise ValueError(f"text holds characters outside the vocabulary: {unknown[:10]}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """Text of token ids (BOS dropped)."""
        return "".join(self.chars[i - 1] for i in torch.as_tensor(ids).tolist() if i > 0)


def tiny_causal_lm(
    directory: str | Path,
    *,
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
):
    """A randomly initialised tiny GPTNeoXForCausalLM, saved to `directory` and loaded back."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    with quiet_transformers():
        GPTNeoXForCausalLM(config).save_pretrained(directory)
        return GPTNeoXForCausalLM.from_pretrained(directory).eval()
