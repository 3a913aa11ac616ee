"""Language-model scores of course_utils.lm against references timed in the same run.

Run: `python benchmarks/bench_lm.py`. Each `bench_*` function prints its ratios.
"""

from __future__ import annotations

import math
import tempfile
import time

import torch
import torch.nn.functional as F

from course_utils.data import load_text
from course_utils.lm import (
    CharTokenizer,
    perplexity,
    pseudo_log_likelihood,
    tiny_causal_lm,
    tiny_mlm,
)
from course_utils.runtime import seed_everything

N_TEXTS, TOKENS_PER_TEXT, BATCH_SIZE = 64, 32, 64


def texts_of_about(tokenizer, n: int, tokens: int) -> list[str]:
    """`n` texts of about `tokens` tokens each, cut from consecutive words of the pydoc corpus."""
    words = load_text("pydoc").split()
    texts, start = [], 0
    while len(texts) < n:
        stop = start + 1
        while len(tokenizer(" ".join(words[start:stop]))["input_ids"]) < tokens:
            stop += 1
        texts.append(" ".join(words[start:stop]))
        start = stop
    return texts


def naive_pll(model, tokenizer, texts: list[str], variant: str) -> torch.Tensor:
    """The textbook loop: one forward pass per masked copy of one text."""
    scores = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, return_special_tokens_mask=True)
            ids, words = enc["input_ids"], enc.word_ids()
            total = 0.0
            for t, special in enumerate(enc["special_tokens_mask"]):
                if special:
                    continue
                masked = list(ids)
                for s in range(t, len(ids)):
                    if s == t or (variant == "word_l2r" and words[s] == words[t]):
                        masked[s] = tokenizer.mask_token_id
                logits = model(input_ids=torch.tensor([masked])).logits[0, t]
                total += F.log_softmax(logits.float(), -1)[ids[t]].item()
            scores.append(total)
    return torch.tensor(scores, dtype=torch.float64)


class BatchEncodePlus:
    """A tokenizer with the `batch_encode_plus` that minicons calls (transformers 5 dropped it)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def batch_encode_plus(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)


def timed(fn, repeats: int = 3):
    """Result of `fn()` and its best wall time over `repeats` runs."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def bench_pseudo_log_likelihood() -> None:
    """Batched PLL vs one forward per masked copy, and vs minicons' MaskedLMScorer if installed."""
    seed_everything(0)
    model, tokenizer = tiny_mlm(load_text("pydoc"))
    texts = texts_of_about(tokenizer, N_TEXTS, TOKENS_PER_TEXT)
    n_tokens = sum(len(tokenizer(t)["input_ids"]) - 2 for t in texts)
    print(f"tiny BERT ({model.num_parameters() / 1e3:.0f}k parameters), {len(texts)} texts,")
    print(
        f"{n_tokens} scored tokens, batch_size={BATCH_SIZE}, torch threads={torch.get_num_threads()}"
    )
    for variant in ("original", "word_l2r"):
        ours, t_ours = timed(
            lambda v=variant: pseudo_log_likelihood(
                model, tokenizer, texts, variant=v, batch_size=BATCH_SIZE
            )
        )
        naive, t_naive = timed(lambda v=variant: naive_pll(model, tokenizer, texts, v), repeats=1)
        diff = (ours - naive).abs().max().item()
        print(
            f"[{variant}] batched {t_ours:.3f} s, naive loop {t_naive:.3f} s: "
            f"{t_naive / t_ours:.1f}x faster, max |diff| {diff:.2e} nats"
        )
        assert torch.allclose(ours, naive, rtol=0, atol=1e-5), diff
    try:
        from minicons.scorer import MaskedLMScorer
    except ImportError:
        print("minicons not installed (pip install '.[bench]'): skipping the comparison")
        return
    scorer = MaskedLMScorer(model, device="cpu", tokenizer=BatchEncodePlus(tokenizer))
    per_call = max(1, BATCH_SIZE // TOKENS_PER_TEXT)  # texts per call: about BATCH_SIZE copies

    def minicons_pll(metric: str) -> torch.Tensor:
        scores = []
        for start in range(0, len(texts), per_call):
            chunk = texts[start : start + per_call]
            scores += scorer.sequence_score(
                chunk, PLL_metric=metric, reduction=lambda x: x.sum().item()
            )
        return torch.tensor(scores, dtype=torch.float64)

    for variant, metric in (("original", "original"), ("word_l2r", "within_word_l2r")):
        ours, t_ours = timed(
            lambda v=variant: pseudo_log_likelihood(
                model, tokenizer, texts, variant=v, batch_size=BATCH_SIZE
            )
        )
        theirs, t_theirs = timed(lambda m=metric: minicons_pll(m))
        diff = (ours - theirs).abs().max().item()
        print(
            f"[{variant}] minicons MaskedLMScorer ({metric}, {per_call} texts per call) "
            f"{t_theirs:.3f} s: ours {t_theirs / t_ours:.1f}x faster, max |diff| {diff:.2e} nats"
        )
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-4), diff


