"""Probes on frozen features: weighted kNN vs a naive loop, linear probe on separable data."""

import math

import pytest
import torch
from torch import nn

from course_utils.probe import extract_features, knn_accuracy, linear_probe


def _naive_knn_accuracy(train_f, train_y, test_f, test_y, k, temperature) -> float:
    """One test point at a time: cosine similarities, the k largest, exp(sim / T) votes."""
    correct = 0
    for f, y in zip(test_f.tolist(), test_y.tolist(), strict=True):
        sims = []
        for g, label in zip(train_f.tolist(), train_y.tolist(), strict=True):
            dot = sum(a * b for a, b in zip(f, g, strict=True))
            norm = math.sqrt(sum(a * a for a in f)) * math.sqrt(sum(b * b for b in g))
            sims.append((dot / norm, label))
        votes = {}
        for sim, label in sorted(sims, reverse=True)[:k]:
            votes[label] = votes.get(label, 0.0) + math.exp(sim / temperature)
        correct += max(votes, key=votes.get) == y
    return correct / len(test_y)


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (7, 0.1), (15, 0.5), (500, 0.07)])
def test_knn_matches_a_naive_loop(k, temperature) -> None:
    g = torch.Generator().manual_seed(k)
    train_f, test_f = torch.randn(120, 6, generator=g), torch.randn(50, 6, generator=g)
    # labels with some structure so the accuracy is neither 0 nor 1
    train_y = (train_f[:, 0] > 0).long() + 2 * (torch.rand(120, generator=g) > 0.7).long()
    test_y = (test_f[:, 0] > 0).long() + 2 * (torch.rand(50, generator=g) > 0.7).long()
    got = knn_accuracy(
        train_f, train_y, test_f, test_y, k=k, temperature=temperature, chunk_size=16
    )
    # exact: the same votes, only the accumulation order differs (no near-ties in random data)
    assert got == _naive_knn_accuracy(train_f, train_y, test_f, test_y, k, temperature)


def _clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (n,), generator=g)
    return centers[y] + torch.randn(n, 16, generator=g), y


def test_knn_separates_clusters() -> None:
    (train_f, train_y), (test_f, test_y) = _clusters(500, 1), _clusters(200, 2)
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=20) > 0.95  # chance is 0.2


def _float64_weighted_knn(train_f, train_y, test_f, test_y, k, temperature) -> float:
    """Reference: float64 cosine similarities and class votes compared in log space (logsumexp),
    which cannot overflow at any temperature."""
    bank = train_f.double() / train_f.double().norm(dim=1, keepdim=True)
    query = test_f.double() / test_f.double().norm(dim=1, keepdim=True)
    sim, index = (query @ bank.T).topk(k, dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    log_votes = torch.full((len(query), classes), -math.inf, dtype=torch.float64)
    for c in range(classes):
        mine = torch.where(train_y[index] == c, sim / temperature, -math.inf)
        log_votes[:, c] = torch.logsumexp(mine, dim=1)
    return (log_votes.argmax(1) == test_y).double().mean().item()


def _overlapping_clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Five clusters whose cosine neighbourhoods overlap: near neighbours have sim close to 1."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (n,), generator=g)
    return 3 * centers[y] + 1.5 * torch.randn(n, 8, generator=g), y


@pytest.mark.parametrize("temperature", [1e-3, 3e-3, 1e-2, 0.05])
def test_knn_at_small_temperatures_matches_a_float64_reference(temperature) -> None:
    """exp(sim / T) overflows float32 for sim / T > 88.7: tied inf votes went to the lowest class
    (at T = 1e-3 that gave 0.653 here where the reference is 0.990)."""
    train_f, train_y = _overlapping_clusters(1000, 1)
    test_f, test_y = _overlapping_clusters(300, 2)
    ref = _float64_weighted_knn(train_f, train_y, test_f, test_y, 200, temperature)
    got = knn_accuracy(train_f, train_y, test_f, test_y, k=200, temperature=temperature)
    assert ref > 0.8  # the clusters are separable enough for the comparison to mean something
    # float32 vs float64 similarities may flip a near-tie: at most one of 300 test points
    assert abs(got - ref) <= 1 / 300


def _halfspaces(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class = which side of a hyperplane, plus 30 noise dimensions with 10x larger scale."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, 2, generator=g), 10 * torch.randn(n, 30, generator=g)], 1)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def test_linear_probe_finds_a_hyperplane_that_knn_misses() -> None:
    (train_f, train_y), (test_f, test_y) = _halfspaces(1000, 1), _halfspaces(500, 2)
    linear = linear_probe(train_f, train_y, test_f, test_y)
    assert linear > 0.95
    # cosine kNN is dominated by the 30 large noise dimensions: close to chance (0.5)
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=20) < 0.7


def test_linear_probe_agrees_with_sklearn() -> None:
    lm = pytest.importorskip("sklearn.linear_model")
    (train_f, train_y), (test_f, test_y) = _clusters(400, 3), _clusters(300, 4)
    train_f = train_f + 2 * torch.randn(400, 16, generator=torch.Generator().manual_seed(5))
    ours = linear_probe(train_f, train_y, test_f, test_y, weight_decay=1e-2)
    mean, std = train_f.mean(0), train_f.std(0, unbiased=False)
    # sklearn's C = 1 / (N * weight_decay) for the mean cross-entropy + weight_decay/2 * ||W||^2
    ref = lm.LogisticRegression(C=1 / (400 * 1e-2), max_iter=2000).fit(
        ((train_f - mean) / std).numpy(), train_y.numpy()
    )
    ref_acc = (ref.predict(((test_f - mean) / std).numpy()) == test_y.numpy()).mean()
    assert abs(ours - ref_acc) <= 0.01  # the same convex problem: at most 3 of 300 points differ


def test_extract_features_batches_in_eval_mode() -> None:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    encoder.train()
    images = torch.randint(0, 256, (37, 1, 5, 5), dtype=torch.uint8)
    feats = extract_features(encoder, images, preprocess=lambda x: x.float() / 255, batch_size=8)
    assert encoder.training  # restored
    encoder.eval()
    with torch.no_grad():
        ref = encoder(images.float() / 255)
    torch.testing.assert_close(feats, ref)  # default float32 tolerances (rtol 1.3e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_f": torch.zeros(4)}, "train_f must be a 2-D float"),
        ({"train_f": torch.zeros(4, 2, dtype=torch.long)}, "train_f must be a 2-D float"),
        ({"train_y": torch.zeros(4)}, "train_y must be a 1-D int64"),
        ({"test_y": torch.zeros(3, dtype=torch.long)}, "lengths differ"),
        ({"test_f": torch.zeros(2, 3)}, "feature sizes differ"),
        ({"train_y": -torch.ones(4, dtype=torch.long)}, "class indices"),
        ({"k": 0}, "k must be"),
        ({"temperature": 0.0}, "temperature must be"),
    ],
)
def test_knn_bad_inputs(kwargs, match) -> None:
    args = {
        "train_f": torch.randn(4, 2),
        "train_y": torch.zeros(4, dtype=torch.long),
        "test_f": torch.randn(2, 2),
        "test_y": torch.zeros(2, dtype=torch.long),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn_accuracy(**args)


def test_linear_probe_bad_inputs() -> None:
    f, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="weight_decay"):
        linear_probe(f, y, f, y, weight_decay=-1.0)
    with pytest.raises(ValueError, match="test_y must be"):
        linear_probe(f, y, f, y.float())
    with pytest.raises(ValueError, match="images must be"):
        extract_features(nn.Flatten(), torch.zeros(2, 3, 4))
