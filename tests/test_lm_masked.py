"""course_utils.lm, masked side: BERT masking, batched pseudo-log-likelihood, the tiny offline MLM."""

import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from course_utils.data import load_text
from course_utils.lm import (
    SPECIAL_TOKENS,
    mask_tokens,
    pseudo_log_likelihood,
    pseudo_perplexity,
    tiny_mlm,
    train_mlm,
)

# A small vocabulary so that many words split into several WordPiece tokens (word_l2r differs).
CORPUS = "\n".join(load_text("pydoc").splitlines()[:400])
TEXTS = [
    "The return value is None.",
    "x",
    "Exceptions propagate through the interpreter unless they are handled explicitly here.",
    "a b",
    "Identifiers are unlimited in length; case is significant.",
]
ATOL = 1e-5  # nats: float32 forward passes, batched with padding vs one unpadded copy at a time


@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm(CORPUS, vocab_size=150, hidden_size=32, num_heads=2, max_length=128, steps=0)


@pytest.fixture(scope="module")
def naive(mlm):
    model, tokenizer = mlm
    return {v: naive_pll(model, tokenizer, TEXTS, v) for v in ("original", "word_l2r")}


def naive_pll(model, tokenizer, texts, variant):
    """Reference: one text at a time, one masked copy per forward pass, no padding."""
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_special_tokens_mask=True)
            ids, words = enc["input_ids"], enc.word_ids()
            total = 0.0
            for t in range(len(ids)):
                if enc["special_tokens_mask"][t]:
                    continue
                masked = list(ids)
                masked[t] = tokenizer.mask_token_id
                if variant == "word_l2r":
                    for s in range(t + 1, len(ids)):
                        if words[s] is not None and words[s] == words[t]:
                            masked[s] = tokenizer.mask_token_id
                logits = model(torch.tensor([masked])).logits[0, t]
                total += F.log_softmax(logits, dim=-1)[ids[t]].item()
            out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_texts_have_multi_token_words(mlm):
    _, tokenizer = mlm
    words = tokenizer(TEXTS[2]).word_ids()
    assert len(words) - 2 > len(set(words) - {None}), "the corpus vocabulary is too large"


@pytest.mark.parametrize("variant", ["original", "word_l2r"])
@pytest.mark.parametrize("batch_size", [1, 5, 17, 1000])  # copies of one text split across batches
def test_pll_matches_naive_loop(mlm, naive, variant, batch_size):
    model, tokenizer = mlm
    expected = naive[variant]
    got = pseudo_log_likelihood(model, tokenizer, TEXTS, variant=variant, batch_size=batch_size)
    assert got.shape == (len(TEXTS),) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)


def test_word_l2r_differs_only_with_multi_token_words(mlm):
    model, tokenizer = mlm
    original = pseudo_log_likelihood(model, tokenizer, TEXTS, variant="original")
    l2r = pseudo_log_likelihood(model, tokenizer, TEXTS, variant="word_l2r")
    for i, text in enumerate(TEXTS):
        words = [w for w in tokenizer(text).word_ids() if w is not None]
        if len(words) == len(set(words)):  # every word one token: the same masked copies
            assert l2r[i] == original[i]
        else:
            assert abs(l2r[i] - original[i]) > 1e-6  # other inputs: not float noise