def hf_guide_loop(
    model, ids: torch.Tensor, context_length: int, stride: int
) -> tuple[float, float]:
    """The Hugging Face "Perplexity of fixed-length models" loop: one window per forward.

    Returns (exact, original): `exact` weights each window's mean loss by the number of tokens
    the model really scored in it; `original` is the guide's first counting, `loss * trg_len`
    summed and divided by `end_loc`, which counts the first token of the text as scored although
    the model's internal label shift never predicts it (and, with stride == context, the first
    token of every window).
    """
    nll_sum, n_scored, original_sum, prev_end = 0.0, 0, 0.0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context_length, len(ids))
        trg_len = end - prev_end  # tokens this window is responsible for
        window = ids[begin:end][None]
        labels = window.clone()
        labels[:, :-trg_len] = -100  # the overlap is context only
        with torch.no_grad():
            loss = model(input_ids=window, labels=labels, use_cache=False).loss.item()
        scored = int((labels[:, 1:] != -100).sum())  # labels shift by one inside the model
        nll_sum += loss * scored
        n_scored += scored
        original_sum += loss * trg_len
        prev_end = end
        if end == len(ids):
            break
    return math.exp(nll_sum / n_scored), math.exp(original_sum / prev_end)


def bench_perplexity(
    n_tokens: int = 20_000,
    hidden_size: int = 32,
    context_length: int = 64,
    stride: int = 32,
    batch_size: int = 64,
) -> float:
    """Time both on a tiny GPT-NeoX over `n_tokens` characters of pydoc; return the speed ratio.

    Batching removes the per-forward overhead, which dominates a tiny model on a CPU; once each
    forward is compute-bound (wider models, longer contexts) the CPU ratio shrinks towards 1-3x,
    while on a GPU batching is what fills the device.
    """
    torch.set_grad_enabled(False)
    text = load_text("pydoc")[:n_tokens]
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    with tempfile.TemporaryDirectory() as folder:
        model = tiny_causal_lm(
            folder, vocab_size=tok.vocab_size, hidden_size=hidden_size, max_positions=context_length
        )
    perplexity(model, ids[:1000], context_length=context_length, stride=stride)  # warm-up

    start = time.perf_counter()
    exact, original = hf_guide_loop(model, ids, context_length, stride)
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = perplexity(
        model, ids, context_length=context_length, stride=stride, batch_size=batch_size
    )
    batched_s = time.perf_counter() - start

    print(
        f"tiny GPT-NeoX ({sum(p.numel() for p in model.parameters()):,} parameters), {len(ids)} "
        f"tokens, context {context_length}, stride {stride}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  HF-guide loop, 1 window per forward: ppl {exact:.6f}  {loop_s:.2f} s")
    print(f"  batched, {batch_size} windows per forward:   ppl {batched:.6f}  {batched_s:.2f} s")
    print(f"  guide's original counting (/end_loc): ppl {original:.6f} (counts unscored tokens)")
    assert abs(batched - exact) <= 1e-4 * exact, "batched and loop perplexities differ"
    ratio = loop_s / batched_s
    print(f"  speed-up: {ratio:.1f}x (target >= 3x)")
    return ratio


def main() -> None:
    """Run every benchmark of this file."""
    bench_pseudo_log_likelihood()
    bench_perplexity()


if __name__ == "__main__":
    main()
