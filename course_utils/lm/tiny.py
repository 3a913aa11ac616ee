"""Tiny language models built offline: a WordPiece tokenizer and a small BERT trained by masked
modelling, a character tokenizer and a small GPT-NeoX (the Pythia architecture)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from course_utils.lm._checks import _as_device, _check_texts
from course_utils.lm.masked import mask_tokens
from course_utils.runtime import quiet_transformers

SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


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
