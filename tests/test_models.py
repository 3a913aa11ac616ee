"""TinyTransformer: the attention pattern decides which tokens each output may depend on."""

import pytest
import torch
import torch.nn.functional as F

from course_utils import models
from course_utils.models import TinyTransformer, attention_pattern

VOCAB, T = 13, 10


def build(attention: str, **kwargs) -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer(VOCAB, 32, 2, 4, attention=attention, max_len=16, **kwargs).eval()


def outputs_before_and_after_change(model, position: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(1, VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    changed = idx.clone()
    changed[:, position] = changed[:, position] % (VOCAB - 1) + 1  # a different non-zero token
    with torch.no_grad():
        return model(idx), model(changed)


@pytest.mark.parametrize("position", [0, 4, T - 1])
def test_causal_output_ignores_the_future(position):
    before, after = outputs_before_and_after_change(build("causal"), position)
    torch.testing.assert_close(before[:, :position], after[:, :position], atol=0, rtol=0)
    assert (before[:, position:] - after[:, position:]).abs().amax(-1).min() > 1e-4


@pytest.mark.parametrize("attention", ["bidirectional", "full"])
@pytest.mark.parametrize("position", [0, 4, T - 1])
def test_encoders_see_every_token(attention, position):
    before, after = outputs_before_and_after_change(build(attention), position)
    assert (before - after).abs().amax(-1).min() > 1e-4  # every position feels the change


def test_bidirectional_hides_mask_tokens_only():
    """With mask_token_id, a [MASK] key gets no attention from other queries; full attends it."""
    mask = 0
    idx = torch.randint(1, VOCAB, (1, T), generator=torch.Generator().manual_seed(4))
    idx[0, [2, 7]] = mask
    weights = build("bidirectional", mask_token_id=mask).attention_maps(idx)[0][0]
    off_diagonal = ~torch.eye(T, dtype=torch.bool)
    assert weights[:, :, [2, 7]][:, off_diagonal[:, [2, 7]]].abs().max() == 0
    assert weights[:, :, [0, 1, 3]].min() > 0  # visible keys are attended by every query
    assert build("full").attention_maps(idx)[0][0][:, :, [2, 7]].min() > 0


def test_attention_maps_shapes_and_patterns():
    idx = torch.randint(1, VOCAB, (3, T))
    for attention in ["causal", "bidirectional", "full"]:
        maps = build(attention).attention_maps(idx)
        assert len(maps) == 2 and maps[0].shape == (3, 4, T, T)
        torch.testing.assert_close(maps[1].sum(-1), torch.ones(3, 4, T))  # rows are distributions
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        zero_future = maps[0][..., future].abs().max() == 0
        assert zero_future == (attention == "causal")


def softmax_attention(attn, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Reference: softmax(q k^T / sqrt(d)) v with the (T, T) weights written out, then the output
    projection; `allowed` (B, T, T) says which keys each query may see."""
    B, T, C = x.shape
    q, k, v = (z.view(B, T, 4, C // 4).transpose(1, 2) for z in attn.qkv(x).split(C, dim=2))
    scores = (q @ k.transpose(-2, -1)) / (C // 4) ** 0.5
    weights = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("attention", ["causal", "bidirectional", "full"])
def test_sdpa_matches_the_materialised_softmax(attention):
    """The fused path (training, scoring) and the weights path (figures) compute the same attention."""
    model = build(attention, **({"mask_token_id": 0} if attention == "bidirectional" else {}))
    idx = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(5))
    idx[:, [3, 6]] = 0  # [MASK] keys for the bidirectional model, ordinary tokens for the others
    attn = model.blocks[0].attn
    x = torch.randn(2, T, 32, generator=torch.Generator().manual_seed(6))
    allowed = attention_pattern(attention, idx, model.mask_token_id)
    with torch.no_grad():
        ref = softmax_attention(attn, x, allowed)
        # as encode() calls it: a flag for causal, no mask for all-to-all, the pattern otherwise
        causal = attention == "causal"
        fused, none = attn(x, None if causal or attention == "full" else allowed, causal=causal)
        explicit, _ = attn(x, allowed)  # the pattern as an explicit mask (the causal one too)
        materialised, weights = attn(x, allowed, need_weights=True)
        hidden, maps = model.encode(idx), model.encode(idx, return_attention=True)
    assert none is None and weights.shape == (2, 4, T, T)
    for got in (fused, explicit, materialised):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)  # float32 kernels differ ~1e-7
    torch.testing.assert_close(hidden, maps[0], atol=1e-5, rtol=1e-5)
    only_first = torch.zeros_like(allowed)
    only_first[..., 0] = True  # every query sees key 0 only: a different pattern, another output
    with torch.no_grad():
        assert (attn(x, only_first)[0] - ref).abs().max() > 1e-3


def test_training_forward_uses_sdpa_and_only_figures_materialise(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(models.F, "scaled_dot_product_attention", counting)
    idx = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(7))
    model = build("causal").train()
    F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
    assert calls == [True, True]  # one fused call per layer, with the causal flag
    maps = model.attention_maps(idx)
    assert len(calls) == 2 and [m.shape for m in maps] == [(2, 4, T, T)] * 2


def test_generate_appends_tokens_and_needs_causal():
    model = build("causal")
    out = model.generate(torch.ones(2, 3, dtype=torch.long), 5, temperature=0.7)
    assert out.shape == (2, 8) and torch.equal(out[:, :3], torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.ones(1, 1, dtype=torch.long), 1, temperature=0)
    with pytest.raises(ValueError, match="causal"):
        build("full").generate(torch.ones(1, 1, dtype=torch.long), 1)


def test_generate_low_temperature_is_greedy():
    model = build("causal")
    start = torch.ones(1, 4, dtype=torch.long)
    with torch.no_grad():
        greedy = model(start)[0, -1].argmax()
    assert model.generate(start, 1, temperature=1e-4)[0, -1] == greedy


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(attention="sparse"), "attention"),
        (dict(n_heads=5), "divisible"),
        (dict(n_layers=0), "n_layers"),
        (dict(attention="causal", mask_token_id=0), "mask_token_id"),
    ],
)
def test_bad_configuration(kwargs, match):
    args = dict(vocab_size=VOCAB, d_model=32, n_layers=2, n_heads=4) | kwargs
    with pytest.raises(ValueError, match=match):
        TinyTransformer(
            args.pop("vocab_size"),
            args.pop("d_model"),
            args.pop("n_layers"),
            args.pop("n_heads"),
            **args,
        )


def test_bad_input_shape_and_length():
    model = build("causal")
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 17, dtype=torch.long))
