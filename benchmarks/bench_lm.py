"""Language-model evaluation speed: batched sliding-window perplexity vs the one-window loop."""

from __future__ import annotations

import math
import tempfile
import time

import torch

from course_utils.data import load_text
from course_utils.lm import CharTokenizer, perplexity, tiny_causal_lm


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
    """Run the language-model benchmarks."""
    bench_perplexity()


if __name__ == "__main__":
    main()
