"""course_utils.data: checksummed cached downloads and the offline data sets (`shapes` included)."""

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import data


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, str, bytes]:
    payload = b"the quick brown fox\n" * 1000
    path = tmp_path / "source.txt"
    path.write_bytes(payload)
    return path.as_uri(), hashlib.sha256(payload).hexdigest(), payload


def test_cache_dir_from_environment(cache: Path) -> None:
    assert data.cache_dir() == cache and cache.is_dir()


def test_local_file_served_through_the_download_path(source, cache: Path) -> None:
    url, sha, payload = source
    path = data.download(url, "fox.txt", sha)
    assert path == cache / "fox.txt" and path.read_bytes() == payload
    assert not list(cache.glob("*.part"))


def test_cached_file_is_not_fetched_again(source, monkeypatch: pytest.MonkeyPatch) -> None:
    url, sha, _ = source
    data.download(url, "fox.txt", sha)
    monkeypatch.setattr(data, "_fetch", lambda *a: pytest.fail("fetched a cached file"))
    assert data.download(url, "fox.txt", sha).exists()


def test_checksum_mismatch_is_rejected_and_removed(source, cache: Path) -> None:
    url, _, _ = source
    with pytest.raises(ValueError, match="Checksum mismatch"):
        data.download(url, "fox.txt", "0" * 64)
    assert not (cache / "fox.txt").exists() and not list(cache.glob("*"))


def test_corrupt_cache_entry_is_replaced(source, cache: Path) -> None:
    url, sha, payload = source
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fox.txt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="moved to"):
        assert data.download(url, "fox.txt", sha).read_bytes() == payload
    assert [p.read_bytes() for p in cache.glob("fox.txt.bad-*")] == [b"truncated"]


def test_offline_error_names_url_cache_file_and_alternative(cache: Path, monkeypatch) -> None:
    def offline(*args):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_fetch", offline)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.download("https://example.org/x.bin", "x.bin", "0" * 64, offline_alternative="use y")
    message = str(info.value)
    assert "https://example.org/x.bin" in message
    assert str(cache / "x.bin") in message
    assert "use y" in message


def test_retry_recovers_from_a_transient_failure(source, monkeypatch) -> None:
    url, sha, payload = source
    calls = []
    real = data._fetch

    def flaky(u, dest, timeout):
        calls.append(u)
        if len(calls) == 1:
            dest.write_bytes(b"half")
            raise OSError("connection reset")
        real(u, dest, timeout)

    monkeypatch.setattr(data, "_fetch", flaky)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    assert data.download(url, "fox.txt", sha).read_bytes() == payload
    assert len(calls) == 2


def test_interrupt_keeps_only_the_partial_file_to_resume(source, cache: Path, monkeypatch) -> None:
    url, sha, _ = source

    def interrupted(u, dest, timeout):
        dest.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_fetch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.download(url, "fox.txt", sha)
    assert [p.name for p in cache.glob("*")] == ["fox.txt.part"]  # never under the final name


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_are_uint8_nchw_with_int64_labels(split: str) -> None:
    x, y = data.load_images("digits", split)
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 8, 8)
    assert y.dtype == torch.int64 and len(y) == len(x)
    assert int(x.max()) == 255 and set(y.tolist()) == set(range(10))


def test_digits_splits_are_disjoint_and_complete() -> None:
    from sklearn.datasets import load_digits

    train, _ = data.load_images("digits", "train")
    test, _ = data.load_images("digits", "test")
    assert len(train) + len(test) == len(load_digits().images)
    flat = {bytes(t.flatten().tolist()) for t in train}
    assert sum(bytes(t.flatten().tolist()) in flat for t in test) < 0.05 * len(test)


def test_cifar10_offline_fails_clearly_or_falls_back(monkeypatch) -> None:
    def offline(*args):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(data, "_fetch", offline)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    with pytest.raises(data.DatasetUnavailableError, match="digits"):
        data.load_images("cifar10", "train")
    with pytest.warns(UserWarning, match="'digits' instead of 'cifar10'"):
        x, _ = data.load_images("cifar10", "test", offline_fallback=True)
    assert x.shape[1:] == (1, 8, 8)


