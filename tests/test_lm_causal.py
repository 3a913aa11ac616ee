"""Sliding-window perplexity: the spec, checked against naive one-token-at-a-time references."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils.lm import CharTokenizer, perplexity, tiny_causal_lm, token_log_probs
from course_utils.models import TinyTransformer

VOCAB = 11
BOS = 0
TOL = 1e-5  # float32 forwards: batched/padded vs single-sequence differ by ~1e-6 in log-prob


@pytest.fixture(scope="module")
def model() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(VOCAB, 32, 2, 4, attention="causal", max_len=64).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (37,), generator=torch.Generator().manual_seed(1))


def next_log_prob(model, context: list[int], target: int) -> float:
    """log p(target | context) from one forward pass over exactly `context`."""
    with torch.no_grad():
        out = model(torch.tensor([context]))
    logits = (out if isinstance(out, torch.Tensor) else out.logits)[0, -1]
    return F.log_softmax(logits.double(), -1)[target].item()


def naive_log_probs(model, ids, context_length, stride, bos=None) -> list[float]:
    """Token t is scored by the first window [kS, kS + C) holding it with context before it."""
    out = []
    for t in range(len(ids)):
        starts = [
            s
            for s in range(0, t + 1, stride)
            if s <= t < s + context_length and (bos is not None or t > s)
        ]
        if not starts:
            out.append(math.nan)
            continue
        prefix = [bos] if bos is not None else []
        out.append(next_log_prob(model, prefix + ids[starts[0] : t].tolist(), ids[t].item()))
    return out


@pytest.mark.parametrize("bos", [None, BOS])
@pytest.mark.parametrize(
    "context_length,stride,batch_size",
    [(6, 1, 8), (8, 3, 2), (8, 8, 3), (5, 4, 1), (16, 7, 8), (3, 2, 4), (2, 1, 5)],
)
def test_matches_naive_reference(model, ids, context_length, stride, batch_size, bos):
    got = token_log_probs(
        model,
        ids,
        context_length=context_length,
        stride=stride,
        batch_size=batch_size,
        bos_token_id=bos,
    )
    want = torch.tensor(
        naive_log_probs(model, ids, context_length, stride, bos), dtype=torch.float64
    )
    assert torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got, want, atol=TOL, rtol=0, equal_nan=True)
    ppl = perplexity(
        model,
        ids,
        context_length=context_length,
        stride=stride,
        batch_size=batch_size,
        bos_token_id=bos,
    )
    assert ppl == pytest.approx(math.exp(-want[~want.isnan()].mean().item()), rel=TOL)


@pytest.mark.parametrize(
    "context_length,stride,bos,expected",
    [
        (8, 3, None, 37 - 1),  # only the very first token lacks context
        (8, 3, BOS, 37),  # BOS gives the first token a context
        (8, 8, None, 37 - math.ceil(37 / 8)),  # chunking: every chunk's first token unscored
        (8, 8, BOS, 37),
        (37, 5, None, 36),  # one window holds everything
    ],
)
def test_exact_token_count(model, ids, context_length, stride, bos, expected):
    got = token_log_probs(
        model, ids, context_length=context_length, stride=stride, bos_token_id=bos
    )
    assert int((~got.isnan()).sum()) == expected


def test_first_token_scored_only_with_bos(model, ids):
    with_bos = token_log_probs(model, ids, context_length=8, stride=4, bos_token_id=BOS)
    without = token_log_probs(model, ids, context_length=8, stride=4)
    assert math.isnan(without[0])
    assert with_bos[0].item() == pytest.approx(next_log_prob(model, [BOS], ids[0].item()), abs=TOL)


@pytest.mark.parametrize("bos", [None, BOS])
def test_stride_equal_context_is_chunking(model, ids, bos):
    """Reference: cut the text into chunks of C tokens and score each chunk on its own."""
    C, scores = 8, []
    prefix = [] if bos is None else [bos]
    for start in range(0, len(ids), C):
        chunk = prefix + ids[start : start + C].tolist()
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([chunk]))[0].double(), -1)
        scores += [logp[i - 1, chunk[i]].item() for i in range(1, len(chunk))]
    want = math.exp(-sum(scores) / len(scores))
    got = perplexity(model, ids, context_length=C, stride=C, bos_token_id=bos)
    assert got == pytest.approx(want, rel=TOL)


@pytest.mark.parametrize("stride", [1, 10, 40])
def test_fits_in_context_is_single_pass(model, ids, stride):
    with torch.no_grad():
        logp = F.log_softmax(model(ids[None])[0].double(), -1)
    want = math.exp(-logp[:-1].gather(1, ids[1:, None]).mean().item())
    assert perplexity(model, ids, context_length=40, stride=stride) == pytest.approx(want, rel=TOL)


@pytest.mark.parametrize("context_length,stride,length", [(4, 4, 4), (2, 1, 3), (2, 2, 3)])
def test_chain_rule_probabilities_sum_to_one(context_length, stride, length):
    """Enumerate all 3^length sequences: exp(sum of windowed log p(x_t | context)) sums to 1."""
    torch.manual_seed(0)
    toy = TinyTransformer(3, 16, 1, 2, attention="causal", max_len=8).double().eval()
    total = sum(
        math.exp(
            token_log_probs(
                toy,
                list(seq),
                context_length=context_length,
                stride=stride,
                batch_size=16,
                bos_token_id=0,
            ).sum()
        )
        for seq in itertools.product(range(3), repeat=length)
    )
    assert total == pytest.approx(1.0, abs=1e-9)  # float64 model: exact up to rounding


def test_gpt_neox_matches_reference_and_huggingface_loss(tmp_path):
    """The Hugging Face path: a tiny GPT-NeoX saved and reloaded, vs its own `labels` loss."""
    lm = tiny_causal_lm(tmp_path, vocab_size=50, hidden_size=32, num_layers=2, num_heads=4)
    text = torch.randint(0, 50, (30,), generator=torch.Generator().manual_seed(2))
    got = token_log_probs(lm, text, context_length=12, stride=5, batch_size=3)
    want = torch.tensor(naive_log_probs(lm, text, 12, 5), dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0, equal_nan=True)
    with torch.no_grad():  # HF shifts labels internally: mean NLL over tokens 1..T-1
        loss = lm(input_ids=text[None], labels=text[None]).loss.item()
    assert perplexity(lm, text, context_length=30, stride=30) == pytest.approx(
        math.exp(loss), rel=TOL
    )


def test_model_mode_restored(model, ids):
    model.train()
    perplexity(model, ids, context_length=8, stride=4)
    assert model.training
    model.eval()


def test_char_tokenizer_round_trip():
    tok = CharTokenizer("hello world")
    ids = tok.encode("low hole")
    assert tok.decode(torch.cat([torch.tensor([tok.bos_token_id]), ids])) == "low hole"
    assert ids.min() >= 1 and ids.max() < tok.vocab_size
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.encode("xyz")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(context_length=8, stride=9), "stride"),
        (dict(context_length=8, stride=0), "stride"),
        (dict(context_length=8, stride=-2), "stride"),
        (dict(context_length=1, stride=1), "context_length"),
        (dict(context_length=8, stride=4, batch_size=0), "batch_size"),
    ],
)
def test_bad_window_arguments(model, ids, kwargs, match):
    with pytest.raises(ValueError, match=match):
        perplexity(model, ids, **kwargs)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (torch.tensor([], dtype=torch.long), ValueError, "empty"),
        (torch.ones(2, 5, dtype=torch.long), ValueError, "1-D"),
        (torch.ones(5), TypeError, "integer"),
        (torch.tensor([3]), ValueError, "first token has no context"),
    ],
)
def test_bad_input_ids(model, bad, error, match):
    with pytest.raises(error, match=match):
        perplexity(model, bad, context_length=4, stride=2)


def _gpt2(n_positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=n_positions, n_embd=32, n_layer=1, n_head=2)
    return GPT2LMHeadModel(config).eval()


def test_context_longer_than_gpt2_positions_is_a_clear_error(ids):
    """GPT-2 with 16 positions: 16 tokens + BOS used to end in a bare IndexError."""
    model = _gpt2(16)
    assert math.isfinite(perplexity(model, ids, context_length=16, stride=8))  # 16 fit
    assert math.isfinite(perplexity(model, ids, context_length=15, stride=8, bos_token_id=BOS))
    with pytest.raises(ValueError, match=r"context_length \(16 \+ 1 for bos_token_id\)"):
        perplexity(model, ids, context_length=16, stride=8, bos_token_id=BOS)
    with pytest.raises(ValueError, match="context_length <= 16"):
        perplexity(model, ids, context_length=17, stride=8)


def test_context_longer_than_gpt_neox_positions_is_a_clear_error(tmp_path, ids):
    """GPT-NeoX (rotary positions) used to run past its trained length without a word."""
    model = tiny_causal_lm(tmp_path, vocab_size=VOCAB, hidden_size=32, max_positions=16)
    with pytest.raises(ValueError, match="more positions than the model's 16"):
        perplexity(model, ids, context_length=32, stride=8)


@pytest.mark.parametrize("bad_id", [VOCAB, -1])
def test_out_of_vocabulary_ids_are_a_clear_error(tmp_path, ids, bad_id):
    """An id outside the embedding table used to end in a bare IndexError."""
    model = tiny_causal_lm(tmp_path, vocab_size=VOCAB, hidden_size=32, max_positions=64)
    bad = ids.clone()
    bad[20] = bad_id
    with pytest.raises(
        ValueError, match=f"input_ids holds the id {bad_id}, outside .* \\[0, {VOCAB}\\)"
    ):
        perplexity(model, bad, context_length=8, stride=4)
    with pytest.raises(ValueError, match=f"bos_token_id holds the id {VOCAB}"):
        perplexity(model, ids, context_length=8, stride=4, bos_token_id=VOCAB)


@pytest.mark.parametrize("attention", ["bidirectional", "full"])
def test_masked_model_rejected(ids, attention):
    torch.manual_seed(0)
    encoder = TinyTransformer(VOCAB, 32, 2, 4, attention=attention)
    with pytest.raises(ValueError, match="must be causal"):
        perplexity(encoder, ids, context_length=8, stride=4)


def test_huggingface_masked_lm_rejected(ids):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    with pytest.raises(ValueError, match="pseudo_perplexity"):
        perplexity(BertForMaskedLM(config), ids, context_length=8, stride=4)


def test_masked_lm_with_transformers_4_signature_rejected(ids):
    # transformers 4.x declares BertForMaskedLM.forward with named arguments only (no use_cache,
    # no **kwargs): passing use_cache=False to it was a TypeError instead of the clear ValueError.
    from transformers import BertConfig, BertForMaskedLM

    class BertForMaskedLM4(BertForMaskedLM):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                labels=labels,
            )

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    with pytest.raises(ValueError, match="pseudo_perplexity"):
        perplexity(BertForMaskedLM4(config), ids, context_length=8, stride=4)


def test_causal_lm_forwards_run_without_a_key_value_cache(tmp_path):
    lm = tiny_causal_lm(tmp_path, vocab_size=50, hidden_size=32, num_layers=1, num_heads=4)
    calls = []
    lm.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True
    )
    text = torch.randint(0, 50, (20,), generator=torch.Generator().manual_seed(3))
    perplexity(lm, text, context_length=8, stride=4)
    assert calls and all(kwargs.get("use_cache") is False for kwargs in calls)
