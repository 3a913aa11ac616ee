"""'What we observed' paragraphs written from a run's own numbers, labelled with where it ran."""

from __future__ import annotations

import platform

import torch
from IPython.display import Markdown, display

from course_utils.runtime import device, profile


def hardware() -> str:
    """The device this process computes on, in words: the GPU's name, or the CPU's architecture."""
    dev = device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple GPU (mps)"
    return f"CPU ({platform.machine() or 'unknown'}, {torch.get_num_threads()} torch threads)"


def observed(text: str) -> Markdown:
    """Show `text` (Markdown built from this run's variables) as the 'What we observed' paragraph."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty Markdown string, got {text!r}")
    block = Markdown(f"**What we observed** ({profile()}, {hardware()}): {text.strip()}")
    display(block)
    return block
