"""Stand-ins for every downloaded asset, in the real formats, for smoke runs of the notebooks.

`build(root)` writes what the loaders find through `COURSE_STANDINS=root` (see
`course_utils.runtime.standin`): the CIFAR-10 archive in its pickle layout, a TinyShakespeare-sized
text, and tiny BERT, GPT-NeoX (Pythia) models with their tokenizers as Hub-style folders
`hub/<repository>/<revision>`. Nothing is downloaded; the contents are random or Python's own docs,
so they exercise code paths, not results.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from course_utils.data import load_text
from course_utils.scaling import PYTHIA

CIFAR_CLASSES = 10


def cifar10_archive(path: Path, *, per_batch: int, test_count: int, seed: int = 0) -> Path:
    """`cifar-10-python.tar.gz` as the Toronto file lays it out: five training pickles and a test
    pickle of {'data': uint8 (n, 3072), 'labels': [...]}; each class has its own mean colour."""
    rng = np.random.default_rng(seed)
    tint = rng.integers(40, 216, size=(CIFAR_CLASSES, 3, 1, 1))

    def batch(n: int, label: str) -> bytes:
        labels = rng.integers(0, CIFAR_CLASSES, size=n)
        noise = rng.normal(0, 40, size=(n, 3, 32, 32))
        data = np.clip(tint[labels] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        entry = {"batch_label": label, "labels": labels.tolist(), "data": data}
        entry["filenames"] = [f"standin_{i}.png" for i in range(n)]
        return pickle.dumps(entry, protocol=2)

    members = {f"data_batch_{i}": batch(per_batch, f"training batch {i} of 5") for i in range(1, 6)}
    members["test_batch"] = batch(test_count, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def text_file(path: Path, chars: int) -> Path:
    """A plain-text corpus of `chars` characters (Python's documentation, repeated as needed)."""
    source = load_text("pydoc")
    path.write_text((source * (chars // len(source) + 1))[:chars], encoding="utf-8")
    return path


def bert_folder(path: Path, corpus: str) -> Path:
    """A tiny `BertForMaskedLM` and its WordPiece tokenizer, saved as a Hub-style folder."""
    from course_utils.lm import tiny_mlm

    tiny_mlm(corpus, vocab_size=300, hidden_size=32, max_length=512, steps=0, directory=path)
    return path


def pythia_tokenizer_files(path: Path, corpus: str) -> None:
    """A small byte-level BPE tokenizer with Pythia's special token, saved into `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus.splitlines(), trainer)
    special = "<|endoftext|>"
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special, eos_token=special, unk_token=special
    ).save_pretrained(path)


def pythia_folder(path: Path, corpus: str) -> Path:
    """A tiny randomly initialised `GPTNeoXForCausalLM` (Pythia's architecture) with a tokenizer."""
    from course_utils.lm import tiny_causal_lm

    pythia_tokenizer_files(path, corpus)
    tiny_causal_lm(path, vocab_size=400, hidden_size=32, num_heads=2, max_positions=2048)
    return path


def build(
    root: Path,
    *,
    cifar_per_batch: int = 100,
    cifar_test: int = 200,
    text_chars: int = 200_000,
    pythia_steps: tuple[int, ...] = (),
) -> Path:
    """Every stand-in under `root` (the value for `COURSE_STANDINS`): CIFAR-10, TinyShakespeare,
    bert-base-uncased, pythia-160m, and every Pythia size at `main` and each of `pythia_steps`."""
    root.mkdir(parents=True, exist_ok=True)
    cifar10_archive(
        root / "cifar-10-python.tar.gz", per_batch=cifar_per_batch, test_count=cifar_test
    )
    text_file(root / "tinyshakespeare.txt", text_chars)
    corpus = load_text("pydoc")[:50_000]
    bert_folder(root / "hub" / "bert-base-uncased" / "main", corpus)
    first = pythia_folder(root / "hub" / "EleutherAI" / "pythia-70m" / "main", corpus)
    for size in PYTHIA:
        for revision in ("main", *(f"step{s}" for s in pythia_steps)):
            folder = root / "hub" / "EleutherAI" / f"pythia-{size}" / revision
            if not folder.exists():
                folder.parent.mkdir(parents=True, exist_ok=True)
                folder.symlink_to(first, target_is_directory=True)
    return root