def test_pll_of_a_text_does_not_depend_on_its_batch_neighbours(mlm):
    model, tokenizer = mlm
    together = pseudo_log_likelihood(model, tokenizer, TEXTS, batch_size=7)
    alone = torch.cat([pseudo_log_likelihood(model, tokenizer, [t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, rtol=0, atol=ATOL)


def test_pseudo_perplexity_is_exp_of_mean_token_pll(mlm, naive):
    model, tokenizer = mlm
    n_tokens = sum(len(tokenizer(t)["input_ids"]) - 2 for t in TEXTS)  # less [CLS] and [SEP]
    expected = math.exp(-naive["original"].sum().item() / n_tokens)
    assert pseudo_perplexity(model, tokenizer, TEXTS) == pytest.approx(expected, rel=1e-5)


def test_pll_is_deterministic_and_keeps_training_mode(mlm):
    model, tokenizer = mlm
    model = copy.deepcopy(model)
    model.config.hidden_dropout_prob = 0.5
    model.train()
    first = pseudo_log_likelihood(model, tokenizer, TEXTS)
    assert model.training
    torch.testing.assert_close(first, pseudo_log_likelihood(model, tokenizer, TEXTS))


def _picked_stats(seed):
    vocab, n = 1000, (400, 500)
    ids = torch.randint(5, vocab, n, generator=torch.Generator().manual_seed(99))
    special = torch.zeros(n, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=4,
        vocab_size=vocab,
        special_tokens_mask=special,
        generator=torch.Generator().manual_seed(seed),
    )
    return ids, special, inputs, labels


def test_mask_tokens_follows_the_80_10_10_rule():
    ids, special, inputs, labels = _picked_stats(0)
    picked = labels != -100
    # Binomial standard deviations: 0.0008 for the 15% rate, <= 0.002 for the 80/10/10 split.
    assert picked.float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert not picked[special].any()
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(inputs[~picked], ids[~picked])  # unpicked tokens are untouched
    masked = (inputs[picked] == 4).float().mean().item()
    kept = (inputs[picked] == ids[picked]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.012)
    assert kept == pytest.approx(0.1, abs=0.012)  # (+ 0.1 / vocab: a random id may be the same)
    randomised = inputs[picked & (inputs != 4) & (inputs != ids)]
    assert randomised.float().mean().item() == pytest.approx(999 / 2, rel=0.05)  # uniform ids


def test_mask_tokens_is_reproducible_and_edge_rates():
    a, b = _picked_stats(3), _picked_stats(3)
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    assert not torch.equal(a[2], _picked_stats(4)[2])
    ids = torch.arange(10).repeat(3, 1)
    inputs, labels = mask_tokens(ids, mask_token_id=0, vocab_size=10, mlm_probability=0.0)
    assert torch.equal(inputs, ids) and (labels == -100).all()
    _, labels = mask_tokens(ids, mask_token_id=0, vocab_size=10, mlm_probability=1.0)
    assert torch.equal(labels, ids)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mlm_probability": 1.5}, ValueError),
        ({"mask_token_id": 10}, ValueError),
        ({"special_tokens_mask": torch.zeros(3, dtype=torch.bool)}, ValueError),
    ],
)
def test_mask_tokens_rejects_bad_arguments(kwargs, error):
    args = {"mask_token_id": 0, "vocab_size": 10} | kwargs
    with pytest.raises(error):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), **args)
    with pytest.raises(TypeError, match="input_ids"):
        mask_tokens(torch.zeros(2, 3), mask_token_id=0, vocab_size=10)


def test_tiny_mlm_round_trip_through_a_local_directory(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model, tokenizer = tiny_mlm(
        CORPUS, vocab_size=150, hidden_size=32, max_length=128, steps=3, directory=tmp_path
    )
    assert (tmp_path / "config.json").exists() and (tmp_path / "tokenizer.json").exists()
    again, tok_again = (
        AutoModelForMaskedLM.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(tmp_path),
    )
    enc = tok_again(TEXTS[0], return_tensors="pt")
    assert (
        enc["input_ids"].tolist() == tokenizer(TEXTS[0], return_tensors="pt")["input_ids"].tolist()
    )
    assert tokenizer.mask_token == "[MASK]" and len(tokenizer) <= 150
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**enc).logits, model(**enc).logits)


def test_tiny_mlm_is_reproducible_across_processes(tmp_path):
    # the tokenizers trainer numbers tokens in hash-map order, seeded per process: ids must not depend on it
    script = (
        "import sys, json; from course_utils.lm import tiny_mlm; "
        "m, t = tiny_mlm(sys.argv[1], vocab_size=150, hidden_size=32, steps=2); "
        "print(json.dumps([t.get_vocab(), m.bert.embeddings.word_embeddings.weight.sum().item()]))"
    )
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script, CORPUS], capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    _, tokenizer = tiny_mlm(CORPUS, vocab_size=150, hidden_size=32)
    assert tokenizer.get_vocab() == runs[0][0]  # and in this process too
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS.values())


def test_train_mlm_lowers_the_masked_loss(mlm):
    model, tokenizer = mlm
    model = copy.deepcopy(model)
    lines = ["the cat sat on the mat", "the dog sat on the log"] * 50
    losses = train_mlm(
        model,
        tokenizer,
        lines,
        steps=40,
        lr=3e-3,
        mlm_probability=0.3,
        generator=torch.Generator().manual_seed(0),
    )
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10  # first vs last 10 steps


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValueError, "empty list"),
        (["fine", ""], ValueError, r"texts\[1\] is empty"),
        (["   "], ValueError, r"texts\[0\] is empty"),
        ("a string", TypeError, "list of strings"),
        ([3], TypeError, r"texts\[0\]"),
        (["word " * 200], ValueError, "positions"),
    ],
)
def test_pll_rejects_bad_texts(mlm, texts, error, match):
    model, tokenizer = mlm
    with pytest.raises(error, match=match):
        pseudo_log_likelihood(model, tokenizer, texts)


def test_pll_rejects_bad_options(mlm):
    model, tokenizer = mlm
    with pytest.raises(ValueError, match="variant"):
        pseudo_log_likelihood(model, tokenizer, TEXTS, variant="l2r")
    with pytest.raises(ValueError, match="batch_size"):
        pseudo_log_likelihood(model, tokenizer, TEXTS, batch_size=0)


