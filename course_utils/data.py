"""Course data: cached, checksummed downloads; image and text sets with offline twins.

The generated `shapes` set (see `course_utils.shapes`) is built on first use and cached.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from course_utils.runtime import standin

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
MIRRORS = {
    # PaddlePaddle's copy (paddle.vision.datasets.Cifar10 downloads it and checks the same MD5,
    # c58f30108f718f92721af3b95e74349a, that torchvision checks for the Toronto file)
    CIFAR10_URL: ("https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz",),
}
"""Other URLs serving the same file as a source URL, tried in order after it by `download`."""

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


def _fetch(url: str, dest: Path, timeout: float) -> bool:
    """Stream `url` into `dest`, continuing a partial `dest` when the server honours an HTTP Range
    request (else starting over); return whether it continued. A short body raises ConnectionError."""
    from tqdm.auto import tqdm

    have = dest.stat().st_size if dest.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not have:  # 416: the partial file is not a prefix the server has
            raise
        dest.unlink()
        return _fetch(url, dest, timeout)
    with response:
        resumed = have > 0 and response.status == 206  # 200 means the server sent the whole file
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with (
            open(dest, "ab" if resumed else "wb") as out,
            tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=dest.stem) as bar,
        ):
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
                done += len(block)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return resumed


def _set_aside(path: Path, expected: str) -> None:
    """Move a cached file whose checksum is wrong out of the way (never delete it) and say so."""
    got = sha256sum(path)
    aside = path.with_name(f"{path.name}.bad-{got[:8]}")
    os.replace(path, aside)
    warnings.warn(
        f"{path} has sha256 {got}, expected {expected}: it is not the file the course needs "
        f"(truncated, another version, or another file). It was moved to {aside}, not deleted; "
        f"a fresh copy will be downloaded. If you placed it there yourself, check where it came "
        f"from, and delete {aside} once you no longer need it.",
        stacklevel=3,
    )


def download(
    url: str | Sequence[str],
    filename: str,
    sha256: str,
    *,
    offline_alternative: str = "",
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Return the cached, checksum-verified file `filename`, downloading it if needed from `url`
    (or a list of URLs) and then the `MIRRORS` of each, in turn, with retries that continue
    partial files."""
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"url must be a URL or a non-empty list of mirror URLs, got {url!r}")
    urls += [m for u in urls for m in MIRRORS.get(u, ()) if m not in urls]
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    fake = standin(filename)
    if fake is not None:  # a test's stand-in in the real format (COURSE_STANDINS): no checksum
        return fake
    dest = cache_dir() / filename
    if dest.exists():
        if sha256sum(dest) == sha256:
            return dest
        _set_aside(dest, sha256)
    part = dest.with_name(dest.name + ".part")  # kept across failures and interrupts: resumed
    failures: list[str] = []
    mismatches: list[str] = []
    for source in urls:
        attempt = 0
        while attempt < retries:
            try:
                resumed = _fetch(source, part, timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                attempt += 1
                failures.append(f"{source} (attempt {attempt}): {exc}")
                if attempt < retries:
                    time.sleep(min(2 ** (attempt - 1), 30))  # exponential backoff: 1, 2, 4... s
                continue
            got = sha256sum(part)
            if got == sha256:
                os.replace(part, dest)  # atomic: the cache never holds a partial file
                return dest
            part.unlink()
            if not resumed:  # a fresh copy that is wrong: this mirror serves another file
                mismatches.append(f"{source}: got sha256 {got}")
                break
            # a resumed copy that is wrong: the partial file was stale; start over at once
    if mismatches:
        raise ValueError(
            f"Checksum mismatch for {filename}: expected sha256 {sha256}; "
            + "; ".join(mismatches)
            + ". The downloads were deleted; the source may have changed: report it to the course."
        )
    hint = f" Offline alternative: {offline_alternative}." if offline_alternative else ""
    raise DatasetUnavailableError(
        f"Could not download {filename} from {len(urls)} source(s):\n  "
        + "\n  ".join(failures)
        + f"\nCheck the internet connection and try again (a partial download in {part} is "
        f"continued), or work offline: put a copy of the file at {dest} (sha256 {sha256}), or "
        f"set COURSE_DATA to a folder holding it.{hint}"
    )


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
