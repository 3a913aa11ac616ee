"""Course models: a CIFAR-style ResNet-18 with the SimCLR projection head, and a tiny Transformer
whose attention pattern follows the training objective."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _check_positive_int(argument: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{argument} must be >= 1, got {value}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:  # 1x1 projection when the shape changes
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet whose forward returns pooled features (B, feature_dim), or logits with a classifier."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        *,
        in_channels: int = 3,
        width: int = 64,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("width", width)
        if num_classes is not None:
            _check_positive_int("num_classes", num_classes)
        # CIFAR stem: one 3x3 stride-1 convolution and no max-pool, so 32x32 (or 8x8) inputs keep
        # their resolution into the first stage instead of being cut 4x as the ImageNet stem does.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(channels, out, stride)]
            layers += [BasicBlock(out, out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, feature_dim), or logits (B, num_classes) when built with a classifier."""
        if x.ndim != 4:
            raise ValueError(f"x must be a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        h = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(h)


def resnet18_cifar(
    *, in_channels: int = 3, width: int = 64, num_classes: int | None = None
) -> ResNet:
    """ResNet-18 with a 3x3 stem and no max-pool; `width` channels in the first stage (64 = standard)."""
    return ResNet((2, 2, 2, 2), in_channels=in_channels, width=width, num_classes=num_classes)


class ProjectionHead(nn.Module):
    """SimCLR's head g: Linear -> BatchNorm -> ReLU -> Linear, mapping features h to z for the loss."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            _check_positive_int(name, value)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),  # BatchNorm follows: a bias would cancel
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Projections z (B, out_dim) of features h (B, in_dim)."""
        if h.ndim != 2:
            raise ValueError(
                f"h must be a (B, in_dim) batch of features, got shape {tuple(h.shape)}"
            )
        return self.net(h)


# ---------------------------------------------------------------------------------------------
# TinyTransformer: one block definition, three attention patterns (read it top to bottom).
#   causal        autoregressive decoder: token t sees tokens <= t          (GPT, iGPT)
#   bidirectional masked encoder: every token sees every *visible* token   (BERT, MAE encoder)
#   full          contrastive encoder: every token sees every token        (SimCLR/CLIP-style)
# ---------------------------------------------------------------------------------------------

ATTENTION_PATTERNS = ("causal", "bidirectional", "full")


def attention_pattern(
    attention: str, idx: torch.Tensor, mask_token_id: int | None = None
) -> torch.Tensor:
    """Boolean (B, T, T) matrix: entry [b, t, s] is True when query t may attend to key s."""
    if attention not in ATTENTION_PATTERNS:
        raise ValueError(f"attention must be one of {ATTENTION_PATTERNS}, got {attention!r}")
    B, T = idx.shape
    allowed = torch.ones(B, T, T, dtype=torch.bool, device=idx.device)
    if attention == "causal":
        allowed = allowed.tril()  # lower triangle: no peeking at the future
    elif attention == "bidirectional" and mask_token_id is not None:
        visible = idx != mask_token_id  # [MASK] keys carry no information: hide them
        eye = torch.eye(T, dtype=torch.bool, device=idx.device)
        allowed = visible[:, None, :] | eye  # each token keeps itself, so no row is empty
    return allowed


class SelfAttention(nn.Module):
    """Multi-head self-attention restricted by a boolean pattern; can return its weights."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor | None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Output (B, T, C) and, with `need_weights`, the weights (B, heads, T, T), else None.

        Query t may attend to key s where `allowed[b, t, s]` (a (B, T, T) boolean pattern; None:
        every key) and, with `causal`, s <= t.
        """
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (z.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for z in (q, k, v))
        tril = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if causal and allowed is not None:  # SDPA takes a mask or the causal flag, not both
            allowed, causal = allowed & tril, False
        if need_weights:  # the textbook formula, materialising the (T, T) weights the heatmaps show
            keep = torch.ones_like(tril) if allowed is None else allowed[:, None]
            keep = keep & tril if causal else keep
            scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
            weights = F.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            y = weights @ v
        else:
            # Training and scoring: the fused kernel computes the same softmax(q k^T / sqrt(d)) v
            # block by block without storing the (T, T) weights (flash / memory-efficient
            # attention on a GPU, less memory and time); `is_causal` lets it skip the future.
            mask = allowed[:, None] if allowed is not None else None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
            weights = None
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), weights


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor | None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block output, and the attention weights when `need_weights` (see SelfAttention)."""
        a, weights = self.attn(self.ln1(x), allowed, causal=causal, need_weights=need_weights)
        x = x + a
        return x + self.mlp(self.ln2(x)), weights


class TinyTransformer(nn.Module):
    """Token + position embeddings, `n_layers` blocks, a final norm and a linear LM head."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        *,
        attention: str = "causal",
        max_len: int = 256,
        mask_token_id: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_PATTERNS:
            raise ValueError(f"attention must be one of {ATTENTION_PATTERNS}, got {attention!r}")
        sizes = dict(
            vocab_size=vocab_size,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            max_len=max_len,
        )
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if mask_token_id is not None and attention != "bidirectional":
            raise ValueError("mask_token_id only applies to attention='bidirectional'")
        self.attention, self.max_len, self.mask_token_id = attention, max_len, mask_token_id
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def encode(
        self, idx: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Final hidden states (B, T, d_model); with `return_attention`, also per-layer weights."""
        if idx.ndim != 2:
            raise ValueError(f"idx must be (batch, length) token ids, got shape {tuple(idx.shape)}")
        if idx.shape[1] > self.max_len:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds max_len={self.max_len}")
        # The pattern as SDPA takes it: a flag for causal, no mask for all-to-all, a boolean
        # pattern only where keys are hidden ([MASK] keys of a bidirectional model).
        causal = self.attention == "causal"
        hides_keys = self.attention == "bidirectional" and self.mask_token_id is not None
        allowed = attention_pattern(self.attention, idx, self.mask_token_id) if hides_keys else None
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        maps = []
        for block in self.blocks:
            x, weights = block(x, allowed, causal=causal, need_weights=return_attention)
            maps.append(weights)
        x = self.ln_f(x)
        return (x, maps) if return_attention else x

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token (causal) or per-position (encoders) logits, shape (B, T, vocab_size)."""
        return self.head(self.encode(idx))

    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer, each (B, n_heads, T, T), rows summing to 1."""
        return self.encode(idx, return_attention=True)[1]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append `max_new_tokens` tokens sampled from p(x_t | x_<t)^(1/temperature)."""
        if self.attention != "causal":
            raise ValueError(f"generate needs attention='causal', this model is {self.attention!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.max_len :])[:, -1] / temperature
            probs = F.softmax(logits.float(), dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