def test_cifar10_reads_a_local_archive(tmp_path: Path, monkeypatch) -> None:
    import io
    import pickle
    import tarfile

    archive = tmp_path / "cifar.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w:gz") as tar:
        for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 2)]:
            blob = pickle.dumps(
                {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [1] * n}
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(data, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data, "CIFAR10_SHA256", data.sha256sum(archive))
    x, y = data.load_images("cifar10", "train")
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.uint8 and y.tolist() == [1] * 15
    assert data.load_images("cifar10", "test")[0].shape == (2, 3, 32, 32)


def test_text_sets() -> None:
    text = data.load_text("pydoc")
    assert len(text) > 100_000 and "lambda" in text
    with pytest.raises(ValueError, match="name must be one of"):
        data.load_text("wikipedia")


def test_tinyshakespeare_offline(monkeypatch) -> None:
    def offline(*args):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(data, "_fetch", offline)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    with pytest.raises(data.DatasetUnavailableError, match="pydoc"):
        data.load_text("tinyshakespeare")
    with pytest.warns(UserWarning, match="pydoc"):
        assert "lambda" in data.load_text("tinyshakespeare", offline_fallback=True)


def test_shapes_are_deterministic_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    from course_utils import shapes

    x, y = data.load_images("shapes", "train", size=16, count=60)
    fresh_x, fresh_y = shapes.generate("train", 60, 16, 0)  # the generator itself, no cache
    assert torch.equal(x, torch.from_numpy(fresh_x)) and torch.equal(y, torch.from_numpy(fresh_y))
    monkeypatch.setattr(shapes, "generate", lambda *a: pytest.fail("regenerated a cached set"))
    again_x, again_y = data.load_images("shapes", "train", size=16, count=60)
    assert torch.equal(again_x, x) and torch.equal(again_y, y)


def test_shapes_seed_and_split_change_the_images() -> None:
    x, _ = data.load_images("shapes", "train", size=16, count=50)
    other_seed, _ = data.load_images("shapes", "train", size=16, count=50, seed=1)
    test, _ = data.load_images("shapes", "test", size=16, count=50)
    assert not torch.equal(x, other_seed) and not torch.equal(x, test)
    train_rows = {bytes(t.flatten().tolist()) for t in x}
    assert not any(bytes(t.flatten().tolist()) in train_rows for t in test)


@pytest.mark.parametrize(("split", "size", "count"), [("train", 32, 1000), ("test", 16, 205)])
def test_shapes_contract_and_class_balance(split: str, size: int, count: int) -> None:
    from course_utils.shapes import SHAPES

    x, y = data.load_images("shapes", split, size=size, count=count)
    assert x.dtype == torch.uint8 and x.shape == (count, 3, size, size)
    assert y.dtype == torch.int64 and y.shape == (count,)
    per_class = torch.bincount(y, minlength=len(SHAPES))
    assert len(per_class) == len(SHAPES) and per_class.max() - per_class.min() <= 1, per_class
    assert x.float().std() > 40, "colourful images, not a constant"


def test_shapes_default_size_and_counts() -> None:
    x, _ = data.load_images("shapes", "test")
    assert x.shape == (data.SHAPES_COUNT["test"], 3, 32, 32)


def _colour_features(x: torch.Tensor) -> np.ndarray:
    """Per-channel 8-bin histograms, means and standard deviations of uint8 images."""

    pixels = x.flatten(2).numpy()
    hist = np.stack(
        [np.apply_along_axis(np.bincount, 1, pixels[:, c] // 32, minlength=8) for c in range(3)], 1
    )
    moments = np.concatenate([pixels.mean(2), pixels.std(2)], 1)
    return np.concatenate([hist.reshape(len(x), -1) / pixels.shape[2], moments / 255], 1)


def _centred_shape_mask(x: torch.Tensor) -> np.ndarray:
    """A shape-aware view: pixels far in luma from the image's median (the background), centred."""

    luma = (x.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).numpy()
    far = np.abs(luma - np.median(luma, axis=(1, 2), keepdims=True)) > 0.125 * 255
    size = x.shape[-1]
    out = np.zeros_like(far)
    grid = np.arange(size)
    for i, m in enumerate(far):
        w = m.sum() or 1
        cy, cx = round((m.sum(1) @ grid) / w), round((m.sum(0) @ grid) / w)
        out[i] = np.roll(m, (size // 2 - cy, size // 2 - cx), axis=(0, 1))
    return out.reshape(len(x), -1).astype(np.float32)


def test_shapes_colour_carries_no_label_but_shape_does() -> None:
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = data.load_images("shapes", "train", size=32, count=2000)
    test_x, test_y = data.load_images("shapes", "test", size=32, count=1000)
    chance = 0.1
    # Colour histograms and moments, the shortcut that matches two crops of one image: with 1000
    # test images chance-level accuracy has a standard deviation of 0.01, so 0.15 is 5 sigma.
    colour = LogisticRegression(max_iter=2000).fit(_colour_features(train_x), train_y.numpy())
    colour_acc = colour.score(_colour_features(test_x), test_y.numpy())
    assert colour_acc < chance + 0.05, f"colour statistics predict the class ({colour_acc:.3f})"
    # The same classifier on the centred silhouette (colour removed) learns the class.
    shape = LogisticRegression(C=0.1, max_iter=2000)
    shape.fit(_centred_shape_mask(train_x), train_y.numpy())
    shape_acc = shape.score(_centred_shape_mask(test_x), test_y.numpy())
    assert shape_acc > chance + 0.4, f"the silhouette should give the class ({shape_acc:.3f})"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(name="digits", size=16), ValueError, "'shapes' only"),
        (dict(name="shapes", size=4), ValueError, "size must be >= 8"),
        (dict(name="shapes", count=0), ValueError, "count must be >= 1"),
        (dict(name="shapes", size=16.0), TypeError, "size must be an int"),
    ],
)
def test_shapes_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        data.load_images(split="train", **kwargs)
    from course_utils import shapes

    with pytest.raises(ValueError, match="split must be"):
        shapes.generate("val", 10, 16, 0)
    with pytest.raises(ValueError, match="size >= 8"):
        shapes.generate("train", 10, 4, 0)


@pytest.mark.parametrize(("name", "split"), [("mnist", "train"), ("digits", "val")])
def test_bad_image_arguments(name: str, split: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        data.load_images(name, split)


def test_batches_cover_every_row_once() -> None:
    x = torch.arange(10)
    y = x * 2
    seen = []
    for bx, by in data.batches(x, y, batch_size=3, generator=torch.Generator().manual_seed(0)):
        assert torch.equal(by, bx * 2)
        seen += bx.tolist()
    assert sorted(seen) == list(range(10))
    assert [len(b) for (b,) in data.batches(x, batch_size=3, drop_last=True)] == [3, 3, 3]


def test_batches_bad_input() -> None:
    with pytest.raises(ValueError, match="first dimension"):
        list(data.batches(torch.zeros(3), torch.zeros(4), batch_size=2))
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(torch.zeros(3), batch_size=0))
