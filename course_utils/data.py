"""Course data: cached, checksummed downloads; image and text sets with offline twins.

The generated `shapes` set (see `course_utils.shapes`) is built on first use and cached.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

IMAGE_SETS = ("cifar10", "shapes", "digits")
SHAPES_COUNT = {"train": 5000, "test": 1000}  # default number of generated `shapes` images
TEXT_SETS = ("tinyshakespeare", "pydoc")
SPLITS = ("train", "test")
OFFLINE_TWIN = {"cifar10": "digits", "tinyshakespeare": "pydoc"}


class DatasetUnavailableError(ConnectionError):
    """A download failed and the file is not in the cache."""


def cache_dir() -> Path:
    """The course data cache: `$COURSE_DATA`, else `~/.cache/learning-at-scale`."""
    root = os.environ.get("COURSE_DATA") or Path.home() / ".cache" / "learning-at-scale"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256sum(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Stream `url` into `dest`."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            out.write(block)


def download(
    url: str,
    filename: str,
    sha256: str,
    *,
    offline_alternative: str = "",
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Return the cached, checksum-verified file `filename`, downloading it from `url` if needed."""
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    dest = cache_dir() / filename
    if dest.exists():
        if sha256sum(dest) == sha256:
            return dest
        dest.unlink()  # stale or corrupt: fetch again
    part = dest.with_name(dest.name + ".part")
    error: Exception | None = None
    for attempt in range(retries):
        try:
            _fetch(url, part, timeout)
            break
        except (urllib.error.URLError, OSError) as exc:
            error = exc
            part.unlink(missing_ok=True)
            if attempt + 1 < retries:
                time.sleep(min(2**attempt, 8))
        except BaseException:  # KeyboardInterrupt included: never leave half a file
            part.unlink(missing_ok=True)
            raise
    else:
        hint = f" Offline alternative: {offline_alternative}." if offline_alternative else ""
        raise DatasetUnavailableError(
            f"Could not download {url} ({error}). Expected the file in the cache at {dest}: "
            f"put a copy there (or set COURSE_DATA to a folder holding it) to work offline.{hint}"
        )
    got = sha256sum(part)
    if got != sha256:
        part.unlink()
        raise ValueError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
            "the download was deleted, try again."
        )
    os.replace(part, dest)  # atomic: the cache never holds a partial file
    return dest


def _check_choice(argument: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{argument} must be one of {valid}, got {value!r}")


def _load_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    index = order[:cut] if split == "train" else order[cut:]
    return torch.from_numpy(images[index].copy()), torch.from_numpy(bunch.target[index]).long()


def _load_cifar10(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    archive = download(
        CIFAR10_URL,
        "cifar-10-python.tar.gz",
        CIFAR10_SHA256,
        offline_alternative='load_images("digits", split) (scikit-learn digits, always offline)',
    )
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    with tarfile.open(archive, "r:gz") as tar:
        for name in names:
            member = tar.extractfile(f"cifar-10-batches-py/{name}")
            batch = pickle.load(member, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _load_shapes(split: str, count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from course_utils import shapes

    path = cache_dir() / f"shapes-v1-{split}-n{count}-s{size}-seed{seed}.npz"
    if not path.exists():
        images, labels = shapes.generate(split, count, size, seed)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")  # one per concurrent writer
        with open(part, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.replace(part, path)  # atomic: a concurrent reader never sees half a file
    with np.load(path) as stored:
        return torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"])


def _check_int(argument: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{argument} must be >= {low}, got {value}")


def load_images(
    name: str,
    split: str = "train",
    *,
    offline_fallback: bool = False,
    size: int | None = None,
    count: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, C, H, W) and labels as int64 (N,): `cifar10`, or offline `shapes`, `digits`.

    `size` (default 32), `count` (default 5000 train / 1000 test) and `seed` apply to `shapes` only.
    """
    _check_choice("name", name, IMAGE_SETS)
    _check_choice("split", split, SPLITS)
    if name == "shapes":
        size = 32 if size is None else size
        count = SHAPES_COUNT[split] if count is None else count
        _check_int("size", size, 8)
        _check_int("count", count, 1)
        _check_int("seed", seed, 0)
        return _load_shapes(split, count, size, seed)
    if size is not None or count is not None or seed != 0:
        raise ValueError(f"size, count and seed apply to 'shapes' only, not to {name!r}")
    if name == "digits":
        return _load_digits(split)
    try:
        return _load_cifar10(split)
    except DatasetUnavailableError as exc:
        if not offline_fallback:
            raise
        warnings.warn(f"{exc} Using the offline set 'digits' instead of {name!r}.", stacklevel=2)
        return _load_digits(split)


def _load_pydoc() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def load_text(name: str, *, offline_fallback: bool = False) -> str:
    """A text corpus: `tinyshakespeare` (downloaded) or `pydoc` (Python's own docs, offline)."""
    _check_choice("name", name, TEXT_SETS)
    if name == "pydoc":
        return _load_pydoc()
    try:
        path = download(
            TINYSHAKESPEARE_URL,
            "tinyshakespeare.txt",
            TINYSHAKESPEARE_SHA256,
            offline_alternative='load_text("pydoc") (Python\'s own documentation, always offline)',
        )
    except DatasetUnavailableError as exc:
        if not offline_fallback:
            raise
        warnings.warn(f"{exc} Using the offline text 'pydoc' instead of {name!r}.", stacklevel=2)
        return _load_pydoc()
    return path.read_text(encoding="utf-8")


def batches(
    *tensors: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of batches sliced from tensors that already live on the device (no workers)."""
    if not tensors:
        raise ValueError("batches needs at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(
            f"tensors must share their first dimension, got {[len(t) for t in tensors]}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = tensors[0].device
    if shuffle:
        order = torch.randperm(n, generator=generator).to(device)
    else:
        order = torch.arange(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield tuple(t[index] for t in tensors)
