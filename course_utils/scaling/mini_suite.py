"""The offline twin of the Pythia suite: tiny GPT-NeoX models trained on the course's text."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from course_utils.runtime import quiet_transformers
from course_utils.scaling.constants import PythiaModel, non_embedding_params
from course_utils.scaling.pythia import encode_bytes


def _mini(layers: int, d_model: int) -> PythiaModel:
    """A mini-suite shape: 16-wide heads, byte vocabulary (256) in and out."""
    body = non_embedding_params(layers, d_model)
    return PythiaModel(layers, d_model, d_model // 16, body + 2 * 256 * d_model, body)


MINI_PYTHIA = {
    "3k": _mini(1, 16),
    "25k": _mini(2, 32),
    "57k": _mini(2, 48),
    "150k": _mini(3, 64),
    "448k": _mini(4, 96),
}
"""Tiny GPT-NeoX shapes in Pythia's proportions (4x MLP, rotary on 25% of each head, parallel
attention and MLP, untied embeddings), with 16-wide heads and a byte vocabulary of 256; named by
their non-embedding size."""


def mini_suite(
    root: str | os.PathLike,
    text: str,
    *,
    sizes: Sequence[str] = tuple(MINI_PYTHIA),
    steps: int = 256,
    batch_size: int = 16,
    context_length: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[int, ...]:
    """Train mini Pythia models on `text` (bytes), saving `<root>/<size>/step<N>` checkpoints.

    Like Pythia, every size sees the same batches in the same order (`batch_size * context_length`
    tokens per step) with Adam, warm-up over the first 1% of steps and cosine decay to 10% of `lr`;
    checkpoints are saved at step 0, powers of two and every `steps // 8` steps. Returns the
    checkpoint steps.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from course_utils.runtime import device as best_device
    from course_utils.runtime import seed_everything

    unknown = [s for s in sizes if s not in MINI_PYTHIA]
    if unknown or not sizes:
        raise ValueError(f"sizes must be a non-empty subset of {tuple(MINI_PYTHIA)}, got {sizes!r}")
    if steps < 1 or batch_size < 1 or context_length < 2:
        raise ValueError(
            f"steps, batch_size >= 1 and context_length >= 2 needed, got {steps}, {batch_size}, "
            f"{context_length}"
        )
    data = torch.tensor(encode_bytes(text), dtype=torch.long)
    if len(data) <= context_length + 1:
        raise ValueError(
            f"text must be longer than context_length + 1 = {context_length + 1} bytes"
        )
    target = torch.device(device) if device is not None else best_device()
    checkpoints = sorted(
        {0, steps, *(2**k for k in range(steps.bit_length()) if 2**k <= steps)}
        | set(range(max(steps // 8, 1), steps + 1, max(steps // 8, 1)))
    )
    generator = seed_everything(seed)
    starts = torch.randint(
        0, len(data) - context_length - 1, (steps, batch_size), generator=generator
    )
    offsets = torch.arange(context_length + 1)
    warmup = max(steps // 100, 1)

    def schedule(step: int) -> float:
        """Learning-rate factor: linear warm-up, then cosine decay to 10%."""
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    for size in sizes:
        shape = MINI_PYTHIA[size]
        config = GPTNeoXConfig(
            vocab_size=256,
            hidden_size=shape.d_model,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            intermediate_size=4 * shape.d_model,
            max_position_embeddings=context_length,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.25,
            },
            use_parallel_residual=True,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        torch.manual_seed(seed)  # same initialisation seed for every size, as in Pythia
        model = GPTNeoXForCausalLM(config).to(target)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        folder = Path(root) / size
        with quiet_transformers():
            model.save_pretrained(folder / "step0")
        for step in range(1, steps + 1):
            batch = data[starts[step - 1, :, None] + offsets].to(target)
            logits = model(batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step in checkpoints:
                with quiet_transformers():
                    model.save_pretrained(folder / f"step{step}")
    return tuple(checkpoints)
