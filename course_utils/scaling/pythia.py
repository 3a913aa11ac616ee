"""Real Pythia checkpoints: loading from the Hub or a local folder, and evaluating a suite."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from course_utils.hub import from_pretrained
from course_utils.runtime import quiet_transformers
from course_utils.scaling.constants import PYTHIA, PYTHIA_STEPS

_OFFLINE_SUITE = (
    "load_pythia_evals() (the published evaluations, shipped), or a stand-in suite trained here: "
    "mini_suite(root, text), then load_pythia(size, step, root=root)"
)
"""What to use when the Pythia checkpoints cannot be downloaded."""


def _pythia_path(size: str, step: int, deduped: bool, root: str | os.PathLike | None) -> str:
    """The `from_pretrained` location of a checkpoint: a local folder or a Hub repository."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    name = f"{size}-deduped" if deduped else size
    if root is not None:
        path = Path(root) / name / f"step{step}"
        if not path.is_dir():
            raise FileNotFoundError(f"no checkpoint folder {path} (expected <root>/<size>/step<N>)")
        return str(path)
    if size not in PYTHIA:
        raise ValueError(f"size must be one of {tuple(PYTHIA)}, got {size!r}")
    if step not in PYTHIA_STEPS:
        raise ValueError(f"step {step} is not a Pythia checkpoint; see PYTHIA_STEPS")
    return f"EleutherAI/pythia-{name}"


def load_pythia(
    size: str,
    step: int,
    *,
    deduped: bool = False,
    dtype: torch.dtype | None = None,
    root: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """A Pythia checkpoint in eval mode, as `dtype` (default float32): `EleutherAI/pythia-<size>`
    at revision `step<N>` from the Hugging Face Hub (cached in `hub.cache_dir()`), or
    `<root>/<size>/step<N>` from a local folder such as the one `mini_suite` writes."""
    from transformers import GPTNeoXForCausalLM

    path = _pythia_path(size, step, deduped, root)
    hub = {} if root is not None else {"revision": f"step{step}"}
    if root is None:  # the Hub stores the weights in float16: 2 bytes per parameter
        hub["size"] = f"about {2 * PYTHIA[size].params / 1e9:.2f} GB"
    with quiet_transformers():
        model = from_pretrained(
            GPTNeoXForCausalLM.from_pretrained, path, alternative=_OFFLINE_SUITE, **hub
        )
    # cast after loading: Hub checkpoints may be stored in float16, and the dtype keyword of
    # from_pretrained changed name across transformers versions
    return model.to(dtype or torch.float32).eval()


def pythia_tokenizer() -> Callable[[str], list[int]]:
    """The Pythia tokenizer's encode function (shared by every model of the suite; from the Hub)."""
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(
        AutoTokenizer.from_pretrained,
        "EleutherAI/pythia-70m",
        size="about 2 MB",
        alternative="encode_bytes, the mini suite's tokenizer (always offline)",
    )
    return lambda text: tokenizer(text)["input_ids"]


def encode_bytes(text: str) -> list[int]:
    """The mini suite's tokenizer: the UTF-8 bytes of the text (vocabulary of 256)."""
    return list(text.encode("utf-8"))


def count_non_embedding(model: torch.nn.Module) -> int:
    """Parameters of a GPT-NeoX model outside its input and output embeddings."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


CSV_FIELDS = ("size", "step", "non_embedding_params", "tokens_evaluated", "loss", "perplexity")


def evaluate_suite(
    models: Iterable[str],
    steps: Iterable[int],
    text: str,
    *,
    csv_path: str | os.PathLike,
    context_length: int,
    stride: int,
    root: str | os.PathLike | None = None,
    deduped: bool = False,
    encode: Callable[[str], Sequence[int]] | None = None,
    batch_size: int = 8,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, float | int | str]]:
    """Loss (nats per token) and perplexity of every (size, step) checkpoint on `text`.

    Uses the sliding-window perplexity of lesson 04 (`course_utils.lm.perplexity`). Each result is
    appended to `csv_path` as soon as it is known; (size, step) pairs already in the file are not
    evaluated again, so an interrupted run resumes where it stopped. `encode` turns text into
    token ids (default: the Pythia tokenizer; `encode_bytes` for the mini suite). Returns the rows
    for the requested pairs, in order.
    """
    from tqdm.auto import tqdm

    from course_utils.lm import perplexity
    from course_utils.runtime import device as best_device

    models, steps = [str(m) for m in models], [int(s) for s in steps]
    if not models or not steps:
        raise ValueError("models and steps must not be empty")
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    for size in models:  # fail before any work on a bad name or step
        for step in steps:
            _pythia_path(size, step, deduped, root)
    csv_path = Path(csv_path)
    done: dict[tuple[str, int], dict[str, float | int | str]] = {}
    if csv_path.exists():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != CSV_FIELDS:
                raise ValueError(f"{csv_path} is not an evaluate_suite CSV (columns {CSV_FIELDS})")
            for row in reader:
                done[(row["size"], int(row["step"]))] = _parse_row(row)
    pending = [(m, s) for m in models for s in steps if (m, s) not in done]
    if pending:
        ids = torch.tensor(list((encode or pythia_tokenizer())(text)), dtype=torch.long)
        target = torch.device(device) if device is not None else best_device()
        new_file = not csv_path.exists()
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new_file:
                writer.writeheader()
            for size, step in tqdm(pending, desc="checkpoints"):
                model = load_pythia(size, step, deduped=deduped, dtype=dtype, root=root).to(target)
                with torch.no_grad():
                    ppl = perplexity(
                        model,
                        ids.to(target),
                        context_length=context_length,
                        stride=stride,
                        batch_size=batch_size,
                    )
                row = {
                    "size": size,
                    "step": step,
                    "non_embedding_params": count_non_embedding(model),
                    "tokens_evaluated": len(ids),
                    "loss": math.log(ppl),
                    "perplexity": ppl,
                }
                writer.writerow(row)
                f.flush()  # a later interruption keeps this row
                done[(size, step)] = row
                del model
    return [done[(m, s)] for m in models for s in steps]


def _parse_row(row: dict[str, str]) -> dict[str, float | int | str]:
    """One evaluate_suite CSV row with its numbers parsed."""
    return {
        "size": row["size"],
        "step": int(row["step"]),
        "non_embedding_params": int(row["non_embedding_params"]),
        "tokens_evaluated": int(row["tokens_evaluated"]),
        "loss": float(row["loss"]),
        "perplexity": float(row["perplexity"]),
    }