def test_a_literal_sep_in_a_text_is_not_scored(mlm):
    """A "[SEP]" typed in a text becomes the [SEP] token; it used to be scored like a word.

    Reference: the naive loop with that position left out (minicons' choice), value for value.
    """
    model, tokenizer = mlm
    text = "The return value [SEP] is None."
    ids = tokenizer(text)["input_ids"]
    literal = ids.index(tokenizer.sep_token_id)
    assert 0 < literal < len(ids) - 1  # the tokenizer kept it as one special token mid-text
    with torch.no_grad():
        expected = 0.0
        for t in range(1, len(ids) - 1):
            if t == literal:
                continue
            masked = list(ids)
            masked[t] = tokenizer.mask_token_id
            logits = model(torch.tensor([masked])).logits[0, t]
            expected += F.log_softmax(logits, dim=-1)[ids[t]].item()
    got = pseudo_log_likelihood(model, tokenizer, [text])
    torch.testing.assert_close(
        got, torch.tensor([expected], dtype=torch.float64), rtol=0, atol=ATOL
    )


def test_pll_length_guard_counts_roberta_position_offset(mlm):
    """RoBERTa numbers positions from pad_token_id + 1: a table of 17 rows allows 16 tokens.

    A 17-token text used to pass the guard (17 <= max_position_embeddings) and fail inside the
    model with a bare IndexError; 16 tokens must still be scored, as by the naive loop.
    """
    from transformers import RobertaConfig, RobertaForMaskedLM

    _, tokenizer = mlm
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=17,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = RobertaForMaskedLM(config).eval()
    fits, too_long = " ".join(["a"] * 14), " ".join(["a"] * 15)  # + [CLS] and [SEP]
    assert [len(tokenizer(t)["input_ids"]) for t in (fits, too_long)] == [16, 17]
    got = pseudo_log_likelihood(model, tokenizer, [fits])
    torch.testing.assert_close(
        got, naive_pll(model, tokenizer, [fits], "original"), rtol=0, atol=ATOL
    )
    with pytest.raises(ValueError, match="texts\\[0\\] has 17 tokens, more than the model's 16"):
        pseudo_log_likelihood(model, tokenizer, [too_long])


def test_pll_rejects_a_tokenizer_without_mask_token(mlm):
    model, tokenizer = mlm
    no_mask = copy.deepcopy(tokenizer)
    no_mask.mask_token = None
    assert no_mask.mask_token_id is None
    with pytest.raises(ValueError, match="no mask token"):
        pseudo_log_likelihood(model, no_mask, TEXTS)
    with pytest.raises(ValueError, match="no mask token"):
        pseudo_perplexity(model, no_mask, TEXTS)


@pytest.mark.parametrize("kind", ["gpt2", "bert-decoder"])
def test_pll_rejects_a_causal_model(mlm, kind):
    from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel

    _, tokenizer = mlm
    if kind == "gpt2":
        causal = GPT2LMHeadModel(
            GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2)
        )
    else:
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2
        )
        causal = BertLMHeadModel(config.__class__(**config.to_dict() | {"is_decoder": True}))
    with pytest.raises(ValueError, match="causal"):
        pseudo_log_likelihood(causal, tokenizer, TEXTS)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "cpu"),  # the default, as before the argument existed
        ({"device": "cpu"}, "cpu"),
        ({"device": "meta"}, "meta"),  # meta: a device other than the CPU, as a GPU would be
        ({"device": torch.device("meta")}, "meta"),
    ],
)
def test_tiny_mlm_trains_on_the_device_asked(monkeypatch, kwargs, expected):
    import course_utils.lm.tiny as lm_tiny

    class Stop(Exception):
        pass

    devices = []

    def spy(model, *args, **kwargs):
        devices.append(next(model.parameters()).device)
        raise Stop

    monkeypatch.setattr(lm_tiny, "train_mlm", spy)
    with pytest.raises(Stop):
        tiny_mlm(CORPUS, vocab_size=150, hidden_size=32, max_length=128, **kwargs)
    assert devices == [torch.device(expected)]


def test_tiny_mlm_returns_the_model_on_its_device():
    model, tokenizer = tiny_mlm(
        CORPUS, vocab_size=150, hidden_size=32, max_length=128, steps=2, device="cpu"
    )
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    assert not model.training


@pytest.mark.parametrize(
    ("device", "error", "match"),
    [(0.5, TypeError, "device must be a str or torch.device"), ("gpu", ValueError, "'gpu'")],
)
def test_tiny_mlm_bad_device(device, error, match):
    with pytest.raises(error, match=match):
        tiny_mlm(CORPUS, device=device)
